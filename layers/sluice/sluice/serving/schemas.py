"""Request validation built from a model's feature schema, and the response bodies.

A model's registered feature schema says which raw fields a record has and of which kind; the
validator built from it checks what the caller sent before anything reaches onnxruntime:

=============  ===========================================================================
kind           accepted
=============  ===========================================================================
text           a string of at most ``MAX_STRING_LENGTH`` characters
categorical    a string of at most ``MAX_STRING_LENGTH`` characters
numeric        a finite JSON number within float32 range (``true``/``false`` are refused)
date           an ISO 8601 date or datetime string (``2024-01-31``, ``2024-01-31T12:04:00Z``)
=============  ===========================================================================

Every field of the schema is required (send ``""`` for an unknown text); fields the model does
not use are ignored, so a caller may send whole rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal, TypedDict

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from sluice.features import parse_datetime
from sluice.serving.errors import ApiError, field_path

MAX_RECORDS = 1000
# Lambda's synchronous payload limit; 1000 records of long texts stay well below it. Enforced by
# the predict route itself: FastAPI's max_body_size answers 413 in plain text, not our shape.
MAX_BODY_BYTES = 6 * 1024 * 1024
MAX_STRING_LENGTH = 2000
MAX_DATE_LENGTH = 64
MAX_ERROR_DETAILS = 50
FLOAT32_MAX = 3.4028234663852886e38


def _iso_datetime(value: str) -> datetime:
    try:
        return parse_datetime(value)
    except ValueError:
        raise PydanticCustomError(
            "iso_datetime", "Input should be an ISO 8601 date or datetime string"
        ) from None


_String = Annotated[str, Strict(), StringConstraints(max_length=MAX_STRING_LENGTH)]
_Number = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
_Date = Annotated[str, Strict(), StringConstraints(max_length=MAX_DATE_LENGTH), AfterValidator(_iso_datetime)]
FIELD_TYPES: dict[str, Any] = {"text": _String, "categorical": _String, "numeric": _Number, "date": _Date}
JSON_TYPES: dict[str, dict[str, Any]] = {
    "text": {"type": "string", "maxLength": MAX_STRING_LENGTH},
    "categorical": {"type": "string", "maxLength": MAX_STRING_LENGTH},
    "numeric": {"type": "number"},
    "date": {"type": "string", "format": "date-time"},
}


def _invalid(details: list[dict[str, Any]]) -> ApiError:
    shown = details[:MAX_ERROR_DETAILS]
    more = len(details) - len(shown)
    fields = ", ".join(dict.fromkeys(d["field"] for d in shown))
    message = f"invalid request: {fields}" + (f" (and {more} more errors)" if more else "")
    return ApiError(422, "validation_error", message, shown)


class RecordValidator:
    """Checks a predict body against one model's features; returns records ready for ``build_feed``."""

    def __init__(self, features: Iterable[Any]):
        self.features = list(features)
        unknown = sorted({f.kind for f in self.features} - FIELD_TYPES.keys())
        if unknown:
            raise ValueError(f"unsupported feature kind(s): {', '.join(unknown)}")
        record = TypedDict("Record", {f.name: FIELD_TYPES[f.kind] for f in self.features})  # type: ignore[misc]
        self._records = TypeAdapter(list[record])
        self._names = {f.name for f in self.features}

    def json_schema(self) -> dict[str, Any]:
        """The record's JSON schema (for documentation and error messages)."""
        return {
            "type": "object",
            "required": [f.name for f in self.features],
            "properties": {f.name: JSON_TYPES[f.kind] for f in self.features},
        }

    def validate(self, body: Any) -> list[dict[str, Any]]:
        """One record object, or ``{"records": [...]}`` with 1..MAX_RECORDS records."""
        if not isinstance(body, dict):
            raise _invalid(
                [_detail("body", "object_type", 'Body should be a record object or {"records": [...]}')]
            )
        batch = "records" in body and "records" not in self._names
        if batch:
            records = body["records"]
            if not isinstance(records, list):
                raise _invalid([_detail("records", "list_type", "Input should be a valid list")])
            if not records:
                raise _invalid([_detail("records", "too_short", "List should have at least 1 item")])
            if len(records) > MAX_RECORDS:
                raise _invalid(
                    [_detail("records", "too_long", f"List should have at most {MAX_RECORDS} items")]
                )
        else:
            records = [body]
        try:
            return self._records.validate_python(records)
        except ValidationError as exc:
            details = []
            for err in exc.errors(include_url=False, include_input=False, include_context=False):
                loc = ("records", *err["loc"]) if batch else err["loc"][1:]
                details.append(_detail(field_path(loc), err["type"], err["msg"]))
            raise _invalid(details) from None


