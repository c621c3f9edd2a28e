"""FastAPI dependencies: settings, API-key auth, the model store and the request id.

All are ``async def``: FastAPI runs a plain ``def`` dependency in the thread pool, which cost
~0.6 ms per prediction here (more than the model). Tests override ``current_settings`` or
``get_store`` through ``app.dependency_overrides``.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from sluice.serving.errors import ApiError
from sluice.serving.models import ModelStore
from sluice.settings import Settings, get_settings

API_KEY_HEADER = "x-api-key"
_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="API key. On AWS, API Gateway checks it; locally, one of SLUICE_LOCAL_API_KEYS.",
)


async def current_settings() -> Settings:
    """The cached settings (``sluice.settings.get_settings``)."""
    return get_settings()


SettingsDep = Annotated[Settings, Depends(current_settings)]


def local_api_keys(settings: Settings) -> list[str]:
    return [k.strip() for k in settings.local_api_keys.split(",") if k.strip()]


async def require_api_key(
    settings: SettingsDep, api_key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """Checks ``x-api-key`` when the app enforces keys itself (``SLUICE_LOCAL_API_KEYS`` set).

    On AWS the list is empty: API Gateway has already refused requests without a valid key.
    The key is never logged nor echoed.
    """
    keys = local_api_keys(settings)
    if not keys:
        return
    if not api_key:
        raise ApiError(401, "unauthorized", f"missing API key: send it in the {API_KEY_HEADER} header")
    supplied = api_key.encode()
    if not any(hmac.compare_digest(supplied, k.encode()) for k in keys):
        raise ApiError(403, "forbidden", "invalid API key")


async def get_store(request: Request) -> ModelStore:
    return request.app.state.store


async def get_request_id(request: Request) -> str:
    return request.scope["state"]["request_id"]


StoreDep = Annotated[ModelStore, Depends(get_store)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
Authenticated = Depends(require_api_key)
