"""The Verify step: replay the native predictions through onnxruntime before anything registers.

Runs in the Verify function on the serving layer, i.e. with the onnxruntime that will serve the
model. A candidate whose staged file changed since training (sha256) or whose ONNX answers differ
from the native pipeline's raises, so the state machine records the failure and registers nothing.
"""

from __future__ import annotations

from sluice.contracts import TrainResult
from sluice.errors import ArtifactIntegrityError, ParityError
from sluice.parity import require_parity, verify_document
from sluice.settings import get_settings
from sluice.storage import get_json, get_object, sha256_hex


def verify_candidate(result: TrainResult) -> TrainResult:
    settings = get_settings()
    settings.require("data_bucket")
    if not result.parity_key:
        raise ParityError(f"{result.model}: the train result names no parity document")
    onnx = get_object(settings.data_bucket, result.artifact_key).body
    if sha256_hex(onnx) != result.onnx_sha256:
        raise ArtifactIntegrityError(
            f"{result.model}: staged {result.artifact_key} has sha256 {sha256_hex(onnx)}, "
            f"training produced {result.onnx_sha256}"
        )
    document = get_json(settings.data_bucket, result.parity_key)
    report = require_parity(verify_document(onnx, document), result.model)
    return result.model_copy(update={"parity": report})
