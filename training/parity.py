"""Native side of the parity proof (the comparison itself is ``sluice.parity``).

``native_document`` runs the fitted pipeline on the holdout, on a few single rows (serving predicts
single rows) and on edge-case probes (empty strings, unseen categories, no text tokens, missing
numbers and dates), where converters are most likely to disagree, and records its answers.
``check_parity`` replays such a document through onnxruntime right away (local training); in the
pipeline, the Verify function does the replay with the serving layer's onnxruntime.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from sluice.contracts import FeatureSchema, ParityReport
from sluice.parity import TOLERANCE, parity_batch, parity_document, require_parity, verify_document
from sluice.specs import FeatureSpec
from training.pipeline import answers, feature_frame

__all__ = ["TOLERANCE", "check_parity", "native_document", "probe_records", "require_parity"]

SINGLE_ROWS = 8
#: the holdout batch is sampled down to this many rows (the Verify step replays it twice when a
#: champion exists: candidate and champion)
MAX_HOLDOUT_ROWS = 5000
UNSEEN = "__sluice_unseen__"


def probe_records(
    records: Sequence[Mapping[str, Any]], features: Iterable[FeatureSpec]
) -> list[dict[str, Any]]:
    """Edge cases built from the first record: empty strings, unseen categories, no text tokens,
    and every number and date missing (imputed inside the graph)."""
    if not records:
        return []
    features = list(features)
    base = dict(records[0])
    strings = [f.name for f in features if f.kind in ("text", "categorical")]
    probes = []
    for replacement in ("", UNSEEN, "!"):
        if strings:
            probes.append({**base, **dict.fromkeys(strings, replacement)})
    missing = [f.name for f in features if f.kind in ("numeric", "date")]
    if missing:
        probes.append({**base, **dict.fromkeys(missing)})
    return probes


def _holdout(
    records: Sequence[Mapping[str, Any]], targets: Sequence[Any] | None, seed: int
) -> tuple[Sequence[Mapping[str, Any]], Sequence[Any] | None]:
    if len(records) <= MAX_HOLDOUT_ROWS:
        return records, targets
    keep = np.sort(np.random.default_rng(seed).choice(len(records), MAX_HOLDOUT_ROWS, replace=False))
    return [records[i] for i in keep], (None if targets is None else [targets[i] for i in keep])


def native_document(
    pipeline: Pipeline,
    schema: FeatureSchema,
    records: Sequence[Mapping[str, Any]],
    targets: Sequence[Any] | None = None,
    *,
    seed: int = 0,
    scale: float = 1.0,
) -> dict[str, Any]:
    """The pipeline's answers on the parity batches, as a ``sluice.parity`` document; the first
    batch is the holdout (sampled to ``MAX_HOLDOUT_ROWS``) with its ``targets`` when given.
    ``scale``: the size values are compared at (regression: the training target's spread)."""
    features = schema.features
    holdout, holdout_targets = _holdout(records, targets, seed)
    batches: list[tuple[Sequence[Mapping[str, Any]], Sequence[Any] | None]] = [(holdout, holdout_targets)]
    batches += [([r], None) for r in records[:SINGLE_ROWS]]
    batches += [([p], None) for p in probe_records(records, features)]
    out = []
    for batch, batch_targets in batches:
        if batch:
            native = answers(pipeline, schema.task, feature_frame(batch, features))
            out.append(parity_batch(batch, native, batch_targets))
    return parity_document(schema, out, scale)


def check_parity(
    pipeline: Pipeline, onnx_bytes: bytes, records: Sequence[Mapping[str, Any]], schema: FeatureSchema
) -> ParityReport:
    """Replay the native answers on ``records`` (and the probes) through onnxruntime now."""
    return verify_document(onnx_bytes, native_document(pipeline, schema, records))
