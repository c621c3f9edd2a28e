"""The training benchmark: wall time, peak memory and holdout metrics of every built-in model spec.

Each (model, file) pair runs once in a fresh interpreter (``bench._training_child``): the shared files
of each spec's dataset, and the household transactions file resampled x10 and x100 (records drawn with
replacement, fixed seed, as in the ingest benchmark) for the specs trained on transactions. The table
also checks the accuracy targets the project holds itself to, and prints the Train function's unzipped
size (function + layers, from the last ``make build``) against Lambda's 250 MB.

Training is single-threaded (BLAS and every estimator), as in the Train function; wall times are of one
run each (training is seconds to minutes, so a median of several would multiply the benchmark's time),
and the machine's load average is recorded beside them.
"""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.ingest import THREAD_ENV, resample
from bench.sizes import NoBuild, measure_build
from bench.stats import load_average, machine

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
HOUSEHOLD = DATA / "transactions" / "daily_household_transactions.csv"
TITANS = DATA / "transactions" / "titans_all_transactions.csv"
FILES: dict[str, Path] = {
    "household": HOUSEHOLD,
    "titans": TITANS,
    "churn": DATA / "churn" / "telco_customer_churn_ibm.csv",
    "wine": DATA / "tabular" / "winequality-red.csv",
    "shuttle": DATA / "anomaly" / "shuttle_anomaly.csv.gz",
    "cdnow": DATA / "timeseries" / "cdnow_daily_revenue_DERIVED.csv",
}
TRANSACTION_MODELS = (
    "transaction-category",
    "transaction-amount",
    "transaction-anomaly",
    "cashflow-forecast",
)
#: (model, file) -> (metric, comparison, threshold): the figures the project promises.
TARGETS: dict[tuple[str, str], tuple[str, str, float]] = {
    ("transaction-category", "household"): ("accuracy", ">=", 0.78),
    ("transaction-category", "titans"): ("accuracy", ">=", 0.60),
    ("wine-quality", "wine"): ("mean_absolute_error", "<=", 0.45),
    ("churn", "churn"): ("roc_auc", ">=", 0.85),
    ("transaction-amount", "titans"): ("r2", ">", 0.644),
    ("cashflow-forecast", "household"): ("mase", "<", 1.0),
}
OPERATORS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
CHILD = "import bench._training_child as c; c.main()"
SEED = 20261122
MB = 1024 * 1024


@dataclass(frozen=True)
class TrainingOptions:
    factors: tuple[int, ...] = (10, 100)  # household resampling factors for the transaction specs
    models: tuple[str, ...] | None = None  # None: every built-in spec
    child_timeout_s: float = 1800.0
    seed: int = SEED
    jobs: list[tuple[str, str]] = field(default_factory=list)  # filled by plan()


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def plan(options: TrainingOptions) -> list[tuple[str, str]]:
    """(model, file label) pairs: each spec on the shared files of its dataset, then the resampled ones."""
    from sluice.specs import _builtin, parse_model_spec

    by_dataset = {"transactions": ["household", "titans"], "churn": ["churn"], "wine-quality": ["wine"]}
    by_dataset |= {"shuttle-anomaly": ["shuttle"], "daily-revenue": ["cdnow"]}
    jobs: list[tuple[str, str]] = []
    specs = {n: parse_model_spec(d, n) for n, d in sorted(_builtin("models").items())}
    for name, spec in specs.items():
        if options.models is not None and name not in options.models:
            continue
        jobs += [(name, label) for label in by_dataset.get(spec.dataset, [])]
    for factor in options.factors:
        jobs += [
            (m, f"household_x{factor}")
            for m in TRANSACTION_MODELS
            if m in specs and (options.models is None or m in options.models)
        ]
    return jobs


def file_for(label: str, work: Path, seed: int) -> Path:
    if "_x" not in label:
        return FILES[label]
    base, factor = label.split("_x")
    dest = work / f"{label}.csv"
    if not dest.exists():
        source = FILES[base]
        rows = sum(1 for _ in source.open(encoding="utf-8")) - 1
        resample(source, rows * int(factor), dest, seed)
    return dest


