"""The api function's PreTraffic check: replay the sample requests against the new version.

CodeDeploy shifts traffic to a new version of the api function only after its PreTraffic hook
reports ``Succeeded``. The hook (functions/pretraffic/app.py) invokes the *new* version directly
with every sample API Gateway event of ``events/api/`` (bundled with the hook) and compares each
answer with ``events/api/expected.yaml``: the status, the error code and the field it names, and the
shape of a prediction. A model-dependent sample is judged by what the new version itself says it
serves (``GET /v1/models``): with the model registered it must predict, without it it must answer
404 in the error shape. Any other answer (a 5xx, a wrong status, a malformed body, an invocation
error) fails the deployment and CodeDeploy rolls back; so does an exception in the hook itself.

The CodeDeploy call sits behind ``HookReporter`` so that the replay is tested in-process against the
real handler (moto has no CodeDeploy lifecycle hooks).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

Invoke = Callable[[dict[str, Any]], dict[str, Any]]  # API Gateway event -> Lambda proxy response
PREDICTION_KEYS = {"model", "version", "request_id", "predictions"}


@dataclass(frozen=True)
class Case:
    name: str
    event: dict[str, Any]
    status: int
    code: str | None = None
    field: str | None = None
    model: str | None = None  # the answer depends on this model being served


@dataclass
class ReplayReport:
    passed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.passed) and not self.failures

    def summary(self) -> str:
        if self.ok:
            return f"{len(self.passed)} sample requests answered as expected"
        return (
            f"{len(self.failures)} of {len(self.passed) + len(self.failures)} samples failed: "
            + "; ".join(self.failures)
        )


def load_cases(folder: Path) -> list[Case]:
    """The samples of ``folder`` (``*.json`` API Gateway events) with their ``expected.yaml`` entries;
    a sample without an expectation (or the reverse) is an error, so none is silently skipped."""
    expected = yaml.safe_load((folder / "expected.yaml").read_text()) or {}
    events = {p.stem: p for p in sorted(folder.glob("*.json"))}
    if set(events) != set(expected):
        raise ValueError(
            f"{folder}: samples without expectations {sorted(set(events) - set(expected))}, "
            f"expectations without samples {sorted(set(expected) - set(events))}"
        )
    return [
        Case(name=name, event=json.loads(events[name].read_text()), **expected[name])
        for name in sorted(events)
    ]


def _body(response: Mapping[str, Any]) -> Any:
    try:
        return json.loads(response.get("body") or "null")
    except ValueError:
        return None


def served_models(invoke: Invoke, cases: list[Case]) -> set[str]:
    """The names the new version lists at ``GET /v1/models`` (taken from the list_models sample)."""
    listing = next((c for c in cases if c.event.get("path") == "/v1/models"), None)
    if listing is None:
        return set()
    body = _body(invoke(listing.event))
    models = body.get("models", []) if isinstance(body, dict) else []
    return {m["name"] for m in models if isinstance(m, dict) and m.get("champion_version")}


def judge(case: Case, response: Mapping[str, Any], served: set[str]) -> str | None:
    """None when the answer is right; else what is wrong with it."""
    status, code, fld = case.status, case.code, case.field
    if case.model is not None and case.model not in served:
        status, code, fld = 404, "not_found", None
    actual = response.get("statusCode")
    body = _body(response)
    if actual != status:
        return f"{case.name}: status {actual}, expected {status}"
    if not isinstance(body, dict):
        return f"{case.name}: the body is not a JSON object"
    if status >= 400:
        error = body.get("error")
        if not isinstance(error, dict) or not body.get("request_id"):
            return f"{case.name}: the error is not in the API's error shape"
        if code is not None and error.get("code") != code:
            return f"{case.name}: error code {error.get('code')!r}, expected {code!r}"
        if fld is not None and fld not in {d.get("field") for d in error.get("details", [])}:
            return f"{case.name}: the error does not name the field {fld!r}"
    elif case.event.get("path", "").endswith("/predict"):
        missing = PREDICTION_KEYS - set(body)
        if missing or body.get("model") != case.model or not body.get("predictions"):
            return f"{case.name}: not a prediction of {case.model} (missing {sorted(missing)})"
    return None


def replay(invoke: Invoke, cases: list[Case]) -> ReplayReport:
    report = ReplayReport()
    try:
        served = served_models(invoke, cases)
    except Exception as exc:  # the new version cannot even list its models
        report.failures.append(f"GET /v1/models: {type(exc).__name__}: {exc}")
        return report
    for case in cases:
        try:
            problem = judge(case, invoke(case.event), served)
        except Exception as exc:
            problem = f"{case.name}: {type(exc).__name__}: {exc}"
        (report.failures if problem else report.passed).append(problem or case.name)
    return report


class HookReporter(Protocol):
    def report(self, deployment_id: str, execution_id: str, succeeded: bool) -> None: ...


class CodeDeployReporter:
    """Tells CodeDeploy the hook's verdict."""

    def __init__(self, client: Any = None):
        self._client = client

    def report(self, deployment_id: str, execution_id: str, succeeded: bool) -> None:
        from sluice.aws import client

        codedeploy = self._client or client("codedeploy")
        codedeploy.put_lifecycle_event_hook_execution_status(
            deploymentId=deployment_id,
            lifecycleEventHookExecutionId=execution_id,
            status="Succeeded" if succeeded else "Failed",
        )


def run_hook(
    event: Mapping[str, Any], invoke: Invoke, cases: list[Case], reporter: HookReporter
) -> ReplayReport:
    """Replay ``cases`` through ``invoke`` and report the verdict for CodeDeploy's ``event``.

    The verdict is reported whatever happens (a hook that never reports stalls the deployment until
    CodeDeploy's timeout); an error while replaying counts as a failure."""
    deployment_id = event["DeploymentId"]
    execution_id = event["LifecycleEventHookExecutionId"]
    try:
        report = replay(invoke, cases)
    except Exception as exc:
        report = ReplayReport(failures=[f"replay: {type(exc).__name__}: {exc}"])
    reporter.report(deployment_id, execution_id, report.ok)
    return report
