"""The register Lambda handler under moto, driven by the sample events in events/register/."""

from __future__ import annotations

import copy
import json

import pytest

from sluice.contracts import RegisterResult
from sluice.errors import AliasConflictError, ArtifactIntegrityError
from sluice.registry import Registry
from sluice.specs import load_model_spec
from sluice.storage import sha256_hex
from tests.events import event_files, load_event
from tests.handlers.support import BUCKET, Storage
from tests.lambda_context import lambda_context

FUNCTION = "register"  # the aws, s3 and handler fixtures (conftest.py) set up this function
MODEL = "transaction-category"


@pytest.fixture
def registry(aws: Storage) -> Registry:
    return Registry(aws.table, aws.bucket)


def staged_event(s3, trained_samples, name: str) -> dict:
    """The register sample ``name`` with this machine's ONNX bytes staged (see trained_samples)."""
    event = load_event(f"register/{name}")
    sample = trained_samples[name]
    assert sample.result.feature_schema.classes == event["feature_schema"]["classes"], f"{name} is stale"
    s3.put_object(Bucket=BUCKET, Key=event["artifact_key"], Body=sample.onnx)
    return {**event, "onnx_sha256": sha256_hex(sample.onnx)}


@pytest.fixture
def evaluated(s3, trained_samples) -> dict:
    """The household category sample event as the Evaluate step leaves it, its ONNX file staged."""
    event = staged_event(s3, trained_samples, "household.json")
    assert event["evaluation"]["accepted"] and event["evaluation"]["champion_version"] is None
    return event


@pytest.fixture
def event(evaluated) -> dict:
    """The same without the Evaluate decision: the tests below change what the gates read, and
    Register decides the gates itself when no decision came with the candidate."""
    return {k: v for k, v in evaluated.items() if k != "evaluation"}


def emf_metrics(capsys) -> dict[str, list]:
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    return {m["Name"]: doc for doc in docs for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


@pytest.mark.parametrize("path", event_files("register"), ids=lambda p: p.name)
def test_sample_event_registers_version_1_as_champion(s3, handler, registry, trained_samples, capsys, path):
    event = staged_event(s3, trained_samples, path.name)
    model = event["model"]
    spec = load_model_spec(model)

    out = RegisterResult.model_validate(handler(event, lambda_context("register")))

    assert (out.model, out.version, out.status, out.reasons) == (model, 1, "champion", [])
    assert out.previous_champion is None and out.metric == spec.effective_metric
    assert out.metrics == event["metrics"]["holdout"]
    assert out.summary.startswith(f"{model} v1 is the champion")
    assert registry.get_alias(model, "champion") == 1
    mv = registry.get_version(model, 1)
    assert mv.status == "champion" and mv.onnx_key == f"models/{model}/v1/model.onnx"
    assert registry.load_onnx(mv) == trained_samples[path.name].onnx
    assert mv.metrics == event["metrics"]["holdout"]  # the registry item carries the holdout metrics

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
        "parity",
        "params",
        "feature_schema",
        "library_versions",
        "onnx_sha256",
        "spec_sha256",
    ):
        assert meta[key] == event[key], key
    assert meta["candidates"] == event["candidates"]
    assert meta["champion_comparison"] == event["champion"]
    assert meta["task"] == spec.task and meta["metric"] == spec.effective_metric
    assert meta["spec"] == event["spec"]
    assert meta["code_version"] == "0.1.0"
    assert {"xgboost-cpu", "onnxmltools", "scikit-learn"} <= set(meta["library_versions"])
    assert meta["version"] == 1 and meta["status"] == "champion"
    expected_gates = {"parity"} if spec.effective_metric is None else {"parity", "beat_baseline", "champion"}
    assert {g["gate"] for g in meta["gates"]} == expected_gates
    assert all(g["passed"] for g in meta["gates"])
    assert "register_s" in meta["timings"] and "fit_s" in meta["timings"]

    [move] = registry.audit(model)
    assert (move["alias"], move["from"], move["to"]) == ("champion", None, 1)
    assert "passed the gates" in move["reason"]
    assert emf_metrics(capsys)["ModelsPromoted"]["model"] == model


def champion_comparison(event: dict, candidate: float, champion: float, version: int = 1) -> dict:
    event = copy.deepcopy(event)
    event["champion"] = {
        "version": version,
        "metric": "accuracy",
        "candidate": candidate,
        "champion": champion,
        "rows": event["rows_holdout"],
        "note": "",
    }
    return event


