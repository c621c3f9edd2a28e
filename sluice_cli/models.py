"""`sluice models list|show|promote|rollback`: the registry, on the sandbox or on AWS.

The registry's table and bucket come from the stack's Outputs (``--stack``, default sluice-dev), or
are given directly (``--table``/``--bucket``). ``--endpoint-url`` points at the sandbox that
``sluice up`` prints; without it, the usual AWS credentials and region are used.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from sluice.errors import SluiceError


def use_endpoint(args: Any) -> None:
    """Point boto3 at ``--endpoint-url`` (the sandbox) and ``--region``, with fresh clients."""
    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "sandbox")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "sandbox")
    if args.region:
        os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = args.region
    from sluice.aws import reset_clients
    from sluice.settings import get_settings

    get_settings.cache_clear()
    reset_clients()


def stack_outputs(stack: str) -> dict[str, str]:
    from sluice.aws import client

    stacks = client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def _registry(args: Any) -> Any:
    from sluice.registry import Registry

    use_endpoint(args)
    table, bucket = args.table, args.bucket
    if not (table and bucket):
        outputs = stack_outputs(args.stack)
        table = table or outputs["RegistryTableName"]
        bucket = bucket or outputs["DataBucketName"]
    return Registry(table, bucket)


def _print(payload: Any, as_json: bool, text: str) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str) if as_json else text)


def models_command(args: Any) -> int:
    try:
        registry = _registry(args)
        if args.action == "list":
            models = registry.models()
            lines = [f"{'model':32} {'champion':>8} {'challenger':>10} {'latest':>6}"]
            for m in models:
                aliases = m["aliases"]
                lines.append(
                    f"{m['name']:32} {aliases.get('champion', '-')!s:>8} "
                    f"{aliases.get('challenger', '-')!s:>10} {m['latest_version']!s:>6}"
                )
            _print(models, args.json, "\n".join(lines))
        elif args.action == "show":
            versions = registry.versions(args.model)
            if not versions:
                raise SluiceError(f"no model named {args.model!r} in the registry")
            champion = registry.get_alias(args.model, "champion")
            chosen = [v for v in versions if v.version == args.version] if args.version else versions[-1:]
            if not chosen:
                raise SluiceError(f"{args.model} has no version {args.version}")
            meta = registry.metadata(chosen[0])
            payload = {
                "model": args.model,
                "champion": champion,
                "versions": [v.to_dict() for v in versions],
                "shown": {
                    k: meta.get(k) for k in ("version", "status", "metrics", "baseline", "gates", "source")
                },
                "audit": registry.audit(args.model),
            }
            lines = [f"{args.model}: champion v{champion}" if champion else f"{args.model}: no champion"]
            for v in versions:
                mark = "*" if v.version == champion else " "
                lines.append(f" {mark} v{v.version:<4} {v.status:9} {v.created_at}  {v.metrics}")
            lines.append(f"v{meta.get('version')} gates: {meta.get('gates')}")
            lines.append(f"v{meta.get('version')} source: {meta.get('source')}")
            for move in payload["audit"]:
                lines.append(
                    f"  {move['at']} {move['alias']}: v{move['from']} -> v{move['to']} ({move['reason']})"
                )
            _print(payload, args.json, "\n".join(lines))
        elif args.action == "promote":
            before = registry.promote(args.model, args.version, reason=args.reason or "promoted by hand")
            _print(
                {"model": args.model, "from": before, "to": args.version},
                args.json,
                f"{args.model}: champion v{before} -> v{args.version}",
            )
        else:
            before, after = registry.rollback(
                args.model, to=args.to, reason=args.reason or "rolled back by hand"
            )
            _print(
                {"model": args.model, "from": before, "to": after},
                args.json,
                f"{args.model}: champion rolled back v{before} -> v{after}",
            )
    except (SluiceError, KeyError) as exc:
        print(f"error: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


def add_aws_options(p: Any, stack_help: str) -> None:
    """--stack, --endpoint-url, --region and --json: how a command finds the stack it talks to."""
    p.add_argument("--stack", default="sluice-dev", help=stack_help)
    p.add_argument("--endpoint-url", help="AWS endpoint, e.g. the sandbox's from `sluice up`")
    p.add_argument("--region", help="AWS region")
    p.add_argument("--json", action="store_true", help="print JSON")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("models", help="list, show, promote or roll back registered models")
    add_aws_options(p, "stack whose Outputs name the registry")
    p.add_argument("--table", help="registry table (instead of --stack)")
    p.add_argument("--bucket", help="data bucket (instead of --stack)")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every model with its aliases and latest version")
    show = actions.add_parser("show", help="versions, metrics, gates, lineage and alias history")
    show.add_argument("model")
    show.add_argument("--version", type=int, help="version to detail (default: latest)")
    promote = actions.add_parser("promote", help="make a version champion (never a rejected one)")
    promote.add_argument("model")
    promote.add_argument("version", type=int)
    promote.add_argument("--reason")
    rollback = actions.add_parser(
        "rollback", help="move the champion back to the newest accepted older version"
    )
    rollback.add_argument("model")
    rollback.add_argument(
        "--to",
        type=int,
        help="version to roll back to (default: the newest accepted version older than the champion)",
    )
    rollback.add_argument("--reason")
