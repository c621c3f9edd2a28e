"""Lambda entry point of the prediction API: the FastAPI app (sluice.serving) behind Mangum.

Everything is built at import (init phase): the app, its routes and its model store, which loads
the champions of ``SLUICE_PRELOAD_MODELS`` (template parameter PreloadModels) before init ends.
Their artifacts are downloaded, verified and opened by onnxruntime in a background thread
(``sluice.serving.prefetch``) started before the web framework is imported: that work releases
the GIL and overlaps the imports. Other models load on the first request that needs them;
``/health`` calls no AWS service.

Metrics: prediction requests publish their own EMF documents (Predictions, Latency; dimensions
model and version) as they happen, see ``sluice.serving.observability``; the ``ColdStart`` metric
is published once per execution environment, whatever the first request is (it describes the
environment, not the request). Health checks publish nothing.

Per-invocation work is kept to what a request needs: the Logger gets the Lambda context (and the
cold-start flag) without rebuilding its formatter or querying the event for the correlation id (the
request-context middleware sets it from the same ``requestContext.requestId``), and no Metrics
object is flushed per invocation (Powertools' ``log_metrics`` would, for nothing but ColdStart).
Measured in-process: 0.07 ms less per prediction, a quarter of the handler's time.
"""

from __future__ import annotations

import gc
import os
from typing import Any

# On Lambda, init makes ~80,000 objects that live as long as the environment (modules, classes,
# pydantic schemas) and next to no garbage (about 500 unreachable objects at its end): collecting
# while they are made only costs init time. The collector is off during init, and what init made
# is frozen at its end (the permanent generation: no later collection walks it, or the first one,
# during a request, would walk all of it). 0.05-0.07 s of the cold start, measured. Elsewhere (tests,
# the sandbox's in-process functions: other code shares the process) the collector is left alone.
_LAMBDA = bool(os.environ.get("AWS_LAMBDA_RUNTIME_API"))  # set by Lambda's runtime, and only there
if _LAMBDA:
    gc.disable()

from sluice.serving.prefetch import Prefetch  # noqa: E402

# Started here, before the imports below: see the module docstring. onnxruntime first, while the
# thread reads the registry and downloads (sluice.serving.prefetch says why).
prefetch = Prefetch.from_settings()

import onnxruntime  # noqa: E402, F401
from aws_lambda_powertools.utilities.typing import LambdaContext  # noqa: E402
from mangum import Mangum  # noqa: E402

from sluice.serving.app import app  # noqa: E402
from sluice.serving.observability import logger, record_cold_start, tracer  # noqa: E402

app.state.store.adopt(prefetch)
app.state.store.warm(prefetch.names)
asgi = Mangum(app, lifespan="off")
if _LAMBDA:
    gc.freeze()
    gc.enable()
_cold = True


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the API key.
@logger.inject_lambda_context(log_event=False)
def _handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _cold
    if _cold:
        _cold = False
        record_cold_start(context.function_name)
    return asgi(event, context)


# The Tracer wraps the handler only where it traces: on Lambda with active tracing (template.yaml).
handler = _handle if tracer is None else tracer.capture_lambda_handler(capture_response=False)(_handle)
