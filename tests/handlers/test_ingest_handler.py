"""The ingest Lambda handler under moto, driven by the sample events in events/ingest/."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from sluice.curated import read_curated
from sluice.errors import MissingColumnsError, QualityGateError
from sluice.ingest import ingest_bytes
from sluice.specs import load_dataset_spec, model_specs_for
from tests.events import DATA, event_files, load_event
from tests.handlers.support import BUCKET
from tests.lambda_context import lambda_context

FUNCTION = "ingest"  # the aws, s3 and handler fixtures (conftest.py) set up this function
HOUSEHOLD = DATA / "transactions" / "daily_household_transactions.csv"
TITANS = DATA / "transactions" / "titans_all_transactions.csv"


def missing_columns_csv() -> bytes:
    """The household file's first 20 rows without its Date and Amount columns."""
    rows = list(csv.reader(io.StringIO(HOUSEHOLD.read_text(), newline="")))[:21]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    for row in rows:
        writer.writerow([v for i, v in enumerate(row) if i not in (0, 5)])
    return buf.getvalue().encode()


# event file -> (object body, rows read); rows None: the event must fail
CASES = {
    "s3_object_created_household.json": (HOUSEHOLD.read_bytes, 2461),
    "s3_object_created_titans.json": (TITANS.read_bytes, 127),
    "s3_object_created_missing_columns.json": (missing_columns_csv, None),
}


def upload(s3, event: dict, body: bytes) -> dict:
    """Put the object the event describes and point the event at the version moto created."""
    obj = event["detail"]["object"]
    assert event["detail"]["bucket"]["name"] == BUCKET
    assert obj["size"] == len(body), "the sample event's size should match the file it describes"
    resp = s3.put_object(Bucket=BUCKET, Key=obj["key"], Body=body)
    return {**event, "detail": {**event["detail"], "object": {**obj, "version-id": resp["VersionId"]}}}


def keys_under(s3, prefix: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])}


def test_every_sample_event_is_covered():
    assert {p.name for p in event_files("ingest")} == set(CASES)


@pytest.mark.parametrize("name", [n for n, (_, rows) in CASES.items() if rows is not None])
def test_object_created_event_writes_curated_outputs(s3, handler, capsys, name):
    make_body, rows = CASES[name]
    body = make_body()
    event = upload(s3, load_event(f"ingest/{name}"), body)

    result = handler(event, lambda_context("ingest"))

    assert result["dataset"] == "transactions"
    assert result["rows_read"] == rows
    assert result["rows_read"] == result["rows_clean"] + result["rows_quarantined"]
    assert result["models"] == [m.name for m in model_specs_for("transactions")]
    assert "transaction-category" in result["models"]
    source = result["source"]
    assert source["key"] == event["detail"]["object"]["key"]
    assert source["version_id"] == event["detail"]["object"]["version-id"]
    assert source["size"] == len(body)
    assert len(source["sha256"]) == 64
    prefix = f"curated/transactions/{result['run_id']}/"
    assert result["curated_prefix"] == prefix
    assert keys_under(s3, prefix) == {
        prefix + "data.npz",
        prefix + "schema.json",
        prefix + "quality.json",
        prefix + "quarantine.csv",
        prefix + "profile.json",
    }

    quality = json.loads(s3.get_object(Bucket=BUCKET, Key=result["quality_key"])["Body"].read())
    assert quality["run_id"] == result["run_id"]
    assert quality["rows_clean"] == result["rows_clean"]
    assert quality["source"] == source
    assert quality["column_mapping"]["Date"] == "date"
    assert set(quality["timings"]) == {"read_s", "ingest_s", "write_s"}

    quarantine = s3.get_object(Bucket=BUCKET, Key=result["quarantine_key"])["Body"].read().decode()
    assert quarantine.splitlines()[0] == "line,reasons,raw"

    curated = read_curated(BUCKET, result["data_key"], result["schema_key"])
    assert len(curated) == result["rows_clean"]
    assert list(curated.columns[:2]) == ["date", "amount"]
    assert pd.api.types.is_datetime64_any_dtype(curated["date"])
    assert curated["amount"].dtype == "float64"
    pd.testing.assert_frame_equal(curated, ingest_bytes(body, load_dataset_spec("transactions")).clean)

    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    metrics = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"RowsClean", "RowsQuarantined"} <= metrics
    [doc] = [d for d in emf if "RowsClean" in d]
    assert doc["RowsClean"] == [result["rows_clean"]] and doc["dataset"] == "transactions"


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_missing_columns_event_raises_with_the_header(s3, handler):
    name = "s3_object_created_missing_columns.json"
    event = upload(s3, load_event(f"ingest/{name}"), CASES[name][0]())
    with pytest.raises(MissingColumnsError, match=r"date, amount; header found: Mode, Category"):
        handler(event, lambda_context("ingest"))
    assert keys_under(s3, "curated/") == set()


