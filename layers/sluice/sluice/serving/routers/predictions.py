"""``POST /v1/models/{name}/predict``: predictions from the model's champion version.

The body is parsed here rather than by FastAPI because its schema is the model's own (built
from the registered feature schema); the OpenAPI document describes its generic shape.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from sluice.serving.capture import capture_sink
from sluice.serving.errors import ApiError
from sluice.serving.models import ModelStore, ServedModel
from sluice.serving.observability import record_prediction, record_request_error
from sluice.serving.schemas import (
    MAX_BODY_BYTES,
    MAX_RECORDS,
    PREDICT_REQUEST_SCHEMA,
    ErrorResponse,
    ExplainResponse,
    ForecastResponse,
    PredictResponse,
)

router = APIRouter(
    prefix="/v1/models",
    tags=["predictions"],
    responses={
        400: {"model": ErrorResponse, "description": "Body is not JSON"},
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        404: {"model": ErrorResponse, "description": "No such model, or it has no champion"},
        413: {"model": ErrorResponse, "description": "Body larger than 6 MiB"},
        422: {"model": ErrorResponse, "description": "A record does not match the model's features"},
        429: {"model": ErrorResponse, "description": "Throttled or over the daily quota (see Retry-After)"},
        503: {"model": ErrorResponse, "description": "The champion cannot be loaded"},
    },
)


async def read_body(request: Request) -> bytes:
    """The body, refused with 413 beyond MAX_BODY_BYTES (declared or actually sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def too_large() -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"request body exceeds {MAX_BODY_BYTES} bytes; send at most {MAX_RECORDS} records per request",
    )


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise ApiError(
            400,
            "invalid_json",
            "request body is empty; send a JSON object",
            [{"field": "body", "rule": "json_invalid", "message": "empty body"}],
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass  # the standard library decides: it reads NaN/Infinity (for a 422 naming the field), integers
        # beyond 64 bits and UTF-16/32 bodies, which orjson refuses, and words the error message
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        message = (
            f"{exc.msg} at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else "body is not UTF-8 JSON"
        )
        raise ApiError(
            400,
            "invalid_json",
            f"request body is not valid JSON: {message}",
            [{"field": "body", "rule": "json_invalid", "message": message}],
        ) from None


def wrong_route(message: str) -> ApiError:
    """422: the model exists, but its task does not answer on this route (the message says which does)."""
    return ApiError(422, "wrong_route", message, [{"field": "name", "rule": "task", "message": message}])


def caller_key(headers: Any, request_id: str) -> str:
    """Who is calling, for the challenger split: ``x-sluice-caller`` if the caller names itself (e.g.
    a user or account id), else its API key (never logged), else the request id (random split)."""
    return headers.get("x-sluice-caller") or headers.get("x-api-key") or request_id


async def served(store: ModelStore, name: str, caller: str) -> tuple[ServedModel, str]:
    """The version answering this request: the champion, or the challenger for its callers."""
    if store.get_cached(name) is None:  # the hot path does no I/O
        await run_in_threadpool(store.get, name)  # registry read, maybe a model load
    return store.route(name, caller)


@contextmanager
def counted_errors(model: ServedModel) -> Iterator[None]:
    """Counts a request that fails once its model version is known (InvalidRequests for a 4xx,
    PredictionErrors for anything else), then lets the error through to its handler."""
    try:
        yield
    except Exception as exc:
        record_request_error(model.name, model.version, exc.status if isinstance(exc, ApiError) else 500)
        raise


async def run_predict(
    app: Any, name: str, body: bytes, headers: Any, request_id: str, started: float
) -> dict[str, Any]:
    """Parse, route, validate, predict, publish and capture one request; the response body.

    Shared by the FastAPI route below and ``sluice.serving.fastpath``, which serves the same route
    without FastAPI's routing and dependency machinery (a third of a prediction's latency)."""
    payload = parse_json(body)
    model, alias = await served(app.state.store, name, caller_key(headers, request_id))
    with counted_errors(model):
        if model.task == "forecast":
            raise wrong_route(f"{name} is a forecast model: POST /v1/models/{name}/forecast?days=N")
        records = model.validator.validate(payload)
        predictions = model.predict(records)
    latency_ms = (time.perf_counter() - started) * 1000.0
    record_prediction(model.name, model.version, len(records), latency_ms)
    sink = capture_sink(app)
    if sink is not None and model.capture.rate > 0:
        sink.capture(
            model=model.name,
            version=model.version,
            request_id=request_id,
            records=records,
            predictions=predictions,
            policy=model.capture,
            latency_ms=latency_ms,
        )
    return {
        "model": model.name,
        "version": model.version,
        "alias": alias,
        "request_id": request_id,
        "predictions": predictions,
    }


@router.post(
    "/{name}/predict",
    response_model=PredictResponse,
    summary="Predict with the model's champion version",
    openapi_extra={"requestBody": PREDICT_REQUEST_SCHEMA},
)
async def predict(
    name: Annotated[str, Path(description="model name, e.g. transaction-category")],
    request: Request,
) -> JSONResponse:
    started = time.perf_counter()
    body = await read_body(request)
    request_id = request.scope["state"]["request_id"]
    return JSONResponse(await run_predict(request.app, name, body, request.headers, request_id, started))


FORECAST_DAYS = Query(ge=1, le=90, description="days to forecast (default: the model's horizon)")


async def run_forecast(
    app: Any, name: str, days: int | None, headers: Any, request_id: str
) -> dict[str, Any]:
    started = time.perf_counter()
    model, alias = await served(app.state.store, name, caller_key(headers, request_id))
    with counted_errors(model):
        info = model.schema.forecast
        if model.task != "forecast" or info is None:
            raise wrong_route(f"{name} is a {model.task} model: POST /v1/models/{name}/predict")
        days = days or info.horizon
        if days > info.max_horizon:
            raise ApiError(
                422,
                "validation_error",
                f"invalid request: days (at most {info.max_horizon})",
                [{"field": "days", "rule": "less_than_equal", "message": f"at most {info.max_horizon} days"}],
            )
        series = model.forecast(days)
    record_prediction(model.name, model.version, days, (time.perf_counter() - started) * 1000.0)
    return {
        "model": model.name,
        "version": model.version,
        "alias": alias,
        "request_id": request_id,
        "days": days,
        "forecast": series,
    }


@router.post(
    "/{name}/forecast",
    response_model=ForecastResponse,
    summary="Forecast the next days of a forecast model's series (recursive, with intervals)",
)
async def forecast(
    name: Annotated[str, Path(description="model name, e.g. cashflow-forecast")],
    request: Request,
    days: Annotated[int | None, FORECAST_DAYS] = None,
) -> JSONResponse:
    request_id = request.scope["state"]["request_id"]
    return JSONResponse(await run_forecast(request.app, name, days, request.headers, request_id))


def baseline_record(model: ServedModel) -> dict[str, Any]:
    """The record /explain compares with: the training data's typical record when the model has
    one (medians, most frequent values), else neutral values (empty text, 0, 2000-01-01)."""
    reference = model.schema.reference or {}
    neutral = {"text": "", "categorical": "", "numeric": 0.0, "date": "2000-01-01T00:00:00"}
    return {f.name: reference.get(f.name, neutral[f.kind]) for f in model.schema.features}


@router.post(
    "/{name}/explain",
    response_model=ExplainResponse,
    summary="Per-feature contributions to one prediction, computed from the served ONNX model",
    openapi_extra={"requestBody": PREDICT_REQUEST_SCHEMA},
)
async def explain(
    name: Annotated[str, Path(description="model name, e.g. transaction-category")],
    request: Request,
) -> JSONResponse:
    request_id = request.scope["state"]["request_id"]
    payload = parse_json(await read_body(request))
    model, alias = await served(request.app.state.store, name, caller_key(request.headers, request_id))
    with counted_errors(model):
        if model.task == "forecast":
            raise wrong_route(f"{name} is a forecast model: nothing to explain per record")
        records = model.validator.validate(payload)
        if len(records) != 1:
            message = "explain takes one record"
            detail = {"field": "records", "rule": "one", "message": message}
            raise ApiError(422, "validation_error", message, [detail])
        (record,) = records
        baseline = model.validator.validate(baseline_record(model))[0]
        result = model.explain(record, baseline)
    return JSONResponse(
        {"model": model.name, "version": model.version, "alias": alias, "request_id": request_id, **result}
    )


# Convenience routes of the built-in use cases: the same answers as /v1/models/<model>/...
SHORTCUTS = {
    "category": "transaction-category",
    "amount": "transaction-amount",
    "anomaly": "transaction-anomaly",
}
shortcuts = APIRouter(tags=["use cases"], responses=router.responses)


def _shortcut(kind: str, model: str) -> None:
    async def predict_use_case(request: Request) -> JSONResponse:
        started = time.perf_counter()
        body = await read_body(request)
        request_id = request.scope["state"]["request_id"]
        return JSONResponse(await run_predict(request.app, model, body, request.headers, request_id, started))

    shortcuts.add_api_route(
        f"/v1/predict/{kind}",
        predict_use_case,
        methods=["POST"],
        response_model=PredictResponse,
        summary=f"Predict with {model} (same as POST /v1/models/{model}/predict)",
        openapi_extra={"requestBody": PREDICT_REQUEST_SCHEMA},
        name=f"predict_{kind}",
    )


for _kind, _model in SHORTCUTS.items():
    _shortcut(_kind, _model)


@shortcuts.post(
    "/v1/forecast/cashflow",
    response_model=ForecastResponse,
    summary="Daily net cash flow forecast (same as POST /v1/models/cashflow-forecast/forecast)",
)
async def forecast_cashflow(
    request: Request, days: Annotated[int | None, FORECAST_DAYS] = None
) -> JSONResponse:
    request_id = request.scope["state"]["request_id"]
    model = "cashflow-forecast"
    return JSONResponse(await run_forecast(request.app, model, days, request.headers, request_id))
