"""Verify Lambda, the pipeline's Evaluate state: TrainResult (parity pending) -> TrainResult with
its parity report, the champion comparison and the gates' decision (``evaluation``).

Thin on purpose: the work is ``sluice.verification.verify_candidate``. A disagreeing export or a
candidate that misses a gate is recorded as not accepted, with the reasons (the Register step
registers it as rejected); a changed staged file raises ArtifactIntegrityError and a graph
onnxruntime cannot run ParityError, which the state machine catches: nothing is registered for
that model.
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
    evaluation = verified.evaluation
    assert evaluation is not None  # verify_candidate always decides
    rejected = 0 if evaluation.accepted else 1
    metrics.add_metric(name="CandidatesRejected", unit=MetricUnit.Count, value=rejected)
    logger.info(
        "evaluated",
        extra={
            "accepted": evaluation.accepted,
            "reasons": evaluation.reasons,
            "parity": verified.parity.to_event() if verified.parity else None,
            "champion": verified.champion.to_event() if verified.champion else None,
        },
    )
    return verified.to_event()
