"""Decide and register a trained candidate: gates, an immutable registry version with lineage, aliases.

``evaluate`` is the Evaluate step's decision: every gate of the spec on the verified candidate.
``register_candidate`` copies the staged ONNX file (refused unless its sha256 is the one training
recorded), takes that decision (or decides again if the champion moved since), writes version N
with status ``champion`` or ``rejected`` (with the reasons) and, when the candidate passed, moves
the ``champion`` alias with a conditional write on the version it held before: a concurrent
pipeline that moved it first makes this one fail with AliasConflictError instead of silently
overwriting it. A rejected candidate leaves the champion.

Gates (``spec.gates``), each direction-aware (``sluice.specs.greater_is_better``):

- ``parity``: the Evaluate step's replay through onnxruntime passed;
- ``beat_baseline``: the holdout metric beats the baseline's by at least ``baseline_margin``;
- ``min_metric``: the holdout metric reaches ``min_metric`` (at most, for an error metric);
- ``champion``: on the same holdout rows (scored by the Evaluate step), the candidate is no worse than
  the current champion minus ``champion_tolerance``; ``champion_tolerance: null`` skips it.

An unlabelled anomaly model has no metric: only parity applies.
"""

from __future__ import annotations

import time
from typing import Any

import sluice
from sluice.contracts import Evaluation, GateCheck, RegisterResult, TrainResult
from sluice.errors import ArtifactIntegrityError
from sluice.parity import describe
from sluice.registry import Registry
from sluice.specs import ModelSpec, greater_is_better, load_model_spec, parse_model_spec
from sluice.storage import get_object, sha256_hex


def spec_of(result: TrainResult) -> ModelSpec:
    """The spec training used (carried in the result), else today's built-in spec of that name."""
    if result.spec:
        return parse_model_spec(result.spec, f"train result of {result.model} run {result.run_id}")
    return load_model_spec(result.model)


def _parity(result: TrainResult) -> GateCheck:
    if result.parity is None:
        return GateCheck("parity", False, "parity was never verified (no Evaluate step result)")
    return GateCheck("parity", result.parity.passed, describe(result.parity))


def _better(metric: str, value: float, than: float) -> bool:
    return value > than if greater_is_better(metric) else value < than


def _at_least(metric: str, value: float, bound: float) -> bool:
    return value >= bound if greater_is_better(metric) else value <= bound


def _baseline(metric: str, value: float, base: float | None, margin: float) -> GateCheck:
    if base is None:
        return GateCheck("beat_baseline", False, f"baseline {metric} missing from the train result")
    target = base + margin if greater_is_better(metric) else base - margin
    ok = _better(metric, value, base) and _at_least(metric, value, target)
    by = f" by {margin:g}" if margin else ""
    verdict = "beats" if ok else "does not beat"
    return GateCheck("beat_baseline", ok, f"holdout {metric} {value:.4f} {verdict} baseline {base:.4f}{by}")


def _minimum(metric: str, value: float, bound: float) -> GateCheck:
    ok = _at_least(metric, value, bound)
    if greater_is_better(metric):
        verb = ">=" if ok else "<"
        return GateCheck("min_metric", ok, f"holdout {metric} {value:.4f} {verb} minimum {bound:.4f}")
    verb = "<=" if ok else ">"
    return GateCheck("min_metric", ok, f"holdout {metric} {value:.4f} {verb} maximum {bound:.4f}")


def _champion(result: TrainResult, spec: ModelSpec, current: int | None) -> GateCheck:
    tolerance = spec.gates.champion_tolerance
    cmp = result.champion
    if tolerance is None:
        return GateCheck("champion", True, "not compared (champion_tolerance is null)")
    if cmp is None:
        return GateCheck("champion", current is None, "no champion comparison (no Evaluate step result)")
    if cmp.version != current and "not applicable" not in cmp.note:
        was = f"v{cmp.version}" if cmp.version else "none"
        return GateCheck(
            "champion",
            False,
            f"the champion moved ({was} at verification, v{current} now): retrain to compare",
        )
    if cmp.candidate is None or cmp.champion is None or cmp.metric is None:
        return GateCheck("champion", True, cmp.note or "not compared")
    metric = cmp.metric
    bound = cmp.champion - tolerance if greater_is_better(metric) else cmp.champion + tolerance
    ok = _at_least(metric, cmp.candidate, bound)
    verdict = "no worse than" if ok else "worse than"
    return GateCheck(
        "champion",
        ok,
        f"{metric} {cmp.candidate:.4f} {verdict} champion v{cmp.version} {cmp.champion:.4f} "
        f"(tolerance {tolerance:g}) on the same {cmp.rows} holdout rows",
    )


def evaluate_gates(
    result: TrainResult, spec: ModelSpec, current_champion: int | None = None
) -> list[GateCheck]:
    """Every gate of ``spec`` on ``result``, each with a readable detail."""
    checks = [_parity(result), *metric_gates(spec, result.metrics)]
    if spec.effective_metric is not None and not any(c.gate == "metric" for c in checks):
        checks.append(_champion(result, spec, current_champion))
    return checks


def evaluate(result: TrainResult, current_champion: int | None) -> Evaluation:
    """The Evaluate step's decision on a verified candidate: every gate of its spec, decided against
    ``current_champion`` (the version its holdout was scored against)."""
    checks = evaluate_gates(result, spec_of(result), current_champion)
    return Evaluation(
        accepted=all(c.passed for c in checks),
        gates=checks,
        champion_version=current_champion,
    )