def test_run_id_follows_the_object_version(s3, handler):
    event = upload(s3, load_event("ingest/s3_object_created_titans.json"), TITANS.read_bytes())
    first = handler(event, lambda_context("ingest"))
    assert handler(event, lambda_context("ingest"))["run_id"] == first["run_id"]
    # A direct {bucket, key} input reads the latest version: the same object, the same run.
    direct = {"bucket": BUCKET, "key": "raw/transactions/titans_all_transactions.csv"}
    assert handler(direct, lambda_context("ingest"))["run_id"] == first["run_id"]
    # Uploading again creates a new version, hence a new run.
    s3.put_object(Bucket=BUCKET, Key=direct["key"], Body=TITANS.read_bytes())
    second = handler(direct, lambda_context("ingest"))
    assert second["run_id"] != first["run_id"]
    assert second["source"]["sha256"] == first["source"]["sha256"]


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_quality_gate_failure_still_writes_the_report(s3, handler):
    rows = list(csv.reader(io.StringIO(TITANS.read_text(), newline="")))[:11]
    for row in rows[1:5]:
        row[3] = "unknown"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    key = "raw/transactions/mostly_bad.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=buf.getvalue().encode())

    with pytest.raises(QualityGateError, match="4 of 10 rows quarantined") as info:
        handler({"bucket": BUCKET, "key": key}, lambda_context("ingest"))

    [quality_key] = [k for k in keys_under(s3, "curated/transactions/") if k.endswith("quality.json")]
    assert quality_key in str(info.value)
    prefix = quality_key.removesuffix("quality.json")
    assert keys_under(s3, prefix) == {prefix + "quality.json", prefix + "quarantine.csv"}
    quality = json.loads(s3.get_object(Bucket=BUCKET, Key=quality_key)["Body"].read())
    assert quality["gate"]["passed"] is False
    assert quality["failures"] == {"amount:not_a_number": 4}
    quarantine = list(
        csv.DictReader(
            io.StringIO(s3.get_object(Bucket=BUCKET, Key=prefix + "quarantine.csv")["Body"].read().decode())
        )
    )
    assert [int(r["line"]) for r in quarantine] == [2, 3, 4, 5]


def test_sample_events_parse_like_eventbridge_delivers_them():
    from sluice.contracts import IngestRequest

    for path in event_files("ingest"):
        event = load_event(path)
        assert event["source"] == "aws.s3" and event["detail-type"] == "Object Created"
        request = IngestRequest.from_event(event)
        assert request.bucket == BUCKET
        assert request.key.startswith("raw/transactions/") and request.key.endswith(".csv")
        assert request.version_id == event["detail"]["object"]["version-id"]
        assert Path(request.key).name in {HOUSEHOLD.name, TITANS.name, "missing_columns.csv"}


# -- streaming, idempotency, profile, gzip, uploaded specs -------------------------------------------------


def versions_under(s3, prefix: str) -> list[tuple[str, str]]:
    resp = s3.list_object_versions(Bucket=BUCKET, Prefix=prefix)
    return sorted((v["Key"], v["VersionId"]) for v in resp.get("Versions", []))


