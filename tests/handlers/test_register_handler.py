"""The register Lambda handler under moto, driven by the sample events in events/register/."""

from __future__ import annotations

import copy
import json

import pytest

from sluice.contracts import RegisterResult, TrainResult
from sluice.errors import AliasConflictError, ArtifactIntegrityError
from sluice.ingest import ingest_bytes
from sluice.registry import Registry
from sluice.specs import load_dataset_spec, load_model_spec
from sluice.storage import sha256_hex
from tests.events import DATA, event_files, load_event
from tests.handlers.support import BUCKET, Storage
from tests.lambda_context import lambda_context
from training.train import train_model

FUNCTION = "register"  # the aws, s3 and handler fixtures (conftest.py) set up this function
MODEL = "transaction-category"
SOURCES = {"household.json": DATA / "transactions" / "daily_household_transactions.csv"}


@pytest.fixture(scope="module")
def staged_onnx() -> dict[str, bytes]:
    """The ONNX file each sample event describes, rebuilt by training on the real file it names.

    Training is deterministic on one machine, but BLAS kernels differ between CPUs (and with
    OPENBLAS_CORETYPE), so the bytes - and the sha256 the committed event records - may differ
    here: the ``event`` fixture puts this machine's sha256 into the event."""
    out = {}
    for path in event_files("register"):
        event = TrainResult.model_validate(load_event(path))
        df = ingest_bytes(SOURCES[path.name].read_bytes(), load_dataset_spec(event.ingest.dataset)).clean
        trained = train_model(load_model_spec(event.model), df)
        assert trained.classes == event.feature_schema.classes, f"{path} is stale: regenerate it"
        out[path.name] = trained.onnx
    return out


@pytest.fixture
def registry(aws: Storage) -> Registry:
    return Registry(aws.table, aws.bucket)


@pytest.fixture
def event(s3, staged_onnx) -> dict:
    """The household sample event, its staged ONNX file in place."""
    event = load_event("register/household.json")
    body = staged_onnx["household.json"]
    s3.put_object(Bucket=BUCKET, Key=event["artifact_key"], Body=body)
    return {**event, "onnx_sha256": sha256_hex(body)}


