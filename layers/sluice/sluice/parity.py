"""Proof that an exported ONNX graph predicts what the native pipeline predicted.

Training writes a *parity document*: batches of raw records with the native pipeline's answers (the
holdout as the first batch, a few single rows, edge-case probes). Anything that has the ONNX file and
onnxruntime (the Verify function on the serving layer, or a local run) replays the records through
``sluice.features.build_feed`` - the serving path - and compares. The check therefore runs with the
very runtime that serves the model, and the training function does not need onnxruntime (it would not
fit beside scikit-learn in one Lambda).

Batch formats, by the schema's task:

- classification: ``{"records", "labels", "probabilities"}``; every argmax must agree and every
  probability be within ``TOLERANCE`` (absolute);
- regression and forecast: ``{"records", "values"}``; anomaly: ``{"records", "scores"}``; every
  number within ``TOLERANCE`` relative: ``|onnx - native| <= TOLERANCE * max(|native|, scale)``
  where the document's ``scale`` (default 1) is the spread of the training target (its standard
  deviation, at least 1): a prediction near zero made of large terms (an amount model adds
  thousands) is compared at the size of the numbers the model works with, float32 being what it is.

The holdout batch also carries the true ``targets`` (class names, numbers, or 0/1 anomaly labels)
so that the Verify step can score the candidate and the champion on the same rows.

Ties: when two classes are indistinguishable from a row's features, the model gives them the same
probability and float32 (ONNX) vs float64 (scikit-learn) rounding alone decides which one argmax
returns. A row agrees when the ONNX label's native probability is within ``TIE_TOLERANCE`` of the
native maximum; any real divergence of the graph still shows in the probability difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sluice.contracts import FeatureSchema, ParityReport
from sluice.errors import ParityError
from sluice.features import build_feed

TOLERANCE = 1e-4
TIE_TOLERANCE = 1e-6

#: the answer a batch records, by task
ANSWER = {
    "classification": "probabilities",
    "regression": "values",
    "forecast": "values",
    "anomaly": "scores",
}


def onnx_session(onnx_bytes: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def predict(session: Any, schema: FeatureSchema, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The graph's answers on ``records`` as numpy arrays, keyed like a parity batch."""
    import numpy as np

    feed = build_feed(records, schema.features)
    if schema.task == "classification":
        labels, proba = session.run([schema.label_output, schema.probabilities_output], feed)
        return {
            "labels": np.asarray(labels).reshape(-1).astype(str),
            "probabilities": np.asarray(proba, dtype=np.float64),
        }
    name = "scores" if schema.task == "anomaly" else "values"
    output = schema.score_output if schema.task == "anomaly" else schema.value_output
    [values] = session.run([output], feed)
    return {name: np.asarray(values, dtype=np.float64).reshape(-1)}


