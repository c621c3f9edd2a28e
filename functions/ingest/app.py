"""Ingest Lambda: an S3 ``Object Created`` event (or {bucket, key[, version_id]}) -> IngestResult.

Thin on purpose: the work is ``sluice.ingest.ingest``. Errors raise with their class name
(MissingColumnsError, QualityGateError, ...) so the state machine's Retry/Catch can act on them.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.contracts import IngestRequest
from sluice.ingest import ingest
from sluice.lambdas import powertools, step_handler

logger, tracer, metrics = powertools()


@step_handler(logger, tracer, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = IngestRequest.from_event(event)
    logger.append_keys(bucket=request.bucket, key=request.key, version_id=request.version_id)
    result = ingest(request)
    metrics.add_dimension(name="dataset", value=result.dataset)
    metrics.add_metric(name="RowsClean", unit=MetricUnit.Count, value=result.rows_clean)
    metrics.add_metric(name="RowsQuarantined", unit=MetricUnit.Count, value=result.rows_quarantined)
    logger.info(
        "ingested",
        extra={
            "run_id": result.run_id,
            "rows_read": result.rows_read,
            "rows_quarantined": result.rows_quarantined,
        },
    )
    return result.to_event()
