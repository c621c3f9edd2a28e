"""The api Lambda handler (FastAPI + Mangum) under moto, driven by the sample events in events/api/.

The model is real: the sample CSV is ingested and trained by the training library, and each test
registers the resulting candidate through ``register_candidate`` into a fresh moto registry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from sluice.contracts import IngestRequest, TrainRequest, TrainResult
from sluice.ingest import ingest
from sluice.registration import register_candidate
from sluice.registry import Registry, model_prefix
from sluice.settings import get_settings
from sluice.storage import get_object
from sluice.verification import verify_candidate
from tests.events import DATA, event_files, load_event
from tests.handlers.support import BUCKET, TABLE, load_app, moto_storage, set_handler_env
from tests.lambda_context import lambda_context
from training import run_training

FUNCTION = "api"
MODEL = "transaction-category"
API_KEY = "local-test-key"
SOURCE = DATA / "transactions" / "daily_household_transactions.csv"
EXPECTED_STATUS = {
    "health": 200,
    "list_models": 200,
    "predict_category": 200,
    "predict_batch": 200,
    "predict_missing_field": 422,
    "predict_wrong_type": 422,
    "predict_unknown_model": 404,
    "predict_bad_json": 400,
}
ERRORS = {  # event -> (code, field named in details)
    "predict_missing_field": ("validation_error", "amount"),
    "predict_wrong_type": ("validation_error", "records[1].amount"),
    "predict_unknown_model": ("not_found", None),
    "predict_bad_json": ("invalid_json", "body"),
}
# functions/api/app.py silences this Powertools warning (health checks publish no application
# metric on purpose); pytest resets warning filters per test, so the tests say it again.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@dataclass(frozen=True)
class Candidate:
    result: TrainResult
    onnx: bytes


@pytest.fixture(scope="module")
def candidates() -> list[Candidate]:
    """Two trained candidates (every 5th row of the household file, two offsets): ingested and
    trained once by the real code under a throwaway moto; tests re-stage their ONNX bytes."""
    lines = SOURCE.read_bytes().splitlines(keepends=True)
    out = []
    with pytest.MonkeyPatch.context() as mp, moto_storage(mp, FUNCTION) as storage:
        for offset in (1, 3):
            key = f"raw/transactions/household-sample-{offset}.csv"
            body = b"".join([lines[0], *lines[offset::5]])
            storage.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            result = verify_candidate(
                run_training(TrainRequest(model=MODEL, ingest=ingest(IngestRequest(bucket=BUCKET, key=key))))
            )
            out.append(Candidate(result, get_object(BUCKET, result.artifact_key).body))
    assert out[0].result.onnx_sha256 != out[1].result.onnx_sha256
    return out


@pytest.fixture(scope="module")
def api() -> ModuleType:
    """functions/api/app.py, loaded once (its app and model store live for the process, as on Lambda)."""
    with pytest.MonkeyPatch.context() as mp:
        set_handler_env(mp, FUNCTION)
        module = load_app(FUNCTION)
    return module


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, api: ModuleType) -> Iterator[None]:
    """Overrides conftest.py's: the api's own settings, and a fresh execution environment (model
    store) for every test."""
    with moto_storage(
        monkeypatch, FUNCTION, SLUICE_ALIAS_REFRESH_SECONDS="60", SLUICE_LOCAL_API_KEYS=API_KEY
    ):
        api.app.state.store.clear()
        yield
    api.app.state.store.clear()


def register(candidate: Candidate) -> int:
    """Stage the candidate's ONNX where training put it and register it as the real pipeline does,
    with the champion gate off: these tests promote every candidate they register."""
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=BUCKET, Key=candidate.result.artifact_key, Body=candidate.onnx
    )
    spec = candidate.result.spec
    result = candidate.result.model_copy(
        update={"spec": {**spec, "gates": {**spec["gates"], "champion_tolerance": None}}}
    )
    registered = register_candidate(result, Registry(TABLE, BUCKET))
    assert registered.status == "champion", registered.reasons
    return registered.version


def invoke(api: ModuleType, event: dict[str, Any] | str) -> tuple[int, dict[str, Any], dict[str, str]]:
    if isinstance(event, str):
        event = load_event(f"api/{event}.json")
    response = api.handler(event, lambda_context("sluice-dev-ApiFunction"))
    assert response["headers"]["content-type"] == "application/json"
    return response["statusCode"], json.loads(response["body"]), response["headers"]


def emf(out: str, metric: str) -> list[dict[str, Any]]:
    docs = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    return [d for d in docs if metric in d]


def predict_event(body: Any = None, key: str | None = API_KEY) -> dict[str, Any]:
    event = load_event("api/predict_category.json")
    if body is not None:
        event["body"] = json.dumps(body)
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("x-api-key")
        if key is not None:
            headers["x-api-key"] = key if headers is event["headers"] else [key]
    return event


def shorten_refresh(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setenv("SLUICE_ALIAS_REFRESH_SECONDS", str(seconds))
    get_settings.cache_clear()


# -- every sample event -----------------------------------------------------------------------


def test_every_sample_event_is_covered() -> None:
    assert {p.stem for p in event_files("api")} == set(EXPECTED_STATUS)


@pytest.mark.parametrize("path", event_files("api"), ids=lambda p: p.stem)
def test_sample_event(aws: None, api: ModuleType, candidates: list[Candidate], path: Path) -> None:
    register(candidates[0])
    event = load_event(path)

    status, body, headers = invoke(api, event)

    assert status == EXPECTED_STATUS[path.stem], body
    assert headers["x-request-id"] == event["requestContext"]["requestId"]
    if path.stem in ERRORS:
        code, field = ERRORS[path.stem]
        assert set(body) == {"error", "request_id"}
        assert body["request_id"] == event["requestContext"]["requestId"]
        assert body["error"]["code"] == code
        assert body["error"]["message"]
        if field is not None:
            assert field in [d["field"] for d in body["error"]["details"]]
            assert field in body["error"]["message"]


def test_prediction(
    aws: None, api: ModuleType, candidates: list[Candidate], capsys: pytest.CaptureFixture
) -> None:
    version = register(candidates[0])
    classes = candidates[0].result.feature_schema.classes
    event = load_event("api/predict_batch.json")

    status, body, _ = invoke(api, event)

    assert status == 200
    assert (body["model"], body["version"]) == (MODEL, version)
    assert body["request_id"] == event["requestContext"]["requestId"]
    assert len(body["predictions"]) == len(json.loads(event["body"])["records"])
    for prediction in body["predictions"]:
        assert prediction["label"] in classes
        assert list(prediction["probabilities"]) == classes
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert prediction["label"] == max(prediction["probabilities"], key=prediction["probabilities"].get)
    [doc] = emf(capsys.readouterr().out, "Predictions")
    assert (doc["model"], doc["version"], doc["Predictions"]) == (MODEL, str(version), [3.0])
    assert doc["Latency"][0] > 0
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "Sluice-test"
    assert {"model", "version"} <= set(directive["Dimensions"][0])


def test_list_models(aws: None, api: ModuleType, candidates: list[Candidate]) -> None:
    register(candidates[0])

    status, body, _ = invoke(api, "list_models")

    assert status == 200
    [model] = body["models"]
    assert (model["name"], model["champion_version"], model["latest_version"]) == (MODEL, 1, 1)
    assert model["metrics"] == pytest.approx(candidates[0].result.metrics["holdout"])


# -- health -----------------------------------------------------------------------------------


def test_health_calls_no_aws_and_publishes_no_metrics(
    monkeypatch: pytest.MonkeyPatch, api: ModuleType, capsys: pytest.CaptureFixture
) -> None:
    set_handler_env(monkeypatch, FUNCTION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: any AWS call fails
    api.app.state.store.clear()

    status, body, _ = invoke(api, "health")

    assert (status, body["status"]) == (200, "ok")
    assert api.app.state.store.loaded() == {}
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    # Only the once-per-environment ColdStart metric may appear (if this is the first invocation).
    assert all(set(d) & {"Predictions", "Latency", "ModelLoadErrors"} == set() for d in docs)
    assert all("ColdStart" in d for d in docs)


# -- auth (SLUICE_LOCAL_API_KEYS is set here; on AWS API Gateway checks keys) -------------------


def test_missing_api_key_is_401(aws: None, api: ModuleType) -> None:
    status, body, _ = invoke(api, predict_event(key=None))

    assert (status, body["error"]["code"]) == (401, "unauthorized")


def test_wrong_api_key_is_403(aws: None, api: ModuleType, capsys: pytest.CaptureFixture) -> None:
    status, body, _ = invoke(api, predict_event(key="not-the-key-42"))

    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert "not-the-key-42" not in capsys.readouterr().out


# -- integrity and hot swap -------------------------------------------------------------------


def tamper(version: int) -> None:
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=BUCKET, Key=f"{model_prefix(MODEL, version)}/model.onnx", Body=b"not the registered model"
    )


def test_tampered_artifact_is_not_served(
    aws: None, api: ModuleType, candidates: list[Candidate], capsys: pytest.CaptureFixture
) -> None:
    register(candidates[0])
    tamper(1)

    status, body, _ = invoke(api, "predict_category")

    assert (status, body["error"]["code"]) == (503, "model_unavailable")
    [doc] = emf(capsys.readouterr().out, "ModelLoadErrors")
    assert (doc["model"], doc["version"]) == (MODEL, "1")


def test_tampered_new_champion_keeps_the_previous_one(
    aws: None,
    api: ModuleType,
    candidates: list[Candidate],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    shorten_refresh(monkeypatch, 0.2)
    register(candidates[0])
    assert invoke(api, "predict_category")[1]["version"] == 1
    register(candidates[1])
    tamper(2)
    time.sleep(0.25)

    status, body, _ = invoke(api, "predict_category")

    assert (status, body["version"]) == (200, 1)
    [doc] = emf(capsys.readouterr().out, "ModelLoadErrors")
    assert (doc["model"], doc["version"]) == (MODEL, "2")


def test_new_champion_is_picked_up_after_the_refresh_interval(
    aws: None, api: ModuleType, candidates: list[Candidate], monkeypatch: pytest.MonkeyPatch
) -> None:
    shorten_refresh(monkeypatch, 0.5)
    register(candidates[0])
    assert invoke(api, "predict_category")[1]["version"] == 1
    register(candidates[1])

    assert invoke(api, "predict_category")[1]["version"] == 1  # within the interval
    time.sleep(0.55)
    status, body, _ = invoke(api, "predict_category")

    assert (status, body["version"]) == (200, 2)
    assert body["predictions"][0]["label"] in candidates[1].result.feature_schema.classes
    assert invoke(api, "list_models")[1]["models"][0]["champion_version"] == 2
