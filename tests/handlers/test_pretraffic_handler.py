"""The PreTraffic hook's handler: its bundled samples, the target it invokes and the verdict it reports.

The new version is the real api handler, in process (moto runs no Lambda code), on a stack without
models; the CodeDeploy call is an in-memory ``HookReporter`` (moto has no lifecycle hooks).
"""

from __future__ import annotations

from typing import Any

import pytest

from sluice.deployment import load_cases
from tests.events import EVENTS, load_event
from tests.handlers.support import fresh_api, load_app, set_handler_env
from tests.lambda_context import lambda_context

FUNCTION = "pretraffic"
TARGET = "arn:aws:lambda:us-east-1:123456789012:function:sluice-dev-ApiFunction:7"


class Verdicts:
    calls: list[tuple[str, str, bool]] = []

    def report(self, deployment_id: str, execution_id: str, succeeded: bool) -> None:
        Verdicts.calls.append((deployment_id, execution_id, succeeded))


def test_bundled_samples_are_the_api_events() -> None:
    module = load_app(FUNCTION)

    assert [c.name for c in load_cases(module.SAMPLES)] == [c.name for c in load_cases(EVENTS / "api")]


def test_handler_replays_the_samples_against_the_target_version(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_TARGET_FUNCTION", TARGET)
    module = load_app(FUNCTION)
    with monkeypatch.context() as mp:
        set_handler_env(mp, "api", SLUICE_LOCAL_API_KEYS="")
        api = fresh_api()
    targets: list[str] = []

    def invoke_version(function: str) -> Any:
        targets.append(function)
        return lambda event: api.handler(event, lambda_context("sluice-dev-ApiFunction"))

    monkeypatch.setattr(module, "invoke_version", invoke_version)
    monkeypatch.setattr(module, "CodeDeployReporter", Verdicts)
    Verdicts.calls = []
    event = load_event("pretraffic/lifecycle_hook.json")

    out = module.handler(event, lambda_context("CodeDeployHook_sluice-dev-api-pretraffic"))

    assert out["ok"] is True, out
    assert targets == [TARGET]
    assert Verdicts.calls == [(event["DeploymentId"], event["LifecycleEventHookExecutionId"], True)]
