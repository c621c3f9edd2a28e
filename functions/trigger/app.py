"""Trigger Lambda: an S3 ``Object Created`` event (EventBridge) -> one pipeline execution per object version.

Thin on purpose: the work is ``sluice.trigger.start_pipeline``. The execution is named after the
bucket, key and version id, so a duplicated or replayed event starts nothing new and returns
``{"started": false, "reason": "duplicate event"}``. Keys outside raw/<dataset>/<file>.csv[.gz] are
logged and ignored.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.lambdas import powertools, step_handler
from sluice.trigger import start_pipeline, state_machine_arn_from_env

logger, tracer, metrics = powertools()


@step_handler(logger, tracer, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = start_pipeline(event, state_machine_arn_from_env())
    logger.append_keys(bucket=result.bucket, key=result.key, version_id=result.version_id)
    if result.started:
        metrics.add_metric(name="PipelinesStarted", unit=MetricUnit.Count, value=1)
        logger.info("pipeline started", extra={"execution_name": result.execution_name})
    elif result.execution_name:
        metrics.add_metric(name="DuplicateEvents", unit=MetricUnit.Count, value=1)
        logger.info("duplicate event: nothing started", extra={"execution_name": result.execution_name})
    else:
        metrics.add_metric(name="IgnoredEvents", unit=MetricUnit.Count, value=1)
        logger.warning("ignored", extra={"reason": result.reason})
    return result.to_event()
