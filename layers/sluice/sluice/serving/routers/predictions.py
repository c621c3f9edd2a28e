"""``POST /v1/models/{name}/predict``: predictions from the model's champion version.

The body is parsed here rather than by FastAPI because its schema is the model's own (built
from the registered feature schema); the OpenAPI document describes its generic shape.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from sluice.serving.capture import capture_sink
from sluice.serving.errors import ApiError
from sluice.serving.models import ModelStore, ServedModel
from sluice.serving.observability import record_prediction
from sluice.serving.schemas import (
    MAX_BODY_BYTES,
    MAX_RECORDS,
    PREDICT_REQUEST_SCHEMA,
    ErrorResponse,
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


def caller_key(headers: Any, request_id: str) -> str:
    """Who is calling, for the challenger split: ``x-sluice-caller`` if the caller names itself (e.g.
    a user or account id), else its API key (never logged), else the request id (random split)."""
    return headers.get("x-sluice-caller") or headers.get("x-api-key") or request_id


async def served(store: ModelStore, name: str, caller: str) -> tuple[ServedModel, str]:
    """The version answering this request: the champion, or the challenger for its callers."""
    if store.get_cached(name) is None:  # the hot path does no I/O
        await run_in_threadpool(store.get, name)  # registry read, maybe a model load
    return store.route(name, caller)


async def run_predict(
    app: Any, name: str, body: bytes, headers: Any, request_id: str, started: float
) -> dict[str, Any]:
    """Parse, route, validate, predict, publish and capture one request; the response body.

    Shared by the FastAPI route below and ``sluice.serving.fastpath``, which serves the same route
    without FastAPI's routing and dependency machinery (a third of a prediction's latency)."""
    payload = parse_json(body)
    model, alias = await served(app.state.store, name, caller_key(headers, request_id))
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
