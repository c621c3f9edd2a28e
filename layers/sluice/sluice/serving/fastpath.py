"""``POST /v1/models/{name}/predict`` without FastAPI's routing and dependency machinery.

FastAPI's per-request work (route matching over every route, dependency solving, response model
handling) costs about 0.1 ms, as much as parsing, validating, predicting and publishing together, on
the one route that answers most traffic. This pure-ASGI layer sits inside the request-context and
access middlewares (so request ids, API keys, throttling and the 500 fallback are unchanged) and
answers that route itself through ``run_predict``, the same function the FastAPI route calls; errors
get the same status, shape and headers. Every other path goes on to FastAPI, which still documents
the route in ``/openapi.json``.
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from sluice.serving.errors import ApiError, as_api_error, error_body
from sluice.serving.middleware import send_json
from sluice.serving.observability import logger
from sluice.serving.routers.predictions import run_predict, too_large
from sluice.serving.schemas import MAX_BODY_BYTES

PREDICT_PATH = re.compile(r"/v1/models/([^/]+)/predict")


# The only request headers this route reads: the body size, and the caller key of the challenger split.
_READ_HEADERS = frozenset({b"content-length", b"x-sluice-caller", b"x-api-key"})


def read_headers(scope: Scope) -> dict[str, str]:
    """The headers this route reads, in one pass (Starlette's ``Headers`` decodes every header and
    scans them on each lookup); names are lower-case in ASGI, values decode as Latin-1 as there."""
    return {
        name.decode(): value.decode("latin-1") for name, value in scope["headers"] if name in _READ_HEADERS
    }


async def read_body(headers: dict[str, str], receive: Receive) -> bytes:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large()
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large()
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class PredictFastPath:
    def __init__(self, app: ASGIApp, api: Any):
        self.app = app
        self.api = api  # the FastAPI app: its state holds the model store and the capture sink

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root + "/"):
            path = path[len(root) :]
        match = PREDICT_PATH.fullmatch(path)
        if match is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = scope["state"]["request_id"]
        try:
            headers = read_headers(scope)
            body = await read_body(headers, receive)
            result = await run_predict(self.api, match.group(1), body, headers, request_id, started)
        except Exception as exc:
            error = as_api_error(exc, self.api.state.store.refresh_seconds)
            if error is None:
                raise  # the request-context middleware answers a 500 in the error shape
            await self._refuse(send, error, request_id, path)
            return
        await send_json(send, 200, result, [])

    async def _refuse(self, send: Send, error: ApiError, request_id: str, path: str) -> None:
        log = logger.warning if error.status >= 500 else logger.info
        log("request refused", extra={"status": error.status, "code": error.code, "path": path})
        headers = [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
        body = error_body(error.code, error.message, request_id, error.details)
        await send_json(send, error.status, body, headers)