def json_value(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


def parity_batch(
    records: Sequence[Mapping[str, Any]], answers: Mapping[str, Any], targets: Sequence[Any] | None = None
) -> dict[str, Any]:
    """One JSON-ready batch: records, the native answers (``labels`` and ``probabilities``, or
    ``values``, or ``scores``) and, for the holdout batch, the true targets."""
    batch: dict[str, Any] = {"records": [{k: json_value(v) for k, v in r.items()} for r in records]}
    for key, value in answers.items():
        if key == "labels":
            batch[key] = [str(v) for v in value]
        elif key == "probabilities":
            batch[key] = [[float(p) for p in row] for row in value]
        else:
            batch[key] = [float(v) for v in value]
    if targets is not None:
        batch["targets"] = [json_value(t) for t in targets]
    return batch


def parity_document(
    schema: FeatureSchema, batches: Sequence[dict[str, Any]], scale: float = 1.0
) -> dict[str, Any]:
    """``scale``: the magnitude values and scores are compared at (see the module's docstring)."""
    return {
        "feature_schema": schema.to_event(),
        "tolerance": TOLERANCE,
        "scale": max(1.0, float(scale)),
        "batches": list(batches),
    }


def holdout_batch(document: Mapping[str, Any]) -> dict[str, Any] | None:
    """The batch with the true targets (the holdout), if any."""
    return next((b for b in document.get("batches", []) if b.get("targets") is not None), None)


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


class _Tally:
    """Running comparison over the batches of one document."""

    def __init__(self, schema: FeatureSchema, scale: float = 1.0):
        self.schema, self.scale = schema, scale
        self.rows = self.agree = 0
        self.max_prob = self.max_rel = 0.0

    def add(self, onnx: dict[str, Any], batch: Mapping[str, Any]) -> None:
        import numpy as np

        if self.schema.task == "classification":
            native_labels = np.asarray(batch["labels"]).astype(str)
            native_proba = np.asarray(batch["probabilities"], dtype=np.float64)
            self.rows += len(native_labels)
            self.agree += _agreeing(self.schema.classes, onnx["labels"], native_labels, native_proba)
            if onnx["probabilities"].shape != native_proba.shape:
                self.max_prob = 1.0  # probabilities differ by at most 1; keeps the report JSON-safe
            elif native_proba.size:
                self.max_prob = max(
                    self.max_prob, float(np.max(np.abs(onnx["probabilities"] - native_proba)))
                )
            return
        key = ANSWER[self.schema.task]
        native = np.asarray(batch[key], dtype=np.float64).reshape(-1)
        self.rows += len(native)
        if onnx[key].shape != native.shape or not np.all(np.isfinite(onnx[key])):
            self.max_rel = float("inf")
        elif native.size:
            rel = np.abs(onnx[key] - native) / np.maximum(np.abs(native), self.scale)
            self.max_rel = max(self.max_rel, float(np.max(rel)))

    def report(self, tolerance: float) -> ParityReport:
        if self.schema.task == "classification":
            agreement = self.agree / self.rows if self.rows else 0.0
            return ParityReport(
                rows=self.rows,
                label_agreement=agreement,
                max_abs_prob_diff=self.max_prob,
                passed=bool(self.rows and agreement == 1.0 and self.max_prob <= tolerance),
            )
        rel = self.max_rel if self.max_rel != float("inf") else 1e300
        return ParityReport(rows=self.rows, max_rel_diff=rel, passed=bool(self.rows and rel <= tolerance))


def replay(onnx_bytes: bytes, document: Mapping[str, Any]) -> tuple[ParityReport, dict[str, Any] | None]:
    """Run every batch through onnxruntime and compare; also return the graph's answers on the
    holdout batch (None when the document has no targets). ParityError if the graph cannot run."""
    schema = FeatureSchema.model_validate(document["feature_schema"])
    tolerance = float(document.get("tolerance", TOLERANCE))
    tally = _Tally(schema, max(1.0, float(document.get("scale", 1.0))))
    holdout_answers = None
    try:
        session = onnx_session(onnx_bytes)
        for batch in document["batches"]:
            if not batch["records"]:
                continue
            answers = predict(session, schema, batch["records"])
            tally.add(answers, batch)
            if holdout_answers is None and batch.get("targets") is not None:
                holdout_answers = answers
    except Exception as exc:  # any failure to load or run the graph is a parity failure
        raise ParityError(f"onnxruntime cannot run the exported model: {type(exc).__name__}: {exc}") from exc
    return tally.report(tolerance), holdout_answers


def verify_document(onnx_bytes: bytes, document: Mapping[str, Any]) -> ParityReport:
    """Run every batch of ``document`` through onnxruntime and compare with the native answers."""
    return replay(onnx_bytes, document)[0]


def describe(report: ParityReport) -> str:
    if report.label_agreement is not None:
        return (
            f"label agreement {report.label_agreement:.4f}, max |prob diff| "
            f"{report.max_abs_prob_diff or 0.0:.2e} on {report.rows} rows"
        )
    return f"max relative diff {report.max_rel_diff or 0.0:.2e} on {report.rows} rows"


def require_parity(report: ParityReport, model: str) -> ParityReport:
    if not report.passed:
        need = "label agreement 1.0 and |prob diff|" if report.label_agreement is not None else "diff"
        raise ParityError(
            f"{model}: ONNX and native predictions differ: {describe(report)} (need {need} <= {TOLERANCE:g})"
        )
    return report