def run_child(model: str, path: Path, work: Path, timeout_s: float) -> dict[str, Any]:
    result = work / f"{model}-{path.stem}.json"
    stderr = work / f"{model}-{path.stem}.stderr"
    result.unlink(missing_ok=True)
    with stderr.open("wb") as err:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, model, str(path), str(result)],
            cwd=ROOT,
            env={**os.environ, **THREAD_ENV},
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=timeout_s,
            check=False,
        )
    if proc.returncode != 0 or not result.exists():
        tail = stderr.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        return {"model": model, "error": f"exit {proc.returncode}: {tail[0][:300]}"}
    return json.loads(result.read_text())


def check_target(model: str, label: str, run: dict[str, Any]) -> dict[str, Any] | None:
    target = TARGETS.get((model, label))
    if target is None or "error" in run:
        return None
    metric, op, threshold = target
    value = (run.get("metrics") or {}).get("holdout", {}).get(metric)
    ok = None
    if value is not None:
        ok = {
            ">=": value >= threshold,
            ">": value > threshold,
            "<=": value <= threshold,
            "<": value < threshold,
        }[op]
    return {"metric": metric, "target": f"{op} {threshold:g}", "value": value, "met": ok}


def train_function_size() -> dict[str, Any]:
    try:
        functions, limit = measure_build()
    except NoBuild as exc:
        return {"function_mb": None, "size_note": str(exc)}
    train = functions.get("TrainFunction")
    if train is None:
        return {"function_mb": None, "size_note": "TrainFunction is not in the build"}
    return {
        "function_mb": round(train.total / MB, 1),
        "layers_mb": {name: round(b / MB, 1) for name, b in train.layers.items()},
        "limit_mb": round(limit / MB, 1),
    }


def run_training(options: TrainingOptions) -> dict[str, Any]:
    jobs = plan(options)
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="sluice-bench-train-") as tmp:
        work = Path(tmp)
        for model, label in jobs:
            path = file_for(label, work, options.seed)
            progress(f"training: {model} on {label}")
            run = run_child(model, path, work, options.child_timeout_s)
            run["file"] = label
            run["target"] = check_target(model, label, run)
            runs[f"{model}@{label}"] = run
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_after": load_average(),
        "runs": runs,
        "targets_met": all(r["target"]["met"] for r in runs.values() if r.get("target")),
        **train_function_size(),
    }


def _fmt(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def training_table(result: dict[str, Any]) -> str:
    lines = ["Training (one fresh interpreter per run; single-threaded like the Train function)"]
    lines.append(f"{'model @ file':<44} {'rows':>8} {'wall s':>8} {'peak MB':>8}  selected / metric")
    for key, run in result["runs"].items():
        if "error" in run:
            lines.append(f"{key:<44} failed: {run['error']}")
            continue
        metric_bits = ""
        target = run.get("target")
        if target:
            flag = "met" if target["met"] else "NOT met"
            metric_bits = f"{target['metric']} {_fmt(target['value'])} (target {target['target']}: {flag})"
        else:
            holdout = (run.get("metrics") or {}).get("holdout", {})
            metric_bits = ", ".join(f"{k} {_fmt(v)}" for k, v in list(holdout.items())[:2])
        lines.append(
            f"{key:<44} {run['rows']:>8} {run['wall_s']:>8.1f} {run['peak_mb']:>8.0f}  "
            f"{run.get('selected')}: {metric_bits}"
        )
    size = result.get("function_mb")
    if size is None:
        lines.append(f"train function + layers: n/a ({result.get('size_note')})")
    else:
        limit, layers = result["limit_mb"], result["layers_mb"]
        lines.append(f"train function + layers: {size} MB unzipped of {limit:.0f} MB ({layers})")
    return "\n".join(lines)
