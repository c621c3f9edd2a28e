"""Fixtures shared by the ingest tests: the transactions spec and the household file ingested once."""

from __future__ import annotations

import pytest

from sluice.ingest import ingest_bytes
from sluice.specs import load_dataset_spec
from tests.unit.ingest.helpers import HOUSEHOLD


@pytest.fixture(scope="module")
def spec():
    return load_dataset_spec("transactions")


@pytest.fixture(scope="module")
def household(spec):
    return ingest_bytes(HOUSEHOLD.read_bytes(), spec)
