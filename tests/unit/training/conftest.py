"""Real transaction files, typed by the real ingest, and one household model trained per session."""

from __future__ import annotations

import pandas as pd
import pytest

from sluice.ingest import ingest_bytes
from sluice.specs import ModelSpec, load_dataset_spec, load_model_spec
from tests.events import DATA
from training.train import TrainedModel, train_model

HOUSEHOLD = DATA / "transactions" / "daily_household_transactions.csv"
TITANS = DATA / "transactions" / "titans_all_transactions.csv"


def curated(path) -> pd.DataFrame:
    """What training reads: the canonical, typed columns ingest produces."""
    return ingest_bytes(path.read_bytes(), load_dataset_spec("transactions")).clean


@pytest.fixture(scope="session")
def spec() -> ModelSpec:
    return load_model_spec("transaction-category")


@pytest.fixture(scope="session")
def household_df() -> pd.DataFrame:
    return curated(HOUSEHOLD)


@pytest.fixture(scope="session")
def titans_df() -> pd.DataFrame:
    return curated(TITANS)


@pytest.fixture(scope="session")
def household_sample(household_df) -> pd.DataFrame:
    """A quarter of the household file (fixed seed), for tests that train several models."""
    return household_df.sample(n=600, random_state=7).reset_index(drop=True)


@pytest.fixture(scope="session")
def household_model(spec, household_df) -> TrainedModel:
    return train_model(spec, household_df)


@pytest.fixture(scope="session")
def titans_model(spec, titans_df) -> TrainedModel:
    return train_model(spec, titans_df)
