"""Lambda entry point of the prediction API: the FastAPI app (sluice.serving) behind Mangum.

Everything is built at import (init phase): the app, its routes and an empty model store.
Models load on the first request that needs one, so ``/health`` calls no AWS service.

Metrics: prediction requests publish their own EMF documents (Predictions, Latency; dimensions
model and version) as they happen, see ``sluice.serving.observability``. ``log_metrics`` here
only adds the ``ColdStart`` metric, once per execution environment, whatever the first request
is, even ``/health``: it describes the environment, not the request, so it is kept. Otherwise
health checks publish nothing, and the "No application metrics to publish" warning that
Powertools gives for such invocations is silenced.
"""

from __future__ import annotations

import warnings
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from sluice.serving.app import app
from sluice.serving.observability import logger, metrics, tracer

warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

asgi = Mangum(app, lifespan="off")


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the API key.
@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True
)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return asgi(event, context)
