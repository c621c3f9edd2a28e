"""Fixtures of the handler tests. A test module names its function in ``FUNCTION`` ("ingest", ...)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.handlers.support import Storage, load_app, moto_storage


def _function(request: pytest.FixtureRequest) -> str:
    function = getattr(request.module, "FUNCTION", None)
    assert function, f"{request.module.__name__} must name its function: FUNCTION = '<name>'"
    return function


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Storage]:
    """moto with the data bucket and the registry table, the function's environment set."""
    with moto_storage(monkeypatch, _function(request)) as storage:
        yield storage


@pytest.fixture
def s3(aws: Storage) -> Any:
    return aws.s3


@pytest.fixture
def handler(aws: Storage, request: pytest.FixtureRequest) -> Any:
    """functions/<FUNCTION>/app.py's handler, loaded after the environment is set (Powertools reads it)."""
    return load_app(_function(request)).handler
