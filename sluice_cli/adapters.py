"""The few adapters that let moto run this project's stack without Docker.

Every place where the sandbox reaches into moto lives here, against the moto version pinned in
pyproject.toml (5.2.5); ``check_moto_version`` refuses another one instead of failing obscurely.

1. Lambda: moto runs function code in Docker (``LambdaFunction._invoke_lambda``). We route
   invocations of *our* functions to their real handler modules, in this process, with the
   function's environment, and return what Lambda returns (payload, or an error document whose
   ``errorType`` Step Functions matches in Retry/Catch).
2. EventBridge: moto's rules deliver to neither Lambda nor Step Functions targets; we invoke the
   function asynchronously (a daemon thread, through 1.) or start the execution. A scheduled rule
   (no event pattern) matches every event in moto; it matches none here, as on AWS.
3. CloudFormation: moto creates ``AWS::StepFunctions::StateMachine`` in the non-executing backend
   and ignores ``DefinitionSubstitutions``; we apply them and use the executing backend.
4. CloudFormation: ``!Ref`` of an ``AWS::Lambda::Version`` gives moto's Python object instead of the
   version's ARN (what AWS returns); we give it that ARN.
"""

from __future__ import annotations

import contextvars
import importlib.util
import io
import json
import os
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

MOTO_VERSION = "5.2.5"


def check_moto_version() -> None:
    import moto

    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(
            f"the sandbox adapters are written for moto {MOTO_VERSION}, found {moto.__version__}; "
            "install the pinned dependencies (make venv)"
        )


# --------------------------------------------------------------------------- stdout capture


class _ContextStdout(io.TextIOBase):
    """sys.stdout replacement: code running in a context that set a sink writes there.

    A context variable rather than a thread-local, so that what a handler hands to a worker thread
    (anyio's thread pool copies the context) still writes to the handler's sink.
    """

    def __init__(self, real: Any):
        self.real = real
        self.sink: contextvars.ContextVar[Any] = contextvars.ContextVar("sluice_stdout_sink", default=None)

    def write(self, s: str) -> int:
        sink = self.sink.get()
        return sink.write(s) if sink is not None else self.real.write(s)

    def flush(self) -> None:
        if self.sink.get() is None:
            self.real.flush()

    def isatty(self) -> bool:
        return False


def capturing_stdout() -> _ContextStdout:
    if not isinstance(sys.stdout, _ContextStdout):
        sys.stdout = _ContextStdout(sys.stdout)
    return sys.stdout


# --------------------------------------------------------------------------- Lambda


