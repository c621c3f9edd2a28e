"""The real state machine, deployed from template.yaml onto the embedded AWS, on real data.

One sandbox for the module: upload a sample of the household file, let EventBridge and the trigger
function start the pipeline (every transactions model spec trains on it), then check the registry, the
served model, the champion gate, the notification, the failure path and that one object version starts
one execution.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.events import DATA

HOUSEHOLD = DATA / "transactions" / "daily_household_transactions.csv"

pytestmark = pytest.mark.pipeline

RECORD = {"description": "Netflix", "payment_method": "Cash", "amount": 199, "date": "2018-09-19"}
CATEGORY = "transaction-category"


def _scrambled(src: Path, dst: Path, every: int = 2) -> Path:
    """Every ``every``-th row, with the categories of the oldest 80% shuffled among themselves: a
    model trained on them learns nothing, while the latest 20% (its holdout) keeps the true labels."""
    import random
    from datetime import datetime

    with src.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:][::every]
    date, category = header.index("Date"), header.index("Category")
    body.sort(key=lambda r: datetime.strptime(r[date][:10], "%d-%m-%Y"))
    old = body[: int(0.8 * len(body))]
    labels = [r[category] for r in old]
    random.Random(7).shuffle(labels)
    for row, label in zip(old, labels, strict=True):
        row[category] = label
    with dst.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *body])
    return dst


def _sample(src: Path, dst: Path, every: int = 2, drop: str | None = None) -> Path:
    with src.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:][::every]
    keep = [i for i, name in enumerate(header) if name != drop]
    with dst.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        for row in [header, *body]:
            writer.writerow([row[i] for i in keep])
    return dst


@pytest.fixture(scope="module")
def sandbox():
    from sluice_cli.sandbox import Sandbox

    # A 1 s search budget: each spec's first candidate is cross-validated and trained, later ones are
    # recorded as skipped (the search itself is tested in tests/unit/training); the pipeline runs in
    # seconds per upload instead of a minute.
    sb = Sandbox(alias_refresh_seconds=0.5, parameters={"SearchBudgetSeconds": "1"})
    sb.start()
    yield sb
    sb.stop()


@pytest.fixture(scope="module")
def notifications(sandbox):
    """An SQS queue subscribed to the pipeline's topic; returns a reader of the messages so far."""
    sqs, sns = sandbox.client("sqs"), sandbox.client("sns")
    url = sqs.create_queue(QueueName="pipeline-notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = sandbox.stack.topic_arn
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})

    def read() -> list[str]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        for m in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return [m["Body"] for m in messages]

    return read


@pytest.fixture(scope="module")
def registry(sandbox):
    from sluice.registry import Registry

    return Registry(sandbox.stack.table, sandbox.stack.bucket)


def _run(sandbox, path: Path) -> dict:
    known = {e["executionArn"] for e in sandbox.executions()}
    sandbox.upload(path, "transactions")
    arn = sandbox.wait_for_new_execution(known)
    return sandbox.follow(arn, timeout=300)


def _outcomes(result: dict) -> dict[str, dict]:
    """The execution output's outcome of each model, by name (one per transactions model spec)."""
    from sluice.specs import model_specs_for

    outcomes = json.loads(result["output"])["outcomes"]
    assert [o["model"] for o in outcomes] == [m.name for m in model_specs_for("transactions")]
    for o in outcomes:
        assert {"model", "version", "status", "reasons", "summary"} <= set(o), o
    return {o["model"]: o for o in outcomes}


@pytest.fixture(scope="module")
def first_run(sandbox, notifications, tmp_path_factory):
    path = _sample(HOUSEHOLD, tmp_path_factory.mktemp("data") / "household_sample.csv")
    return _run(sandbox, path)


@pytest.fixture(scope="module")
def api(sandbox, first_run):
    url = sandbox.start_api()
    with httpx.Client(base_url=url, headers={"x-api-key": sandbox.api_key}, timeout=30) as client:
        yield client


