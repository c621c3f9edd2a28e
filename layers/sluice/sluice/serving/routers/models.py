"""``GET /v1/models[/{name}]``: the registered models, their champion version, metrics and schema."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from sluice.serving.dependencies import Authenticated, StoreDep
from sluice.serving.schemas import ErrorResponse, ModelDetail, ModelList

router = APIRouter(
    prefix="/v1/models",
    tags=["models"],
    dependencies=[Authenticated],
    responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
)


@router.get("", response_model=ModelList, summary="List models with their champion version and metrics")
async def list_models(store: StoreDep) -> dict[str, Any]:
    models = await run_in_threadpool(store.list_models)  # registry reads, cached per refresh interval
    return {"models": models}


@router.get(
    "/{name}",
    response_model=ModelDetail,
    summary="The champion of one model: version, metrics and the fields /predict takes",
    responses={404: {"model": ErrorResponse}},
)
async def get_model(name: str, store: StoreDep) -> dict[str, Any]:
    model = await run_in_threadpool(store.get, name)  # loads (and verifies) the champion if needed
    return {
        "name": model.name,
        "version": model.version,
        "metrics": model.metrics,
        "feature_schema": model.schema.to_event(),
    }
