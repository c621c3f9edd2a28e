"""Powertools Logger, Tracer and Metrics of the API, and the metrics it publishes.

Service name and metrics namespace come from ``POWERTOOLS_SERVICE_NAME`` and
``POWERTOOLS_METRICS_NAMESPACE`` (template Globals); the defaults only matter outside Lambda.

Metrics (CloudWatch EMF, one JSON document per event, dimensions ``service``, ``model``, ``version``):

* ``Predictions`` (Count): records predicted by one successful request;
* ``Latency`` (Milliseconds): time to parse, validate and predict one request;
* ``ModelLoadErrors`` (Count): a champion version that failed to download, verify or load;
* ``InvalidRequests`` / ``PredictionErrors`` (Count): a request refused (4xx: the record, the task,
  the batch size) or failed (5xx) once its model version was known. Requests refused before that
  (bad JSON, unknown model, keys, throttling) are API Gateway's 4XXError/5XXError: a model name
  the caller made up never becomes a metric dimension;
* ``Feedback`` (Count), ``LiveCorrect`` (1/0: its Average is the live accuracy) and
  ``LiveAbsoluteError`` (its Average is the live MAE): ground truth received for a captured request;
* ``CaptureErrors`` (Count, dimension ``service`` only): a capture that could not be written;
* ``ColdStart`` (Count, dimensions ``service`` and ``function_name``): once per environment.

Each event is written at once through its own ``EphemeralMetrics`` rather than the shared
``Metrics`` that ``log_metrics`` flushes at the end of an invocation: one document then holds
exactly one model/version (a load error of v2 and a prediction of v1 in the same request cannot
share dimensions), nothing is shared between threads, and uvicorn (no Lambda decorator) publishes
the same documents. Health checks publish nothing.

The document of a prediction (``Predictions`` and ``Latency``) is the one Powertools builds, but it
is built once per model version: Powertools serialises a template, and each request fills in its
timestamp and two values. Building and validating a fresh ``EphemeralMetrics`` per request cost
about 45 us, a quarter of the handler's time on one record.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from functools import lru_cache
from typing import ParamSpec, TypeVar

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

SERVICE = os.getenv("POWERTOOLS_SERVICE_NAME") or "api"
DEFAULT_NAMESPACE = "Sluice-local"
_NAMESPACE = os.getenv("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE  # read once, at init
P = ParamSpec("P")
R = TypeVar("R")

logger = Logger(service=SERVICE)
# The X-Ray tracer where tracing is on (on AWS, Tracing: Active in template.yaml), else None. The
# rule is the Tracer's own (POWERTOOLS_TRACE_DISABLED, outside Lambda, SAM local). A disabled Tracer
# would still import and configure the X-Ray SDK (about 0.1 s of every cold start) and wrap each
# call in dummy segments (about 18 us per request).
tracer: Tracer | None = None if Tracer._is_tracer_disabled() else Tracer(service=SERVICE)


def traced(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` in an X-Ray subsegment of its own name where tracing is on; ``fn`` itself elsewhere."""
    return fn if tracer is None else tracer.capture_method(capture_response=False)(fn)


def _publish(model: str, version: int, values: dict[str, tuple[MetricUnit, float]]) -> None:
    emf = EphemeralMetrics(namespace=_NAMESPACE, service=SERVICE)
    emf.add_dimension(name="model", value=model)
    emf.add_dimension(name="version", value=str(version))
    for name, (unit, value) in values.items():
        emf.add_metric(name=name, unit=unit, value=value)
    emf.flush_metrics()


_SLOT = re.compile(r'"@(timestamp|records|latency)@"')


@lru_cache(maxsize=1024)
def _prediction_template(namespace: str, model: str, version: int) -> tuple[str, ...]:
    """The EMF document of one prediction of ``model`` v``version`` as Powertools serialises it, cut
    around its three values: (text, slot, text, slot, text, slot, text)."""
    emf = EphemeralMetrics(namespace=namespace, service=SERVICE)
    emf.add_dimension(name="model", value=model)
    emf.add_dimension(name="version", value=str(version))
    emf.add_metric(name="Predictions", unit=MetricUnit.Count, value=1)
    emf.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=0)
    doc = emf.serialize_metric_set()
    doc["_aws"]["Timestamp"] = "@timestamp@"
    doc["Predictions"], doc["Latency"] = ["@records@"], ["@latency@"]
    parts = tuple(_SLOT.split(json.dumps(doc, separators=(",", ":"))))
    if parts[1::2] != ("timestamp", "records", "latency"):
        raise RuntimeError(f"unexpected EMF layout: {parts}")
    return parts


def record_prediction(model: str, version: int, records: int, latency_ms: float) -> None:
    """``Predictions`` (records answered) and ``Latency`` (ms) of one request, one EMF document."""
    head, _, records_at, _, latency_at, _, tail = _prediction_template(_NAMESPACE, model, version)
    timestamp = time.time_ns() // 1_000_000
    print(f"{head}{timestamp}{records_at}{float(records)!r}{latency_at}{round(latency_ms, 3)!r}{tail}")


def record_cold_start(function_name: str) -> None:
    """``ColdStart`` (Count, dimensions service and function_name): once per execution environment."""
    emf = EphemeralMetrics(namespace=_NAMESPACE, service=SERVICE)
    emf.add_dimension(name="function_name", value=function_name)
    emf.add_metric(name="ColdStart", unit=MetricUnit.Count, value=1)
    emf.flush_metrics()


def record_feedback(model: str, version: int, correct: bool | None, abs_error: float | None) -> None:
    values: dict[str, tuple[MetricUnit, float]] = {"Feedback": (MetricUnit.Count, 1)}
    if correct is not None:
        values["LiveCorrect"] = (MetricUnit.Count, 1.0 if correct else 0.0)
    if abs_error is not None:
        values["LiveAbsoluteError"] = (MetricUnit.NoUnit, abs_error)
    _publish(model, version, values)


def record_capture_error(stage: str, error: BaseException) -> None:
    """A capture that could not be written (the prediction itself was answered)."""
    details = {"stage": stage, "error_type": type(error).__name__, "error": str(error)}
    logger.warning("capture failed", extra=details)
    emf = EphemeralMetrics(namespace=_NAMESPACE, service=SERVICE)
    emf.add_metric(name="CaptureErrors", unit=MetricUnit.Count, value=1)
    emf.flush_metrics()


def record_request_error(model: str, version: int, status: int) -> None:
    """A request of ``model`` v``version`` answered ``status`` (4xx or 5xx)."""
    name = "InvalidRequests" if status < 500 else "PredictionErrors"
    _publish(model, version, {name: (MetricUnit.Count, 1)})


def record_model_load_error(model: str, version: int, error: BaseException) -> None:
    _publish(model, version, {"ModelLoadErrors": (MetricUnit.Count, 1)})
