"""What the benchmark's fresh interpreters run: the cold starts, the uvicorn server and its registry.

    python -c "import bench.child as c; c.main()" KIND SNAPSHOT_DIR RESULT_FILE

KIND is one of ``handler``, ``onnxruntime``, ``sklearn``, ``python`` (cold starts: one prediction, then the
timings go to RESULT_FILE as JSON), ``serve`` (uvicorn on 127.0.0.1) or ``registry`` (the moto
server the cold handlers read the registry from); these two write their ephemeral port to
RESULT_FILE and stop on SIGTERM or by themselves after ``SERVE_LIMIT_S``.

This module imports only the standard library at import time, so that a cold start measures the
imports of the path under test and nothing else. SNAPSHOT_DIR is written by ``bench.fixture``:
the registry's DynamoDB items and S3 objects, the ONNX file, the pickled scikit-learn pipeline,
the API Gateway event and the row's inputs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
API_APP = ROOT / "functions" / "api" / "app.py"
REGION = "us-east-1"
BUCKET = "sluice-bench-data-123456789012-us-east-1"
TABLE = "sluice-bench-registry"
MODEL = "transaction-category"
SERVE_LIMIT_S = 180.0  # the server exits by itself after this, whatever happens to its parent


def base_env() -> dict[str, str]:
    """Environment of every part of the benchmark: fake credentials, the template's variables."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "SLUICE_DATA_BUCKET": BUCKET,
        "SLUICE_REGISTRY_TABLE": TABLE,
        "SLUICE_STAGE": "dev",
        "SLUICE_ROOT_PATH": "/dev",  # as template.yaml gives the api function (the stage)
        # One alias read per hour: no registry read inside the timed loops.
        "SLUICE_ALIAS_REFRESH_SECONDS": "3600",
        # Set by Lambda's runtime: functions/api/app.py then runs its init as on Lambda (gc, see there).
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "POWERTOOLS_SERVICE_NAME": "api",
        "POWERTOOLS_METRICS_NAMESPACE": "Sluice-bench",
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
        # Single-threaded BLAS/OpenMP everywhere (onnxruntime is set to one thread by the app).
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


UNSET = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "SLUICE_LOCAL_API_KEYS",
)


class LambdaContext:
    """The four attributes Powertools reads from a Lambda context."""

    function_name = "sluice-dev-ApiFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:sluice-dev-ApiFunction"
    aws_request_id = "00000000-0000-4000-8000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 29_000


# -- the registry under moto ------------------------------------------------------------------------


def create_storage(session: Any) -> None:
    """The data bucket and the registry table, as template.yaml declares them (moto must be on):
    the handler tests' own (tests/handlers/support.py), under the benchmark's names."""
    from tests.handlers.support import create_storage as create_template_storage

    create_template_storage(session, bucket=BUCKET, table=TABLE)


def seed_registry(snapshot: Path) -> None:
    """Recreate the registry of ``snapshot`` in this process's moto (mock_aws must be started).

    Uses its own boto3 session: the clients the API creates (default session) stay cold.
    """
    import boto3

    session = boto3.session.Session(region_name=REGION)
    create_storage(session)
    registry = json.loads((snapshot / "registry.json").read_text())
    s3 = session.client("s3")
    for obj in registry["objects"]:
        s3.put_object(Bucket=BUCKET, Key=obj["key"], Body=(snapshot / obj["file"]).read_bytes())
    ddb = session.client("dynamodb")
    for item in registry["items"]:
        ddb.put_item(TableName=TABLE, Item=item)


# -- cold starts ------------------------------------------------------------------------------------