def emf_metrics(capsys) -> dict[str, list]:
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    return {m["Name"]: doc for doc in docs for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


def test_every_sample_event_is_covered():
    assert {p.name for p in event_files("register")} == set(SOURCES)


@pytest.mark.parametrize("path", event_files("register"), ids=lambda p: p.name)
def test_sample_event_registers_version_1_as_champion(s3, handler, registry, staged_onnx, capsys, path):
    event = load_event(path)
    s3.put_object(Bucket=BUCKET, Key=event["artifact_key"], Body=staged_onnx[path.name])
    event["onnx_sha256"] = sha256_hex(staged_onnx[path.name])  # this machine's fit (see staged_onnx)

    out = RegisterResult.model_validate(handler(event, lambda_context("register")))

    assert out == RegisterResult(
        model=MODEL,
        version=1,
        status="champion",
        reasons=[],
        previous_champion=None,
        metrics=event["metrics"],
    )
    assert registry.get_alias(MODEL, "champion") == 1
    mv = registry.get_version(MODEL, 1)
    assert mv.status == "champion" and mv.onnx_key == f"models/{MODEL}/v1/model.onnx"
    assert registry.load_onnx(mv) == staged_onnx[path.name]
    assert mv.onnx_sha256 == event["onnx_sha256"]

    meta = registry.metadata(mv)
    assert meta["source"] == event["ingest"]["source"]
    assert meta["source"]["sha256"] and meta["source"]["version_id"]
    assert meta["ingest"]["run_id"] == event["ingest"]["run_id"]
    assert meta["rows"] == {
        "train": event["rows_train"],
        "holdout": event["rows_holdout"],
        "clean": event["ingest"]["rows_clean"],
    }
    for key in (
        "metrics",
        "baseline",
        "parity",
        "params",
        "feature_schema",
        "library_versions",
        "onnx_sha256",
    ):
        assert meta[key] == event[key], key
    assert meta["spec"] == event["spec"]
    assert meta["code_version"] == "0.1.0"
    assert meta["version"] == 1 and meta["status"] == "champion"
    assert {g["gate"] for g in meta["gates"]} == {"parity", "beat_baseline"}
    assert all(g["passed"] for g in meta["gates"])
    assert "register_s" in meta["timings"] and "fit_s" in meta["timings"]

    [move] = registry.audit(MODEL)
    assert (move["alias"], move["from"], move["to"]) == ("champion", None, 1)
    assert "passed the gates" in move["reason"]
    metrics = emf_metrics(capsys)
    assert metrics["ModelsPromoted"]["model"] == MODEL


def test_registering_twice_gives_versions_1_and_2_and_moves_the_champion(handler, registry, event):
    first = handler(event, lambda_context("register"))
    second = handler(event, lambda_context("register"))

    assert (first["version"], second["version"]) == (1, 2)
    assert second["status"] == "champion" and second["previous_champion"] == 1
    assert registry.get_alias(MODEL, "champion") == 2
    assert [(m["from"], m["to"]) for m in registry.audit(MODEL)] == [(None, 1), (1, 2)]
    assert [v.version for v in registry.versions(MODEL)] == [1, 2]


def test_a_candidate_no_better_than_the_baseline_is_rejected_and_leaves_the_champion(
    handler, registry, event, capsys
):
    handler(event, lambda_context("register"))
    worse = copy.deepcopy(event)
    worse["metrics"]["macro_f1"] = worse["baseline"]["macro_f1"]

    out = handler(worse, lambda_context("register"))

    assert out["version"] == 2 and out["status"] == "rejected" and out["previous_champion"] == 1
    [reason] = out["reasons"]
    assert reason.startswith("beat_baseline: holdout macro_f1") and "<= baseline" in reason
    assert registry.get_alias(MODEL, "champion") == 1
    assert registry.get_version(MODEL, 2).status == "rejected"
    assert registry.metadata(registry.get_version(MODEL, 2))["reasons"] == out["reasons"]
    assert len(registry.audit(MODEL)) == 1
    assert "ModelsRejected" in emf_metrics(capsys)


def test_failed_parity_is_rejected_even_without_a_champion(handler, registry, event):
    event["parity"] = {**event["parity"], "passed": False, "label_agreement": 0.9}
    out = handler(event, lambda_context("register"))
    assert out["status"] == "rejected" and out["version"] == 1
    assert out["reasons"][0].startswith("parity: label agreement 0.9000")
    assert registry.get_alias(MODEL, "champion") is None


def test_min_metric_gate_from_the_spec(handler, registry, event):
    event["spec"]["gates"] = {"beat_baseline": True, "min_metric": 0.99}
    out = handler(event, lambda_context("register"))
    assert out["status"] == "rejected"
    assert any(
        r.startswith("min_metric: holdout macro_f1") and "< minimum 0.9900" in r for r in out["reasons"]
    )
    assert registry.get_alias(MODEL, "champion") is None


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_concurrent_alias_move_is_an_alias_conflict(handler, registry, event, monkeypatch):
    handler(event, lambda_context("register"))
    # Another pipeline's view: it read the champion before version 1 was promoted.
    monkeypatch.setattr(Registry, "get_alias", lambda self, model, alias="champion": None)

    with pytest.raises(AliasConflictError, match="no longer points at None; not moved to 2"):
        handler(event, lambda_context("register"))

    monkeypatch.undo()
    assert registry.get_alias(MODEL, "champion") == 1
    assert len(registry.audit(MODEL)) == 1


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_tampered_staged_artifact_is_refused(s3, handler, registry, event):
    s3.put_object(Bucket=BUCKET, Key=event["artifact_key"], Body=b"tampered")
    with pytest.raises(ArtifactIntegrityError, match="training recorded"):
        handler(event, lambda_context("register"))
    assert registry.versions(MODEL) == []
