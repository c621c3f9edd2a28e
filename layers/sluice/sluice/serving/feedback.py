"""Ground truth for captured predictions: joined by request id, scored, counted per model version.

``POST /v1/feedback`` names a captured request (and which of its records, ``index``) and the true
value. The captured prediction is read from the predictions table (``sluice.serving.capture``), the
answer scored (classification and anomaly: correct or not; regression: absolute and squared error),
and the outcome written beside the capture with a conditional write: sending the same feedback again
changes nothing (idempotent, answered as a duplicate), a different value for the same record is a
409. New outcomes add to a per-version counter item (``stats#<model>#<version>``) - the live accuracy
or error that model canaries and retraining triggers read - and are published as metrics.
"""

from __future__ import annotations

import json
import math
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from sluice.serving.errors import ApiError

STATS_PREFIX = "stats#"


def stats_key(model: str, version: int) -> str:
    return f"{STATS_PREFIX}{model}#{version}"


class Outcome(BaseModel):
    """The scored feedback (also the response body of ``POST /v1/feedback``)."""

    request_id: str
    index: int
    model: str
    version: int
    predicted: Any
    actual: Any
    correct: bool | None = None
    abs_error: float | None = None
    duplicate: bool = False


def score(prediction: dict[str, Any], actual: Any) -> dict[str, Any]:
    """What the true value says of one prediction (the prediction's shape says which task it is)."""
    if "label" in prediction:
        if isinstance(actual, dict | list) or actual is None:
            raise _invalid("actual", "must be the true class (a string, number or boolean)")
        return {"predicted": prediction["label"], "correct": str(actual) == str(prediction["label"])}
    if "flag" in prediction:
        if actual not in (True, False, 0, 1, "0", "1", "true", "false"):
            raise _invalid("actual", "must say whether the record was an anomaly (true/false or 1/0)")
        truth = actual in (True, 1, "1", "true")
        return {"predicted": prediction["flag"], "correct": truth == bool(prediction["flag"])}
    if "value" in prediction:
        if isinstance(actual, bool) or not isinstance(actual, int | float) or not math.isfinite(actual):
            raise _invalid("actual", "must be a finite number")
        value = float(prediction["value"])
        return {"predicted": prediction["value"], "abs_error": abs(float(actual) - value)}
    raise ApiError(422, "validation_error", "this prediction cannot take feedback")


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        422,
        "validation_error",
        f"invalid request: {field}",
        [{"field": field, "rule": "value_error", "message": message}],
    )


class FeedbackStore:
    def __init__(self, table: str):
        self.table = table

    @property
    def _ddb(self) -> Any:
        from sluice.aws import client

        return client("dynamodb")

    def record(self, request_id: str, index: int, actual: Any) -> Outcome:
        item = self._ddb.get_item(TableName=self.table, Key={"pk": {"S": request_id}}).get("Item")
        if item is None or "predictions" not in item:
            raise ApiError(
                404,
                "not_found",
                f"no captured prediction with request id {request_id!r} "
                "(only sampled requests take feedback)",
            )
        predictions = json.loads(item["predictions"]["S"])
        if not 0 <= index < len(predictions):
            raise _invalid("index", f"the request held {len(predictions)} record(s); index must be below it")
        model, version = item["model"]["S"], int(item["version"]["N"])
        scored = score(predictions[index], actual)
        outcome = Outcome(
            request_id=request_id, index=index, model=model, version=version, actual=actual, **scored
        )
        attr = f"feedback_{index}"
        value = json.dumps(actual, sort_keys=True)
        try:
            self._ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": request_id}},
                UpdateExpression="SET #f = :v",
                ConditionExpression="attribute_not_exists(#f)",
                ExpressionAttributeNames={"#f": attr},
                ExpressionAttributeValues={":v": {"S": value}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            stored = self._ddb.get_item(TableName=self.table, Key={"pk": {"S": request_id}})["Item"]
            if stored.get(attr, {}).get("S") != value:
                raise ApiError(
                    409,
                    "conflict",
                    f"record {index} of request {request_id!r} already has a different true value",
                ) from None
            return outcome.model_copy(update={"duplicate": True})
        self._count(outcome)
        return outcome

    def _count(self, outcome: Outcome) -> None:
        values = {":one": {"N": "1"}}
        adds = ["n :one"]
        if outcome.correct is not None:
            values[":c"] = {"N": "1" if outcome.correct else "0"}
            adds.append("correct :c")
        if outcome.abs_error is not None:
            values[":e"] = {"N": repr(outcome.abs_error)}
            values[":s"] = {"N": repr(outcome.abs_error**2)}
            adds += ["abs_error :e", "sq_error :s"]
        self._ddb.update_item(
            TableName=self.table,
            Key={"pk": {"S": stats_key(outcome.model, outcome.version)}},
            UpdateExpression="ADD " + ", ".join(adds),
            ExpressionAttributeValues=values,
        )

    def live_stats(self, model: str, version: int) -> dict[str, float]:
        """``n`` feedback records and the live ``accuracy`` or ``mean_absolute_error`` of a version."""
        key = {"pk": {"S": stats_key(model, version)}}
        item = self._ddb.get_item(TableName=self.table, Key=key).get("Item")
        if not item:
            return {"n": 0}
        n = int(item["n"]["N"])
        out: dict[str, float] = {"n": n}
        if "correct" in item and n:
            out["accuracy"] = int(item["correct"]["N"]) / n
        if "abs_error" in item and n:
            out["mean_absolute_error"] = float(item["abs_error"]["N"]) / n
            out["root_mean_squared_error"] = math.sqrt(float(item["sq_error"]["N"]) / n)
        return out
