"""The one Powertools set-up of the pipeline's functions.

Module scope creates ``logger, tracer, metrics = powertools()`` (service name from
``POWERTOOLS_SERVICE_NAME``, namespace from ``POWERTOOLS_METRICS_NAMESPACE``, both set by the
template); ``@step_handler(logger, tracer, metrics)`` is the decorator stack every handler wears:
``inject_lambda_context`` -> ``capture_lambda_handler`` -> ``log_metrics(capture_cold_start_metric)``.
Errors are not caught: they propagate so Step Functions can Retry/Catch them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

Handler = Callable[[dict[str, Any], Any], Any]


def powertools() -> tuple[Logger, Tracer, Metrics]:
    return Logger(), Tracer(), Metrics()


def step_handler(logger: Logger, tracer: Tracer, metrics: Metrics) -> Callable[[Handler], Handler]:
    def wrap(fn: Handler) -> Handler:
        fn = metrics.log_metrics(fn, capture_cold_start_metric=True)
        fn = tracer.capture_lambda_handler(fn)
        return logger.inject_lambda_context(fn)

    return wrap
