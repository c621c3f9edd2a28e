"""Test-wide settings: fake credentials only, nothing reaches a real AWS account."""

from __future__ import annotations

import os

import pytest

# Set before any test module creates a boto3 client. Never real credentials.
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_var, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Sluice-test",
        "POWERTOOLS_SERVICE_NAME": "sluice-test",
    }
)


@pytest.fixture(autouse=True)
def _fresh_runtime_caches(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """Settings and boto3 clients are cached per process; each test starts without them, and with
    an empty model cache of its own (the API's artifacts on disk, sluice.serving.cache)."""
    from sluice.aws import reset_clients
    from sluice.settings import get_settings

    monkeypatch.setenv("SLUICE_MODEL_CACHE_DIR", str(tmp_path_factory.mktemp("model-cache")))
    reset_clients()
    get_settings.cache_clear()
    yield
    reset_clients()
    get_settings.cache_clear()
