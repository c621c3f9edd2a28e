"""The Evaluate step: replay the native answers through onnxruntime, score the champion alongside,
and decide the gates.

Runs in the Verify function on the serving layer, i.e. with the onnxruntime that will serve the
model (and no scikit-learn). It records:

- ``parity``: how far the graph's answers are from the native pipeline's (a disagreeing export is
  recorded as failed parity and registered as rejected; a staged file changed since training raises
  ArtifactIntegrityError and a graph onnxruntime cannot run raises ParityError);
- ``champion``: the candidate and the current champion (its ONNX file checked against the registry's
  sha256) scored with ``sluice.metrics`` on the candidate's holdout batch, so the gate compares both
  on the same rows with the same code. Forecasts are not compared yet;
- ``evaluation``: the decision, every gate of the spec (``sluice.registration.evaluate``) with its
  verdict in words; the Register step records it as the version's status and reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluice.contracts import ChampionComparison, FeatureSchema, TrainResult
from sluice.errors import ArtifactIntegrityError, ParityError
from sluice.metrics import score
from sluice.parity import holdout_batch, onnx_session, predict, replay
from sluice.registration import evaluate
from sluice.registry import Registry
from sluice.settings import get_settings
from sluice.specs import parse_model_spec
from sluice.storage import get_json, get_object, sha256_hex


def verify_candidate(result: TrainResult, registry: Registry | None = None) -> TrainResult:
    """``result`` with its parity report, champion comparison and the gates' decision (``registry``:
    where the champion is; by default the one the environment names, if any)."""
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
    report, answers = replay(onnx, document)
    if registry is None and settings.registry_table:
        registry = Registry(settings.registry_table, settings.data_bucket)
    current = registry.get_alias(result.model, "champion") if registry is not None else None
    champion = compare_with_champion(result, document, answers, registry, current)
    verified = result.model_copy(update={"parity": report, "champion": champion})
    return verified.model_copy(update={"evaluation": evaluate(verified, current)})


def _metric(result: TrainResult) -> str | None:
    return parse_model_spec(result.spec).effective_metric if result.spec else None


def compare_with_champion(
    result: TrainResult,
    document: Mapping[str, Any],
    answers: Mapping[str, Any] | None,
    registry: Registry | None,
    version: int | None,
) -> ChampionComparison:
    """Score candidate and champion on the candidate's holdout batch (a note when not comparable)."""
    metric = _metric(result)
    if result.task == "forecast":
        return ChampionComparison(metric=metric, note="champion comparison not applicable (forecast)")
    if metric is None:
        return ChampionComparison(note="no metric (unlabelled anomaly): nothing to compare")
    if registry is None:
        return ChampionComparison(metric=metric, note="no registry configured")
    if version is None:
        return ChampionComparison(metric=metric, note="no champion yet")
    batch = holdout_batch(document)
    if batch is None or answers is None:
        return ChampionComparison(version=version, metric=metric, note="the parity document has no holdout")
    mv = registry.get_version(result.model, version)
    schema = FeatureSchema.model_validate(registry.metadata(mv)["feature_schema"])
    records, targets = batch["records"], batch["targets"]
    base = ChampionComparison(version=version, metric=metric, rows=len(records))
    if schema.task != result.task:
        return base.model_copy(update={"note": f"the champion is a {schema.task} model: not compared"})
    missing = sorted({f.name for f in schema.features} - set(records[0]) if records else set())
    if missing:
        note = f"the champion needs field(s) the holdout lacks: {', '.join(missing)}: not compared"
        return base.model_copy(update={"note": note})
    theirs = score(schema, targets, predict(onnx_session(registry.load_onnx(mv)), schema, records))
    ours = score(result.feature_schema, targets, answers)
    if metric not in theirs or metric not in ours:
        return base.model_copy(update={"note": f"{metric} cannot be computed on this holdout"})
    return base.model_copy(update={"candidate": ours[metric], "champion": theirs[metric]})
