"""The train Lambda handler under moto, driven by the sample events in events/train/ (one per task
trained on the household file: category, amount, anomaly)."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest

from sluice.contracts import TrainRequest, TrainResult
from sluice.errors import SourceObjectError, SpecError
from sluice.specs import greater_is_better, load_model_spec
from sluice.storage import sha256_hex
from tests.events import EVENTS, event_files, load_event
from tests.handlers.support import BUCKET, SOURCE_FILES, moto_storage, stage_curated
from tests.lambda_context import lambda_context

FUNCTION = "train"  # the aws, s3 and handler fixtures (conftest.py) set up this function
OUTPUTS = {"classification": ["label", "probabilities"], "regression": ["value"], "anomaly": ["score"]}


def test_every_sample_event_has_its_source_file_and_covers_a_task():
    events = event_files("train")
    tasks = set()
    for path in events:
        request = TrainRequest.model_validate(load_event(path))
        assert request.ingest.source.key in SOURCE_FILES
        tasks.add(load_model_spec(request.model).task)
    assert tasks == {"classification", "regression", "anomaly"}


@pytest.mark.parametrize("path", event_files("train"), ids=lambda p: p.name)
def test_train_event_stages_a_model_that_beats_the_baseline(s3, handler, capsys, path):
    event = load_event(path)
    stage_curated(s3, event)

    out = handler(event, lambda_context("train"))

    result = TrainResult.model_validate(out)
    spec = load_model_spec(result.model)
    assert result.model == event["model"]
    assert result.run_id == event["ingest"]["run_id"]
    assert result.artifact_key == f"staging/{result.model}/{result.run_id}/model.onnx"
    assert result.ingest.model_dump() == TrainRequest.model_validate(event).ingest.model_dump()
    # parity and the champion are for the Verify step (serving runtime); training leaves the answers
    assert result.parity is None and result.champion is None
    assert result.parity_key == f"staging/{result.model}/{result.run_id}/parity.json"
    document = json.loads(s3.get_object(Bucket=BUCKET, Key=result.parity_key)["Body"].read())
    holdout = document["batches"][0]
    assert len(holdout["records"]) == result.rows_holdout
    assert ("targets" in holdout) == (spec.effective_metric is not None)
    metric = spec.effective_metric
    if metric is not None:
        value, base = result.metrics["holdout"][metric], result.metrics["baseline"][metric]
        assert value > base if greater_is_better(metric) else value < base
    assert [c.name for c in result.candidates] == [c.name for c in spec.candidate_specs]
    assert sum(c.status == "selected" for c in result.candidates) == 1
    assert result.rows_train + result.rows_holdout <= result.ingest.rows_clean
    assert result.task == spec.task and result.spec["name"] == result.model
    assert len(result.spec_sha256) == 64 and result.code_version
    assert len(json.dumps(out)) < 256 * 1024

    onnx_bytes = s3.get_object(Bucket=BUCKET, Key=result.artifact_key)["Body"].read()
    assert sha256_hex(onnx_bytes) == result.onnx_sha256
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == OUTPUTS[spec.task]

    # The verify and register sample events of the same name are this TrainResult, before and
    # after verification. The ONNX bytes and the last digits of the metrics depend on the CPU's
    # BLAS kernels, so those are compared loosely.
    for step in ("verify", "register"):
        sample = EVENTS / step / path.name
        expected = load_event(sample)
        for field in ("model", "run_id", "artifact_key", "parity_key", "ingest", "spec_sha256"):
            assert out[field] == expected[field], f"{sample}: {field} is stale: regenerate it"
        assert out["feature_schema"]["classes"] == expected["feature_schema"]["classes"], sample
        assert [c["name"] for c in out["candidates"]] == [c["name"] for c in expected["candidates"]]
        for name, value in expected["metrics"]["holdout"].items():
            assert out["metrics"]["holdout"][name] == pytest.approx(value, rel=0.05, abs=0.02), (
                f"{sample}: {name}"
            )

    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert "TrainSeconds" in names


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_a_model_of_another_dataset_is_a_spec_error(s3, handler):
    event = load_event("train/household.json")
    event["ingest"]["dataset"] = "churn"
    with pytest.raises(SpecError, match="trains on dataset 'transactions'"):
        handler(event, lambda_context("train"))


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_unknown_model_is_a_spec_error(s3, handler):
    event = {**load_event("train/household.json"), "model": "no-such-model"}
    with pytest.raises(SpecError, match="no model spec named 'no-such-model'"):
        handler(event, lambda_context("train"))


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_missing_curated_data_raises(s3, handler):
    with pytest.raises(SourceObjectError, match="cannot read"):
        handler(load_event("train/household.json"), lambda_context("train"))


def regenerate_events() -> None:
    """Rewrite events/verify/<name> and events/register/<name> from training on events/train/<name>
    (after a training change): ``python -m tests.handlers.test_train_handler``. No champion exists
    in the fresh registry, so the register samples carry "no champion yet"."""
    import os

    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    from sluice.verification import verify_candidate
    from training.train import run_training

    for path in event_files("train"):
        with pytest.MonkeyPatch.context() as mp, moto_storage(mp, FUNCTION) as storage:
            event = load_event(path)
            stage_curated(storage.s3, event)
            result = run_training(TrainRequest.model_validate(event))
            verified = verify_candidate(result)
        for step, payload in (("verify", result), ("register", verified)):
            (EVENTS / step / path.name).write_text(json.dumps(payload.to_event(), indent=2) + "\n")
            print(f"wrote events/{step}/{path.name} (onnx sha256 {result.onnx_sha256})")


if __name__ == "__main__":
    regenerate_events()