def _detail(field: str, rule: str, message: str) -> dict[str, str]:
    return {"field": field, "rule": rule, "message": message}


# -- response bodies (documentation and typing; endpoints build them as plain dicts) ---------------


class ErrorDetail(BaseModel):
    field: str = Field(examples=["records[0].amount"])
    rule: str = Field(examples=["finite_number"])
    message: str = Field(examples=["Input should be a finite number"])


class ErrorInfo(BaseModel):
    code: str = Field(examples=["validation_error"])
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: ErrorInfo
    request_id: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = Field(description="version of the sluice runtime")


class ModelSummary(BaseModel):
    name: str
    champion_version: int | None = Field(description="version served by /predict; null if none yet")
    latest_version: int | None
    metrics: dict[str, Any] = Field(default_factory=dict, description="holdout metrics of the champion")


class ModelList(BaseModel):
    models: list[ModelSummary]


class VersionSummary(BaseModel):
    version: int
    status: str = Field(description="champion, challenger, accepted or rejected when registered")
    created_at: str
    metrics: dict[str, Any] = Field(default_factory=dict)


class ModelDetail(BaseModel):
    name: str
    version: int = Field(description="the champion version that /predict serves")
    aliases: dict[str, int | None] = Field(description="champion and challenger versions")
    metrics: dict[str, Any] = Field(default_factory=dict, description="metrics of the champion")
    feature_schema: dict[str, Any] = Field(description="the raw fields /predict takes, and the outputs")
    versions: list[VersionSummary] = Field(default_factory=list, description="every registered version")


class PredictionOut(BaseModel):
    """One answer; which fields depend on the model's task."""

    label: str | None = Field(None, description="classification: the predicted class")
    probabilities: dict[str, float] | None = Field(None, description="classification: probability per class")
    value: float | None = Field(None, description="regression: the predicted value")
    interval: dict[str, float] | None = Field(None, description="regression: level, lower, upper")
    score: float | None = Field(None, description="anomaly: higher is more anomalous")
    flag: bool | None = Field(None, description="anomaly: score >= threshold")
    threshold: float | None = Field(None, description="anomaly: the score flagging a record")


class PredictResponse(BaseModel):
    model: str
    version: int
    alias: Literal["champion", "challenger"] = Field(
        description="champion, or challenger for the share of callers a new version is tried on"
    )
    request_id: str
    predictions: list[PredictionOut]


class ForecastPoint(BaseModel):
    date: str
    value: float
    lower: float | None = None
    upper: float | None = None


class ForecastResponse(BaseModel):
    model: str
    version: int
    alias: Literal["champion", "challenger"]
    request_id: str
    days: int
    forecast: list[ForecastPoint]


class Contribution(BaseModel):
    feature: str
    value: Any
    baseline: Any
    contribution: float = Field(description="output(record) - output(record with this feature at baseline)")


class ExplainResponse(BaseModel):
    model: str
    version: int
    alias: Literal["champion", "challenger"]
    request_id: str
    prediction: PredictionOut
    explained_output: str = Field(description="what the contributions explain")
    output: float
    baseline_output: float = Field(description="the output with every feature at its baseline")
    contributions: list[Contribution] = Field(description="largest effect first")


PREDICT_REQUEST_SCHEMA: dict[str, Any] = {
    "description": (
        "One record, or up to 1000 records under `records`. A record has the raw fields named by the "
        "model's feature schema: text/categorical as strings, numeric as finite numbers, dates as ISO "
        "8601 strings. Fields the model does not use are ignored."
    ),
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"type": "object", "title": "Record", "additionalProperties": True},
                    {
                        "type": "object",
                        "title": "Batch",
                        "required": ["records"],
                        "properties": {
                            "records": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": MAX_RECORDS,
                                "items": {"type": "object", "additionalProperties": True},
                            }
                        },
                    },
                ]
            },
            "examples": {
                "record": {
                    "summary": "one transaction (transaction-category)",
                    "value": {
                        "description": "Idli medu Vada mix 2 plates",
                        "payment_method": "Cash",
                        "amount": 60,
                        "date": "2018-09-20T12:03:00",
                    },
                },
                "batch": {
                    "summary": "several transactions",
                    "value": {
                        "records": [
                            {
                                "description": "Data booster pack",
                                "payment_method": "Saving Bank account 1",
                                "amount": 19,
                                "date": "2018-09-17",
                            },
                            {
                                "description": "2 Place 5 to Place 0",
                                "payment_method": "Cash",
                                "amount": 30,
                                "date": "2018-09-20T12:04:00",
                            },
                        ]
                    },
                },
            },
        }
    },
}
