"""Train Lambda: TrainRequest -> TrainResult (ONNX staged at ``staging/<model>/<run_id>/model.onnx``).

Thin on purpose: the work is ``training.train.run_training``. Errors raise with their class name
(TrainingError, ParityError, SpecError, ...) so the state machine's Retry/Catch can act on them.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.contracts import TrainRequest
from sluice.lambdas import powertools, step_handler
from training.train import run_training

logger, tracer, metrics = powertools()


@step_handler(logger, tracer, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = TrainRequest.model_validate(event)
    logger.append_keys(model=request.model, run_id=request.ingest.run_id, dataset=request.ingest.dataset)
    result = run_training(request)
    metrics.add_dimension(name="model", value=result.model)
    metrics.add_metric(name="TrainSeconds", unit=MetricUnit.Seconds, value=result.timings.get("total_s", 0.0))
    logger.info(
        "trained",
        extra={
            "artifact_key": result.artifact_key,
            "metrics": result.metrics,
            "selected": next((c.name for c in result.candidates if c.status == "selected"), None),
            "candidates": {c.name: c.status for c in result.candidates},
            "parity_key": result.parity_key,
            "rows_train": result.rows_train,
            "rows_holdout": result.rows_holdout,
        },
    )
    return result.to_event()
