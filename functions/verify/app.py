"""Verify Lambda: TrainResult (parity pending) -> TrainResult with its parity report and the
champion comparison.

Thin on purpose: the work is ``sluice.verification.verify_candidate``. A disagreeing export is
recorded (the Register step rejects it, with the reason); a changed staged file raises
ArtifactIntegrityError and a graph onnxruntime cannot run ParityError, which the state machine
catches: nothing is registered for that model.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.contracts import TrainResult
from sluice.lambdas import powertools, step_handler
from sluice.verification import verify_candidate

logger, tracer, metrics = powertools()


@step_handler(logger, tracer, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = TrainResult.model_validate(event)
    logger.append_keys(model=result.model, run_id=result.run_id)
    verified = verify_candidate(result)
    metrics.add_dimension(name="model", value=verified.model)
    metrics.add_metric(name="ParityRows", unit=MetricUnit.Count, value=verified.parity.rows)
    logger.info(
        "verified",
        extra={"parity": verified.parity.to_event(), "champion": verified.champion.to_event()},
    )
    return verified.to_event()
