"""The API's one error shape, and the errors the serving code raises on purpose.

Every error response, ours or FastAPI's/Starlette's, has this body::

    {"error": {"code": "validation_error", "message": "...",
               "details": [{"field": "records[0].amount", "rule": "finite_number", "message": "..."}]},
     "request_id": "..."}

``code`` is stable and machine-readable; ``message`` is for people; ``details`` lists what was
wrong with which field of the request (empty when there is nothing field-specific).
"""

from __future__ import annotations

from typing import Any

from sluice.errors import SluiceError

# HTTP status -> stable error code, for errors raised by FastAPI/Starlette themselves.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


class ModelUnavailableError(SluiceError):
    """The model exists but no version of it can be served (its artifact failed to load)."""


class ApiError(Exception):
    """An error answered with ``status`` and the shared JSON shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers


def error_body(code: str, message: str, request_id: str, details: list[dict[str, Any]] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or []}, "request_id": request_id}


def as_api_error(exc: Exception, retry_after_s: float) -> ApiError | None:
    """The answer to an error the serving code raises on purpose; None for anything else (a 500)."""
    from sluice.errors import ModelNotFoundError

    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ModelNotFoundError):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, ModelUnavailableError):  # the store retries the load after its refresh interval
        retry = str(max(1, round(retry_after_s)))
        return ApiError(503, "model_unavailable", str(exc), headers={"retry-after": retry})
    return None


def code_for_status(status: int) -> str:
    if status in STATUS_CODES:
        return STATUS_CODES[status]
    return "client_error" if status < 500 else "internal_error"


def field_path(loc: tuple[Any, ...] | list[Any], prefix: str = "") -> str:
    """``("records", 0, "amount")`` -> ``records[0].amount``; ``prefix`` is prepended as a field."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path or "body"


class IncompatibleModelError(SluiceError):
    """A registered ONNX graph does not match its feature schema (inputs, outputs or classes)."""
