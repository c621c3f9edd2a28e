"""The trigger Lambda handler under moto: one execution per object version, duplicates start nothing."""

from __future__ import annotations

import copy
import json
import re
import time

import boto3
import pytest
from moto.core.config import default_user_config

from sluice.errors import ConfigurationError, SourceObjectError
from sluice.trigger import MAX_NAME_LENGTH, execution_name, raw_csv_parts, start_pipeline
from tests.events import event_files, load_event
from tests.handlers.support import BUCKET, REGION
from tests.lambda_context import lambda_context

FUNCTION = "trigger"  # the aws and handler fixtures (conftest.py) set up this function

NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
PASS = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
ROLE = "arn:aws:iam::123456789012:role/sluice-test-pipeline"
CSV_EVENT = "trigger/object_created_csv.json"


@pytest.fixture
def sfn(aws, monkeypatch):
    client = boto3.client("stepfunctions", region_name=REGION)
    arn = client.create_state_machine(name="sluice-test-pipeline", definition=json.dumps(PASS), roleArn=ROLE)[
        "stateMachineArn"
    ]
    monkeypatch.setenv("SLUICE_STATE_MACHINE_ARN", arn)
    client.machine_arn = arn
    return client


def executions(sfn) -> list[dict]:
    return sfn.list_executions(stateMachineArn=sfn.machine_arn)["executions"]


def with_version(event: dict, version_id: str) -> dict:
    event = copy.deepcopy(event)
    event["detail"]["object"]["version-id"] = version_id
    return event


# --------------------------------------------------------------------------- the sample events

EXPECTED = {
    "object_created_csv.json": True,
    "object_created_csv_gz.json": True,
    "object_created_not_raw.json": False,
}


def test_every_sample_event_is_covered():
    assert {p.name for p in event_files("trigger")} == set(EXPECTED)


@pytest.mark.parametrize("path", event_files("trigger"), ids=lambda p: p.name)
def test_sample_event(sfn, handler, path):
    event = load_event(path)
    out = handler(event, lambda_context("trigger"))

    obj = event["detail"]["object"]
    assert out["bucket"] == BUCKET == event["detail"]["bucket"]["name"]
    assert out["key"] == obj["key"]
    assert out["version_id"] == obj["version-id"]
    assert out["started"] is EXPECTED[path.name]
    if not out["started"]:
        assert out["execution_name"] is None
        assert "raw/<dataset>/<file>.csv[.gz]" in out["reason"]
        assert executions(sfn) == []
        return
    assert out["execution_name"] == execution_name(BUCKET, obj["key"], obj["version-id"])
    (execution,) = executions(sfn)
    assert execution["name"] == out["execution_name"]
    assert execution["executionArn"] == out["execution_arn"]
    # the execution's input is the event itself: the Ingest step reads it
    described = sfn.describe_execution(executionArn=out["execution_arn"])
    assert json.loads(described["input"]) == event


# --------------------------------------------------------------------------- idempotency


def test_the_same_event_twice_starts_one_execution(sfn, handler):
    event = load_event(CSV_EVENT)
    first = handler(event, lambda_context("trigger"))
    # Step Functions dates executions to the millisecond, and the trigger tells a re-delivery from a new
    # execution by that date; EventBridge never re-delivers within the same millisecond, moto can.
    time.sleep(0.005)
    second = handler(event, lambda_context("trigger"))

    assert first["started"] is True
    assert second == {**first, "started": False, "reason": "duplicate event"}
    assert len(executions(sfn)) == 1


def test_a_redelivered_event_with_another_id_starts_nothing(sfn, handler):
    """Same object version, different envelope (input): Step Functions says ExecutionAlreadyExists."""
    event = load_event(CSV_EVENT)
    again = copy.deepcopy(event)
    again["id"], again["time"] = "00000000-1111-4222-8333-444444444444", "2024-12-09T14:09:45Z"

    assert handler(event, lambda_context("trigger"))["started"] is True
    out = handler(again, lambda_context("trigger"))

    assert out["started"] is False and out["reason"] == "duplicate event"
    assert out["execution_name"] == executions(sfn)[0]["name"]
    assert out["execution_arn"] == executions(sfn)[0]["executionArn"]
    assert len(executions(sfn)) == 1


