"""The FastAPI application of the prediction API.

``create_app()`` builds it; the module-level ``app`` is what ``functions/api/app.py`` wraps with
Mangum and what ``uvicorn sluice.serving.app:app`` serves locally. Building the app reads no
AWS resource: models load on the first request that needs them, unless the Lambda entry point
loaded them during init (``SLUICE_PRELOAD_MODELS``, see ``functions/api/app.py``).

Every error, including FastAPI's own validation errors and Starlette's 404/405, is answered in
one JSON shape (see ``sluice.serving.errors``): 4xx for what the caller did wrong, 5xx only for
our faults.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from sluice import __version__
from sluice.errors import ModelNotFoundError
from sluice.serving.access import API_KEY_HEADER, PUBLIC_PATHS, AccessMiddleware, AccessPolicy, Refusal
from sluice.serving.errors import (
    ApiError,
    ModelUnavailableError,
    as_api_error,
    code_for_status,
    error_body,
    field_path,
)
from sluice.serving.fastpath import PredictFastPath
from sluice.serving.middleware import RequestContextMiddleware, send_json
from sluice.serving.models import ModelStore
from sluice.serving.observability import logger
from sluice.serving.routers import feedback, health, models, predictions
from sluice.settings import get_settings

DESCRIPTION = """\
Predictions from the champion version of each registered model (ONNX, run by onnxruntime).

Send the API key in the `x-api-key` header (all routes except `/health`, `/docs`, `/openapi.json`).
Every prediction names the model and version that produced it; every error has the shape
`{"error": {"code", "message", "details": [{"field", "rule", "message"}]}, "request_id"}`.
"""


def _request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "")


def _error(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    log = logger.warning if status >= 500 else logger.info
    log("request refused", extra={"status": status, "code": code, "path": request.url.path})
    return JSONResponse(error_body(code, message, _request_id(request), details), status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    """ApiError, ModelNotFoundError (404) and ModelUnavailableError (503, Retry-After)."""
    error = as_api_error(exc, request.app.state.store.refresh_seconds)
    assert error is not None
    return _error(request, error.status, error.code, error.message, error.details, error.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else code_for_status(exc.status_code)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    return _error(request, exc.status_code, code_for_status(exc.status_code), message, headers=exc.headers)


def _without_source(loc: Any) -> Any:
    """``("body", "actual")`` -> ``("actual",)``: fields are named as the caller wrote them."""
    loc = tuple(loc)
    return loc[1:] if len(loc) > 1 and loc[0] in ("body", "query", "path") else loc


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {
            "field": field_path(_without_source(err.get("loc", ()))),
            "rule": err.get("type", "invalid"),
            "message": err.get("msg", ""),
        }
        for err in exc.errors()
    ]
    if any(d["rule"] == "json_invalid" for d in details):
        return _error(request, 400, "invalid_json", "request body is not valid JSON", details)
    fields = ", ".join(dict.fromkeys(d["field"] for d in details))
    return _error(request, 422, "validation_error", f"invalid request: {fields}", details)


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    """A request the access policy refused (the key itself is never logged)."""
    request_id = scope.get("state", {}).get("request_id", "")
    logger.info(
        "request refused", extra={"status": refusal.status, "code": refusal.code, "path": scope["path"]}
    )
    headers = [] if refusal.retry_after is None else [(b"retry-after", str(refusal.retry_after).encode())]
    await send_json(send, refusal.status, error_body(refusal.code, refusal.message, request_id), headers)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the API-key scheme on every route but the public ones (keys are
    checked by API Gateway, or by ``AccessMiddleware`` locally, not by a route dependency)."""
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            servers=app.servers,
        )
        schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["ApiKey"] = {
            "type": "apiKey",
            "in": "header",
            "name": API_KEY_HEADER,
            "description": "API key. On AWS, API Gateway checks it; locally, one of SLUICE_LOCAL_API_KEYS.",
        }
        for path, operations in doc.get("paths", {}).items():
            if path not in PUBLIC_PATHS:
                for operation in operations.values():
                    operation["security"] = [{"ApiKey": []}]
        app.openapi_schema = doc
    return app.openapi_schema


def create_app(
    store: ModelStore | None = None, root_path: str | None = None, access: AccessPolicy | None = None
) -> FastAPI:
    """The API. ``store`` defaults to a lazy ``ModelStore`` on the settings' registry;
    ``root_path`` to ``SLUICE_ROOT_PATH`` (the API Gateway stage, e.g. ``/dev``); ``access`` to
    the keys and limits of the settings (``SLUICE_LOCAL_*``; none on AWS)."""
    root = (os.getenv("SLUICE_ROOT_PATH", "") if root_path is None else root_path).strip().rstrip("/")
    if root and not root.startswith("/"):
        root = "/" + root
    app = FastAPI(
        title="Sluice prediction API",
        version=__version__,
        description=DESCRIPTION,
        redoc_url=None,
        # Traces go to X-Ray through Powertools' Tracer; FastAPI's own OpenTelemetry hooks would only
        # look for a provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        responses={500: {"description": "Our fault; the body has the error shape and a request id"}},
    )
    app.state.store = store if store is not None else ModelStore()
    policy = access if access is not None else (lambda: AccessPolicy.from_settings(get_settings()))
    app.add_middleware(PredictFastPath, api=app)  # innermost: after request id and access checks
    app.add_middleware(AccessMiddleware, policy=policy, refuse=_refuse)
    app.add_middleware(RequestContextMiddleware, root_path=root)  # outermost: ids every response
    for error in (ApiError, ModelNotFoundError, ModelUnavailableError):
        app.add_exception_handler(error, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(predictions.router)
    app.include_router(predictions.shortcuts)
    app.include_router(feedback.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


app = create_app()
