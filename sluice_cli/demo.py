"""`sluice demo` and `sluice up`: the whole product on the embedded AWS."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from sluice_cli.monitor import summary_lines
from sluice_cli.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "transactions" / "daily_household_transactions.csv"

# A record no file contains, next to records sampled from the uploaded file.
EXTRA_RECORD = {
    "description": "Train ticket Place 3 to Place 8",
    "payment_method": "Cash",
    "amount": 45.0,
    "date": "2018-10-02T09:15:00",
}


class Printer:
    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.entered: dict[str, float] = {}

    def __call__(self, *parts: Any) -> None:
        if not self.quiet:
            print(*parts, flush=True)

    def history_event(self, event: dict[str, Any]) -> None:
        """One line per state entered / exited, with its duration."""
        kind = event["type"]
        ts = event["timestamp"]
        ts = ts.timestamp() if isinstance(ts, datetime) else float(ts)
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            self.entered[name] = ts
            self(f"    > {name}")
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            took = ts - self.entered.get(name, ts)
            self(f"    < {name} ({took:.1f}s)")
        elif kind in ("TaskFailed", "LambdaFunctionFailed"):
            details = (
                event.get("taskFailedEventDetails") or event.get("lambdaFunctionFailedEventDetails") or {}
            )
            self(f"      ! {details.get('error')}: {_error_message(details.get('cause'))}")
        elif kind == "ExecutionFailed":
            details = event.get("executionFailedEventDetails", {})
            self(f"    x execution failed: {details.get('error')}")


def _error_message(cause: str | None) -> str:
    try:
        return json.loads(cause or "")["errorMessage"]
    except (ValueError, KeyError, TypeError):
        return (cause or "")[:300]


def run_pipeline(sandbox: Sandbox, path: Path, dataset: str, out: Printer) -> dict[str, Any]:
    known = {e["executionArn"] for e in sandbox.executions()}
    obj = sandbox.upload(path, dataset)
    out(f"  uploaded s3://{obj['bucket']}/{obj['key']} (version {obj['version_id']})")
    arn = sandbox.wait_for_new_execution(known)
    out(f"  the trigger started execution {arn.rsplit(':', 1)[-1]}")
    started = time.perf_counter()
    description = sandbox.follow(arn, on_event=out.history_event)
    out(f"  execution {description['status']} in {time.perf_counter() - started:.1f}s")
    output = json.loads(description.get("output") or "{}")
    return {"status": description["status"], "output": output, "error": description.get("error")}


def _curated(sandbox: Sandbox, ingest: dict[str, Any]) -> Any:
    from sluice.curated import read_curated

    assert sandbox.stack is not None
    return read_curated(sandbox.stack.bucket, ingest["data_key"], ingest["schema_key"])


def _record(row: Any, features: list[str], amount_factor: float = 1.0) -> dict[str, Any]:
    """One curated row as an API caller sends it (ISO dates, plain numbers, "" for a missing text)."""
    import pandas as pd

    record: dict[str, Any] = {}
    for f in features:
        value = row[f]
        if isinstance(value, pd.Timestamp):
            value = value.isoformat()
        elif f == "amount":
            value = float(value) * amount_factor
        elif value is None or value is pd.NA or (isinstance(value, float) and value != value):
            value = ""
        record[f] = value
    return record


def _sample_records(sandbox: Sandbox, ingest: dict[str, Any], features: list[str], n: int = 3) -> list[dict]:
    """A few real rows of the curated data (spread over the file), as an API caller would send them."""
    df = _curated(sandbox, ingest).dropna(subset=["description"])
    picks = df.iloc[[len(df) // (n + 1) * (i + 1) for i in range(n)]]
    return [{"record": _record(row, features), "actual": row.get("category")} for _, row in picks.iterrows()]


def model_summary(outcome: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    metrics = meta.get("metrics") or {}
    rounded = {
        part: {k: round(v, 4) for k, v in (metrics.get(part) or {}).items()}
        for part in ("cv", "holdout", "baseline")
    }
    selected = [c["name"] for c in meta.get("candidates") or [] if c.get("status") == "selected"]
    return {
        "name": outcome["model"],
        "version": outcome["version"],
        "status": outcome["status"],
        "task": meta.get("task"),
        "metric": meta.get("metric"),
        "estimator": selected[0] if selected else None,
        "metrics": rounded,
        "reasons": outcome.get("reasons") or [],
    }


def model_line(entry: dict[str, Any], meta: dict[str, Any]) -> str:
    metric = entry["metric"]
    parity = (meta.get("parity") or {}).get("passed")
    if metric is None:
        flagged = entry["metrics"]["holdout"].get("flag_rate")
        scores = f"flag rate {flagged}" if flagged is not None else "no labels to score"
    else:
        m = entry["metrics"]
        scores = (
            f"{metric} holdout {m['holdout'].get(metric)} cv {m['cv'].get(metric)} "
            f"baseline {m['baseline'].get(metric)}"
        )
    return (
        f"  {entry['name']} v{entry['version']} [{entry['status']}] {entry['task']} by {entry['estimator']}: "
        f"{scores}; parity {parity}"
    )


def _answer_text(pred: dict[str, Any]) -> str:
    if "label" in pred:
        return f"{pred['label']} p={max(pred['probabilities'].values()):.2f}"
    if "score" in pred:
        return f"score {pred['score']:.3f}{' ANOMALY' if pred['flag'] else ''}"
    interval = pred.get("interval")
    bounds = f" [{interval['lower']:.1f}, {interval['upper']:.1f}]" if interval else ""
    return f"{pred['value']:.2f}{bounds}"


def predict_samples(
    api_url: str,
    api_key: str,
    sandbox: Sandbox,
    ingest: dict[str, Any],
    models: list[dict[str, Any]],
    out: Printer,
) -> list[dict[str, Any]]:
    predictions = []
    headers = {"x-api-key": api_key}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as http:
        for model in models:
            if model.get("task") == "forecast":
                resp = http.post(f"/v1/models/{model['name']}/forecast", params={"days": 7})
                resp.raise_for_status()
                out(f"  POST {api_url}/v1/models/{model['name']}/forecast?days=7 -> {resp.status_code}")
                for point in resp.json()["forecast"]:
                    lo, hi = point.get("lower"), point.get("upper")
                    out(f"    {point['date']}  {point['value']:>10.2f}  [{lo:.1f}, {hi:.1f}]")
                continue
            info = http.get(f"/v1/models/{model['name']}")
            features = (
                [f["name"] for f in info.json()["feature_schema"]["features"]] if info.is_success else []
            )
            samples = _sample_records(sandbox, ingest, features or list(EXTRA_RECORD))
            if set(features) <= set(EXTRA_RECORD):  # a record no file contains, for the models it fits
                samples.append({"record": {f: EXTRA_RECORD[f] for f in features}, "actual": None})
            resp = http.post(
                f"/v1/models/{model['name']}/predict", json={"records": [s["record"] for s in samples]}
            )
            resp.raise_for_status()
            body = resp.json()
            out(f"  POST {api_url}/v1/models/{model['name']}/predict -> {resp.status_code}")
            for sample, pred in zip(samples, body["predictions"], strict=True):
                rec = sample["record"]
                actual = ""
                if model["name"] == "transaction-category":
                    actual = f" (file says {sample['actual']})" if sample["actual"] else " (new record)"
                shown = " ".join(str(rec.get(f, ""))[:24] for f in list(rec)[:3])
                out(f"    {shown[:60]:60} -> {_answer_text(pred)}{actual}")
                predictions.append(
                    {
                        "model": body["model"],
                        "version": body["version"],
                        "request_id": body.get("request_id"),
                        "input": rec,
                        **pred,
                        "actual": sample["actual"],
                    }
                )
    return predictions


DRIFT_MODEL = "transaction-category"
DRIFT_FACTOR = 3.0  # amounts x3: what a currency change upstream would do to the traffic


def send_traffic(http: httpx.Client, model: str, records: list[dict[str, Any]]) -> None:
    for start in range(0, len(records), 200):
        batch = {"records": records[start : start + 200]}
        http.post(f"/v1/models/{model}/predict", json=batch).raise_for_status()


def drift_scenario(sandbox: Sandbox, api_url: str, ingest: dict[str, Any], out: Printer) -> dict[str, Any]:
    """Rows of the uploaded file sent as traffic, monitored; then the same rows with amounts x3.

    The monitor should stay quiet on the first and find drift on ``amount`` in the second, and start
    the retraining pipeline for the model."""
    from datetime import UTC

    df = _curated(sandbox, ingest).sample(n=600, replace=True, random_state=11)
    with httpx.Client(base_url=api_url, headers={"x-api-key": sandbox.api_key}, timeout=60) as http:
        schema = http.get(f"/v1/models/{DRIFT_MODEL}").raise_for_status().json()["feature_schema"]
        features = [f["name"] for f in schema["features"]]
        result: dict[str, Any] = {}
        for label, factor in (("file rows as they are", 1.0), (f"amounts x{DRIFT_FACTOR:g}", DRIFT_FACTOR)):
            since = datetime.now(UTC)
            time.sleep(1.1)  # S3 LastModified has 1 s resolution: later captures must fall after `since`
            send_traffic(http, DRIFT_MODEL, [_record(row, features, factor) for _, row in df.iterrows()])
            (outcome,) = sandbox.monitor([DRIFT_MODEL], since=since.isoformat())
            out(f"  traffic: {len(df)} {label} -> sluice monitor:")
            for line in summary_lines([outcome]):
                out(f"    {line}")
            result[label] = outcome
    shifted = result[f"amounts x{DRIFT_FACTOR:g}"]
    baseline = result["file rows as they are"].get("summary", {})
    summary = shifted.get("summary", {})
    retraining = shifted.get("retraining", {})
    status = "not started"
    if retraining.get("started"):
        out(f"  retraining execution {retraining['execution_name']}:")
        description = sandbox.follow(retraining["execution_arn"], on_event=out.history_event)
        status = description["status"]
        out(f"  retraining {status}")
    return {
        "drift_detected": bool(summary.get("drift_detected")),
        "drifted_features": summary.get("drifted_features", []),
        "baseline_drift_detected": bool(baseline.get("drift_detected")),
        "retraining_execution": status,
        "retraining_reason": retraining.get("reason"),
    }


def demo(
    data: Path = DEFAULT_DATA,
    dataset: str = "transactions",
    as_json: bool = False,
    scenario: str | None = None,
) -> int:
    out = Printer(quiet=False)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"status": "NOT_STARTED", "models": [], "predictions": []}
    sandbox = Sandbox()
    try:
        out("Sluice demo: the stack in template.yaml on an embedded AWS (no account, no Docker)")
        stack = sandbox.start()
        out(
            f"  embedded AWS at {sandbox.endpoint}; stack {stack.name} deployed"
            f" in {time.perf_counter() - t0:.1f}s"
        )
        out(f"  served locally instead: {', '.join(x.split(' ')[0] for x in stack.left_out)}")
        out(f"Pipeline for {data.name}:")
        result = run_pipeline(sandbox, data, dataset, out)
        summary["status"] = result["status"]
        summary["execution_output"] = result["output"]
        if result["status"] != "SUCCEEDED":
            out(f"  the pipeline did not succeed: {result['error']}")
            return 1
        from sluice.registry import Registry

        registry = Registry(stack.table, stack.bucket)
        out("Registry:")
        for outcome in result["output"].get("outcomes", []):
            if outcome.get("status") == "failed":
                out(f"  {outcome['model']}: FAILED {outcome.get('error')}")
                summary["models"].append(
                    {"name": outcome["model"], "status": "failed", "error": outcome.get("error")}
                )
                continue
            meta = registry.metadata(registry.get_version(outcome["model"], outcome["version"]))
            entry = model_summary(outcome, meta)
            out(model_line(entry, meta))
            for reason in outcome.get("reasons") or []:
                out(f"      rejected: {reason}")
            summary["models"].append(entry)
        api_url = sandbox.start_api()
        out(f"API on {api_url} (the api function's FastAPI app; API key required; log: {sandbox.api_log}):")
        served = [m for m in summary["models"] if m.get("status") == "champion"]
        summary["predictions"] = predict_samples(
            api_url, sandbox.api_key, sandbox, result["output"]["ingest"], served, out
        )
        if scenario == "drift":
            out("Drift scenario: traffic, the monitor, and the retraining it starts:")
            summary.update(drift_scenario(sandbox, api_url, result["output"]["ingest"], out))
        summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
        out(f"Done in {summary['wall_seconds']}s; shutting down the embedded AWS.")
        return 0 if summary["predictions"] else 1
    finally:
        sandbox.stop()
        if as_json:
            summary.pop("execution_output", None)
            print(json.dumps(summary, default=str), flush=True)


def up(port: int, api_port: int) -> int:
    sandbox = Sandbox(port=port, api_port=api_port)
    stack = sandbox.start()
    api_url = sandbox.start_api()
    key = sandbox.api_key
    print(
        f"""Sluice is up on an embedded AWS (Ctrl-C stops it; state is in memory).

  AWS endpoint : {sandbox.endpoint}   (any access key / secret works)
  data bucket  : {stack.bucket}
  API          : {api_url}   docs: {api_url}/docs
  API key      : {key}
  API log      : {sandbox.api_log}   (JSON logs and EMF metrics of the api function)

Upload a CSV to start the training pipeline (the API serves the new champion within
{sandbox.alias_refresh_seconds:.0f}s of its registration, no restart):

  AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x aws --endpoint-url {sandbox.endpoint} --region us-east-1 \\
      s3 cp {DEFAULT_DATA} s3://{stack.bucket}/raw/transactions/

  AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x aws --endpoint-url {sandbox.endpoint} --region us-east-1 \\
      stepfunctions list-executions --state-machine-arn {stack.state_machine_arn}

  curl -s -H 'x-api-key: {key}' {api_url}/v1/models

  curl -s -H 'x-api-key: {key}' -H 'content-type: application/json' \\
      -d '{json.dumps({"records": [EXTRA_RECORD]})}' \\
      {api_url}/v1/models/transaction-category/predict
""",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
    finally:
        sandbox.stop()
    return 0
