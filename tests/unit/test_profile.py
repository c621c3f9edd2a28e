"""sluice.profile: per-column statistics, exact where promised, and independent of chunking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sluice.ingest import ingest_bytes
from sluice.profile import Categories, Coded, Profiler, profile_frame
from sluice.specs import load_dataset_spec
from tests.events import DATA

HOUSEHOLD = DATA / "transactions" / "daily_household_transactions.csv"


@pytest.fixture(scope="module")
def household():
    return ingest_bytes(HOUSEHOLD.read_bytes(), load_dataset_spec("transactions"))


def test_numeric_statistics_match_pandas(household):
    amount = household.clean["amount"]
    p = household.profile["columns"]["amount"]
    assert p["kind"] == "numeric" and p["type"] == "float"
    assert p["count"] == amount.count() == 2461 and p["nulls"] == 0
    assert p["min"] == amount.min() and p["max"] == amount.max()
    assert p["mean"] == pytest.approx(amount.mean(), rel=1e-12)
    assert p["std"] == pytest.approx(amount.std(), rel=1e-9)
    expected = np.quantile(amount, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
    assert list(p["quantiles"].values()) == pytest.approx(expected)  # exact: fewer rows than the sample
    assert list(p["quantiles"]) == ["0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99"]
    h = p["histogram"]
    assert len(h["edges"]) == 21 and len(h["counts"]) == 20
    assert sum(h["counts"]) + h["below"] + h["above"] == 2461
    lo, hi = np.quantile(amount.iloc[:10_000], [0.01, 0.99])
    assert h["edges"][0] == pytest.approx(lo) and h["edges"][-1] == pytest.approx(hi)
    inside = amount[(amount >= lo) & (amount <= hi)]
    assert h["counts"] == np.histogram(inside, bins=h["edges"])[0].tolist()
    assert h["above"] == int((amount > hi).sum())


def test_categorical_text_and_datetime(household):
    cols = household.profile["columns"]
    cat = cols["category"]
    counts = household.clean["category"].value_counts()
    assert cat["distinct"] == counts.size and cat["distinct_exact"] is True
    assert [t["value"] for t in cat["top"][:3]] == counts.index[:3].tolist()
    assert cat["top"][0]["count"] == 907
    assert cat["other"] == 2461 - sum(t["count"] for t in cat["top"])
    assert len(cat["top"]) == 20
    sub = cols["subcategory"]
    assert sub["nulls"] == 635 and sub["count"] == 2461 - 635
    note = cols["description"]
    assert note["kind"] == "text" and note["nulls"] == 521
    lengths = household.clean["description"].dropna().str.len()
    assert note["length"]["max"] == lengths.max() and note["length"]["mean"] == pytest.approx(lengths.mean())
    date = cols["date"]
    dates = household.clean["date"]
    assert date["min"] == dates.min().isoformat() and date["max"] == dates.max().isoformat()
    assert date["months"] == {
        str(k): int(v) for k, v in dates.dt.to_period("M").value_counts().sort_index().items()
    }
    assert household.profile["rows"] == 2461 and household.profile["quantiles_exact"] is True


def test_profile_frame_of_the_curated_data_equals_the_streamed_profile(household):
    again = profile_frame(household.clean, household.types)
    assert _close(again, household.profile)


def _close(a, b):
    import json

    def norm(x):
        return json.loads(json.dumps(x), parse_float=lambda s: round(float(s), 9))

    assert norm(a["columns"]) == norm(b["columns"])
    return True


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def test_chunking_does_not_change_the_profile():
    rng = np.random.default_rng(1)
    n = 30_000
    values = rng.lognormal(3, 1, n)
    values[rng.random(n) < 0.05] = np.nan
    words = np.array([f"w{i}" for i in range(50)], dtype=object)
    codes = rng.integers(0, 50, n)
    stamps = (np.datetime64("2020-01-01", "us") + rng.integers(0, 10**6, n) * 60_000_000).view(np.int64)
    types = {"x": "float", "c": "string", "d": "datetime", "t": "text"}

    def run(size: int):
        p = Profiler(types, sample_size=5000, warmup_rows=7000, max_tracked=30)
        for s in _chunks(n, size):
            k = codes[s]
            p.update(
                s.stop - s.start,
                {
                    "x": values[s],
                    "c": Categories(k, words.tolist(), np.zeros(50, dtype=bool)),
                    "d": stamps[s],
                    "t": Coded(np.arange(50, dtype=np.float64), k),
                },
            )
        return p.result()

    whole = run(n)
    for size in (1000, 4999, 7001):
        assert _close(run(size), whole)
    x = whole["columns"]["x"]
    assert x["nulls"] == int(np.isnan(values).sum())
    assert x["histogram"]["edges_from"] == "1st-99th percentile of the first 7000 rows"
    assert whole["quantiles_exact"] is False
    c = whole["columns"]["c"]
    assert c["distinct_exact"] is False and c["top_exact"] is False  # 50 values, 30 tracked
    assert abs(c["distinct"] - 50) <= 2  # HyperLogLog estimate
    assert sum(whole["columns"]["d"]["months"].values()) == n


def test_reference_bins_are_reused():
    ref = Profiler({"x": "float"})
    ref.update(4, {"x": np.array([0.0, 1.0, 2.0, 3.0])})
    reference = ref.result()
    p = Profiler({"x": "float"}, reference=reference)
    p.update(3, {"x": np.array([-5.0, 1.5, 99.0])})
    h = p.result()["columns"]["x"]["histogram"]
    assert h["edges"] == reference["columns"]["x"]["histogram"]["edges"]
    assert (h["below"], h["above"], sum(h["counts"])) == (1, 1, 1)
    assert h["edges_from"] == "reference profile"


def test_empty_and_constant_columns():
    p = Profiler({"x": "float", "c": "string", "d": "datetime"})
    p.update(
        3,
        {
            "x": np.array([2.0, 2.0, 2.0]),
            "c": Categories(np.zeros(3, int), [""], np.array([True])),
            "d": np.full(3, np.iinfo(np.int64).min),
        },
    )
    r = p.result()["columns"]
    assert r["x"]["std"] == 0.0 and r["x"]["histogram"]["edges"][0] < 2.0 < r["x"]["histogram"]["edges"][-1]
    assert r["c"] == {
        "type": "string",
        "kind": "categorical",
        "count": 0,
        "nulls": 3,
        "distinct": 0,
        "distinct_exact": True,
        "top": [],
        "other": 0,
        "top_exact": True,
    }
    assert r["d"]["min"] is None and r["d"]["nulls"] == 3


def test_profile_frame_handles_pandas_dtypes():
    df = pd.DataFrame(
        {
            "n": pd.array([1, None, 3], dtype="Int64"),
            "s": pd.array(["a", None, "a"], dtype="string"),
            "d": pd.to_datetime(["2024-01-01", None, "2024-02-01"]),
        }
    )
    r = profile_frame(df, {"n": "int", "s": "string", "d": "datetime"})["columns"]
    assert (r["n"]["count"], r["n"]["nulls"], r["n"]["mean"]) == (2, 1, 2.0)
    assert r["s"]["top"] == [{"value": "a", "count": 2}] and r["s"]["nulls"] == 1
    assert r["d"]["months"] == {"2024-01": 1, "2024-02": 1}
