"""The verify Lambda handler under moto: parity proven with onnxruntime on the staged artifacts."""

from __future__ import annotations

import json

import pytest

from sluice.contracts import TrainRequest, TrainResult
from sluice.errors import ArtifactIntegrityError, ParityError
from tests.events import EVENTS, event_files, load_event
from tests.handlers.support import BUCKET
from tests.handlers.test_train_handler import stage_curated
from tests.lambda_context import lambda_context

FUNCTION = "verify"  # the aws, s3 and handler fixtures (conftest.py) set up this function


@pytest.fixture
def staged(s3):
    """Run the real training for the sample event, leaving model.onnx and parity.json in staging."""
    from training.train import run_training

    event = load_event("train/household.json")
    stage_curated(s3, event)
    return run_training(TrainRequest.model_validate(event))


@pytest.mark.parametrize("path", event_files("verify"), ids=lambda p: p.name)
def test_verify_event_proves_parity(staged, handler, path):
    event = load_event(path)
    assert event["parity"] is None and event["parity_key"] == staged.parity_key
    assert event["artifact_key"] == staged.artifact_key
    # the bytes (hence the sha256) of a fit depend on the CPU's BLAS kernels: this machine's
    event["onnx_sha256"] = staged.onnx_sha256

    out = handler(event, lambda_context("verify"))

    result = TrainResult.model_validate(out)
    assert result.parity.passed
    assert result.parity.label_agreement == 1.0
    assert result.parity.max_abs_prob_diff <= 1e-4
    assert result.parity.rows > result.rows_holdout  # holdout + single rows + probes
    # the register sample event is this output
    expected = json.loads((EVENTS / "register" / path.name).read_text())
    assert expected["parity"]["rows"] == result.parity.rows
    assert expected["parity"]["passed"] is True


def test_a_changed_staged_file_is_refused(s3, staged, handler):
    body = s3.get_object(Bucket=BUCKET, Key=staged.artifact_key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=staged.artifact_key, Body=body + b"\0")
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        handler(staged.to_event(), lambda_context("verify"))


def test_disagreeing_answers_fail_parity(s3, staged, handler):
    document = json.loads(s3.get_object(Bucket=BUCKET, Key=staged.parity_key)["Body"].read())
    batch = document["batches"][0]
    batch["labels"] = batch["labels"][1:] + batch["labels"][:1]  # the graph now "disagrees"
    batch["probabilities"] = batch["probabilities"][1:] + batch["probabilities"][:1]
    s3.put_object(Bucket=BUCKET, Key=staged.parity_key, Body=json.dumps(document).encode())
    with pytest.raises(ParityError, match="label agreement"):
        handler(staged.to_event(), lambda_context("verify"))


def test_a_result_without_parity_document_is_refused(staged, handler):
    event = {**staged.to_event(), "parity_key": None}
    with pytest.raises(ParityError, match="no parity document"):
        handler(event, lambda_context("verify"))
