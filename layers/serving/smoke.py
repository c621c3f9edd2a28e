"""Build-time check of the slimmed serving layer: onnxruntime loads a model and predicts with it.

slim.py runs this after importing the layer's modules, in the same isolated interpreter (the layer
first on sys.path, then the packages the sluice layer provides), so the ServingDepsLayer build fails
if slimming removed something an InferenceSession needs, and the modules the session loads are
precompiled with the rest. It is not shipped: the layer holds only what the Makefile installs.

MODEL is a 385-byte ONNX graph with the ai.onnx.ml operators the exported pipelines end with:
Scaler (x + 1) * 0.5, then a two-class LinearClassifier (softmax) with string labels, so that the
string and float outputs both come back as numpy arrays. tests/template/test_template.py rebuilds it
with onnx.helper and checks that it is the same graph.
"""

from __future__ import annotations

import base64
import sys

import numpy as np
import onnxruntime as ort

MODEL = base64.b64decode(
    "CAgSBnNsdWljZTreAgpMCgF4EgZzY2FsZWQiBlNjYWxlcioVCgZvZmZzZXQ9AACAPz0AAIA/oAEGKhQKBXNjYWxlPQAAAD89"
    "AAAAP6ABBjoKYWkub25ueC5tbArBAQoGc2NhbGVkEgVsYWJlbBINcHJvYmFiaWxpdGllcyIQTGluZWFyQ2xhc3NpZmllcioj"
    "ChNjbGFzc2xhYmVsc19zdHJpbmdzSgNsb3dKBGhpZ2igAQgqJQoMY29lZmZpY2llbnRzPQAAgL89AACAvz0AAIA/PQAAgD+g"
    "AQYqGQoKaW50ZXJjZXB0cz0AAAAAPQAAAACgAQYqHAoOcG9zdF90cmFuc2Zvcm0iB1NPRlRNQVigAQM6CmFpLm9ubngubWwS"
    "BXNtb2tlWhEKAXgSDAoKCAESBgoACgIIAmIRCgVsYWJlbBIICgYICBICCgBiHQoNcHJvYmFiaWxpdGllcxIMCgoIARIGCgAK"
    "AggCQgQKABARQg4KCmFpLm9ubngubWwQAw=="
)


def main() -> None:
    site = sys.path[0]
    for module in (np, ort):
        assert module.__file__.startswith(site), f"{module.__name__} from {module.__file__}, not {site}"
    assert "CPUExecutionProvider" in ort.get_available_providers(), ort.get_available_providers()
    options = ort.SessionOptions()  # as the api and the verify function set them
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(MODEL, options, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {"x": np.array([[0.0, 0.0], [4.0, 4.0]], np.float32)})
    assert labels.tolist() == ["low", "high"], labels
    expected = np.array([[0.880797, 0.119203], [0.002473, 0.997527]], np.float32)
    # np.allclose, not np.testing: numpy.testing would be loaded, hence precompiled, for nothing
    assert np.allclose(probabilities, expected, atol=1e-5), probabilities


if __name__ == "__main__":
    main()
