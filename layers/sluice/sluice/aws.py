"""boto3 clients, created once per process.

boto3 honours ``AWS_ENDPOINT_URL``, which is how the local sandbox points every client at the
embedded AWS; nothing here knows whether it talks to AWS or to the sandbox.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from sluice.settings import get_settings

_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"})


@cache
def client(service: str) -> Any:
    return boto3.client(service, region_name=get_settings().region, config=_CONFIG)


def reset_clients() -> None:
    """Forget cached clients (tests that start a new moto mock, or the sandbox after a restart)."""
    client.cache_clear()
