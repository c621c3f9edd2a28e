"""The ingest benchmark: rows/s and peak memory of ``sluice.ingest.ingest_file`` against a bare
``pandas.read_csv`` of the same file, in the same run (see bench/README.md, "Ingest").

The household file is resampled (records drawn with replacement, fixed seed, header kept, every record's
text unchanged) to 10^5 and 10^6 data rows in a temporary directory. For each size, each repeat runs
both paths once, each in a fresh interpreter (``bench._ingest_child``), alternating which goes first.
Throughput is data rows / wall seconds of the one call inside the child; peak memory is the child's
``ru_maxrss`` after the call minus its baseline after the imports. The figures are medians.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._ingest_child import DATASET, ENGINE
from bench.stats import load_average, machine, paired_ratio, summary

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "transactions" / "daily_household_transactions.csv"
CHILD = "import bench._ingest_child as c; c.main()"
SIZES = (10**5, 10**6)
QUICK_SIZES = (10**4, 10**5)
SEED = 20260917
TARGET = 0.5  # ingest throughput / bare read_csv throughput, all validation on
KINDS = ("read_csv", "ingest")
MB = 1024 * 1024
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class IngestOptions:
    sizes: tuple[int, ...] = SIZES
    repeats: int = 5  # fresh interpreters per path and size
    engine: str = ENGINE  # module:function with ingest_file's signature
    seed: int = SEED
    source: str = str(SOURCE)
    child_timeout_s: float = 300.0


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def size_key(rows: int) -> str:
    """``rows_1e5`` for powers of ten, ``rows_<n>`` otherwise."""
    exponent = round(math.log10(rows)) if rows > 0 else 0
    return f"rows_1e{exponent}" if rows > 0 and 10**exponent == rows else f"rows_{rows}"


# -- the resampled files ------------------------------------------------------------------------------


def split_records(text: str) -> tuple[str, list[str], str]:
    """(header, records, line terminator) of a CSV text; each record is its source text without its
    terminator, a quoted field spanning lines included (records are delimited as ``csv`` reads them)."""
    lines = text.splitlines(keepends=True)
    if not lines:
        raise ValueError("empty file")
    terminator = "\r\n" if lines[0].endswith("\r\n") else "\n"

    consumed = 0

    def feed() -> Iterator[str]:
        nonlocal consumed
        for line in lines:
            consumed += 1
            yield line

    reader = csv.reader(feed())
    records: list[str] = []
    start = 0
    for _ in reader:
        records.append("".join(lines[start:consumed]).rstrip("\r\n"))
        start = consumed
    header, body = records[0], [r for r in records[1:] if r.strip()]
    return header, body, terminator


def resample(source: Path, rows: int, dest: Path, seed: int = SEED) -> dict[str, Any]:
    """Write ``rows`` records of ``source`` drawn with replacement (``random.Random(seed)``) under its
    header to ``dest``; the source is only read."""
    with source.open(encoding="utf-8", newline="") as fh:
        header, records, terminator = split_records(fh.read())
    drawn = random.Random(seed).choices(records, k=rows)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", encoding="utf-8", newline="") as out:
        out.write(header + terminator)
        block = 50_000
        for i in range(0, rows, block):
            out.write(terminator.join(drawn[i : i + block]) + terminator)
    return {"rows": rows, "file_mb": round(dest.stat().st_size / MB, 2), "source_rows": len(records)}


# -- one measurement ------------------------------------------------------------------------------------


def measure_once(kind: str, path: Path, rows: int, options: IngestOptions, work: Path) -> dict[str, Any]:
    result = work / f"{kind}-{rows}.json"
    result.unlink(missing_ok=True)
    stderr = work / f"{kind}-{rows}.stderr"
    out_dir = work / f"out-{rows}"
    shutil.rmtree(out_dir, ignore_errors=True)
    args = [sys.executable, "-c", CHILD, kind, str(path), str(rows), str(result)]
    if kind == "ingest":
        args += [options.engine, str(out_dir)]
    env = {**os.environ, **THREAD_ENV}
    try:
        with stderr.open("wb") as err:
            proc = subprocess.run(
                args,
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                timeout=options.child_timeout_s,
                check=False,
            )
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    if proc.returncode != 0 or not result.exists():
        tail = stderr.read_text(errors="replace")[-3000:]
        raise RuntimeError(
            f"ingest benchmark: {kind} on {rows} rows failed (exit {proc.returncode}):\n{tail}"
        )
    return json.loads(result.read_text())


def order(repeat: int) -> tuple[str, ...]:
    """The paths alternate: read_csv first in even repeats, ingest first in odd ones."""
    return KINDS if repeat % 2 == 0 else KINDS[::-1]


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def summarize(rows: int, file_mb: float, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The figures of one size from its runs (``runs[kind]``, one dict per repeat, in repeat order)."""
    csv_runs, ing_runs = runs["read_csv"], runs["ingest"]
    csv_rps = rows / _median(csv_runs, "wall_s")
    ing_rps = rows / _median(ing_runs, "wall_s")
    ratio = ing_rps / csv_rps
    first = ing_runs[0]
    out: dict[str, Any] = {
        "rows": rows,
        "file_mb": file_mb,
        "chunk_rows": first.get("chunk_rows"),
        "ingest_rows_per_s": round(ing_rps),
        "read_csv_rows_per_s": round(csv_rps),
        "ratio": round(ratio, 3),
        # per repeat, both measured in the same round: the least noise-sensitive figure
        "paired_ratio": round(
            paired_ratio([r["wall_s"] for r in csv_runs], [r["wall_s"] for r in ing_runs]), 3
        ),
        "meets_target": ratio >= TARGET,
        "ingest_s": round(_median(ing_runs, "wall_s"), 3),
        "read_csv_s": round(_median(csv_runs, "wall_s"), 3),
        "ingest_peak_mb": round(_median(ing_runs, "peak_mb"), 1),
        "read_csv_peak_mb": round(_median(csv_runs, "peak_mb"), 1),
        "ingest_peak_rss_mb": round(_median(ing_runs, "peak_rss_mb"), 1),
        "read_csv_peak_rss_mb": round(_median(csv_runs, "peak_rss_mb"), 1),
        "ingest_baseline_mb": round(_median(ing_runs, "baseline_mb"), 1),
        "read_csv_baseline_mb": round(_median(csv_runs, "baseline_mb"), 1),
        "rows_clean": first.get("rows_clean"),
        "rows_quarantined": first.get("rows_quarantined"),
        "chunks": first.get("chunks"),
        "output_mb": round(first.get("output_bytes", 0) / MB, 2),
        "engine_timings": first.get("engine_timings"),
        "runs": {
            kind: {
                "wall_s": summary([r["wall_s"] for r in values], 4),
                "peak_mb": [round(r["peak_mb"], 1) for r in values],
                "import_s_median": round(_median(values, "import_s"), 3),
            }
            for kind, values in runs.items()
        },
    }
    csv_peak = out["read_csv_peak_mb"]
    out["peak_mb_ratio"] = round(out["ingest_peak_mb"] / csv_peak, 2) if csv_peak > 0 else None
    return out