def test_a_replay_after_the_execution_finished_starts_nothing(aws):
    """moto's executing engine: the Pass execution ends, and its name is still refused."""
    default_user_config["stepfunctions"] = {"execute_state_machine": True}
    try:
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(name="executing", definition=json.dumps(PASS), roleArn=ROLE)[
            "stateMachineArn"
        ]
        event = load_event(CSV_EVENT)
        first = start_pipeline(event, arn)
        assert first.started
        deadline = time.monotonic() + 10
        while sfn.describe_execution(executionArn=first.execution_arn)["status"] == "RUNNING":
            assert time.monotonic() < deadline, "the Pass execution did not finish"
            time.sleep(0.05)
        second = start_pipeline(event, arn)
        assert len(sfn.list_executions(stateMachineArn=arn)["executions"]) == 1
    finally:
        default_user_config["stepfunctions"] = {"execute_state_machine": False}
    assert not second.started and second.reason == "duplicate event"
    assert second.execution_name == first.execution_name
    assert second.execution_arn == first.execution_arn


def test_a_new_version_of_the_same_key_starts_a_new_execution(sfn, handler):
    event = load_event(CSV_EVENT)
    first = handler(event, lambda_context("trigger"))
    second = handler(with_version(event, "Xk2n0GqQyq9h8bB7rV_2eP1mC4tZ5wLs"), lambda_context("trigger"))

    assert first["started"] and second["started"]
    assert first["execution_name"] != second["execution_name"]
    assert len(executions(sfn)) == 2


# --------------------------------------------------------------------------- names


def test_name_is_readable_deterministic_and_unique_per_version():
    name = execution_name(BUCKET, "raw/transactions/daily_household_transactions.csv", "v1")
    assert name == execution_name(BUCKET, "raw/transactions/daily_household_transactions.csv", "v1")
    assert re.fullmatch(r"transactions-daily_household_transactions-[0-9a-f]{20}", name)
    others = {
        execution_name(BUCKET, "raw/transactions/daily_household_transactions.csv", "v2"),
        execution_name(BUCKET, "raw/transactions/daily_household_transactions.csv.gz", "v1"),
        execution_name("another-bucket", "raw/transactions/daily_household_transactions.csv", "v1"),
        execution_name(BUCKET, "raw/transactions/daily_household_transactions.csv", None, etag="abc"),
    }
    assert name not in others and len(others) == 4
    # the version id identifies the object; the etag only stands in for a missing one
    assert execution_name("b", "raw/d/x.csv", "1") == execution_name("b", "raw/d/x.csv", "1", etag="e")


@pytest.mark.parametrize(
    "key",
    [
        "raw/transactions/daily_household_transactions.csv",
        "raw/transactions/daily_household_transactions.csv.gz",
        "raw/transactions/2024/12/Relevé de compte (janvier) #3 — final.csv",
        "raw/" + "d" * 200 + "/" + "f" * 300 + ".csv",
        "raw/a/.csv.csv",
        "raw/-/___.csv",
    ],
)
def test_name_fits_step_functions_rules(key):
    name = execution_name(BUCKET, key, "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")
    assert NAME.fullmatch(name), name
    assert len(name) <= MAX_NAME_LENGTH
    assert not name.startswith(("-", "_"))


def test_unversioned_objects_are_told_apart_by_etag():
    key = "raw/transactions/x.csv"
    assert execution_name(BUCKET, key, None, "e1") == execution_name(BUCKET, key, "null", '"e1"')
    assert execution_name(BUCKET, key, None, "e1") != execution_name(BUCKET, key, None, "e2")


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        ("raw/transactions/a.csv", ("transactions", "a")),
        ("raw/transactions/a.csv.gz", ("transactions", "a")),
        ("raw/transactions/2024/a.CSV", ("transactions", "a")),
        ("raw/transactions/a.csv.zip", None),
        ("raw/transactions/.csv", None),
        ("raw/a.csv", None),
        ("raw//a.csv", None),
        ("curated/transactions/run/data.npz", None),
        ("models/m/v1/model.onnx", None),
    ],
)
def test_raw_csv_parts(key, parts):
    assert raw_csv_parts(key) == parts


# --------------------------------------------------------------------------- refusals


def test_a_non_raw_key_is_ignored(sfn, handler):
    event = load_event(CSV_EVENT)
    event["detail"]["object"]["key"] = "raw/transactions/notes.txt"
    out = handler(event, lambda_context("trigger"))
    assert out["started"] is False and out["execution_name"] is None
    assert executions(sfn) == []


def test_an_event_without_an_object_raises(sfn, handler):
    with pytest.raises(SourceObjectError):
        handler(
            {"source": "aws.s3", "detail-type": "Object Created", "detail": {}}, lambda_context("trigger")
        )


def test_the_state_machine_arn_is_required(aws, handler, monkeypatch):
    monkeypatch.delenv("SLUICE_STATE_MACHINE_ARN", raising=False)
    with pytest.raises(ConfigurationError, match="SLUICE_STATE_MACHINE_ARN"):
        handler(load_event(CSV_EVENT), lambda_context("trigger"))