def cold_handler(snapshot: Path) -> dict[str, Any]:
    """functions/api/app.py imported, then one API Gateway event answered.

    The registry is the moto server of ``registry`` (another process, reached over HTTP through
    ``AWS_ENDPOINT_URL`` as the function reaches S3 and DynamoDB), so that nothing but the
    function's own code runs here. ``SLUICE_PRELOAD_MODELS`` names the model, as the template's
    PreloadModels does the built-in ones: init loads it, while importing.
    """
    import importlib.util

    t0 = time.perf_counter()
    spec = importlib.util.spec_from_file_location("sluice_bench_api_app", API_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    t1 = time.perf_counter()

    event = json.loads((snapshot / "event.json").read_text())
    response = module.handler(event, LambdaContext())
    t2 = time.perf_counter()
    done = time.time()
    body = json.loads(response["body"])
    return {
        "done_wall": done,
        "excluded_s": 0.0,
        "import_s": t1 - t0,
        "first_call_s": t2 - t1,
        "status": response["statusCode"],
        "label": body["predictions"][0]["label"] if response["statusCode"] == 200 else None,
    }


def cold_onnxruntime(snapshot: Path) -> dict[str, Any]:
    """import onnxruntime + numpy, InferenceSession from the ONNX file, one run on the row's feed."""
    t0 = time.perf_counter()
    import numpy as np
    import onnxruntime as ort

    t1 = time.perf_counter()
    inputs = json.loads((snapshot / "inputs.json").read_text())
    opts = ort.SessionOptions()  # as sluice.serving.models.session_options
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        str(snapshot / "model.onnx"), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    feed = {
        name: np.array(col["values"], dtype=object if col["dtype"] == "object" else np.float32).reshape(-1, 1)
        for name, col in inputs["feed"].items()
    }
    labels, _ = session.run(inputs["outputs"], feed)
    return _cold_result(t0, t1, str(labels[0]))


def _cold_result(t0: float, t1: float, label: str) -> dict[str, Any]:
    """Timings of a cold path: imports + loading until t1, the first call until now."""
    t2 = time.perf_counter()
    return {
        "done_wall": time.time(),
        "excluded_s": 0.0,
        "import_s": t1 - t0,
        "first_call_s": t2 - t1,
        "label": label,
    }


def cold_sklearn(snapshot: Path) -> dict[str, Any]:
    """joblib.load of the pickled pipeline (imports scikit-learn, pandas and the pipeline's own
    module, training.pipeline), then predict_proba on the row."""
    import types

    # The pickle names training.pipeline.SignedLog1p. Import that module alone, as a Lambda that
    # shipped only it would: training/__init__.py would also pull in skl2onnx and the exporters.
    package = types.ModuleType("training")
    package.__path__ = [str(ROOT / "training")]
    sys.modules["training"] = package

    t0 = time.perf_counter()
    import joblib
    import pandas as pd

    pipeline = joblib.load(snapshot / "pipeline.joblib")
    t1 = time.perf_counter()
    inputs = json.loads((snapshot / "inputs.json").read_text())
    frame = pd.DataFrame(
        {name: pd.Series(col["values"], dtype=col["dtype"]) for name, col in inputs["frame"].items()}
    )
    probabilities = pipeline.predict_proba(frame)
    return _cold_result(t0, t1, str(pipeline.classes_[int(probabilities[0].argmax())]))


def cold_python(snapshot: Path) -> dict[str, Any]:
    """Nothing: the interpreter's own start (and this module's stdlib imports), for reference."""
    return {"done_wall": time.time(), "excluded_s": 0.0, "import_s": 0.0, "first_call_s": 0.0}


COLD = {
    "handler": cold_handler,
    "onnxruntime": cold_onnxruntime,
    "sklearn": cold_sklearn,
    "python": cold_python,
}


# -- the HTTP server --------------------------------------------------------------------------------


def announce(port_file: Path, port: int) -> None:
    """Write the port the server listens on, whole (the parent waits for the file)."""
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.replace(port_file)


def serve(snapshot: Path, port_file: Path) -> None:
    """The API app (sluice.serving.app.create_app) under uvicorn on 127.0.0.1, registry in moto."""
    import socket
    import threading

    watchdog = threading.Timer(SERVE_LIMIT_S, lambda: os._exit(3))
    watchdog.daemon = True
    watchdog.start()

    from moto import mock_aws

    mock_aws().start()
    seed_registry(snapshot)

    import uvicorn

    from sluice.serving.app import create_app

    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on TCP-protocol sockets; without it uvicorn's
    # separate header and body writes meet Nagle + delayed ACK (~40 ms per response).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    announce(port_file, sock.getsockname()[1])
    server.run(sockets=[sock])


def registry(snapshot: Path, port_file: Path) -> None:
    """A moto server on 127.0.0.1 holding the snapshot's registry (the cold handlers' AWS); the
    ephemeral port goes to ``port_file``; stops on SIGTERM or by itself after ``SERVE_LIMIT_S``."""
    import logging
    import signal
    import threading

    from moto.server import ThreadedMotoServer

    from sluice_cli.sandbox import free_port

    watchdog = threading.Timer(SERVE_LIMIT_S, lambda: os._exit(3))
    watchdog.daemon = True
    watchdog.start()
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    seed_registry(snapshot)
    announce(port_file, port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait(SERVE_LIMIT_S)
    server.stop()


def main() -> None:
    kind, snapshot, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if kind == "serve":
        serve(snapshot, out)
        return
    if kind == "registry":
        registry(snapshot, out)
        return
    result = COLD[kind](snapshot)
    out.write_text(json.dumps(result))
