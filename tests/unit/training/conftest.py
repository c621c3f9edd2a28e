"""Real data files, typed by the real ingest, and a few models trained once per session.

Specs used by tests that train many models are the built-in ones with fewer CV folds (``quick``):
the behaviour is the same, the run shorter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sluice.ingest import ingest_bytes
from sluice.specs import ModelSpec, load_dataset_spec, load_model_spec, parse_model_spec
from tests.events import DATA
from training.train import TrainedModel, train_model

HOUSEHOLD = DATA / "transactions" / "daily_household_transactions.csv"
TITANS = DATA / "transactions" / "titans_all_transactions.csv"
CHURN = DATA / "churn" / "telco_customer_churn_ibm.csv"
WINE = DATA / "tabular" / "winequality-red.csv"
SHUTTLE = DATA / "anomaly" / "shuttle_anomaly.csv.gz"


def curated(path: Path, dataset: str = "transactions") -> pd.DataFrame:
    """What training reads: the canonical, typed columns ingest produces."""
    return ingest_bytes(path.read_bytes(), load_dataset_spec(dataset)).clean


def quick(spec: ModelSpec | str, **changes: Any) -> ModelSpec:
    """``spec`` with 2 CV folds and ``changes`` applied (validated like any spec)."""
    if isinstance(spec, str):
        spec = load_model_spec(spec)
    data = spec.to_dict()
    data["split"] = {**data.get("split", {}), "cv_folds": 2}
    return parse_model_spec({**data, **changes})


def only(spec: ModelSpec | str, name: str, **params: Any) -> ModelSpec:
    """``quick(spec)`` with one candidate."""
    return quick(spec, candidates=[{"name": name, "params": params}])


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
def churn_df() -> pd.DataFrame:
    return curated(CHURN, "churn")


@pytest.fixture(scope="session")
def wine_df() -> pd.DataFrame:
    return curated(WINE, "wine-quality")


@pytest.fixture(scope="session")
def shuttle_df() -> pd.DataFrame:
    """A fixed sample of the shuttle file (49k rows) with its anomaly share intact."""
    return curated(SHUTTLE, "shuttle-anomaly").sample(n=4000, random_state=3).reset_index(drop=True)


@pytest.fixture(scope="session")
def household_sample(household_df) -> pd.DataFrame:
    """A quarter of the household file (fixed seed), for tests that train several models."""
    return household_df.sample(n=600, random_state=7).reset_index(drop=True)


@pytest.fixture(scope="session")
def churn_sample(churn_df) -> pd.DataFrame:
    """1000 customers plus every customer whose total charges are blank (tenure 0)."""
    blank = churn_df[churn_df["total_charges"].isna()]
    assert len(blank) == 11
    return (
        pd.concat([churn_df.sample(n=1000, random_state=5), blank]).drop_duplicates().reset_index(drop=True)
    )


@pytest.fixture(scope="session")
def household_model(spec, household_df) -> TrainedModel:
    """The household category model with the spec's linear candidate (the one it selects)."""
    return train_model(only(spec, "logistic_regression", C=20.0), household_df)


@pytest.fixture(scope="session")
def titans_model(spec, titans_df) -> TrainedModel:
    return train_model(only(spec, "logistic_regression", C=20.0), titans_df)


@pytest.fixture(scope="session")
def churn_model(churn_sample) -> TrainedModel:
    return train_model(only("churn", "logistic_regression"), churn_sample)


@pytest.fixture(scope="session")
def wine_model(wine_df) -> TrainedModel:
    return train_model(only("wine-quality", "ridge"), wine_df)


@pytest.fixture(scope="session")
def shuttle_model(shuttle_df) -> TrainedModel:
    return train_model(only("shuttle-anomaly", "isolation_forest"), shuttle_df)