def test_the_same_object_version_twice_rewrites_nothing(s3, handler):
    event = upload(s3, load_event("ingest/s3_object_created_household.json"), HOUSEHOLD.read_bytes())
    first = handler(event, lambda_context("ingest"))
    written = versions_under(s3, "curated/")
    assert len(written) == 5
    again = handler(event, lambda_context("ingest"))
    assert again == first
    assert versions_under(s3, "curated/") == written  # no new object version anywhere


def test_an_unversioned_source_gets_its_run_id_from_the_content(s3, handler):
    s3.create_bucket(Bucket="plain-source")
    key = "raw/transactions/titans.csv"
    s3.put_object(Bucket="plain-source", Key=key, Body=TITANS.read_bytes())
    first = handler({"bucket": "plain-source", "key": key}, lambda_context("ingest"))
    assert first["source"]["version_id"] is None
    written = versions_under(s3, "curated/")
    assert handler({"bucket": "plain-source", "key": key}, lambda_context("ingest")) == first
    assert versions_under(s3, "curated/") == written
    s3.put_object(Bucket="plain-source", Key=key, Body=TITANS.read_bytes() + b"\n")  # same rows, other bytes
    assert (
        handler({"bucket": "plain-source", "key": key}, lambda_context("ingest"))["run_id"] != first["run_id"]
    )


def test_profile_json_sits_next_to_quality_json(s3, handler):
    event = upload(s3, load_event("ingest/s3_object_created_household.json"), HOUSEHOLD.read_bytes())
    result = handler(event, lambda_context("ingest"))
    key = result["quality_key"].removesuffix("quality.json") + "profile.json"
    profile = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert profile["rows"] == result["rows_clean"]
    assert profile["columns"]["category"]["top"][0] == {"value": "Food", "count": 907}
    quality = json.loads(s3.get_object(Bucket=BUCKET, Key=result["quality_key"])["Body"].read())
    assert quality["outputs"]["profile.json"] == key
    assert quality["spec_source"] == "builtin:transactions"
    assert quality["format"]["line_endings"] == "CRLF"


def test_a_gzip_upload_is_streamed_through_gunzip(s3, handler):
    from tests.unit.ingest.helpers import SHUTTLE

    key = "raw/shuttle-anomaly/shuttle_anomaly.csv.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=SHUTTLE.read_bytes())
    result = handler({"bucket": BUCKET, "key": key}, lambda_context("ingest"))
    assert (result["dataset"], result["rows_read"], result["rows_clean"]) == ("shuttle-anomaly", 49097, 49097)
    curated = read_curated(BUCKET, result["data_key"], result["schema_key"])
    assert int(curated["anomaly"].sum()) == 3511
    quality = json.loads(s3.get_object(Bucket=BUCKET, Key=result["quality_key"])["Body"].read())
    assert quality["format"]["compression"] == "gzip"
    assert quality["source"]["size"] == SHUTTLE.stat().st_size


def test_a_spec_uploaded_next_to_the_data_is_used(s3, handler):
    spec = {
        "columns": [
            {"name": "when", "type": "datetime", "required": True, "aliases": ["Date"]},
            {"name": "value", "type": "float", "required": True, "aliases": ["Amount"], "rules": {"min": 0}},
        ]
    }
    s3.put_object(Bucket=BUCKET, Key="raw/ledger/dataset.json", Body=json.dumps(spec).encode())
    s3.put_object(Bucket=BUCKET, Key="raw/ledger/titans.csv", Body=TITANS.read_bytes())
    with pytest.raises(QualityGateError, match=r"value:below_min"):
        handler({"bucket": BUCKET, "key": "raw/ledger/titans.csv"}, lambda_context("ingest"))
    [quality_key] = [k for k in keys_under(s3, "curated/ledger/") if k.endswith("quality.json")]
    quality = json.loads(s3.get_object(Bucket=BUCKET, Key=quality_key)["Body"].read())
    assert quality["spec_source"] == f"s3://{BUCKET}/raw/ledger/dataset.json"
    assert quality["failures"] == {"value:below_min": 100}
