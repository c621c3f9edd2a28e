"""``POST /v1/feedback``: the true value of a captured prediction (see ``sluice.serving.feedback``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from sluice.serving.errors import ApiError
from sluice.serving.feedback import FeedbackStore, Outcome
from sluice.serving.observability import record_feedback
from sluice.serving.schemas import ErrorResponse

router = APIRouter(
    prefix="/v1",
    tags=["feedback"],
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        404: {"model": ErrorResponse, "description": "No captured prediction has this request id"},
        409: {"model": ErrorResponse, "description": "This record already has a different true value"},
        422: {"model": ErrorResponse},
        429: {"model": ErrorResponse},
    },
)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=128, description="x-request-id of the prediction")
    index: int = Field(0, ge=0, lt=1000, description="which record of that request (0 for one record)")
    actual: str | float | int | bool = Field(description="the true class, value or anomaly flag")


def feedback_store(request: Request) -> FeedbackStore:
    state = request.app.state
    if not hasattr(state, "feedback_store"):
        from sluice.settings import get_settings

        table = get_settings().predictions_table
        state.feedback_store = FeedbackStore(table) if table else None
    if state.feedback_store is None:
        raise ApiError(503, "unavailable", "feedback is not configured (no predictions table)")
    return state.feedback_store


@router.post(
    "/feedback",
    response_model=Outcome,
    response_model_exclude_none=True,
    summary="Report the true value of a prediction",
)
async def feedback(body: FeedbackRequest, request: Request) -> Outcome:
    store = feedback_store(request)
    outcome = await run_in_threadpool(store.record, body.request_id, body.index, body.actual)
    if not outcome.duplicate:
        record_feedback(outcome.model, outcome.version, outcome.correct, outcome.abs_error)
    return outcome
