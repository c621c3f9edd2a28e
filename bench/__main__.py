"""``python -m bench``: run the benchmarks, print their tables, write bench/results.json.

The serving figures go under the ``"serving"`` key of the results file, the ingest figures under
``"ingest"`` and the training figures under ``"training"``; other keys already there are kept, and
each benchmark's key is written as soon as it is done. ``--only NAME`` runs one of them. ``--quick``
is a smoke run (serving: few calls, 2 cold starts each, 300 requests; ingest: 10^4 and 10^5 rows;
training: without the x100 file): its figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"
SUITES = ("serving", "ingest", "training")


def parse_args(argv: list[str]) -> argparse.Namespace:
    from bench.ingest import IngestOptions
    from bench.serving import Options

    defaults = Options()
    ingest_defaults = IngestOptions()
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=SUITES, help="run one benchmark (default: all of them)")
    p.add_argument("--calls", type=int, default=defaults.calls, help="in-process calls per path")
    p.add_argument("--cold-repeats", type=int, default=defaults.cold_repeats, help="fresh processes per path")
    p.add_argument("--requests", type=int, default=defaults.requests, help="HTTP requests")
    p.add_argument("--concurrency", type=int, default=defaults.concurrency, help="HTTP concurrency")
    p.add_argument(
        "--ingest-repeats",
        type=int,
        default=ingest_defaults.repeats,
        help="ingest: fresh interpreters per path and size",
    )
    p.add_argument(
        "--ingest-engine",
        default=ingest_defaults.engine,
        help="ingest: the engine, module:function with ingest_file's signature (default %(default)s)",
    )
    p.add_argument(
        "--training-models",
        nargs="+",
        metavar="MODEL",
        help="training: only these built-in model specs (default: all of them)",
    )
    p.add_argument(
        "--training-factors",
        nargs="+",
        type=int,
        metavar="N",
        help="training: household resampling factors (default: 10 100; 10 with --quick)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=(
            "smoke run: 200 calls, 2 cold starts, 300 requests; ingest on 10^4 and 10^5 rows; "
            "training without the x100 file"
        ),
    )
    p.add_argument("--output", type=Path, default=RESULTS, help=f"results file (default {RESULTS.name})")
    return p.parse_args(argv)


def write_key(path: Path, key: str, value: dict[str, Any]) -> None:
    """Set ``key`` in the JSON results file, keeping the other keys (an unreadable file starts afresh)."""
    results: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text())
            results = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            results = {}
    results[key] = value
    path.write_text(json.dumps(results, indent=2) + "\n")


def run_serving(args: argparse.Namespace) -> None:
    from bench.serving import Options, run, table

    if args.quick:
        options = Options(calls=200, cold_repeats=2, requests=300, concurrency=args.concurrency)
    else:
        options = Options(
            calls=args.calls,
            cold_repeats=args.cold_repeats,
            requests=args.requests,
            concurrency=args.concurrency,
        )
    serving = run(options)
    print(table(serving))
    write_key(args.output, "serving", serving)


def run_ingest(args: argparse.Namespace) -> None:
    from bench.ingest import QUICK_SIZES, SIZES, IngestOptions, ingest_table
    from bench.ingest import run_ingest as run

    options = IngestOptions(
        sizes=QUICK_SIZES if args.quick else SIZES,
        repeats=args.ingest_repeats,
        engine=args.ingest_engine,
    )
    ingest = run(options)
    print(ingest_table(ingest))
    write_key(args.output, "ingest", ingest)


def run_training(args: argparse.Namespace) -> None:
    from bench.training import TrainingOptions, training_table
    from bench.training import run_training as run

    options = TrainingOptions(
        factors=tuple(args.training_factors) if args.training_factors else (10,) if args.quick else (10, 100),
        models=tuple(args.training_models) if args.training_models else None,
    )
    training = run(options)
    print(training_table(training))
    write_key(args.output, "training", training)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    suites = [args.only] if args.only else list(SUITES)
    for i, suite in enumerate(suites):
        if i:
            print()
        {"serving": run_serving, "ingest": run_ingest, "training": run_training}[suite](args)
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
