"""``GET /v1/models[/{name}]``: the registered models, their champion version, metrics and schema."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from sluice.serving.schemas import ErrorResponse, ModelDetail, ModelList

router = APIRouter(
    prefix="/v1/models",
    tags=["models"],
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        429: {"model": ErrorResponse, "description": "Throttled or over the daily quota (see Retry-After)"},
    },
)


@router.get("", response_model=ModelList, summary="List models with their champion version and metrics")
async def list_models(request: Request) -> dict[str, Any]:
    # registry reads, cached per refresh interval
    models = await run_in_threadpool(request.app.state.store.list_models)
    return {"models": models}


@router.get(
    "/{name}",
    response_model=ModelDetail,
    summary="The champion of one model: version, metrics and the fields /predict takes",
    responses={404: {"model": ErrorResponse}},
)
async def get_model(name: str, request: Request) -> dict[str, Any]:
    store = request.app.state.store
    model = await run_in_threadpool(store.get, name)  # loads (and verifies) the champion if needed
    return {
        "name": model.name,
        "version": model.version,
        "metrics": model.metrics,
        "feature_schema": model.schema.to_event(),
        **(await run_in_threadpool(store.history, name)),
    }
