"""``GET /health``: liveness only. Loads no model, calls no AWS service, publishes no metric."""

from __future__ import annotations

from fastapi import APIRouter

from sluice import __version__
from sluice.serving.schemas import Health

router = APIRouter(tags=["health"])
_HEALTH = {"status": "ok", "version": __version__}


@router.get("/health", response_model=Health, summary="Liveness check (no API key needed)")
async def health() -> dict[str, str]:
    return _HEALTH