def metric_gates(spec: ModelSpec, metrics: dict[str, dict[str, float]]) -> list[GateCheck]:
    """The gates decided by the holdout and baseline metrics alone (``sluice train`` runs these)."""
    metric = spec.effective_metric
    if metric is None:
        return []
    value = metrics.get("holdout", {}).get(metric)
    if value is None:
        return [GateCheck("metric", False, f"holdout {metric} missing from the train result")]
    gates, checks = spec.gates, []
    if gates.beat_baseline:
        checks.append(
            _baseline(metric, value, metrics.get("baseline", {}).get(metric), gates.baseline_margin)
        )
    if gates.min_metric is not None:
        checks.append(_minimum(metric, value, gates.min_metric))
    return checks


def lineage(result: TrainResult, spec: ModelSpec, checks: list[GateCheck], bucket: str) -> dict[str, Any]:
    """Everything needed to trace a version back to its data, code and evidence."""
    ingest = result.ingest
    return {
        "run_id": result.run_id,
        "task": result.task,
        "dataset": ingest.dataset,
        "source": ingest.source.to_event(),
        "trigger": ingest.trigger,
        "ingest": {
            "run_id": ingest.run_id,
            "curated_prefix": ingest.curated_prefix,
            "data_key": ingest.data_key,
            "schema_key": ingest.schema_key,
            "quality_key": ingest.quality_key,
            "quarantine_key": ingest.quarantine_key,
            "rows_read": ingest.rows_read,
            "rows_clean": ingest.rows_clean,
            "rows_quarantined": ingest.rows_quarantined,
        },
        "rows": {"train": result.rows_train, "holdout": result.rows_holdout, "clean": ingest.rows_clean},
        "metric": spec.effective_metric,
        "metrics": result.metrics,
        "candidates": [c.to_event() for c in result.candidates],
        "parity": result.parity.to_event() if result.parity else None,
        "champion_comparison": result.champion.to_event() if result.champion else None,
        "gates": [c.to_dict() for c in checks],
        "params": result.params,
        "feature_schema": result.feature_schema.to_event(),
        "spec": spec.to_dict(),
        "spec_sha256": result.spec_sha256,
        "library_versions": result.library_versions,
        "code_version": result.code_version or sluice.__version__,
        "onnx_sha256": result.onnx_sha256,
        "staged_artifact": {"bucket": bucket, "key": result.artifact_key},
        "timings": result.timings,
        "diagnostics": result.diagnostics,
    }


def summary(
    model: str, version: int, status: str, metric: str | None, value: float | None, reasons: list[str]
) -> str:
    """One line for people: what happened to this model and why."""
    if status == "rejected":
        return f"{model} v{version} rejected: {'; '.join(reasons)}"
    shown = f" ({metric} {value:.4f} on the holdout)" if metric and value is not None else ""
    return f"{model} v{version} is the champion{shown}"


def write_report(registry: Registry, version: int, metadata: dict[str, Any]) -> str:
    """The version's self-contained HTML report (``sluice.report``), next to its model."""
    from sluice.registry import model_prefix
    from sluice.report import render_report
    from sluice.storage import put_bytes

    key = f"{model_prefix(metadata['model'], version)}/report.html"
    put_bytes(registry.bucket, key, render_report(metadata).encode(), "text/html; charset=utf-8")
    return key


def register_candidate(result: TrainResult, registry: Registry) -> RegisterResult:
    """Register ``result`` as a new version; make it champion if every gate passed."""
    t0 = time.perf_counter()
    staged = get_object(registry.bucket, result.artifact_key)
    actual = sha256_hex(staged.body)
    if actual != result.onnx_sha256:
        raise ArtifactIntegrityError(
            f"staged s3://{registry.bucket}/{result.artifact_key} has sha256 {actual}, "
            f"training recorded {result.onnx_sha256}"
        )
    spec = spec_of(result)
    previous = registry.get_alias(result.model, "champion")
    decided = result.evaluation
    if decided is not None and decided.champion_version == previous:
        checks = decided.gates
    else:  # never evaluated (a direct call), or the champion moved since: decide now (the champion
        # gate then fails with "the champion moved" unless the spec skips it)
        checks = evaluate_gates(result, spec, previous)
    reasons = [f"{c.gate}: {c.detail}" for c in checks if not c.passed]
    status = "rejected" if reasons else "champion"
    if status == "champion" and spec.monitoring.canary and previous is not None:
        status = "challenger"  # it earns the champion alias on live feedback (sluice.monitoring)

    metadata = lineage(result, spec, checks, registry.bucket)
    metadata["previous_champion"] = previous
    metadata["reasons"] = reasons
    metadata["timings"] = {**result.timings, "register_s": round(time.perf_counter() - t0, 4)}
    version = registry.register(result.model, staged.body, metadata, status)
    write_report(
        registry,
        version.version,
        {**metadata, "model": result.model, "version": version.version, "status": status},
    )

    if status == "challenger":
        registry.set_alias(
            result.model,
            "challenger",
            version.version,
            expected=registry.get_alias(result.model, "challenger"),
            reason=f"canary: run {result.run_id} passed the gates; champion v{previous} keeps most traffic",
        )
    if status == "champion":
        passed = "; ".join(c.detail for c in checks if c.gate != "parity")
        registry.set_alias(
            result.model,
            "champion",
            version.version,
            expected=previous,
            reason=f"run {result.run_id} passed the gates ({passed or 'parity'})",
        )
    metric = spec.effective_metric
    holdout = result.metrics.get("holdout", {})
    return RegisterResult(
        model=result.model,
        version=version.version,
        status=status,
        reasons=reasons,
        previous_champion=previous,
        metric=metric,
        metrics=holdout,
        summary=summary(result.model, version.version, status, metric, holdout.get(metric or ""), reasons),
    )
