"""``python -m bench``: run the serving benchmark, print its table, write bench/results.json.

The figures go under the ``"serving"`` key of the results file; other keys already there are kept.
``--quick`` is a smoke run (few calls, 2 cold starts each, 300 requests): its figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.serving import Options, run, table

RESULTS = Path(__file__).resolve().parent / "results.json"


def parse_args(argv: list[str]) -> argparse.Namespace:
    defaults = Options()
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=defaults.calls, help="in-process calls per path")
    p.add_argument("--cold-repeats", type=int, default=defaults.cold_repeats, help="fresh processes per path")
    p.add_argument("--requests", type=int, default=defaults.requests, help="HTTP requests")
    p.add_argument("--concurrency", type=int, default=defaults.concurrency, help="HTTP concurrency")
    p.add_argument("--quick", action="store_true", help="smoke run: 200 calls, 2 cold starts, 300 requests")
    p.add_argument("--output", type=Path, default=RESULTS, help=f"results file (default {RESULTS.name})")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
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
    results = {}
    if args.output.exists():
        try:
            results = json.loads(args.output.read_text())
        except ValueError:
            results = {}
    results["serving"] = serving
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
