"""The monitor function under moto, end to end: a champion trained and registered by the real pipeline
code, predictions captured by the real api handler, then the monitor's verdict on unshifted and on
shifted traffic, the retraining it starts, and its rate limit.

The champion is trained on every 5th row of the household file; the traffic is other rows of the same
file (no drift expected), then the same rows with amounts x3 (drift expected on ``amount`` only).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest

from sluice.contracts import IngestRequest, TrainRequest
from sluice.ingest import ingest, ingest_bytes
from sluice.registration import register_candidate
from sluice.registry import Registry
from sluice.settings import get_settings
from sluice.specs import load_dataset_spec
from sluice.verification import verify_candidate
from tests.events import DATA, load_event
from tests.handlers.support import BUCKET, REGION, TABLE, fresh_api, load_app, moto_storage
from tests.lambda_context import lambda_context
from training import run_training

FUNCTION = "monitor"
MODEL = "transaction-category"
SOURCE = DATA / "transactions" / "daily_household_transactions.csv"
PASS = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    """One moto account for the module: the champion, the api (capturing everything) and a state machine."""
    lines = SOURCE.read_bytes().splitlines(keepends=True)
    with pytest.MonkeyPatch.context() as mp, moto_storage(mp, FUNCTION) as storage:
        key = "raw/transactions/household-train.csv"
        storage.s3.put_object(Bucket=BUCKET, Key=key, Body=b"".join([lines[0], *lines[1::5]]))
        result = verify_candidate(
            run_training(TrainRequest(model=MODEL, ingest=ingest(IngestRequest(bucket=BUCKET, key=key))))
        )
        registered = register_candidate(result, Registry(TABLE, BUCKET))
        assert registered.status == "champion", registered.reasons
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(
            name="sluice-test-pipeline",
            definition=json.dumps(PASS),
            roleArn="arn:aws:iam::123456789012:role/x",
        )["stateMachineArn"]
        mp.setenv("SLUICE_STATE_MACHINE_ARN", arn)
        for name, value in {
            "SLUICE_CAPTURE_RATE": "1",
            "SLUICE_CAPTURE_MAX_ROWS": "1000",
            "SLUICE_LOCAL_API_KEYS": "local-test-key",
        }.items():
            mp.setenv(name, value)
        get_settings.cache_clear()
        api = fresh_api()
        monitor = load_app(FUNCTION)
        held_out = b"".join([lines[0], *lines[3::5]])
        yield {
            "api": api,
            "monitor": monitor,
            "sfn": sfn,
            "arn": arn,
            "held_out": held_out,
            "version": registered.version,
        }


def traffic(held_out: bytes, amount_factor: float = 1.0) -> list[dict[str, Any]]:
    df = ingest_bytes(held_out, load_dataset_spec("transactions")).clean
    records = []
    for row in df.itertuples():
        records.append(
            {
                "description": ""
                if row.description is None or str(row.description) == "<NA>"
                else str(row.description),
                "payment_method": ""
                if row.payment_method is None or str(row.payment_method) == "<NA>"
                else str(row.payment_method),
                "amount": float(row.amount) * amount_factor,
                "date": row.date.isoformat(),
            }
        )
    return records


def send(api: ModuleType, records: list[dict[str, Any]]) -> None:
    for start in range(0, len(records), 100):
        event = load_event("api/predict_batch.json")
        event["body"] = json.dumps({"records": records[start : start + 100]})
        event["requestContext"]["requestId"] = f"req-{start}-{len(records)}-{records[0]['amount']}"
        response = api.handler(event, lambda_context("sluice-dev-ApiFunction"))
        assert response["statusCode"] == 200, response["body"]
    api.app.state.capture_sink.flush()


def clear(stack: dict[str, Any]) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix="captures/").get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    boto3.client("dynamodb", region_name=REGION).delete_item(
        TableName=TABLE, Key={"pk": {"S": f"RETRAIN#{MODEL}"}, "sk": {"S": "LATEST"}}
    )


def run_monitor(stack: dict[str, Any], event: str = "monitor/scheduled.json") -> dict[str, Any]:
    out = stack["monitor"].handler(load_event(event), lambda_context("sluice-dev-MonitorFunction"))
    (outcome,) = [o for o in out["models"] if o["model"] == MODEL]
    return outcome


def test_unshifted_traffic_raises_no_alarm_and_starts_nothing(stack: dict[str, Any]) -> None:
    clear(stack)
    send(stack["api"], traffic(stack["held_out"]))

    outcome = run_monitor(stack)

    assert "error" not in outcome, outcome
    summary = outcome["summary"]
    assert summary["rows"] > 200 and not summary["insufficient_data"]
    assert summary["drift_detected"] is False and summary["drifted_features"] == []
    assert summary["max_psi"] < 0.1
    assert outcome["retraining"] == {"started": False, "reason": "no trigger"}


def test_shifted_amounts_are_found_reported_and_retrain_once(stack: dict[str, Any]) -> None:
    clear(stack)
    send(stack["api"], traffic(stack["held_out"], amount_factor=3.0))

    outcome = run_monitor(stack, "monitor/on_demand.json")
    again = run_monitor(stack, "monitor/on_demand.json")

    assert outcome["summary"]["drifted_features"] == ["amount"]
    report = json.loads(
        boto3.client("s3", region_name=REGION)
        .get_object(Bucket=BUCKET, Key=outcome["report_key"])["Body"]
        .read()
    )
    (amount,) = [f for f in report["features"] if f["name"] == "amount"]
    assert amount["psi"] > 0.25 and amount["severity"] == "alert"
    html_key = outcome["report_key"].replace("drift.json", "drift.html")
    html = (
        boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=html_key)["Body"].read().decode()
    )
    assert "amount" in html and "<html" in html
    retraining = outcome["retraining"]
    assert retraining["started"] is True and retraining["reason"] == "drift: amount"
    execution = stack["sfn"].describe_execution(executionArn=retraining["execution_arn"])
    payload = json.loads(execution["input"])
    assert payload["models"] == [MODEL] and payload["trigger"]["reasons"] == ["drift: amount"]
    assert payload["key"] == "raw/transactions/household-train.csv" and payload["version_id"]
    assert again["retraining"]["started"] is False
    assert again["retraining"]["skipped"].startswith("retrained less than 24 h ago")


def test_a_challenger_better_on_live_feedback_is_promoted_and_rolled_back_if_it_then_fails(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.monitoring.monitor import Outcome

    api, registry = stack["api"], Registry(TABLE, BUCKET)
    champion = registry.get_alias(MODEL, "champion")
    current = registry.get_version(MODEL, champion)
    challenger = registry.register(
        MODEL, registry.load_onnx(current), registry.metadata(current), "challenger"
    ).version
    registry.set_alias(MODEL, "challenger", challenger, expected=None, reason="canary: test")
    monkeypatch.setenv("SLUICE_CHALLENGER_SHARE", "0.5")
    monkeypatch.setenv("SLUICE_MONITOR_MIN_FEEDBACK", "5")
    get_settings.cache_clear()
    api.app.state.store.clear()
    record = traffic(stack["held_out"])[0]
    served: dict[str, int] = {}
    for i in range(40):  # 40 callers, about half of them meet the challenger
        event = load_event("api/predict_category.json")
        event["body"] = json.dumps(record)
        event["headers"]["x-sluice-caller"] = f"user-{i}"
        event["requestContext"]["requestId"] = f"req-canary-{i}"
        body = json.loads(api.handler(event, lambda_context("sluice-dev-ApiFunction"))["body"])
        served[body["alias"]] = served.get(body["alias"], 0) + 1
        truth = body["predictions"][0]["label"] if body["alias"] == "challenger" else "never-this-class"
        feedback = load_event("api/predict_category.json")
        feedback["path"] = "/v1/feedback"
        feedback["body"] = json.dumps({"request_id": body["request_id"], "actual": truth})
        assert api.handler(feedback, lambda_context("sluice-dev-ApiFunction"))["statusCode"] == 200
    assert served["challenger"] >= 5 and served["champion"] >= 5

    outcome = run_monitor(stack, "monitor/on_demand.json")

    assert outcome["canary"]["decision"] == "promoted", outcome["canary"]
    assert registry.get_alias(MODEL, "champion") == challenger
    assert registry.get_alias(MODEL, "challenger") is None
    assert "canary promotion" in [a for a in registry.audit(MODEL) if a["alias"] == "champion"][-1]["reason"]

    failing = Outcome(MODEL, challenger, live={"metric": "accuracy", "accuracy": 0.1, "below_gate": True})
    stack["monitor"].Monitor(registry, predictions_table="sluice-dev-predictions").canary(
        registry.metadata(registry.get_version(MODEL, challenger)), failing
    )

    assert failing.canary["rollback"] == {"from": challenger, "to": champion}
    assert registry.get_alias(MODEL, "champion") == champion
