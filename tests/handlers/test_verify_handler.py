"""The verify Lambda handler under moto: parity proven with onnxruntime on the staged artifacts, and
the champion scored on the candidate's holdout."""

from __future__ import annotations

import json

import pytest

from sluice.contracts import TrainResult
from sluice.errors import ArtifactIntegrityError, ParityError
from sluice.registry import Registry
from tests.events import EVENTS, event_files, load_event
from tests.handlers.support import BUCKET
from tests.lambda_context import lambda_context

FUNCTION = "verify"  # the aws, s3 and handler fixtures (conftest.py) set up this function


@pytest.fixture
def registry(aws) -> Registry:
    return Registry(aws.table, aws.bucket)


@pytest.fixture
def staged(s3, trained_samples) -> TrainResult:
    """The household category candidate, its model.onnx and parity.json in staging."""
    sample = trained_samples["household.json"]
    sample.stage(s3)
    return sample.result


def make_champion(registry: Registry, result: TrainResult, onnx: bytes) -> int:
    metadata = {"feature_schema": result.feature_schema.to_event(), "metrics": result.metrics}
    version = registry.register(result.model, onnx, metadata, "champion").version
    registry.set_alias(result.model, "champion", version, expected=None, reason="test")
    return version


@pytest.mark.parametrize("path", event_files("verify"), ids=lambda p: p.name)
def test_verify_event_proves_parity(s3, trained_samples, handler, path):
    sample = trained_samples[path.name]
    sample.stage(s3)
    event = load_event(path)
    assert event["parity"] is None and event["parity_key"] == sample.result.parity_key
    # the bytes (hence the sha256) of a fit depend on the CPU's BLAS kernels: this machine's
    event["onnx_sha256"] = sample.result.onnx_sha256

    out = handler(event, lambda_context("verify"))

    result = TrainResult.model_validate(out)
    assert result.parity.passed
    assert result.parity.rows > result.rows_holdout  # holdout + single rows + probes
    if result.task == "classification":
        assert result.parity.label_agreement == 1.0 and result.parity.max_abs_prob_diff <= 1e-4
    else:
        assert result.parity.label_agreement is None and result.parity.max_rel_diff <= 1e-4
    assert result.champion.version is None
    # the register sample event is this output
    expected = json.loads((EVENTS / "register" / path.name).read_text())
    assert expected["parity"]["rows"] == result.parity.rows
    assert expected["parity"]["passed"] is True
    assert expected["champion"] == result.champion.to_event()
    # the Evaluate decision: every gate of the spec passed, none of them against a champion
    assert result.evaluation.accepted and result.evaluation.champion_version is None
    assert result.evaluation.gates[0].gate == "parity" and result.evaluation.reasons == []
    decided = [(g["gate"], g["passed"]) for g in expected["evaluation"]["gates"]]
    assert decided == [(g.gate, g.passed) for g in result.evaluation.gates]  # details hold CPU-bound diffs


def test_the_champion_is_scored_on_the_same_holdout(s3, staged, handler, registry, trained_samples):
    sample = trained_samples["household.json"]
    version = make_champion(registry, staged, sample.onnx)

    out = TrainResult.model_validate(handler(staged.to_event(), lambda_context("verify")))

    cmp = out.champion
    assert (cmp.version, cmp.metric, cmp.rows) == (version, "accuracy", staged.rows_holdout)
    assert cmp.candidate == cmp.champion  # the same graph on the same rows
    assert cmp.candidate == pytest.approx(staged.metrics["holdout"]["accuracy"], abs=1e-9)
    assert out.evaluation.accepted and out.evaluation.champion_version == version
    [gate] = [g for g in out.evaluation.gates if g.gate == "champion"]
    assert gate.passed and "no worse than champion v1" in gate.detail


def test_a_candidate_missing_a_gate_is_not_accepted(s3, staged, handler):
    spec = {**staged.spec, "gates": {**staged.spec["gates"], "min_metric": 0.99}}
    out = TrainResult.model_validate(handler({**staged.to_event(), "spec": spec}, lambda_context("verify")))
    assert out.parity.passed and not out.evaluation.accepted
    [reason] = out.evaluation.reasons
    assert reason.startswith("min_metric: holdout accuracy") and reason.endswith("< minimum 0.9900")


def test_a_champion_of_another_kind_is_not_compared(s3, staged, handler, registry, trained_samples):
    amount = trained_samples["household_amount.json"]
    metadata = {"feature_schema": amount.result.feature_schema.to_event()}
    registry.register(staged.model, amount.onnx, metadata, "champion")
    registry.set_alias(staged.model, "champion", 1, expected=None, reason="test")
    out = TrainResult.model_validate(handler(staged.to_event(), lambda_context("verify")))
    assert out.champion.version == 1 and out.champion.champion is None
    assert out.champion.note == "the champion is a regression model: not compared"


def test_a_tampered_champion_file_is_refused(s3, staged, handler, registry, trained_samples):
    make_champion(registry, staged, trained_samples["household.json"].onnx)
    s3.put_object(Bucket=BUCKET, Key=f"models/{staged.model}/v1/model.onnx", Body=b"tampered")
    with pytest.raises(ArtifactIntegrityError, match="registered"):
        handler(staged.to_event(), lambda_context("verify"))


def test_a_changed_staged_file_is_refused(s3, staged, handler):
    body = s3.get_object(Bucket=BUCKET, Key=staged.artifact_key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=staged.artifact_key, Body=body + b"\0")
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        handler(staged.to_event(), lambda_context("verify"))


def test_disagreeing_answers_are_recorded_as_failed_parity(s3, staged, handler):
    document = json.loads(s3.get_object(Bucket=BUCKET, Key=staged.parity_key)["Body"].read())
    batch = document["batches"][0]
    batch["labels"] = batch["labels"][1:] + batch["labels"][:1]  # the graph now "disagrees"
    batch["probabilities"] = batch["probabilities"][1:] + batch["probabilities"][:1]
    s3.put_object(Bucket=BUCKET, Key=staged.parity_key, Body=json.dumps(document).encode())
    out = TrainResult.model_validate(handler(staged.to_event(), lambda_context("verify")))
    assert not out.parity.passed and out.parity.label_agreement < 1.0  # Register rejects it


def test_an_unrunnable_graph_is_a_parity_error(s3, staged, handler):
    from sluice.storage import sha256_hex

    s3.put_object(Bucket=BUCKET, Key=staged.artifact_key, Body=b"not onnx")
    event = {**staged.to_event(), "onnx_sha256": sha256_hex(b"not onnx")}
    with pytest.raises(ParityError, match="onnxruntime cannot run"):
        handler(event, lambda_context("verify"))


def test_a_result_without_parity_document_is_refused(staged, handler):
    event = {**staged.to_event(), "parity_key": None}
    with pytest.raises(ParityError, match="no parity document"):
        handler(event, lambda_context("verify"))
