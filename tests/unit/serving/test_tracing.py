"""The api handler and the X-Ray tracer: wrapped where tracing is on, untouched (and the X-Ray SDK not
even imported) where it is off. Each case runs in a fresh interpreter: the choice is made at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("api_app", "functions/api/app.py")
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
print(json.dumps({
    "tracer": app.tracer is not None,
    "wrapped": app.handler is not app._handle,
    "xray_imported": "aws_xray_sdk.core" in sys.modules,
}))
"""


def probe(**env: str) -> dict[str, bool]:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("POWERTOOLS_TRACE_DISABLED", "LAMBDA_TASK_ROOT")
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**clean, "AWS_DEFAULT_REGION": "us-east-1", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("env", "traced"),
    [
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),  # on Lambda, tracing on (Tracing: Active)
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({}, False),  # outside Lambda: no X-Ray daemon to send to
    ],
    ids=["lambda", "disabled", "local"],
)
def test_the_handler_is_traced_only_where_tracing_is_on(env: dict[str, str], traced: bool) -> None:
    assert probe(**env) == {"tracer": traced, "wrapped": traced, "xray_imported": traced}
