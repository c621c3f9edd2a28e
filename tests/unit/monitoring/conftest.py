"""Real files split into a reference part (ingested: its profile.json) and a held-out part (the
"captured requests", as the API would store them: raw JSON fields, ISO dates, null as None)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sluice.ingest import ingest_bytes
from sluice.specs import load_dataset_spec
from tests.events import DATA

HOUSEHOLD = DATA / "transactions" / "daily_household_transactions.csv"
CHURN = DATA / "churn" / "telco_customer_churn_ibm.csv"
REFERENCE_SHARE = 0.7


@dataclass
class Split:
    """``profile``: profile.json of the reference part; ``reference``/``held_out``: curated rows."""

    profile: dict[str, Any]
    reference: pd.DataFrame
    held_out: pd.DataFrame
    columns: dict[str, str]  # the model's features: name -> dataset column type

    def captures(self) -> pd.DataFrame:
        return as_captures(self.held_out)


def feature_types(dataset: str, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    return {c.name: c.type for c in load_dataset_spec(dataset).columns if c.name not in exclude}


@functools.cache
def split(path: Path, dataset: str, seed: int, exclude: tuple[str, ...] = ()) -> Split:
    """A random ``REFERENCE_SHARE`` of the file's rows (fixed seed) through the real ingest, and the
    rest. Cached, so shared between tests: copy before changing."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    part = raw.sample(frac=REFERENCE_SHARE, random_state=seed)
    spec = load_dataset_spec(dataset)
    reference = ingest_bytes(part.to_csv(index=False).encode(), spec)
    held_out = ingest_bytes(raw.drop(part.index).to_csv(index=False).encode(), spec)
    return Split(reference.profile, reference.clean, held_out.clean, feature_types(dataset, exclude))


def as_captures(df: pd.DataFrame) -> pd.DataFrame:
    """Curated rows -> what the monitor loads from the captures: one JSON record per request."""
    out = df.copy()
    for name in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[name]):
            out[name] = out[name].dt.strftime("%Y-%m-%dT%H:%M:%S")
    records = out.astype(object).where(out.notna(), None).to_dict("records")
    return pd.DataFrame.from_records(records, columns=list(out.columns))


@pytest.fixture(scope="session")
def household() -> Split:
    return split(HOUSEHOLD, "transactions", 0)


@pytest.fixture(scope="session")
def churn() -> Split:
    return split(CHURN, "churn", 0, exclude=("customer_id", "churn"))
