"""`sluice monitor`: run the stack's monitor now and print what it found, per served model.

Against the sandbox (``--endpoint-url`` from `sluice up`) or AWS: it invokes the stack's monitor
function (its name is in the stack's Outputs), the same code the hourly schedule runs.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from sluice.errors import SluiceError
from sluice_cli.models import add_aws_options, stack_outputs, use_endpoint


def summary_lines(outcomes: list[dict[str, Any]]) -> list[str]:
    lines = []
    for o in outcomes:
        head = f"{o['model']} v{o['version']}"
        if "error" in o:
            lines.append(f"{head}: monitor failed: {o['error']}")
            continue
        s = o.get("summary", {})
        if s.get("insufficient_data"):
            drift = f"insufficient data ({s.get('rows', 0)} captured rows)"
        elif s.get("drift_detected"):
            where = ", ".join(s["drifted_features"]) or "predictions"
            drift = f"DRIFT in {where} (max PSI {s['max_psi']:.3f})"
        else:
            max_psi = s.get("max_psi")
            drift = f"no drift over {s.get('rows', 0)} rows"
            drift += f" (max PSI {max_psi:.3f})" if max_psi else ""
        live = o.get("live") or {}
        live_text = f"; live n={live.get('n', 0)}" + (
            f" {live['metric']} {live[live['metric']]:.3f} vs gate {live['gate']}" if "metric" in live else ""
        )
        retraining = o.get("retraining") or {}
        action = (
            f"; retraining started ({retraining.get('execution_name')}: {retraining.get('reason')})"
            if retraining.get("started")
            else (f"; retraining skipped: {retraining['skipped']}" if retraining.get("skipped") else "")
        )
        lines.append(f"{head}: {drift}{live_text}{action}")
        if o.get("report_key"):
            lines.append(f"    report: {o['report_key'].replace('drift.json', 'drift.html')}")
    return lines


def monitor_command(args: Any) -> int:
    try:
        use_endpoint(args)
        from sluice.aws import client

        function = stack_outputs(args.stack)["MonitorFunctionName"]
        payload: dict[str, Any] = {}
        if args.model:
            payload["models"] = args.model
        if args.since:
            payload["since"] = args.since
        resp = client("lambda").invoke(FunctionName=function, Payload=json.dumps(payload).encode())
        body = json.loads(resp["Payload"].read() or b"null")
        if resp.get("FunctionError"):
            raise SluiceError(f"the monitor failed: {body.get('errorMessage', body)}")
    except (SluiceError, KeyError) as exc:
        print(f"error: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    outcomes = body["models"]
    print(json.dumps(outcomes, indent=2, default=str) if args.json else "\n".join(summary_lines(outcomes)))
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("monitor", help="run the monitor now: drift, live metrics, retraining triggers")
    add_aws_options(p, "stack whose Outputs name the monitor function")
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--since", help="captures written since this ISO time (default: the last 24 h)")
