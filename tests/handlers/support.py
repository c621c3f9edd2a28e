"""What every handler test sets up: the environment template.yaml gives a function, moto in place of
the template's storage (the versioned data bucket and the registry table), and functions/<name>/app.py.

``moto_storage`` is the one setup; ``tests/handlers/conftest.py`` wraps it in the per-test ``aws``
fixture, and module-scoped fixtures (and scripts) call it under their own ``pytest.MonkeyPatch``.

``bench/child.py`` creates its registry with ``create_storage`` inside its cold-start interpreters:
keep its run-time imports to what is loaded there anyway (boto3, moto, sluice; no pytest).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import boto3
from moto import mock_aws

from sluice.aws import reset_clients
from sluice.settings import get_settings
from tests.events import DATA, ROOT

if TYPE_CHECKING:
    import pytest

REGION = "us-east-1"
BUCKET = "sluice-dev-data-123456789012-us-east-1"  # the name the sample events use
TABLE = "sluice-dev-registry"
PREDICTIONS_TABLE = "sluice-dev-predictions"


@dataclass(frozen=True)
class Storage:
    s3: Any  # boto3 S3 client
    dynamodb: Any  # boto3 DynamoDB client
    bucket: str
    table: str


def handler_env(function: str) -> dict[str, str]:
    """The variables template.yaml gives ``function`` (names of this test account's resources)."""
    return {
        "SLUICE_DATA_BUCKET": BUCKET,
        "SLUICE_REGISTRY_TABLE": TABLE,
        "SLUICE_PREDICTIONS_TABLE": PREDICTIONS_TABLE,
        "POWERTOOLS_SERVICE_NAME": function,
        "POWERTOOLS_METRICS_NAMESPACE": "Sluice-test",
        "POWERTOOLS_TRACE_DISABLED": "1",
    }


def set_handler_env(mp: pytest.MonkeyPatch, function: str, **extra: str) -> None:
    for name, value in {**handler_env(function), **extra}.items():
        mp.setenv(name, value)


def create_storage(session: Any = None, bucket: str = BUCKET, table: str = TABLE) -> Storage:
    """The data bucket (versioned), the registry and predictions tables, as template.yaml declares them; moto
    must be on. ``session``: a boto3 Session whose clients to use (default: boto3's own)."""
    session = session or boto3
    s3 = session.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    dynamodb = session.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    dynamodb.create_table(
        TableName=PREDICTIONS_TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    return Storage(s3=s3, dynamodb=dynamodb, bucket=bucket, table=table)


def _forget_runtime_caches() -> None:
    get_settings.cache_clear()
    reset_clients()


@contextmanager
def moto_storage(mp: pytest.MonkeyPatch, function: str, **extra_env: str) -> Iterator[Storage]:
    """``function``'s environment (plus ``extra_env``) set through ``mp``, then inside ``mock_aws()``
    fresh settings and clients and the template's storage. Settings and clients are forgotten again
    on the way out; ``mp`` (the caller's) undoes the environment."""
    set_handler_env(mp, function, **extra_env)
    mp.delenv("AWS_ENDPOINT_URL", raising=False)
    try:
        with mock_aws():
            _forget_runtime_caches()
            yield create_storage()
    finally:
        _forget_runtime_caches()


def fresh_api() -> ModuleType:
    """functions/api/app.py with a fresh execution environment: the FastAPI app is built once per
    process (``sluice.serving.app.app``), so its model store and capture state are reset here."""
    api = load_app("api")
    api.app.state.store.clear()
    for name in ("capture_sink", "feedback_store"):
        if hasattr(api.app.state, name):
            delattr(api.app.state, name)
    return api


def load_app(function: str) -> ModuleType:
    """functions/<function>/app.py as a fresh module (load it after the environment is set:
    Powertools reads it at import)."""
    spec = importlib.util.spec_from_file_location(
        f"sluice_test_{function}_app", ROOT / "functions" / function / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: raw files the sample events name (their ingest source keys)
SOURCE_FILES = {
    "raw/transactions/daily_household_transactions.csv": DATA
    / "transactions"
    / "daily_household_transactions.csv"
}


def stage_curated(s3: Any, event: dict[str, Any]) -> None:
    """Upload the raw file a train event's ingest result names, run the real ingest on it, and put its
    curated output where the event says it is (the event's run id is fixed, moto's version ids are not)."""
    from sluice.contracts import IngestRequest, TrainRequest
    from sluice.ingest import ingest
    from sluice.storage import sha256_hex

    request = TrainRequest.model_validate(event)
    source = request.ingest.source
    assert source.bucket == BUCKET
    body = SOURCE_FILES[source.key].read_bytes()
    assert sha256_hex(body) == source.sha256 and len(body) == source.size
    s3.put_object(Bucket=BUCKET, Key=source.key, Body=body)
    result = ingest(IngestRequest(bucket=BUCKET, key=source.key))
    assert result.rows_clean == request.ingest.rows_clean
    assert result.models == request.ingest.models
    for src, dst in [
        (result.data_key, request.ingest.data_key),
        (result.schema_key, request.ingest.schema_key),
        (result.quality_key, request.ingest.quality_key),
        (result.quarantine_key, request.ingest.quarantine_key),
    ]:
        s3.copy_object(Bucket=BUCKET, Key=dst, CopySource={"Bucket": BUCKET, "Key": src})
