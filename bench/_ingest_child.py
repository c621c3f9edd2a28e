"""One measurement of the ingest benchmark, in a fresh interpreter (see bench/ingest.py).

    python -c "import bench._ingest_child as c; c.main()" KIND CSV ROWS RESULT_JSON [ENGINE OUT_DIR]

KIND is ``read_csv`` (bare ``pandas.read_csv(CSV, dtype=str, keep_default_na=False)``) or ``ingest``
(``ENGINE(CSV, load_dataset_spec("transactions"), OUT_DIR)``, ENGINE being ``module:function``, by
default ``sluice.ingest:ingest_file``). The child imports what its path needs (pandas for both), loads
the spec, then takes its memory baseline after a ``gc.collect()``, times the one call with
``perf_counter`` and reads the peak: interpreter start, imports and the spec are outside both the time
and the peak. ROWS is the number of data rows the file holds; the child checks that the path saw all of
them. The figures go to RESULT_JSON.

Peak memory is the high-water mark of the resident set. ``getrusage(RUSAGE_SELF).ru_maxrss`` would be
the obvious reading, but on Linux a child started by fork/vfork + exec inherits its parent's high-water
mark in it (the kernel keeps the pre-exec address space's peak), so under a parent of a few hundred MB
it reads the parent's size, not the child's. The child therefore reads ``VmHWM`` from
``/proc/self/status``, the same high-water mark for its own address space only, after resetting it at
the baseline (``echo 5 > /proc/self/clear_refs``) so that a transient peak during the imports cannot
hide the call's. ``ru_maxrss`` is recorded too, and is the fallback where ``/proc`` is missing.

This module imports only the standard library at import time.
"""

from __future__ import annotations

import csv
import gc
import importlib
import json
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

DATASET = "transactions"
ENGINE = "sluice.ingest:ingest_file"
KB = 1024


def maxrss_kb() -> int:
    """The process's peak resident set size so far, in KiB (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def proc_status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` figure in KiB (``VmRSS``, ``VmHWM``), or None where there is none."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset this address space's ``VmHWM`` to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def peak_kb(fallback: int) -> tuple[int, str]:
    hwm = proc_status_kb("VmHWM")
    return (hwm, "VmHWM") if hwm is not None else (fallback, "ru_maxrss")


def load_engine(dotted: str) -> Any:
    module, _, name = dotted.partition(":")
    if not module or not name:
        raise ValueError(f"engine must be 'module:function', got {dotted!r}")
    return getattr(importlib.import_module(module), name)


def outcome_facts(outcome: Any) -> dict[str, Any]:
    """Row counts and the chunk size from an ``IngestOutcome`` (or anything shaped like one)."""
    quality = getattr(outcome, "quality", None)
    quality = quality if isinstance(quality, dict) else {}
    facts: dict[str, Any] = {}
    for key in ("rows_read", "rows_clean", "rows_quarantined", "chunk_rows", "chunks"):
        value = getattr(outcome, key, None)
        if value is None:
            value = quality.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            facts[key] = int(value)
    timings = quality.get("timings")
    if isinstance(timings, dict):
        facts["engine_timings"] = timings  # the engine's own split of its time, as it reports it
    return facts


def stand_in_ingest(path: Path, spec: Any, out_dir: Path) -> SimpleNamespace:
    """A stand-in engine with ``ingest_file``'s signature, for the benchmark's own tests: it parses the
    file with the ``csv`` module, counts the records and writes them to ``out_dir`` (no typing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = 0
    with path.open(newline="", encoding="utf-8") as src, (out_dir / "data.csv").open("w", newline="") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst, lineterminator="\n")
        writer.writerow(next(reader))
        for record in reader:
            writer.writerow(record)
            rows += 1
    quality = {"rows_read": rows, "rows_clean": rows, "rows_quarantined": 0, "chunk_rows": rows}
    return SimpleNamespace(quality=quality, **{k: v for k, v in quality.items() if k != "chunk_rows"})


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def measure(kind: str, csv_path: Path, rows: int, engine: str = ENGINE, out_dir: Path | None = None) -> dict:
    started = time.perf_counter()
    if kind == "read_csv":
        import pandas as pd

        def call() -> Any:
            return pd.read_csv(csv_path, dtype=str, keep_default_na=False)

    elif kind == "ingest":
        if out_dir is None:
            raise ValueError("ingest needs an output directory")
        import pandas  # noqa: F401  (the engine's parser: imported before the baseline, as for read_csv)

        from sluice.specs import load_dataset_spec

        function = load_engine(engine)
        spec = load_dataset_spec(DATASET)
        out_dir.mkdir(parents=True, exist_ok=True)

        def call() -> Any:
            return function(csv_path, spec, out_dir)

    else:
        raise ValueError(f"unknown kind {kind!r}")
    import_s = time.perf_counter() - started
    gc.collect()
    peak_was_reset = reset_peak()
    maxrss_before = maxrss_kb()
    baseline_kb, source = peak_kb(maxrss_before)
    t0 = time.perf_counter()
    result = call()
    wall_s = time.perf_counter() - t0
    maxrss_after = maxrss_kb()
    after_kb, _ = peak_kb(maxrss_after)

    out: dict[str, Any] = {
        "kind": kind,
        "rows": rows,
        "wall_s": wall_s,
        "rows_per_s": rows / wall_s if wall_s > 0 else None,
        "import_s": import_s,
        "memory_source": source,
        "peak_was_reset": peak_was_reset,
        "baseline_kb": baseline_kb,
        "peak_kb": after_kb,
        "peak_mb": (after_kb - baseline_kb) / KB,  # what the call added to the high-water mark
        "peak_rss_mb": after_kb / KB,
        "baseline_mb": baseline_kb / KB,
        # getrusage, for the record: in a child it starts at the parent's high-water mark
        "ru_maxrss_before_kb": maxrss_before,
        "ru_maxrss_after_kb": maxrss_after,
    }
    if kind == "read_csv":
        out["rows_seen"] = len(result)
        out["columns"] = len(result.columns)
    else:
        facts = outcome_facts(result)
        out.update(facts)
        out["rows_seen"] = facts.get("rows_read")
        out["engine"] = engine
        assert out_dir is not None
        out["output_bytes"] = _dir_bytes(out_dir)
    if out["rows_seen"] is not None and out["rows_seen"] != rows:
        raise RuntimeError(f"{kind}: the file has {rows} data rows but the path saw {out['rows_seen']}")
    return out


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    kind, csv_path, rows, result_file = args[0], Path(args[1]), int(args[2]), Path(args[3])
    engine = args[4] if len(args) > 4 else ENGINE
    out_dir = Path(args[5]) if len(args) > 5 else None
    result = measure(kind, csv_path, rows, engine, out_dir)
    result_file.write_text(json.dumps(result))
