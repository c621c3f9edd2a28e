"""The FastAPI app through httpx's ASGI transport: auth, error shape, docs behind a stage, metrics."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from mangum import Mangum

from sluice.serving.access import AccessPolicy
from sluice.serving.app import create_app
from sluice.serving.middleware import request_id_of
from sluice.serving.models import ModelStore
from sluice.serving.schemas import MAX_BODY_BYTES
from tests.events import load_event
from tests.lambda_context import lambda_context
from tests.unit.serving.conftest import FakeClock, FakeRegistry, request

NAME = "transaction-type"
RECORD = {"description": "salary", "payment_method": "Bank", "amount": 5, "date": "2024-01-31"}
KEYS = "key-one, key-two"


@pytest.fixture
def app(registry: FakeRegistry, clock: FakeClock) -> FastAPI:
    store = ModelStore(registry, refresh_seconds=60, clock=clock)
    return create_app(store=store, root_path="", access=AccessPolicy())


@pytest.fixture
def locked(registry: FakeRegistry, clock: FakeClock) -> FastAPI:
    store = ModelStore(registry, refresh_seconds=60, clock=clock)
    return create_app(store=store, root_path="", access=AccessPolicy(KEYS.split(", ")))


def emf_docs(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["request_id"] == resp.headers["x-request-id"]
    uuid.UUID(body["request_id"])
    return body


# -- health -----------------------------------------------------------------------------------


def test_health_reads_nothing_and_publishes_nothing(
    app: FastAPI, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    resp = request(app, "GET", "/health")

    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"
    assert registry.calls == []
    assert emf_docs(capsys.readouterr().out) == []


# -- predictions ------------------------------------------------------------------------------


def test_predict_one_record(app: FastAPI, capsys: pytest.CaptureFixture[str]) -> None:
    resp = request(app, "POST", f"/v1/models/{NAME}/predict", json=RECORD)

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["model"], body["version"]) == (NAME, 1)
    assert body["request_id"] == resp.headers["x-request-id"]
    [prediction] = body["predictions"]
    assert prediction["label"] == "income"
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)

    [doc] = emf_docs(capsys.readouterr().out)
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert {m["Name"] for m in directive["Metrics"]} == {"Predictions", "Latency"}
    assert {"model", "version"} <= set(directive["Dimensions"][0])
    assert (doc["model"], doc["version"], doc["Predictions"]) == (NAME, "1", [1.0])
    assert doc["Latency"][0] > 0


def test_predict_batch_keeps_order(app: FastAPI, capsys: pytest.CaptureFixture[str]) -> None:
    records = [RECORD, {**RECORD, "amount": -3}, {**RECORD, "amount": 2.5}]

    resp = request(app, "POST", f"/v1/models/{NAME}/predict", json={"records": records})

    assert [p["label"] for p in resp.json()["predictions"]] == ["income", "expense", "income"]
    assert emf_docs(capsys.readouterr().out)[0]["Predictions"] == [3.0]


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({k: v for k, v in RECORD.items() if k != "amount"}, "amount", "missing"),
        ({**RECORD, "amount": True}, "amount", "float_type"),
        ({"records": [RECORD, {**RECORD, "description": 3}]}, "records[1].description", "string_type"),
        ({"records": [RECORD, {**RECORD, "date": "31/01/2024"}]}, "records[1].date", "iso_datetime"),
        ([RECORD], "body", "object_type"),
    ],
)
def test_invalid_records_are_422_naming_the_field(
    app: FastAPI, body: Any, field: str, rule: str, capsys: pytest.CaptureFixture[str]
) -> None:
    resp = request(app, "POST", f"/v1/models/{NAME}/predict", json=body)

    err = assert_error(resp, 422, "validation_error")["error"]
    assert {"field": field, "rule": rule} == {k: err["details"][0][k] for k in ("field", "rule")}
    assert field in err["message"]
    [doc] = emf_docs(capsys.readouterr().out)  # nothing predicted; the refusal counted
    assert (doc["model"], doc["version"], doc["InvalidRequests"]) == (NAME, "1", [1.0])
    assert "Predictions" not in doc


def test_nan_in_json_is_422(app: FastAPI) -> None:
    content = json.dumps(RECORD).replace('"amount": 5', '"amount": NaN')

    resp = request(app, "POST", f"/v1/models/{NAME}/predict", content=content)

    assert assert_error(resp, 422, "validation_error")["error"]["details"][0]["field"] == "amount"


@pytest.mark.parametrize(
    ("content", "same_record"),
    [
        (json.dumps(RECORD).encode("utf-16"), True),  # RFC 8259 readers take UTF-16 and UTF-32 too
        (b"\xef\xbb\xbf" + json.dumps(RECORD).encode(), True),  # UTF-8 with a byte order mark
        (json.dumps({**RECORD, "amount": 5 * 10**30}).encode(), False),  # an integer beyond 64 bits
    ],
    ids=["utf-16", "utf-8-bom", "big-integer"],
)
def test_json_only_the_standard_library_reads_is_answered(
    app: FastAPI, content: bytes, same_record: bool
) -> None:
    """Bodies are parsed by orjson, and by the standard library where orjson refuses them."""
    plain = request(app, "POST", f"/v1/models/{NAME}/predict", content=json.dumps(RECORD).encode())
    other = request(app, "POST", f"/v1/models/{NAME}/predict", content=content)

    assert plain.status_code == 200, plain.text
    assert other.status_code == 200, other.text
    assert (other.json()["predictions"] == plain.json()["predictions"]) is same_record


@pytest.mark.parametrize("content", [b'{"amount": 1,', b"", b"   ", b"\xff\xfe\x00", b"[" * 100_000])
def test_malformed_json_is_400(app: FastAPI, content: bytes) -> None:
    resp = request(app, "POST", f"/v1/models/{NAME}/predict", content=content)

    body = assert_error(resp, 400, "invalid_json")
    assert body["error"]["details"][0]["field"] == "body"


def test_oversized_body_is_413(app: FastAPI) -> None:
    declared = request(app, "POST", f"/v1/models/{NAME}/predict", content=b" " * (MAX_BODY_BYTES + 1))

    async def chunks():  # no content-length: counted while read
        for _ in range(7):
            yield b" " * (1024 * 1024)

    streamed = request(app, "POST", f"/v1/models/{NAME}/predict", content=chunks())

    assert_error(declared, 413, "payload_too_large")
    assert_error(streamed, 413, "payload_too_large")


def test_unknown_model_is_404(app: FastAPI) -> None:
    resp = request(app, "POST", "/v1/models/no-such-model/predict", json=RECORD)

    assert "no-such-model" in assert_error(resp, 404, "not_found")["error"]["message"]


def test_unloadable_model_is_503(
    app: FastAPI, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.artifacts[(NAME, 1)] = b"tampered"

    resp = request(app, "POST", f"/v1/models/{NAME}/predict", json=RECORD)

    assert_error(resp, 503, "model_unavailable")
    assert resp.headers["retry-after"] == "60"
    [doc] = emf_docs(capsys.readouterr().out)
    assert doc["ModelLoadErrors"] == [1.0]


# -- models -----------------------------------------------------------------------------------


def test_list_models(app: FastAPI) -> None:
    resp = request(app, "GET", "/v1/models")

    assert resp.status_code == 200
    assert resp.json() == {
        "models": [
            {
                "name": NAME,
                "champion_version": 1,
                "latest_version": 1,
                "metrics": {"accuracy": 0.9, "macro_f1": 0.8},
            }
        ]
    }


# -- framework errors in our shape ------------------------------------------------------------


def test_unknown_route_is_404(app: FastAPI) -> None:
    assert_error(request(app, "GET", "/v2/anything"), 404, "not_found")


def test_wrong_method_is_405(app: FastAPI) -> None:
    resp = request(app, "GET", f"/v1/models/{NAME}/predict")

    assert_error(resp, 405, "method_not_allowed")
    assert resp.headers["allow"] == "POST"


def test_fastapi_validation_errors_use_the_shape(app: FastAPI) -> None:
    @app.get("/v1/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    body = assert_error(request(app, "GET", "/v1/items/abc"), 422, "validation_error")

    assert body["error"]["details"][0]["field"] == "item_id"  # named as the caller wrote it


def test_our_faults_are_json_500(registry: FakeRegistry, clock: FakeClock) -> None:
    class Broken(FakeRegistry):
        def get_alias(self, model: str, alias: str = "champion") -> int | None:
            raise RuntimeError("bug")

    app = create_app(store=ModelStore(Broken(), refresh_seconds=60, clock=clock), root_path="")

    resp = request(app, "POST", f"/v1/models/{NAME}/predict", json=RECORD)

    body = assert_error(resp, 500, "internal_error")
    assert "bug" not in body["error"]["message"]


# -- auth -------------------------------------------------------------------------------------


def test_missing_key_is_401(locked: FastAPI) -> None:
    assert_error(request(locked, "GET", "/v1/models"), 401, "unauthorized")
    assert_error(request(locked, "POST", f"/v1/models/{NAME}/predict", json=RECORD), 401, "unauthorized")


def test_wrong_key_is_403_and_never_logged(locked: FastAPI, capsys: pytest.CaptureFixture[str]) -> None:
    resp = request(locked, "GET", "/v1/models", headers={"x-api-key": "guessed-key-123"})

    body = assert_error(resp, 403, "forbidden")
    assert "guessed-key-123" not in json.dumps(body)
    captured = capsys.readouterr()
    assert "guessed-key-123" not in captured.out + captured.err


@pytest.mark.parametrize("key", ["key-one", "key-two"])
def test_listed_keys_are_accepted(locked: FastAPI, key: str) -> None:
    resp = request(locked, "POST", f"/v1/models/{NAME}/predict", json=RECORD, headers={"x-api-key": key})

    assert resp.status_code == 200


@pytest.mark.parametrize("path", ["/health", "/docs", "/openapi.json"])
def test_open_routes_need_no_key(locked: FastAPI, path: str) -> None:
    assert request(locked, "GET", path).status_code == 200


def test_no_keys_configured_means_gateway_enforces_them(app: FastAPI) -> None:
    assert request(app, "GET", "/v1/models").status_code == 200


def test_keys_and_limits_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.settings import Settings

    monkeypatch.setenv("SLUICE_LOCAL_API_KEYS", "a-key, b-key")
    monkeypatch.setenv("SLUICE_LOCAL_RATE_LIMIT", "5")
    monkeypatch.setenv("SLUICE_LOCAL_BURST_LIMIT", "2")
    monkeypatch.setenv("SLUICE_LOCAL_QUOTA_PER_DAY", "100")
    policy = AccessPolicy.from_settings(Settings())

    assert policy.enforced and (policy.rate, policy.burst, policy.quota_per_day) == (5.0, 2, 100)
    assert policy.check(b"b-key") is None and policy.check(b"c-key").status == 403


# -- docs behind the API Gateway stage ----------------------------------------------------------


def test_docs_work_behind_the_stage(registry: FakeRegistry, clock: FakeClock) -> None:
    app = create_app(store=ModelStore(registry, refresh_seconds=60, clock=clock), root_path="/dev")

    schema = request(app, "GET", "/openapi.json").json()
    docs = request(app, "GET", "/docs").text

    assert schema["servers"] == [{"url": "/dev"}]
    assert "'/dev/openapi.json'" in docs or '"/dev/openapi.json"' in docs
    assert request(app, "GET", "/health").status_code == 200  # path without the stage (API Gateway)
    assert request(app, "GET", "/dev/health").status_code == 200  # path with it (custom domains)


def test_root_path_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, registry: FakeRegistry
) -> None:
    monkeypatch.setenv("SLUICE_ROOT_PATH", "/prod/")

    app = create_app(store=ModelStore(registry))

    assert request(app, "GET", "/openapi.json").json()["servers"] == [{"url": "/prod"}]


def test_openapi_documents_predict_body_and_errors(app: FastAPI) -> None:
    schema = request(app, "GET", "/openapi.json").json()
    op = schema["paths"]["/v1/models/{name}/predict"]["post"]

    assert "record" in op["requestBody"]["content"]["application/json"]["examples"]
    assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    assert schema["components"]["securitySchemes"]["ApiKey"]["name"] == "x-api-key"
    assert op["security"] == [{"ApiKey": []}] and "429" in op["responses"]
    assert "security" not in schema["paths"]["/health"]["get"]


def test_docs_behind_the_stage_through_mangum(registry: FakeRegistry) -> None:
    """API Gateway sends the path without the stage; the docs must still fetch /dev/openapi.json."""
    handler = Mangum(create_app(store=ModelStore(registry), root_path="/dev"), lifespan="off")
    event = load_event("api/health.json")

    responses = {}
    for path in ("/docs", "/openapi.json"):
        event = {**event, "path": path, "resource": path}
        responses[path] = handler(event, lambda_context("sluice-dev-ApiFunction"))

    assert responses["/docs"]["statusCode"] == 200
    assert "/dev/openapi.json" in responses["/docs"]["body"]
    assert json.loads(responses["/openapi.json"]["body"])["servers"] == [{"url": "/dev"}]
    assert registry.calls == []


@pytest.mark.parametrize(
    ("request_id", "kept"),
    [("c0ffee00-1234-4abc-9def-000000000001", True), ("bad\r\nid", False), ("", False), (7, False)],
)
def test_request_id_comes_from_api_gateway_when_well_formed(request_id: Any, kept: bool) -> None:
    scope = {"aws.event": {"requestContext": {"requestId": request_id}}}

    assert (request_id_of(scope) == request_id) is kept
    uuid.UUID(request_id_of({}))


def test_model_detail_lists_aliases_and_versions(app: FastAPI, registry: FakeRegistry) -> None:
    resp = request(app, "GET", f"/v1/models/{NAME}")

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["version"] == 1 and body["aliases"] == {"champion": 1, "challenger": None}
    assert [v["version"] for v in body["versions"]] == [1] and body["versions"][0]["status"] == "champion"
    assert [f["name"] for f in body["feature_schema"]["features"]] == [
        "description",
        "payment_method",
        "amount",
        "date",
    ]


def test_concurrent_requests_each_log_their_own_correlation_id() -> None:
    """Under uvicorn requests interleave on one event loop: the first request's log line, written
    after the second request came and went, still names the first request."""
    import asyncio
    import io
    import logging

    from sluice.serving.middleware import RequestContextMiddleware
    from sluice.serving.observability import logger

    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(logger.registered_formatter)  # formats at emit time, in the request's context

    async def run() -> None:
        second_done = asyncio.Event()

        async def endpoint(scope: Any, receive: Any, send: Any) -> None:
            if scope["path"] == "/first":
                await second_done.wait()
            logger.info("handled", extra={"path": scope["path"]})
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            if scope["path"] == "/second":
                second_done.set()

        app = RequestContextMiddleware(endpoint)

        async def call(path: str) -> None:
            scope = {
                "type": "http",
                "path": path,
                "aws.event": {"requestContext": {"requestId": "id-" + path[1:]}},
            }

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b""}

            async def send(message: Any) -> None:
                return None

            await app(scope, receive, send)

        await asyncio.gather(call("/first"), call("/second"))

    logger._logger.addHandler(handler)
    try:
        asyncio.run(run())
    finally:
        logger._logger.removeHandler(handler)
    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [(r["path"], r["correlation_id"]) for r in records] == [
        ("/second", "id-second"),
        ("/first", "id-first"),
    ]
