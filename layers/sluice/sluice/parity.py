"""Proof that an exported ONNX graph predicts what the native pipeline predicted.

Training writes a *parity document*: batches of raw records with the native pipeline's labels and
probabilities (the holdout as one batch, a few single rows, edge-case probes). Anything that has
the ONNX file and onnxruntime (the Verify function on the serving layer, or a local run) replays
the records through ``sluice.features.build_feed`` - the serving path - and compares. The check
therefore runs with the very runtime that serves the model, and the training function does not
need onnxruntime (it would not fit beside scikit-learn in one Lambda).

Ties: when two classes are indistinguishable from a row's features, the model gives them the same
probability and float32 (ONNX) vs float64 (scikit-learn) rounding alone decides which one argmax
returns. A row agrees when the ONNX label's native probability is within ``TIE_TOLERANCE`` of the
native maximum; any real divergence of the graph still shows in the probability difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sluice.contracts import Feature, FeatureSchema, ParityReport
from sluice.errors import ParityError
from sluice.features import build_feed

TOLERANCE = 1e-4
TIE_TOLERANCE = 1e-6


def onnx_session(onnx_bytes: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def parity_document(
    schema: FeatureSchema, batches: Sequence[tuple[Sequence[dict[str, Any]], Any, Any]]
) -> dict[str, Any]:
    """JSON-ready document: ``batches`` are (records, native labels, native probabilities)."""
    return {
        "feature_schema": schema.to_event(),
        "tolerance": TOLERANCE,
        "batches": [
            {
                "records": [{k: _json_value(v) for k, v in r.items()} for r in records],
                "labels": [str(x) for x in labels],
                "probabilities": [[float(p) for p in row] for row in probabilities],
            }
            for records, labels, probabilities in batches
        ],
    }


def _json_value(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


def _agreeing(classes: list[str], onnx_labels: Any, native_labels: Any, native_proba: Any) -> int:
    import numpy as np

    same = onnx_labels.astype(str) == native_labels.astype(str)
    if same.all() or not native_proba.size:
        return int(same.sum())
    column = {c: i for i, c in enumerate(classes)}
    for row in np.flatnonzero(~same):
        j = column.get(str(onnx_labels[row]))
        if j is not None and native_proba[row, j] >= native_proba[row].max() - TIE_TOLERANCE:
            same[row] = True
    return int(same.sum())


def verify_document(onnx_bytes: bytes, document: dict[str, Any]) -> ParityReport:
    """Run every batch of ``document`` through onnxruntime and compare with the native answers."""
    import numpy as np

    schema = FeatureSchema.model_validate(document["feature_schema"])
    features: list[Feature] = schema.features
    tolerance = float(document.get("tolerance", TOLERANCE))
    rows = agree = 0
    max_diff = 0.0
    try:
        session = onnx_session(onnx_bytes)
        outputs = [schema.label_output, schema.probabilities_output]
        for batch in document["batches"]:
            if not batch["records"]:
                continue
            labels, proba = session.run(outputs, build_feed(batch["records"], features))
            onnx_labels = np.asarray(labels).reshape(-1)
            onnx_proba = np.asarray(proba, dtype=np.float64)
            native_labels = np.asarray(batch["labels"])
            native_proba = np.asarray(batch["probabilities"], dtype=np.float64)
            rows += len(native_labels)
            agree += _agreeing(schema.classes, onnx_labels, native_labels, native_proba)
            if onnx_proba.shape != native_proba.shape:
                max_diff = 1.0  # probabilities differ by at most 1; keeps the report JSON-safe
            elif native_proba.size:
                max_diff = max(max_diff, float(np.max(np.abs(onnx_proba - native_proba))))
    except Exception as exc:  # any failure to load or run the graph is a parity failure
        raise ParityError(f"onnxruntime cannot run the exported model: {type(exc).__name__}: {exc}") from exc
    agreement = agree / rows if rows else 0.0
    return ParityReport(
        rows=rows,
        label_agreement=agreement,
        max_abs_prob_diff=max_diff,
        passed=bool(rows and agreement == 1.0 and max_diff <= tolerance),
    )


def require_parity(report: ParityReport, model: str) -> ParityReport:
    if not report.passed:
        raise ParityError(
            f"{model}: ONNX and native predictions differ on {report.rows} rows: label agreement "
            f"{report.label_agreement:.4f} (need 1.0), max |prob diff| {report.max_abs_prob_diff:.2e} "
            f"(need <= {TOLERANCE:g})"
        )
    return report
