"""Register Lambda: TrainResult -> RegisterResult (a new registry version; champion moved if it passed).

Thin on purpose: the work is ``sluice.registration.register_candidate``. A concurrent alias move
raises AliasConflictError and a tampered staged file ArtifactIntegrityError, for Retry/Catch.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.contracts import TrainResult
from sluice.lambdas import powertools, step_handler
from sluice.registration import register_candidate
from sluice.registry import Registry
from sluice.settings import get_settings

logger, tracer, metrics = powertools()


@step_handler(logger, tracer, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = TrainResult.model_validate(event)
    logger.append_keys(model=result.model, run_id=result.run_id)
    settings = get_settings()
    settings.require("registry_table", "data_bucket")
    registered = register_candidate(result, Registry(settings.registry_table, settings.data_bucket))
    metrics.add_dimension(name="model", value=registered.model)
    name = "ModelsPromoted" if registered.status == "champion" else "ModelsRejected"
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    logger.info(registered.summary, extra=registered.to_event())
    return registered.to_event()
