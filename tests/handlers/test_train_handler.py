"""The train Lambda handler under moto, driven by the sample events in events/train/."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest

from sluice.contracts import IngestRequest, TrainRequest, TrainResult
from sluice.errors import SourceObjectError, SpecError
from sluice.ingest import ingest
from sluice.storage import sha256_hex
from tests.events import DATA, EVENTS, event_files, load_event
from tests.handlers.support import BUCKET, moto_storage
from tests.lambda_context import lambda_context

FUNCTION = "train"  # the aws, s3 and handler fixtures (conftest.py) set up this function
FILES = {
    "raw/transactions/daily_household_transactions.csv": DATA
    / "transactions"
    / "daily_household_transactions.csv"
}


def stage_curated(s3, event: dict) -> None:
    """Upload the raw file the event's ingest result names, run the real ingest on it, and put its
    curated output where the event says it is (the event's run id is fixed, moto's version ids are not)."""
    request = TrainRequest.model_validate(event)
    source = request.ingest.source
    assert source.bucket == BUCKET
    body = FILES[source.key].read_bytes()
    assert sha256_hex(body) == source.sha256 and len(body) == source.size
    s3.put_object(Bucket=BUCKET, Key=source.key, Body=body)
    result = ingest(IngestRequest(bucket=BUCKET, key=source.key))
    assert result.rows_clean == request.ingest.rows_clean
    for src, dst in [
        (result.data_key, request.ingest.data_key),
        (result.schema_key, request.ingest.schema_key),
        (result.quality_key, request.ingest.quality_key),
        (result.quarantine_key, request.ingest.quarantine_key),
    ]:
        s3.copy_object(Bucket=BUCKET, Key=dst, CopySource={"Bucket": BUCKET, "Key": src})


def test_every_sample_event_has_its_source_file():
    events = event_files("train")
    assert events
    for path in events:
        assert TrainRequest.model_validate(load_event(path)).ingest.source.key in FILES


@pytest.mark.parametrize("path", event_files("train"), ids=lambda p: p.name)
def test_train_event_stages_a_model_that_beats_the_baseline(s3, handler, capsys, path):
    event = load_event(path)
    stage_curated(s3, event)

    out = handler(event, lambda_context("train"))

    result = TrainResult.model_validate(out)
    assert result.model == event["model"]
    assert result.run_id == event["ingest"]["run_id"]
    assert result.artifact_key == f"staging/{result.model}/{result.run_id}/model.onnx"
    assert result.ingest.model_dump() == TrainRequest.model_validate(event).ingest.model_dump()
    # parity is proven by the Verify step (serving runtime); training leaves the native answers
    assert result.parity is None
    assert result.parity_key == f"staging/{result.model}/{result.run_id}/parity.json"
    document = json.loads(s3.get_object(Bucket=BUCKET, Key=result.parity_key)["Body"].read())
    assert len(document["batches"][0]["records"]) == result.rows_holdout
    assert result.metrics["accuracy"] > result.baseline["accuracy"]
    assert result.metrics["macro_f1"] > result.baseline["macro_f1"]
    assert result.rows_train + result.rows_holdout == result.ingest.rows_clean
    assert result.feature_schema.classes and result.feature_schema.label_output == "label"
    assert result.spec["name"] == result.model
    json.dumps(out)

    onnx_bytes = s3.get_object(Bucket=BUCKET, Key=result.artifact_key)["Body"].read()
    assert sha256_hex(onnx_bytes) == result.onnx_sha256
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]

    # The verify and register sample events of the same name are this TrainResult, before and
    # after verification. The ONNX bytes and the last digits of the metrics depend on the CPU's
    # BLAS kernels, so those are compared loosely.
    for step in ("verify", "register"):
        sample = EVENTS / step / path.name
        expected = load_event(sample)
        for field in (
            "model",
            "run_id",
            "artifact_key",
            "parity_key",
            "baseline",
            "feature_schema",
            "ingest",
        ):
            assert out[field] == expected[field], f"{sample}: {field} is stale: regenerate it"
        for name, value in expected["metrics"].items():
            assert out["metrics"][name] == pytest.approx(value, abs=0.02), f"{sample}: {name}"

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
    (after a training change): ``python -m tests.handlers.test_train_handler``."""
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
