"""Every file in ../shared/data through its built-in dataset spec: values, types and row accounting.

Expected values are computed here from the raw text with the csv module (or stated in data/README.md),
not taken from the engine under test.
"""

from __future__ import annotations

import csv
import gzip
import io
import math

import pandas as pd
import pytest

from sluice.ingest import ingest_bytes
from sluice.specs import load_dataset_spec
from tests.unit.ingest.helpers import (
    CHURN,
    HOUSEHOLD,
    REVENUE,
    SHUTTLE,
    TITANS,
    WINE,
    assert_accounting,
    rows_of,
)


@pytest.fixture(scope="module")
def churn():
    return ingest_bytes(CHURN.read_bytes(), load_dataset_spec("churn"))


@pytest.fixture(scope="module")
def wine():
    return ingest_bytes(WINE.read_bytes(), load_dataset_spec("wine-quality"))


@pytest.fixture(scope="module")
def shuttle():
    return ingest_bytes(SHUTTLE.read_bytes(), load_dataset_spec("shuttle-anomaly"))


@pytest.fixture(scope="module")
def revenue():
    return ingest_bytes(REVENUE.read_bytes(), load_dataset_spec("daily-revenue"))


def test_household_values_against_the_raw_text():
    outcome = ingest_bytes(HOUSEHOLD.read_bytes(), load_dataset_spec("transactions"))
    assert_accounting(outcome)
    rows = rows_of(HOUSEHOLD)[1:]
    df = outcome.clean
    assert len(df) == len(rows) == 2461
    assert df["amount"].tolist() == [float(r[5]) for r in rows]
    assert df["description"].fillna("").tolist() == [r[4].strip() for r in rows]
    # both date formats of the file, each parsed with its own format
    for r, ts in zip(rows[:50], df["date"][:50], strict=True):
        fmt = "%d-%m-%Y %H:%M" if " " in r[0] else "%d-%m-%Y"
        assert ts == pd.Timestamp(pd.to_datetime(r[0], format=fmt))
    assert outcome.quality["format"]["line_endings"] == "CRLF"
    assert outcome.quality["parser"] == {"pandas": 1}  # the fast path, quoted notes included
    assert outcome.profile["columns"]["category"]["top"][0] == {"value": "Food", "count": 907}


def test_titans_signed_amounts_and_no_trailing_newline():
    outcome = ingest_bytes(TITANS.read_bytes(), load_dataset_spec("transactions"))
    assert not TITANS.read_bytes().endswith(b"\n")
    rows = rows_of(TITANS)[1:]
    assert outcome.rows_clean == len(rows) == 127
    assert outcome.clean["amount"].tolist() == [float(r[3]) for r in rows]
    assert outcome.clean["receipt_url"].fillna("").tolist() == [r[8] for r in rows]


def test_churn_total_charges_blanks_are_nulls_and_every_rule_passes(churn):
    assert_accounting(churn)
    rows = rows_of(CHURN)
    header, body = rows[0], rows[1:]
    q = churn.quality
    assert q["rows_read"] == q["rows_clean"] == 7043 and q["failures"] == {}
    df = churn.clean
    blanks = [i for i, r in enumerate(body) if not r[header.index("TotalCharges")].strip()]
    assert len(blanks) == 11
    assert df["total_charges"].isna().sum() == 11
    assert df.loc[blanks, "tenure"].eq(0).all()  # new customers, no charges yet
    assert df["total_charges"].dropna().tolist() == [
        float(r[header.index("TotalCharges")]) for r in body if r[header.index("TotalCharges")].strip()
    ]
    assert (df["churn"] == "Yes").sum() == 1869
    assert df["tenure"].dtype == "Int64" and df["senior_citizen"].dtype == "Int64"
    assert df["customer_id"].is_unique
    assert q["null_rates"]["total_charges"] == pytest.approx(11 / 7043, abs=1e-6)
    assert q["column_mapping"]["customerID"] == "customer_id"


def test_wine_semicolons_and_quoted_header(wine):
    assert_accounting(wine)
    q = wine.quality
    assert q["format"]["delimiter"] == ";" and q["format"]["quoting"] == "minimal"
    assert q["column_mapping"]["fixed acidity"] == "fixed_acidity" and q["column_mapping"]["pH"] == "ph"
    assert q["rows_clean"] == 1599 and q["failures"] == {}
    rows = rows_of(WINE, delimiter=";")[1:]
    assert wine.clean["alcohol"].tolist() == [float(r[10]) for r in rows]
    counts = wine.clean["quality"].value_counts().to_dict()
    assert counts == {5: 681, 6: 638, 7: 199, 4: 53, 8: 18, 3: 10}
    assert wine.clean.iloc[0]["density"] == pytest.approx(0.9978)


def test_shuttle_is_gunzipped_on_the_fly(shuttle):
    assert_accounting(shuttle)
    q = shuttle.quality
    assert q["format"]["compression"] == "gzip"
    assert q["rows_clean"] == 49097
    assert int(shuttle.clean["anomaly"].sum()) == 3511
    text = gzip.decompress(SHUTTLE.read_bytes()).decode()
    first = next(csv.reader(io.StringIO(text.splitlines()[1])))
    assert shuttle.clean.iloc[0][[f"f{i}" for i in range(1, 10)]].tolist() == [float(v) for v in first[:9]]
    assert shuttle.profile["columns"]["anomaly"]["count"] == 49097


def test_daily_revenue_dates_are_unique_and_complete(revenue):
    assert_accounting(revenue)
    df = revenue.clean
    assert len(df) == 546 and revenue.quality["failures"] == {}
    assert df["date"].min() == pd.Timestamp("1997-01-01") and df["date"].max() == pd.Timestamp("1998-06-30")
    assert df["date"].diff().dropna().eq(pd.Timedelta(days=1)).all()
    assert df["revenue"].iloc[0] == pytest.approx(7515.35)
    assert df["n_transactions"].dtype == "Int64"
    months = revenue.profile["columns"]["date"]["months"]
    assert months["1997-01"] == 31 and months["1998-06"] == 30 and len(months) == 18
    assert math.isclose(sum(months.values()), 546)