def test_upload_runs_the_pipeline_and_registers_a_champion(first_run, registry, notifications):
    assert first_run["status"] == "SUCCEEDED", first_run.get("cause")
    output = json.loads(first_run["output"])
    ingest = output["ingest"]
    assert ingest["rows_read"] == ingest["rows_clean"] + ingest["rows_quarantined"]
    assert ingest["rows_read"] == 1231  # every second data row of 2461
    outcomes = _outcomes(first_run)
    for name in (CATEGORY, "transaction-amount", "transaction-anomaly"):
        outcome = outcomes[name]
        assert (outcome["status"], outcome["version"], outcome["reasons"]) == ("champion", 1, []), outcome
        assert registry.get_alias(name, "champion") == 1
        assert outcome["summary"].startswith(f"{name} v1 is the champion")
    # a model that fails (here, if the forecast family is absent) does not stop the others
    forecast = outcomes["cashflow-forecast"]
    if forecast["status"] == "failed":
        assert forecast["version"] is None and forecast["reasons"] and forecast["error"]
    [message] = notifications()
    assert json.loads(message) == output["outcomes"]


def test_registered_version_has_metrics_lineage_and_parity(first_run, registry, sandbox):
    mv = registry.get_version(CATEGORY, 1)
    meta = registry.metadata(mv)
    holdout, baseline = meta["metrics"]["holdout"], meta["metrics"]["baseline"]
    assert holdout["accuracy"] > baseline["accuracy"] and meta["metrics"]["cv"]["accuracy"] > 0
    assert mv.metrics == holdout
    assert meta["parity"]["passed"] is True
    assert meta["parity"]["label_agreement"] == 1.0
    assert meta["task"] == "classification" and len(meta["spec_sha256"]) == 64
    assert [c["name"] for c in meta["candidates"]] == [c["name"] for c in meta["spec"]["candidates"]]
    assert meta["champion_comparison"]["note"] == "no champion yet"
    source = meta["source"]
    assert source["bucket"] == sandbox.stack.bucket
    assert source["key"] == "raw/transactions/household_sample.csv"
    assert source["version_id"]
    assert len(source["sha256"]) == 64
    assert meta["onnx_sha256"] == mv.onnx_sha256
    # the artifact in S3 is the one the registry vouches for
    assert len(registry.load_onnx(mv)) > 1000
    for name, output in (("transaction-amount", "value"), ("transaction-anomaly", "score")):
        other = registry.metadata(registry.get_version(name, 1))
        assert other["parity"]["passed"] and other["feature_schema"][f"{output}_output"] == output


def test_api_serves_the_champion(api, registry):
    classes = registry.metadata(registry.get_version(CATEGORY, 1))["feature_schema"]["classes"]
    record = {
        "description": "Idli medu Vada mix 2 plates",
        "payment_method": "Cash",
        "amount": 60,
        "date": "2018-09-20T12:03:00",
    }
    resp = api.post("/v1/models/transaction-category/predict", json=record)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == "transaction-category"
    assert body["version"] == 1
    (pred,) = body["predictions"]
    assert pred["label"] in classes
    assert set(pred["probabilities"]) == set(classes)
    assert abs(sum(pred["probabilities"].values()) - 1.0) < 1e-3
    assert pred["probabilities"][pred["label"]] == max(pred["probabilities"].values())