@dataclass
class LocalFunction:
    """Where the code of one deployed function lives on disk."""

    code_dir: Path
    handler: str  # "app.handler"
    module: ModuleType | None = None


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    _deadline: float = field(default=0.0)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LocalLambda:
    """Runs deployed functions' handlers in this process (one invocation at a time)."""

    def __init__(self) -> None:
        self.functions: dict[str, LocalFunction] = {}
        self.lock = threading.RLock()
        self.invocations: list[dict[str, Any]] = []

    def register(self, function_name: str, code_dir: Path, handler: str) -> None:
        self.functions[function_name] = LocalFunction(Path(code_dir), handler)

    def _load(self, name: str, fn: LocalFunction) -> Any:
        module_name, _, attr = fn.handler.rpartition(".")
        if fn.module is None:
            path = fn.code_dir / (module_name.replace(".", "/") + ".py")
            spec = importlib.util.spec_from_file_location(f"sluice_fn_{name.replace('-', '_')}", path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load handler {fn.handler} from {fn.code_dir}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            fn.module = module
        return getattr(fn.module, attr)

    def invoke(self, lambda_fn: Any, event: Any) -> tuple[str, bool, str]:
        """Returns (payload, errored, logs) like moto's Docker path."""
        fn = self.functions[lambda_fn.function_name]
        stdout = capturing_stdout()
        buffer = io.StringIO()
        started = time.perf_counter()
        with self.lock:
            saved = dict(os.environ)
            os.environ.update({k: str(v) for k, v in (lambda_fn.environment_vars or {}).items()})
            os.environ["AWS_LAMBDA_FUNCTION_NAME"] = lambda_fn.function_name
            os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(lambda_fn.memory_size)
            token = stdout.sink.set(buffer)
            try:
                from sluice.settings import get_settings

                get_settings.cache_clear()
                handler = self._load(lambda_fn.function_name, fn)
                context = LambdaContext(
                    function_name=lambda_fn.function_name,
                    memory_limit_in_mb=int(lambda_fn.memory_size),
                    invoked_function_arn=lambda_fn.function_arn,
                    timeout_s=int(lambda_fn.timeout),
                )
                result = handler(event, context)
                payload, errored = json.dumps(result), False
            except Exception as exc:  # the Lambda runtime's contract: the error becomes the payload
                payload = json.dumps(
                    {
                        "errorMessage": str(exc),
                        "errorType": type(exc).__name__,
                        "stackTrace": traceback.format_exception(exc)[-6:],
                    }
                )
                errored = True
            finally:
                stdout.sink.reset(token)
                os.environ.clear()
                os.environ.update(saved)
        self.invocations.append(
            {
                "function": lambda_fn.function_name,
                "errored": errored,
                "seconds": round(time.perf_counter() - started, 3),
            }
        )
        return payload, errored, buffer.getvalue()


LOCAL_LAMBDA = LocalLambda()


# --------------------------------------------------------------------------- EventBridge


def _target_event(target: dict[str, Any], original_event: dict[str, Any], transform_input: bool) -> Any:
    """What EventBridge sends a target: the event, or its ``Input`` / ``InputTransformer`` rendering."""
    if "Input" in target:
        return json.loads(target["Input"])
    if transform_input and target.get("InputTransformer"):
        from moto.events.utils import EventTemplateParser

        transformer = target["InputTransformer"]
        event = {"ingestion-time": original_event.get("time"), **original_event}
        return EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=event,
        )
    return {k: v for k, v in original_event.items() if k != "ingestion-time"}  # moto's own field


def _start_execution(state_machine_arn: str, event: Any) -> None:
    """A Step Functions target: EventBridge names the execution itself (randomly)."""
    from moto.stepfunctions.responses import get_backend as sfn_backend
    from moto.utilities.arns import parse_arn

    arn = parse_arn(state_machine_arn)
    sfn_backend(arn.account, arn.region).start_execution(
        state_machine_arn,
        name=f"s3-{uuid.uuid4().hex[:20]}",
        execution_input=json.dumps(event, default=str),
    )


class EventBridgeDeliveries:
    """Lambda targets of EventBridge rules, invoked asynchronously as EventBridge does.

    Each delivery runs in a daemon thread (the S3 PutObject or PutEvents that caused it returns at
    once) through moto's Lambda model, hence through the in-process handler adapter above. What
    each invocation returned is kept in ``records`` (rule, target, event, payload, errored), so a
    caller can wait for a delivery and read, e.g., the trigger function's answer. There are no
    retries: a failed invocation is recorded with ``errored`` and its error document.
    """

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._done = threading.Condition()

    def deliver_async(self, rule: str, function_arn: str, event: Any) -> threading.Thread:
        thread = threading.Thread(
            target=self._deliver, args=(rule, function_arn, event), name=f"eventbridge-{rule}", daemon=True
        )
        thread.start()
        return thread

    def _deliver(self, rule: str, function_arn: str, event: Any) -> None:
        from moto.awslambda.utils import get_backend
        from moto.utilities.arns import parse_arn

        record: dict[str, Any] = {"rule": rule, "target": function_arn, "event": event}
        try:
            arn = parse_arn(function_arn)
            function = get_backend(arn.account, arn.region).get_function(function_arn)
            record["function"] = function.function_name
            response_headers: dict[str, str] = {}
            payload = function.invoke(
                json.dumps(event, default=str), {"x-amz-invocation-type": "Event"}, response_headers
            )
            record["payload"] = json.loads(payload) if payload else None
            record["errored"] = "x-amz-function-error" in response_headers
        except Exception as exc:  # asynchronous in AWS too: the caller never sees it
            record["payload"] = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            record["errored"] = True
        with self._done:
            self.records.append(record)
            self._done.notify_all()

    def wait(self, count: int, timeout: float = 30.0, function: str | None = None) -> list[dict[str, Any]]:
        """Block until ``count`` deliveries (to ``function``, if given) are recorded; returns them."""

        def matching() -> list[dict[str, Any]]:
            return [r for r in self.records if function is None or r.get("function") == function]

        with self._done:
            if not self._done.wait_for(lambda: len(matching()) >= count, timeout=timeout):
                raise TimeoutError(f"{len(matching())} of {count} EventBridge deliveries after {timeout}s")
            return matching()


