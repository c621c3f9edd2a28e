"""Monitor function: drift, live metrics and retraining for every served model (``sluice.monitoring``).

Invoked by its EventBridge schedule (the event carries nothing it needs) or on demand with
``{"models": [...], "since": "<ISO time>"}`` to monitor only those models, over the captures written
since that time instead of the last ``SLUICE_MONITOR_WINDOW_HOURS`` (``sluice monitor`` sends these).
Returns one outcome per model; metrics go out as CloudWatch EMF documents (namespace of the stack, dimensions
model and version, plus feature for ``FeaturePsi``; ``DriftAlerts`` and ``LiveMetricBelowGate`` with
the service dimension only, what the stack's alarms watch).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.monitoring.drift import DriftThresholds
from sluice.monitoring.monitor import Monitor, MonitorSettings
from sluice.registry import Registry
from sluice.settings import get_settings

logger = Logger(service="monitor")


def publish(model: str, version: int, values: dict[str, float], dimensions: dict[str, str] | None) -> None:
    emf = EphemeralMetrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE") or "Sluice-local")
    if model:
        emf.add_dimension(name="model", value=model)
        emf.add_dimension(name="version", value=str(version))
    for name, value in (dimensions or {}).items():
        emf.add_dimension(name=name, value=value)
    for name, value in values.items():
        emf.add_metric(
            name=name, unit=MetricUnit.NoUnit if name == "FeaturePsi" else MetricUnit.Count, value=value
        )
    emf.flush_metrics()


def monitor_settings() -> MonitorSettings:
    env = os.environ
    every = float(env.get("SLUICE_RETRAIN_EVERY_DAYS", "0") or 0)
    return MonitorSettings(
        window_hours=float(env.get("SLUICE_MONITOR_WINDOW_HOURS", "24")),
        min_feedback=int(env.get("SLUICE_MONITOR_MIN_FEEDBACK", "30")),
        min_retrain_interval_hours=float(env.get("SLUICE_RETRAIN_MIN_INTERVAL_HOURS", "24")),
        retrain_every_days=every or None,
        thresholds=DriftThresholds(),
    )


@logger.inject_lambda_context(log_event=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    settings.require("data_bucket", "registry_table")
    monitor = Monitor(
        Registry(settings.registry_table, settings.data_bucket),
        predictions_table=settings.predictions_table,
        state_machine_arn=os.environ.get("SLUICE_STATE_MACHINE_ARN", ""),
        settings=monitor_settings(),
        publish=publish,
    )
    models = event.get("models") if isinstance(event, dict) else None
    since = event.get("since") if isinstance(event, dict) else None
    start = datetime.fromisoformat(since) if since else None
    outcomes = [o.to_dict() for o in monitor.run(models, since=start)]
    for outcome in outcomes:
        logger.info("monitored", extra=outcome)
    return {"models": outcomes}