def run_ingest(options: IngestOptions) -> dict[str, Any]:
    from bench._ingest_child import load_engine

    started = time.perf_counter()
    source = Path(options.source)
    load_engine(options.engine)  # fail now, not after the files are written, if it is not importable
    loads = {"start": load_average()}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sluice-bench-ingest-") as tmp:
        work = Path(tmp)
        for rows in options.sizes:
            path = work / f"household-{rows}.csv"
            facts = resample(source, rows, path, options.seed)
            progress(
                f"ingest: {rows:,} rows ({facts['file_mb']} MB), {options.repeats} x read_csv and ingest, "
                "fresh interpreters, alternating"
            )
            runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
            for r in range(options.repeats):
                for kind in order(r):
                    runs[kind].append(measure_once(kind, path, rows, options, work))
            path.unlink()
            results[size_key(rows)] = {
                **summarize(rows, facts["file_mb"], runs),
                "source_rows": facts["source_rows"],
            }
            loads[f"after_{size_key(rows)}"] = load_average()
    return {
        **results,
        "target_ratio": TARGET,
        "meets_target": all(v["meets_target"] for v in results.values()),
        "engine": options.engine,
        "dataset": DATASET,
        "source": source.name,
        "method": (
            "records resampled with replacement (fixed seed); per size and repeat, bare "
            "pandas.read_csv(dtype=str, keep_default_na=False) and the engine, each in a fresh "
            "interpreter, alternating; medians; peak = ru_maxrss after the call - after the imports"
        ),
        "options": asdict(options),
        "load_average": loads,
        "duration_s": round(time.perf_counter() - started, 1),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }


def verdict(ratio: float) -> str:
    return f"{'meets' if ratio >= TARGET else 'BELOW'} the {TARGET} target"


def ingest_table(s: dict[str, Any]) -> str:
    sizes = [v for v in s.values() if isinstance(v, dict) and "ingest_rows_per_s" in v]
    repeats = s.get("options", {}).get("repeats", "?")
    lines = [
        f"ingest: {s.get('engine', ENGINE)} vs bare pandas.read_csv, same file, same run "
        f"({repeats} fresh interpreters each, alternating, medians)",
        f"   {'rows':>9} {'file MB':>8} {'chunk':>8}  {'read_csv rows/s':>15} {'ingest rows/s':>13} "
        f"{'ratio':>6} {'paired':>6}  {'read_csv MB':>11} {'ingest MB':>9}  verdict",
    ]
    for v in sizes:
        chunk = "-" if v.get("chunk_rows") is None else f"{v['chunk_rows']:,}"
        lines.append(
            f"   {v['rows']:>9,} {v['file_mb']:>8.1f} {chunk:>8}  {v['read_csv_rows_per_s']:>15,} "
            f"{v['ingest_rows_per_s']:>13,} {v['ratio']:>6.2f} {v['paired_ratio']:>6.2f}  "
            f"{v['read_csv_peak_mb']:>11.1f} {v['ingest_peak_mb']:>9.1f}  {verdict(v['ratio'])}"
        )
    lines.append(
        "   ratio = ingest rows/s / read_csv rows/s (target >= "
        f"{s.get('target_ratio', TARGET)}, all validation on); MB = peak RSS above the child's "
        "post-import baseline"
    )
    for v in sizes:
        lines.append(
            f"   {v['rows']:,} rows: ingest {v['ingest_s']} s, read_csv {v['read_csv_s']} s; "
            f"clean {v.get('rows_clean')}, quarantined {v.get('rows_quarantined')}; "
            f"peak RSS ingest {v['ingest_peak_rss_mb']} MB, read_csv {v['read_csv_peak_rss_mb']} MB"
        )
    if "duration_s" in s:
        lines.append(f"   ingest benchmark took {s['duration_s']} s")
    return "\n".join(lines)
