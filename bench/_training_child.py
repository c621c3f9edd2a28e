"""One measurement of the training benchmark, in a fresh interpreter (see bench/training.py).

    python -c "import bench._training_child as c; c.main()" MODEL CSV RESULT_JSON

MODEL is a built-in model spec; CSV a file of its dataset. The child imports the training code, runs
the real ingest on the file (``sluice.ingest.ingest_bytes``: typed, validated rows, as the Train
function reads them), then takes its memory baseline and times the one ``training.train.train_model``
call (candidate search, refit, holdout evaluation, ONNX export and the native parity answers: what the
Train function does; the onnxruntime replay belongs to the Verify function and is left out, as there).
Peak memory is ``VmHWM`` reset at the baseline, as in the ingest benchmark (bench/_ingest_child.py).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench._ingest_child import KB, maxrss_kb, peak_kb, reset_peak


def _plain(value: Any) -> Any:
    """Metrics as JSON numbers (nested dicts kept), anything else left out."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if _plain(v) is not None}
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def model_facts(trained: Any) -> dict[str, Any]:
    """What the benchmark reports of a trained model: metrics, the chosen candidate, row counts."""
    metrics = _plain(getattr(trained, "metrics", {}) or {})
    out: dict[str, Any] = {"metrics": metrics}
    baseline = getattr(trained, "baseline", None)
    if baseline and "baseline" not in metrics:
        out["metrics"] = {"holdout": metrics, "baseline": _plain(baseline)}
    candidates = getattr(trained, "candidates", None) or []
    out["candidates"] = [
        {k: c.get(k) for k in ("name", "status", "fit_s", "reason")}
        for c in candidates
        if isinstance(c, dict)
    ]
    selected = [c["name"] for c in out["candidates"] if c.get("status") == "selected"]
    params = getattr(trained, "params", {}) or {}
    out["selected"] = selected[0] if selected else params.get("estimator")
    for key in ("rows_train", "rows_holdout"):
        out[key] = getattr(trained, key, None)
    out["onnx_bytes"] = len(getattr(trained, "onnx", b"") or b"")
    out["timings"] = getattr(trained, "timings", {})
    return out


def measure(model: str, csv_path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    from sluice.ingest import ingest_bytes
    from sluice.specs import load_dataset_spec, load_model_spec
    from training.train import train_model

    spec = load_model_spec(model)
    import_s = time.perf_counter() - started
    t_ingest = time.perf_counter()
    df = ingest_bytes(csv_path.read_bytes(), load_dataset_spec(spec.dataset)).clean
    ingest_s = time.perf_counter() - t_ingest
    gc.collect()
    peak_was_reset = reset_peak()
    baseline_kb, source = peak_kb(maxrss_kb())
    t0 = time.perf_counter()
    trained = train_model(spec, df, verify=False)
    wall_s = time.perf_counter() - t0
    after_kb, _ = peak_kb(maxrss_kb())
    return {
        "model": model,
        "task": spec.task,
        "rows": len(df),
        "wall_s": wall_s,
        "import_s": import_s,
        "ingest_s": ingest_s,
        "memory_source": source,
        "peak_was_reset": peak_was_reset,
        "peak_mb": (after_kb - baseline_kb) / KB,
        "peak_rss_mb": after_kb / KB,
        **model_facts(trained),
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    model, csv_path, result_file = args[0], Path(args[1]), Path(args[2])
    result_file.write_text(json.dumps(measure(model, csv_path), default=str))
