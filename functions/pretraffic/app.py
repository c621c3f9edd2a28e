"""CodeDeploy PreTraffic hook of the api function: replay the sample requests against the new version.

CodeDeploy calls this with ``DeploymentId`` and ``LifecycleEventHookExecutionId`` after publishing the
new version and before moving any traffic to it. ``samples/`` is ``events/api/`` (a link in the
repository, copied as files by ``sam build``): the same events the handler tests use, with the answers
``expected.yaml`` requires. See ``sluice.deployment`` for how answers are judged; any wrong answer
reports ``Failed`` and CodeDeploy keeps the old version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sluice.aws import client
from sluice.deployment import CodeDeployReporter, load_cases, run_hook

SAMPLES = Path(__file__).resolve().parent / "samples"
logger = Logger(service="pretraffic")


def invoke_version(function: str) -> Any:
    """Call ``function`` (a qualified ARN: the new version) with an event; return its response."""
    lam = client("lambda")

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        out = lam.invoke(FunctionName=function, Payload=json.dumps(event).encode())
        payload = json.loads(out["Payload"].read() or b"null")
        if out.get("FunctionError"):
            raise RuntimeError(f"the function failed: {payload}")
        return payload

    return invoke


@logger.inject_lambda_context(log_event=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    target = os.environ["SLUICE_TARGET_FUNCTION"]
    report = run_hook(event, invoke_version(target), load_cases(SAMPLES), CodeDeployReporter())
    (logger.info if report.ok else logger.error)(
        "pre-traffic check", extra={"target": target, "passed": report.passed, "failures": report.failures}
    )
    return {"ok": report.ok, "summary": report.summary()}
