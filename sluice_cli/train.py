"""`sluice train`: train a model spec on a local file with the Lambdas' code, before uploading anything.

    sluice train PATH (--model NAME | --spec FILE) --out DIR

Runs the ingest of the spec's dataset (``sluice.ingest.ingest_file``, the ingest Lambda's code), then
``training.train.train_model`` with the parity check replayed through onnxruntime (what the Verify
Lambda does), then the gates of the spec that need no registry (parity, baseline, minimum metric;
the champion gate needs a registry and is left to the pipeline). Writes to DIR: ``model.onnx``,
``metadata.json`` (metrics under ``metrics.cv``, ``metrics.holdout``, ``metrics.baseline``, with
scikit-learn's names) and ``report.html``, plus the ingest outputs under ``DIR/ingest/``. Exits 0 when
every gate passes, else 1 with a one-line reason.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sluice.errors import SluiceError
from sluice.specs import ModelSpec, load_dataset_spec, load_model_spec, load_spec_file


def _spec(model: str | None, spec_file: Path | None) -> ModelSpec:
    if spec_file is not None:
        spec = load_spec_file(spec_file)
        if not isinstance(spec, ModelSpec):
            raise SluiceError(f"{spec_file} is a dataset spec; --spec takes a model spec (with a task)")
        return spec
    return load_model_spec(model or "")


def local_gates(trained: Any) -> list[dict[str, Any]]:
    """The spec's gates that a local run can decide (the registry's champion is not known here)."""
    from sluice.registration import metric_gates

    parity = trained.parity
    checks = [{"gate": "parity", "passed": bool(parity and parity.passed), "detail": str(parity)}]
    checks += [c.to_dict() for c in metric_gates(trained.spec, trained.metrics)]
    return checks


def metadata_of(trained: Any, spec: ModelSpec, source: Path, quality: dict[str, Any]) -> dict[str, Any]:
    from sluice import __version__

    gates = local_gates(trained)
    reasons = [f"{g['gate']}: {g['detail']}" for g in gates if not g["passed"]]
    return {
        "model": spec.name,
        "version": None,
        "status": "rejected" if reasons else "candidate",
        "reasons": reasons,
        "task": spec.task,
        "metric": spec.effective_metric,
        "metrics": trained.metrics,
        "gates": gates,
        "candidates": [c.to_event() if hasattr(c, "to_event") else c for c in trained.candidates],
        "params": trained.params,
        "feature_schema": trained.feature_schema.to_event(),
        "parity": trained.parity.to_event() if trained.parity else None,
        "rows": {
            "train": trained.rows_train,
            "holdout": trained.rows_holdout,
            "clean": quality.get("rows_clean"),
        },
        "source": {"path": str(source), "sha256": (quality.get("source") or {}).get("sha256")},
        "spec": spec.to_dict(),
        "spec_sha256": trained.spec_sha256,
        "code_version": __version__,
        "library_versions": trained.library_versions,
        "onnx_sha256": trained.onnx_sha256,
        "timings": trained.timings,
        "diagnostics": trained.diagnostics,
    }


def train_command(path: Path, model: str | None, spec_file: Path | None, out: Path) -> int:
    from sluice.curated import load
    from sluice.ingest import ingest_file
    from sluice.report import render_report
    from training.train import train_model

    try:
        spec = _spec(model, spec_file)
        out.mkdir(parents=True, exist_ok=True)
        outcome = ingest_file(path, load_dataset_spec(spec.dataset), out / "ingest")
        schema = json.loads((out / "ingest" / "schema.json").read_text())
        df = load(out / "ingest" / "data.npz", schema)
        trained = train_model(spec, df, verify=True)
    except SluiceError as exc:
        print(f"rejected: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    metadata = metadata_of(trained, spec, path, outcome.quality)
    (out / "model.onnx").write_bytes(trained.onnx)
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")
    (out / "report.html").write_text(render_report(metadata), encoding="utf-8")
    metric = spec.effective_metric
    holdout = trained.metrics.get("holdout", {})
    scored = f"holdout {metric} {holdout.get(metric):.4f}" if metric and metric in holdout else "no metric"
    if metadata["reasons"]:
        print(f"rejected: {spec.name}: {'; '.join(metadata['reasons'])}"[:500], file=sys.stderr)
        return 1
    print(f"trained {spec.name} ({spec.task}): {scored}; model.onnx, metadata.json, report.html in {out}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model spec on a local file (same code as the Lambdas)")
    p.add_argument("path", type=Path, help="CSV file (plain or .gz) of the spec's dataset")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a built-in model spec, e.g. transaction-category")
    which.add_argument("--spec", type=Path, help="a model spec YAML file")
    p.add_argument(
        "--out", type=Path, required=True, help="folder for model.onnx, metadata.json, report.html"
    )
