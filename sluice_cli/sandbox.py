"""The local sandbox: an embedded AWS (moto server on 127.0.0.1) with this project's stack on it.

Everything in it comes from template.yaml (see deploy.py); Lambda handlers run in this process
(adapters.py); the API is the api function's FastAPI app under uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3

from sluice_cli import adapters
from sluice_cli.deploy import TEMPLATE, Stack, deploy

REGION = "us-east-1"
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sandbox:
    def __init__(
        self,
        stage: str = "dev",
        port: int = 0,
        api_port: int = 0,
        template: Path = TEMPLATE,
        alias_refresh_seconds: float = 5.0,
        parameters: dict[str, str] | None = None,
    ):
        self.stage = stage
        self.port = port or free_port()
        self.api_port = api_port
        self.template = template
        self.alias_refresh_seconds = alias_refresh_seconds
        # Locally every prediction is captured, so that `sluice monitor` has traffic to look at.
        self.parameters = {"Stage": stage, "CaptureRate": "1", **(parameters or {})}
        self.api_key = "sk-local-" + secrets.token_hex(12)
        self.api_log = Path(tempfile.gettempdir()) / f"sluice-api-{os.getpid()}.log"
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.stack: Stack | None = None
        self._server: Any = None
        self._api_server: Any = None
        self._api_thread: threading.Thread | None = None
        self._saved_env: dict[str, str] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Stack:
        from moto.server import ThreadedMotoServer

        adapters.check_moto_version()
        adapters.capturing_stdout()  # before any handler module binds sys.stdout
        self._saved_env = dict(os.environ)
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_ACCESS_KEY_ID": "sandbox",
                "AWS_SECRET_ACCESS_KEY": "sandbox",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "MOTO_PORT": str(self.port),
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
        )
        os.environ.pop("AWS_PROFILE", None)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        # The sandbox reports failures through the execution history; moto's own error logs
        # (every caught Task failure) and werkzeug's request lines would only be noise.
        for name in ("werkzeug", "moto"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        # One process holds one moto state: start from an empty account every time.
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"))
        from moto.core.config import default_user_config

        default_user_config["stepfunctions"] = {"execute_state_machine": True}
        local = adapters.install()
        self.stack = deploy(f"sluice-{self.stage}", self.parameters, self.template, REGION)
        for fn in self.stack.functions.values():
            local.register(fn["name"], fn["code_dir"], fn["handler"])
        self._reset_runtime_caches()
        return self.stack

    def stop(self) -> None:
        if getattr(self, "_capture_stop", None) is not None:
            self._capture_stop.set()
            self._capture_thread.join(timeout=10)
            self._capture_stop = None
        if self._api_server is not None:
            self._api_server.should_exit = True
            if self._api_thread:
                self._api_thread.join(timeout=10)
            self._api_server = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._saved_env is not None:
            os.environ.clear()
            os.environ.update(self._saved_env)
            self._saved_env = None
        self._reset_runtime_caches()
        from moto.core.config import default_user_config

        default_user_config["stepfunctions"] = {"execute_state_machine": False}

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def _reset_runtime_caches() -> None:
        from sluice.aws import reset_clients
        from sluice.settings import get_settings

        reset_clients()
        get_settings.cache_clear()

    # -- clients ------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)

    # -- data and pipeline --------------------------------------------------------------------

    def upload(self, path: Path, dataset: str, name: str | None = None) -> dict[str, Any]:
        """Put a file under raw/<dataset>/: S3 -> EventBridge -> the training pipeline."""
        assert self.stack is not None
        key = f"raw/{dataset}/{name or path.name}"
        resp = self.client("s3").put_object(Bucket=self.stack.bucket, Key=key, Body=path.read_bytes())
        return {"bucket": self.stack.bucket, "key": key, "version_id": resp.get("VersionId")}

    def executions(self) -> list[dict[str, Any]]:
        assert self.stack is not None
        resp = self.client("stepfunctions").list_executions(stateMachineArn=self.stack.state_machine_arn)
        return sorted(resp["executions"], key=lambda e: e["startDate"])

    def wait_for_new_execution(self, known: set[str], timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for execution in self.executions():
                if execution["executionArn"] not in known:
                    return execution["executionArn"]
            time.sleep(0.1)
        raise TimeoutError("no execution started: is the EventBridge rule deployed?")

    def follow(
        self,
        execution_arn: str,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        timeout: float = 600.0,
    ) -> dict[str, Any]:
        """Wait for an execution, calling on_event for each new history event; returns describe()."""
        sfn = self.client("stepfunctions")
        seen = 0
        deadline = time.monotonic() + timeout
        while True:
            description = sfn.describe_execution(executionArn=execution_arn)
            events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
            if on_event:
                for event in events[seen:]:
                    on_event(event)
            seen = len(events)
            if description["status"] in TERMINAL:
                return description
            if time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still {description['status']} after {timeout}s")
            time.sleep(0.2)

    # -- API ----------------------------------------------------------------------------------

    def _serve_api(self) -> None:
        """uvicorn's loop; what the app prints (JSON logs, EMF metrics) goes to api.log."""
        stdout = adapters.capturing_stdout()
        with self.api_log.open("a", encoding="utf-8") as log:
            stdout.sink.set(log)  # this thread's context, inherited by the app's tasks and workers
            self._api_server.run()

    CAPTURE_FLUSH_SECONDS = 2.0

    def _start_capture_flusher(self) -> None:
        """Captured predictions reach S3 within seconds locally (on Lambda a batch waits for the next
        capture after max_age_s): the app's sink is built now, from the stack, and flushed by a thread."""
        from sluice.serving.capture import CaptureSink
        from sluice.serving.observability import record_capture_error

        assert self.stack is not None
        sink = CaptureSink(
            self.stack.bucket,
            self.stack.outputs["PredictionsTableName"],
            salt=self.stack.name.encode(),
            max_rows=500,
            max_age_s=self.CAPTURE_FLUSH_SECONDS,
            on_error=record_capture_error,
        )
        self.api_app.state.capture_sink = sink
        stop = threading.Event()

        def flush_periodically() -> None:
            while not stop.wait(self.CAPTURE_FLUSH_SECONDS):
                sink.flush()
            sink.flush()

        self._capture_stop = stop
        self._capture_thread = threading.Thread(target=flush_periodically, daemon=True)
        self._capture_thread.start()

    def flush_captures(self) -> None:
        app = getattr(self, "api_app", None)
        if app is not None and getattr(app.state, "capture_sink", None) is not None:
            app.state.capture_sink.flush()

    def monitor(self, models: list[str] | None = None, since: str | None = None) -> list[dict[str, Any]]:
        """Run the stack's monitor function now (what its schedule does), after flushing captures."""
        assert self.stack is not None
        self.flush_captures()
        payload: dict[str, Any] = {"models": models} if models else {}
        if since:
            payload["since"] = since
        resp = self.client("lambda").invoke(
            FunctionName=self.stack.outputs["MonitorFunctionName"], Payload=json.dumps(payload).encode()
        )
        body = json.loads(resp["Payload"].read() or b"null")
        if resp.get("FunctionError"):
            raise RuntimeError(f"the monitor failed: {body}")
        return body["models"]

    def start_api(self) -> str:
        """Serve the api function's app under uvicorn on 127.0.0.1; returns its base URL."""
        import uvicorn

        assert self.stack is not None
        api = self.stack.functions["ApiFunction"]
        # The api function's environment from the deployed stack, minus the API Gateway stage
        # path: locally the app is served at the root.
        os.environ.update({k: str(v) for k, v in api["environment"].items() if k != "SLUICE_ROOT_PATH"})
        os.environ["SLUICE_LOCAL_API_KEYS"] = self.api_key
        # The usage plan API Gateway applies on AWS, applied by the app here (sluice.serving.access).
        for setting, parameter in LOCAL_LIMITS.items():
            os.environ[setting] = self.stack.parameters.get(parameter, "0")
        os.environ["SLUICE_ALIAS_REFRESH_SECONDS"] = str(self.alias_refresh_seconds)
        self._reset_runtime_caches()
        from sluice.serving.access import AccessPolicy
        from sluice.serving.app import create_app
        from sluice.serving.models import ModelStore

        port = self.api_port or free_port()
        # Keys, limits, refresh interval and capture rate given to the app directly, not read from
        # os.environ on first use: in-process Lambda invocations swap os.environ while the API runs
        # in the same process.
        params = self.stack.parameters
        store = ModelStore(
            refresh_seconds=self.alias_refresh_seconds,
            capture_rate=float(params.get("CaptureRate", 0)),
        )
        self.api_app = create_app(
            store=store,
            access=AccessPolicy(
                [self.api_key],
                rate=float(params.get("ApiThrottleRateLimit", 0)),
                burst=int(params.get("ApiThrottleBurstLimit", 0)),
                quota_per_day=int(params.get("ApiQuotaPerDay", 0)),
            ),
        )
        self._start_capture_flusher()
        config = uvicorn.Config(
            self.api_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        self._api_server = uvicorn.Server(config)
        self._api_thread = threading.Thread(target=self._serve_api, daemon=True)
        self._api_thread.start()
        deadline = time.monotonic() + 20
        while not self._api_server.started:
            if time.monotonic() > deadline or not self._api_thread.is_alive():
                raise RuntimeError("the API did not start")
            time.sleep(0.05)
        self.api_port = port
        return f"http://127.0.0.1:{port}"


LOCAL_LIMITS = {
    "SLUICE_LOCAL_RATE_LIMIT": "ApiThrottleRateLimit",
    "SLUICE_LOCAL_BURST_LIMIT": "ApiThrottleBurstLimit",
    "SLUICE_LOCAL_QUOTA_PER_DAY": "ApiQuotaPerDay",
}


@contextlib.contextmanager
def running_sandbox(**kwargs: Any) -> Iterator[Sandbox]:
    sandbox = Sandbox(**kwargs)
    try:
        sandbox.start()
        yield sandbox
    finally:
        sandbox.stop()
