"""The `sluice` command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from sluice_cli import demo as demo_mod
from sluice_cli import local, models, monitor, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sluice", description="Serverless MLOps: CSV in S3 -> served ONNX model."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_demo = sub.add_parser(
        "demo", help="run the whole pipeline once on the embedded AWS and predict through HTTP"
    )
    p_demo.add_argument("--data", type=Path, default=demo_mod.DEFAULT_DATA, help="CSV file to upload")
    p_demo.add_argument("--dataset", default="transactions", help="dataset spec (raw/<dataset>/)")
    p_demo.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p_demo.add_argument(
        "--scenario",
        choices=["drift"],
        help="drift: then send the file's rows as traffic, and again with amounts x3, and monitor",
    )

    p_up = sub.add_parser("up", help="keep the stack running on the embedded AWS, with the API on 127.0.0.1")
    p_up.add_argument("--port", type=int, default=4566, help="port of the embedded AWS endpoint")
    p_up.add_argument("--api-port", type=int, default=8000, help="port of the API")

    p_ingest = sub.add_parser(
        "ingest", help="ingest a local file as the ingest Lambda would, outputs to --out"
    )
    p_ingest.add_argument("path", type=Path, help="CSV file (plain or .gz)")
    which = p_ingest.add_mutually_exclusive_group(required=True)
    which.add_argument("--dataset", help="a built-in dataset spec, e.g. transactions")
    which.add_argument("--spec", type=Path, help="a dataset spec YAML file (see sluice infer-spec)")
    p_ingest.add_argument("--out", type=Path, required=True, help="folder for the curated outputs")

    p_infer = sub.add_parser("infer-spec", help="print a starter dataset spec (YAML) inferred from a file")
    p_infer.add_argument("path", type=Path, help="CSV file (plain or .gz)")
    p_infer.add_argument("--name", help="dataset name (default: from the file name)")

    models.add_parser(sub)
    monitor.add_parser(sub)
    train.add_parser(sub)

    args = parser.parse_args(argv)
    if args.command == "models":
        return models.models_command(args)
    if args.command == "monitor":
        return monitor.monitor_command(args)
    if args.command == "train":
        if not args.path.is_file():
            parser.error(f"{args.path}: no such file")
        return train.train_command(args.path, args.model, args.spec, args.out)
    if args.command in ("ingest", "infer-spec") and not args.path.is_file():
        parser.error(f"{args.path}: no such file")
    if args.command == "ingest":
        return local.ingest_command(args.path, args.dataset, args.spec, args.out)
    if args.command == "infer-spec":
        return local.infer_spec_command(args.path, args.name)
    if args.command == "demo":
        if not args.data.is_file():
            parser.error(f"--data {args.data}: no such file")
        return demo_mod.demo(args.data, args.dataset, args.json, args.scenario)
    return demo_mod.up(args.port, args.api_port)


if __name__ == "__main__":
    raise SystemExit(main())