def test_registering_twice_gives_versions_1_and_2_and_moves_the_champion(handler, registry, event):
    first = handler(event, lambda_context("register"))
    accuracy = event["metrics"]["holdout"]["accuracy"]
    second = handler(champion_comparison(event, accuracy, accuracy), lambda_context("register"))

    assert (first["version"], second["version"]) == (1, 2)
    assert second["status"] == "champion" and second["previous_champion"] == 1
    assert registry.get_alias(MODEL, "champion") == 2
    assert [(m["from"], m["to"]) for m in registry.audit(MODEL)] == [(None, 1), (1, 2)]
    assert [v.version for v in registry.versions(MODEL)] == [1, 2]


def test_a_candidate_worse_than_the_champion_is_rejected_and_the_champion_stays(
    handler, registry, event, capsys
):
    handler(event, lambda_context("register"))
    worse = champion_comparison(event, candidate=0.70, champion=0.72)  # tolerance 0.01

    out = RegisterResult.model_validate(handler(worse, lambda_context("register")))

    assert (out.version, out.status, out.previous_champion) == (2, "rejected", 1)
    [reason] = out.reasons
    assert reason == (
        f"champion: accuracy 0.7000 worse than champion v1 0.7200 (tolerance 0.01) on the same "
        f"{event['rows_holdout']} holdout rows"
    )
    assert out.summary == f"{MODEL} v2 rejected: {reason}"
    assert registry.get_alias(MODEL, "champion") == 1
    assert registry.get_version(MODEL, 2).status == "rejected"
    assert registry.metadata(registry.get_version(MODEL, 2))["reasons"] == out.reasons
    assert len(registry.audit(MODEL)) == 1
    assert "ModelsRejected" in emf_metrics(capsys)

    within = champion_comparison(event, candidate=0.715, champion=0.72)
    assert handler(within, lambda_context("register"))["status"] == "champion"


def test_a_comparison_against_a_champion_that_moved_since_is_rejected(handler, registry, event):
    handler(event, lambda_context("register"))  # v1 is champion now; the candidate saw none
    out = handler(event, lambda_context("register"))
    assert out["status"] == "rejected"
    assert out["reasons"] == [
        "champion: the champion moved (none at verification, v1 now): retrain to compare"
    ]


def test_register_records_the_evaluate_decision(handler, registry, evaluated):
    """Register does not decide again: a candidate Evaluate turned down is rejected with its reasons."""
    turned_down = copy.deepcopy(evaluated)
    turned_down["evaluation"]["accepted"] = False
    turned_down["evaluation"]["gates"][1] = {
        "gate": "beat_baseline",
        "passed": False,
        "detail": "holdout accuracy 0.5000 does not beat baseline 0.6000",
    }

    out = RegisterResult.model_validate(handler(turned_down, lambda_context("register")))

    assert (out.version, out.status) == (1, "rejected")
    assert out.reasons == ["beat_baseline: holdout accuracy 0.5000 does not beat baseline 0.6000"]
    gates = registry.metadata(registry.get_version(MODEL, 1))["gates"]
    assert gates == turned_down["evaluation"]["gates"]
    assert registry.get_alias(MODEL, "champion") is None


def test_an_evaluation_against_a_champion_that_moved_since_is_decided_again(handler, registry, evaluated):
    assert handler(evaluated, lambda_context("register"))["status"] == "champion"  # v1
    out = handler(evaluated, lambda_context("register"))  # evaluated when there was no champion
    assert (out["version"], out["status"]) == (2, "rejected")
    assert out["reasons"] == [
        "champion: the champion moved (none at verification, v1 now): retrain to compare"
    ]
    assert registry.get_alias(MODEL, "champion") == 1


def test_a_candidate_no_better_than_the_baseline_is_rejected(handler, registry, event):
    worse = copy.deepcopy(event)
    worse["metrics"]["holdout"]["accuracy"] = worse["metrics"]["baseline"]["accuracy"]
    out = handler(worse, lambda_context("register"))
    assert out["version"] == 1 and out["status"] == "rejected"
    [reason] = out["reasons"]
    assert reason.startswith("beat_baseline: holdout accuracy") and "does not beat baseline" in reason
    assert registry.get_alias(MODEL, "champion") is None


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
        r.startswith("min_metric: holdout accuracy") and "< minimum 0.9900" in r for r in out["reasons"]
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
