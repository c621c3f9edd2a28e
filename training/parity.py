"""Native side of the parity proof (the comparison itself is ``sluice.parity``).

``native_document`` runs the fitted pipeline on the holdout, on a few single rows (serving predicts
single rows) and on edge-case probes (empty strings, unseen categories, no text tokens), where
converters are most likely to disagree, and records its answers. ``check_parity`` replays that
document through onnxruntime right away (local training); in the pipeline, the Verify function
does the replay with the serving layer's onnxruntime.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from sluice.contracts import FeatureSchema, ParityReport
from sluice.parity import TOLERANCE, onnx_session, parity_document, require_parity, verify_document
from sluice.specs import FeatureSpec
from training.pipeline import feature_frame

__all__ = [
    "TOLERANCE",
    "check_parity",
    "native_document",
    "onnx_session",
    "probe_records",
    "require_parity",
]

SINGLE_ROWS = 8
UNSEEN = "__sluice_unseen__"


def probe_records(
    records: Sequence[Mapping[str, Any]], features: Iterable[FeatureSpec]
) -> list[dict[str, Any]]:
    """Edge cases built from the first record: empty strings, unseen categories, no text tokens."""
    if not records:
        return []
    base = dict(records[0])
    strings = [f.name for f in features if f.kind in ("text", "categorical")]
    probes = []
    for replacement in ("", UNSEEN, "!"):
        probe = dict(base)
        for name in strings:
            probe[name] = replacement
        probes.append(probe)
    return probes


def native_document(
    pipeline: Pipeline,
    records: Sequence[Mapping[str, Any]],
    features: Iterable[FeatureSpec],
    schema: FeatureSchema | None = None,
) -> dict[str, Any]:
    """The pipeline's answers on the parity batches, as a ``sluice.parity`` document."""
    features = list(features)
    classes = [str(c) for c in pipeline.classes_]
    if schema is None:
        schema = FeatureSchema(
            features=[{"name": f.name, "kind": f.kind} for f in features], target="", classes=classes
        )
    batches: list[Sequence[Mapping[str, Any]]] = [records]
    batches += [[r] for r in records[:SINGLE_ROWS]]
    batches += [[p] for p in probe_records(records, features)]
    answers = []
    for batch in batches:
        if not batch:
            continue
        proba = pipeline.predict_proba(feature_frame(batch, features))
        labels = pipeline.classes_[np.argmax(proba, axis=1)]
        answers.append((batch, labels, proba))
    return parity_document(schema, answers)


def check_parity(
    pipeline: Pipeline,
    onnx_bytes: bytes,
    records: Sequence[Mapping[str, Any]],
    features: Iterable[FeatureSpec],
) -> ParityReport:
    """Label agreement (must be 1.0) and max |p_onnx - p_native| (must be <= TOLERANCE)."""
    return verify_document(onnx_bytes, native_document(pipeline, records, features))
