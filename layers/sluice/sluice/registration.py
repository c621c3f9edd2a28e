"""Register a trained candidate: gates, an immutable registry version with lineage, the champion alias.

``register_candidate`` copies the staged ONNX file (refused unless its sha256 is the one training
recorded), decides the gates, writes version N with status ``champion`` or ``rejected`` and, when
the candidate passed, moves the ``champion`` alias with a conditional write on the version it held
before: a concurrent pipeline that moved it first makes this one fail with AliasConflictError
instead of silently overwriting it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sluice
from sluice.contracts import RegisterResult, TrainResult
from sluice.errors import ArtifactIntegrityError
from sluice.registry import Registry
from sluice.specs import ModelSpec, load_model_spec, parse_model_spec
from sluice.storage import get_object, sha256_hex


@dataclass(frozen=True)
class GateCheck:
    gate: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "passed": self.passed, "detail": self.detail}


def spec_of(result: TrainResult) -> ModelSpec:
    """The spec training used (carried in the result), else today's built-in spec of that name."""
    if result.spec:
        return parse_model_spec(result.spec, f"train result of {result.model} run {result.run_id}")
    return load_model_spec(result.model)


def evaluate_gates(result: TrainResult, spec: ModelSpec) -> list[GateCheck]:
    """Parity, beat-the-baseline and minimum-metric gates, each with a readable detail."""
    parity = result.parity
    if parity is None:
        checks = [GateCheck("parity", False, "parity was never verified (no Verify step result)")]
    else:
        checks = [
            GateCheck(
                "parity",
                parity.passed,
                f"label agreement {parity.label_agreement:.4f}, max |prob diff| "
                f"{parity.max_abs_prob_diff:.2e} on {parity.rows} rows",
            )
        ]
    metric = spec.metric
    value = result.metrics.get(metric)
    if value is None:
        checks.append(GateCheck("metric", False, f"holdout {metric} missing from the train result"))
        return checks
    if spec.gates.beat_baseline:
        base = result.baseline.get(metric)
        if base is None:
            checks.append(
                GateCheck("beat_baseline", False, f"baseline {metric} missing from the train result")
            )
        else:
            verb = ">" if value > base else "<="
            checks.append(
                GateCheck(
                    "beat_baseline", value > base, f"holdout {metric} {value:.4f} {verb} baseline {base:.4f}"
                )
            )
    if spec.gates.min_metric is not None:
        ok = value >= spec.gates.min_metric
        verb = ">=" if ok else "<"
        checks.append(
            GateCheck(
                "min_metric", ok, f"holdout {metric} {value:.4f} {verb} minimum {spec.gates.min_metric:.4f}"
            )
        )
    return checks


def lineage(result: TrainResult, spec: ModelSpec, checks: list[GateCheck], bucket: str) -> dict[str, Any]:
    """Everything needed to trace a version back to its data, code and evidence."""
    ingest = result.ingest
    return {
        "run_id": result.run_id,
        "dataset": ingest.dataset,
        "source": ingest.source.to_event(),
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
        "metric": spec.metric,
        "metrics": result.metrics,
        "baseline": result.baseline,
        "parity": result.parity.to_event() if result.parity else None,
        "gates": [c.to_dict() for c in checks],
        "params": result.params,
        "feature_schema": result.feature_schema.to_event(),
        "spec": spec.to_dict(),
        "library_versions": result.library_versions,
        "code_version": sluice.__version__,
        "onnx_sha256": result.onnx_sha256,
        "staged_artifact": {"bucket": bucket, "key": result.artifact_key},
        "timings": result.timings,
    }


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
    checks = evaluate_gates(result, spec)
    reasons = [f"{c.gate}: {c.detail}" for c in checks if not c.passed]
    status = "rejected" if reasons else "champion"

    previous = registry.get_alias(result.model, "champion")
    metadata = lineage(result, spec, checks, registry.bucket)
    metadata["previous_champion"] = previous
    metadata["reasons"] = reasons
    metadata["timings"] = {**result.timings, "register_s": round(time.perf_counter() - t0, 4)}
    version = registry.register(result.model, staged.body, metadata, status)

    if status == "champion":
        passed = "; ".join(c.detail for c in checks if c.gate != "parity")
        registry.set_alias(
            result.model,
            "champion",
            version.version,
            expected=previous,
            reason=f"run {result.run_id} passed the gates ({passed or 'parity'})",
        )
    return RegisterResult(
        model=result.model,
        version=version.version,
        status=status,
        reasons=reasons,
        previous_champion=previous,
        metrics=result.metrics,
    )