def test_api_errors_are_json_4xx(api, sandbox):
    missing = api.post("/v1/models/transaction-category/predict", json={"description": "x"})
    assert missing.status_code == 422
    assert "amount" in missing.text
    unknown = api.post("/v1/models/no-such-model/predict", json={"description": "x"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]
    no_key = httpx.post(f"{api.base_url}/v1/models/transaction-category/predict", json={})
    assert no_key.status_code == 401
    assert sandbox.api_key not in no_key.text


def test_the_local_api_applies_the_templates_usage_plan(sandbox, api):
    from sluice.serving.access import AccessMiddleware

    params = sandbox.stack.parameters
    (mw,) = [m for m in sandbox.api_app.user_middleware if m.cls is AccessMiddleware]
    policy = mw.kwargs["policy"]

    assert policy.enforced
    assert policy.rate == float(params["ApiThrottleRateLimit"]) > 0
    assert policy.burst == int(params["ApiThrottleBurstLimit"]) > 0
    assert policy.quota_per_day == int(params["ApiQuotaPerDay"]) > 0


def test_missing_columns_fail_at_ingest_and_keep_the_champion(sandbox, registry, api, tmp_path):
    path = _sample(HOUSEHOLD, tmp_path / "no_amount.csv", every=5, drop="Amount")
    result = _run(sandbox, path)
    assert result["status"] == "FAILED"
    assert result["error"] == "MissingColumnsError"
    cause = json.loads(result["cause"])["errorMessage"]
    assert "amount" in cause and "Date" in cause and "Mode" in cause  # names the column, lists the header
    assert next(m for m in registry.models() if m["name"] == "transaction-category")["latest_version"] == 1
    assert registry.get_alias("transaction-category", "champion") == 1
    resp = api.post("/v1/models/transaction-category/predict", json=RECORD)
    assert resp.status_code == 200 and resp.json()["version"] == 1


def test_a_new_upload_retrains_and_the_api_swaps_to_the_new_champion(sandbox, registry, api, tmp_path):
    """The whole file: more rows than the champion saw, so the new model is no worse on its holdout."""
    before = api.post("/v1/models/transaction-category/predict", json=RECORD)
    assert before.status_code == 200 and before.json()["version"] == 1
    path = _sample(HOUSEHOLD, tmp_path / "household_full.csv", every=1)
    result = _run(sandbox, path)
    assert result["status"] == "SUCCEEDED", result.get("cause")
    outcome = _outcomes(result)[CATEGORY]
    assert outcome["status"] == "champion" and outcome["version"] == 2, outcome
    assert registry.get_alias(CATEGORY, "champion") == 2
    comparison = registry.metadata(registry.get_version(CATEGORY, 2))["champion_comparison"]
    assert comparison["version"] == 1 and comparison["candidate"] >= comparison["champion"] - 0.01
    # the running API picks the new champion up on its next alias check, without a restart
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        served = api.post("/v1/models/transaction-category/predict", json=RECORD).json()["version"]
        if served == 2:
            break
        time.sleep(0.2)
    assert served == 2
    audit = registry.audit(CATEGORY)
    assert [(a["from"], a["to"]) for a in audit] == [(None, 1), (1, 2)]


def test_a_worse_model_is_rejected_the_champion_stays_and_the_notification_says_why(
    sandbox, registry, api, notifications, tmp_path
):
    """Shuffled training labels make a model no better than chance on a correctly labelled holdout."""
    notifications()  # drop earlier messages
    path = _scrambled(HOUSEHOLD, tmp_path / "household_scrambled.csv")
    result = _run(sandbox, path)
    assert result["status"] == "SUCCEEDED", result.get("cause")
    outcome = _outcomes(result)[CATEGORY]
    assert (outcome["status"], outcome["version"]) == ("rejected", 3), outcome
    [reason] = [r for r in outcome["reasons"] if r.startswith("champion:")]
    assert "worse than champion v2" in reason
    assert registry.get_alias(CATEGORY, "champion") == 2
    assert registry.get_version(CATEGORY, 3).status == "rejected"
    assert api.post("/v1/models/transaction-category/predict", json=RECORD).json()["version"] == 2
    [message] = notifications()
    [notified] = [o for o in json.loads(message) if o["model"] == CATEGORY]
    assert notified["status"] == "rejected" and reason in notified["summary"]


# ----------------------------------------------------------------------- one execution per object version


def _trigger_deliveries(sandbox) -> list[dict]:
    from sluice_cli.adapters import EVENTBRIDGE

    name = sandbox.stack.functions["TriggerFunction"]["name"]
    return [r for r in EVENTBRIDGE.records if r.get("function") == name]


def _wait_for_trigger(sandbox, count: int) -> list[dict]:
    from sluice_cli.adapters import EVENTBRIDGE

    return EVENTBRIDGE.wait(count, timeout=30, function=sandbox.stack.functions["TriggerFunction"]["name"])


def test_worse_data_is_rejected_by_the_gates_and_the_champion_keeps_serving(sandbox, registry, api, tmp_path):
    champion = registry.get_alias("transaction-category", "champion")
    path = _sample(HOUSEHOLD, tmp_path / "household_sparse.csv", every=12)  # a twelfth of the rows
    result = _run(sandbox, path)
    assert result["status"] == "SUCCEEDED", result.get("cause")
    outcome = next(
        o for o in json.loads(result["output"])["outcomes"] if o["model"] == "transaction-category"
    )
    assert outcome["status"] == "rejected", outcome
    assert any(r.startswith("champion:") for r in outcome["reasons"]), outcome["reasons"]
    meta = registry.metadata(registry.get_version("transaction-category", outcome["version"]))
    assert meta["status"] == "rejected" and meta["reasons"] == outcome["reasons"]
    assert registry.get_alias("transaction-category", "champion") == champion
    time.sleep(0.6)  # past the API's alias refresh interval
    assert api.post("/v1/models/transaction-category/predict", json=RECORD).json()["version"] == champion


def test_the_execution_is_named_after_the_object_version(first_run, sandbox, registry):
    from sluice.trigger import execution_name

    event = json.loads(first_run["input"])  # the S3 event, as EventBridge delivered it to the trigger
    obj = event["detail"]["object"]
    assert obj["key"] == "raw/transactions/household_sample.csv"
    name = execution_name(sandbox.stack.bucket, obj["key"], obj["version-id"])
    assert first_run["name"] == name
    assert re.fullmatch(r"transactions-household_sample-[0-9a-f]{20}", name)
    # what the trigger answered for that upload
    (delivery,) = [d for d in _trigger_deliveries(sandbox) if d["payload"].get("execution_name") == name]
    assert delivery["payload"]["started"] is True and not delivery["errored"]
    # lineage names the same object version the execution is named after
    source = registry.metadata(registry.get_version(CATEGORY, 1))["source"]
    assert source["version_id"] == obj["version-id"]


def test_a_replayed_event_starts_nothing_new(first_run, sandbox):
    event = json.loads(first_run["input"])
    count = len(sandbox.executions())
    trigger = sandbox.stack.functions["TriggerFunction"]["name"]

    # the trigger invoked again with the very same event (a duplicated delivery)
    resp = sandbox.client("lambda").invoke(FunctionName=trigger, Payload=json.dumps(event).encode())
    assert "FunctionError" not in resp
    answer = json.loads(resp["Payload"].read())
    assert answer["started"] is False and answer["reason"] == "duplicate event"
    assert answer["execution_name"] == first_run["name"]
    assert answer["execution_arn"] == first_run["executionArn"]

    # the same S3 event put on the bus again: the rule delivers it to the trigger, which starts nothing
    delivered = len(_trigger_deliveries(sandbox))
    entry = {
        "Source": event["source"],
        "DetailType": event["detail-type"],
        "Detail": json.dumps(event["detail"]),
        "Resources": event["resources"],
    }
    assert sandbox.client("events").put_events(Entries=[entry])["FailedEntryCount"] == 0
    replay = _wait_for_trigger(sandbox, delivered + 1)[-1]
    assert not replay["errored"], replay["payload"]
    assert replay["payload"]["started"] is False
    assert replay["payload"]["execution_name"] == first_run["name"]

    assert len(sandbox.executions()) == count


def test_the_same_content_uploaded_again_is_a_new_version_and_a_new_execution(sandbox, tmp_path):
    """A new S3 version of the same key and bytes is a new upload (a cheap file: it fails at ingest)."""
    path = _sample(HOUSEHOLD, tmp_path / "same_bytes.csv", every=50, drop="Amount")
    known = {e["executionArn"] for e in sandbox.executions()}
    first = sandbox.upload(path, "transactions")
    first_arn = sandbox.wait_for_new_execution(known)
    second = sandbox.upload(path, "transactions")
    second_arn = sandbox.wait_for_new_execution(known | {first_arn})

    assert first["key"] == second["key"] and first["version_id"] != second["version_id"]
    sfn = sandbox.client("stepfunctions")
    names = {sfn.describe_execution(executionArn=arn)["name"] for arn in (first_arn, second_arn)}
    from sluice.trigger import execution_name

    assert names == {execution_name(sandbox.stack.bucket, u["key"], u["version_id"]) for u in (first, second)}
    for arn in (first_arn, second_arn):
        assert sandbox.follow(arn, timeout=120)["status"] == "FAILED"  # no Amount column
    assert len(sandbox.executions()) == len(known) + 2


def test_a_gzip_upload_is_ingested_and_trained(sandbox, registry, tmp_path):
    path = _sample(HOUSEHOLD, tmp_path / "gz_sample.csv", every=4)
    gz = tmp_path / "gz_sample.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    known = {e["executionArn"] for e in sandbox.executions()}
    upload = sandbox.upload(gz, "transactions")
    arn = sandbox.wait_for_new_execution(known)

    from sluice.trigger import execution_name

    described = sandbox.client("stepfunctions").describe_execution(executionArn=arn)
    assert described["name"] == execution_name(sandbox.stack.bucket, upload["key"], upload["version_id"])
    assert described["name"].startswith("transactions-gz_sample-")
    assert json.loads(described["input"])["detail"]["object"]["key"] == "raw/transactions/gz_sample.csv.gz"
    result = sandbox.follow(arn, timeout=120)
    assert result["status"] == "SUCCEEDED", result.get("cause")
    output = json.loads(result["output"])
    assert output["ingest"]["rows_read"] == output["ingest"]["rows_clean"] == 616  # every 4th of 2461
    quality = json.loads(
        sandbox.client("s3")
        .get_object(Bucket=sandbox.stack.bucket, Key=output["ingest"]["quality_key"])["Body"]
        .read()
    )
    assert quality["format"]["compression"] == "gzip"
    outcome = _outcomes(result)[CATEGORY]
    assert outcome["status"] in {"champion", "rejected"}
    assert registry.get_version(CATEGORY, outcome["version"]).status == outcome["status"]


def test_models_cli_promote_and_rollback_move_the_champion(sandbox, registry, api, capsys):
    """`sluice models` against the sandbox's endpoint, resolving the registry from the stack outputs."""
    from sluice_cli.main import main

    endpoint = ["models", "--endpoint-url", sandbox.endpoint, "--stack", sandbox.stack.name]
    current = registry.get_alias("transaction-category", "champion")
    assert current is not None and current > 1

    assert main([*endpoint, "rollback", "transaction-category", "--reason", "test"]) == 0
    previous = registry.get_alias("transaction-category", "champion")
    assert previous < current
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the running API follows the alias
        if api.post("/v1/models/transaction-category/predict", json=RECORD).json()["version"] == previous:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the API kept serving the rolled-back version")

    assert main([*endpoint, "promote", "transaction-category", str(current), "--reason", "test"]) == 0
    assert registry.get_alias("transaction-category", "champion") == current

    capsys.readouterr()
    assert main([*endpoint, "--json", "show", "transaction-category"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["champion"] == current
    assert [m["reason"] for m in shown["audit"]][-2:] == ["test", "test"]

    assert main([*endpoint, "promote", "no-such-model", "1"]) == 1


def test_sluice_monitor_reports_on_the_captured_traffic(sandbox, api, registry, capsys):
    from sluice_cli.main import main

    champion = registry.get_alias("transaction-category", "champion")
    record = {
        "description": "Idli medu Vada mix 2 plates",
        "payment_method": "Cash",
        "amount": 60,
        "date": "2018-09-20",
    }
    deadline = time.monotonic() + 10
    while True:  # the API re-reads the alias every 0.5 s here: wait until it serves the champion
        resp = api.post("/v1/models/transaction-category/predict", json=record)
        assert resp.status_code == 200
        if resp.json()["version"] == champion or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert resp.json()["version"] == champion
    sandbox.flush_captures()  # what the sandbox's flusher does every 2 s
    capsys.readouterr()

    code = main(["monitor", "--endpoint-url", sandbox.endpoint, "--model", "transaction-category", "--json"])

    assert code == 0
    (outcome,) = json.loads(capsys.readouterr().out)
    assert outcome["model"] == "transaction-category" and "error" not in outcome, outcome
    assert outcome["version"] == champion
    assert outcome["summary"]["rows"] >= 1 and outcome["summary"]["insufficient_data"] is True
    assert outcome["retraining"] == {"started": False, "reason": "no trigger"}
    body = (
        sandbox.client("s3").get_object(Bucket=sandbox.stack.bucket, Key=outcome["report_key"])["Body"].read()
    )
    assert json.loads(body)["context"]["model"] == "transaction-category"


def test_a_retraining_run_trains_the_named_model_and_records_why(sandbox, registry, first_run):
    """What the monitor starts: the champion's source object again, one model, the reasons."""
    source = registry.metadata(registry.get_version(CATEGORY, 1))["source"]
    trigger = {"kind": "monitor", "reasons": ["drift: amount"], "champion_version": 1}
    payload = {
        "bucket": source["bucket"],
        "key": source["key"],
        "version_id": source["version_id"],
        "models": [CATEGORY],
        "trigger": trigger,
    }
    sfn = sandbox.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=sandbox.stack.state_machine_arn, name="retrain-test", input=json.dumps(payload)
    )["executionArn"]

    result = sandbox.follow(arn, timeout=300)

    assert result["status"] == "SUCCEEDED", result.get("cause")
    output = json.loads(result["output"])
    assert [o["model"] for o in output["outcomes"]] == [CATEGORY]
    assert output["ingest"]["run_id"] == json.loads(first_run["output"])["ingest"]["run_id"]  # same data
    version = output["outcomes"][0]["version"]
    assert registry.metadata(registry.get_version(CATEGORY, version))["trigger"] == trigger