EVENTBRIDGE = EventBridgeDeliveries()
_installed = False


def install() -> LocalLambda:
    """Patch moto once per process; returns the registry of local functions."""
    global _installed
    if _installed:
        return LOCAL_LAMBDA
    check_moto_version()

    from moto.awslambda.models import LambdaFunction
    from moto.events.models import Rule
    from moto.stepfunctions.models import StateMachine
    from moto.stepfunctions.responses import get_backend as sfn_backend

    original_invoke = LambdaFunction._invoke_lambda

    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        if self.function_name not in LOCAL_LAMBDA.functions:
            return original_invoke(self, event)
        payload, errored, logs = LOCAL_LAMBDA.invoke(self, event if event is not None else {})
        self.logs_backend.ensure_log_group(self.logs_group_name)
        self.save_logs(logs + ("\n" if logs else "") + payload)
        return payload, errored, logs

    LambdaFunction._invoke_lambda = _invoke_lambda  # type: ignore[method-assign]

    original_send = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        from moto.utilities.arns import parse_arn

        if self.scheduled_expression and not self.event_pattern._pattern:
            return  # a schedule (e.g. the monitor's) matches no event; moto would deliver them all
        ours = {"states", "lambda"}
        delivered = [t for t in self.targets if parse_arn(t["Arn"]).service in ours]
        others = [t for t in self.targets if t not in delivered]
        if delivered and self.event_pattern.matches_event(original_event):
            for target in delivered:
                event = _target_event(target, original_event, transform_input)
                if parse_arn(target["Arn"]).service == "states":
                    _start_execution(target["Arn"], event)
                else:
                    EVENTBRIDGE.deliver_async(self.name, target["Arn"], event)
        if others:
            self.targets, kept = others, self.targets
            try:
                original_send(self, original_event, transform_input)
            finally:
                self.targets = kept

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]

    def create_from_cloudformation_json(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        from moto.stepfunctions.utils import cfn_to_api_tags

        properties = cloudformation_json["Properties"]
        definition = properties.get("DefinitionString") or json.dumps(properties.get("Definition", {}))
        for key, value in (properties.get("DefinitionSubstitutions") or {}).items():
            definition = definition.replace("${" + key + "}", str(value))
        name = properties.get("StateMachineName", resource_name)
        return sfn_backend(account_id, region_name).create_state_machine(
            name, definition, properties.get("RoleArn", ""), tags=cfn_to_api_tags(properties.get("Tags", []))
        )

    StateMachine.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)  # type: ignore[assignment]

    from moto.awslambda.models import LambdaVersion
    from moto.awslambda.utils import make_function_ver_arn

    create_version = LambdaVersion.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_version_with_arn(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        version = create_version(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        name = str(cloudformation_json["Properties"]["FunctionName"]).split(":")[-1]
        version.physical_resource_id = make_function_ver_arn(region_name, account_id, name, version.version)
        return version

    LambdaVersion.create_from_cloudformation_json = classmethod(create_version_with_arn)  # type: ignore[assignment]
    _installed = True
    return LOCAL_LAMBDA
