"""sluice.forecasting on the real daily revenue series: features, recursion, interval extension."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from datetime import date

import numpy as np
import pytest

from sluice.contracts import ForecastInfo
from sluice.forecasting import (
    CALENDAR_FEATURES,
    feature_names,
    feature_row,
    history_needed,
    interval_offsets,
    recursive_forecast,
)
from tests.events import DATA

REVENUE = DATA / "timeseries" / "cdnow_daily_revenue_DERIVED.csv"
LAGS = [1, 2, 3, 7, 14, 28]


@pytest.fixture(scope="module")
def revenue() -> tuple[list[str], list[float]]:
    with REVENUE.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["date"] for r in rows], [float(r["revenue"]) for r in rows]


def info_of(dates: list[str], values: list[float], days: int = 40, **kw) -> ForecastInfo:
    return ForecastInfo(
        horizon=30, lags=LAGS, season=7, history_dates=dates[-days:], history_values=values[-days:], **kw
    )


def test_serving_module_needs_neither_pandas_nor_sklearn():
    code = (
        "import sys, sluice.forecasting; print(sorted(m for m in ('pandas', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_feature_names_follow_the_lags_then_windows_then_calendar(revenue):
    info = info_of(*revenue)
    names = feature_names(info)
    assert names[: len(LAGS)] == [f"lag_{k}" for k in LAGS]
    assert names[-len(CALENDAR_FEATURES) :] == list(CALENDAR_FEATURES)
    assert {"roll_mean_7", "roll_std_7", "roll_mean_28", "roll_std_28"} <= set(names)
    assert history_needed(info) == 28


def test_feature_row_uses_only_the_days_before(revenue):
    dates, values = revenue
    target = dates.index("1998-06-30")  # a Tuesday, the last day of a month
    info = info_of(dates, values)
    row = feature_row(values[:target], dates[:target], dates[target], info)
    for k in LAGS:
        assert row[f"lag_{k}"] == values[target - k]
    for w in (7, 28):
        window = np.array(values[target - w : target])
        assert row[f"roll_mean_{w}"] == pytest.approx(window.mean(), rel=1e-12)
        assert row[f"roll_std_{w}"] == pytest.approx(window.std(), rel=1e-12)
    assert [row[f"dow_{i}"] for i in range(7)] == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert (row["day"], row["month"], row["month_start"], row["month_end"]) == (30.0, 6.0, 0.0, 1.0)
    # changing the day being predicted (or any later day) cannot change its features
    changed = [*values[:target], values[target] * 10]
    assert feature_row(changed[:target], dates[:target], dates[target], info) == row


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (lambda d, v: (v[-10:], d[-10:], "1998-07-01"), "need at least 28"),
        (lambda d, v: (v[-40:], d[-40:], "1998-07-02"), "does not follow"),
        (lambda d, v: (v[-40:-20] + v[-19:], d[-40:-20] + d[-19:], "1998-07-01"), "consecutive"),
        (lambda d, v: (v[-40:-1], d[-40:], "1998-07-01"), "40 dates but 39 values"),
    ],
)
def test_feature_row_refuses_unusable_history(revenue, cut, message):
    values, dates, next_date = cut(*revenue)
    with pytest.raises(ValueError, match=message):
        feature_row(values, dates, next_date, info_of(*revenue))


def test_recursion_of_the_lag_7_model_repeats_the_last_week(revenue):
    """A model predicting ``lag_7`` is the seasonal-naive forecast: recursion must repeat the week."""
    dates, values = revenue
    info = info_of(dates, values)
    out_dates, out_values = recursive_forecast(lambda feed: feed["lag_7"], info, 21)
    assert out_dates[0] == "1998-07-01" and out_dates[-1] == "1998-07-21"
    expected = np.resize(np.array(values[-7:], dtype=np.float32), 21)
    assert out_values == [float(v) for v in expected]


def test_recursion_feeds_predictions_back(revenue):
    dates, values = revenue
    info = info_of(dates, values)
    _, lag1 = recursive_forecast(lambda feed: feed["lag_1"] + 1.0, info, 5)
    assert lag1 == [float(np.float32(values[-1])) + i for i in range(1, 6)]


def test_recursion_from_a_later_start_forecasts_the_gap(revenue):
    dates, values = revenue
    info = info_of(dates, values)
    _, full = recursive_forecast(lambda feed: feed["roll_mean_7"], info, 10)
    gap_dates, gap = recursive_forecast(lambda feed: feed["roll_mean_7"], info, 5, start=date(1998, 7, 6))
    assert gap_dates[0] == "1998-07-06"
    assert gap == full[5:]


@pytest.mark.parametrize(
    ("days", "start", "message"),
    [
        (91, None, "max_horizon 90"),
        (30, "1998-06-30", "not after"),
        (0, None, "at least 1"),
        (20, "1998-09-15", "exceed"),
    ],
)
def test_recursion_limits(revenue, days, start, message):
    with pytest.raises(ValueError, match=message):
        recursive_forecast(lambda feed: feed["lag_1"], info_of(*revenue), days, start=start)


def test_predict_returning_the_wrong_count_is_an_error(revenue):
    with pytest.raises(ValueError, match="returned 2 values for 1 rows"):
        recursive_forecast(lambda feed: np.zeros((2, 1)), info_of(*revenue), 3)


def test_interval_offsets_widen_by_sqrt_past_the_horizon():
    lower, upper = [-1.0, -2.0, -4.0], [1.0, 3.0, 5.0]
    lo, hi = interval_offsets(lower, upper, 12)
    assert lo[:3] == lower and hi[:3] == upper
    assert lo[11] == pytest.approx(-4.0 * math.sqrt(12 / 3))
    assert hi[5] == pytest.approx(5.0 * math.sqrt(2))
    with pytest.raises(ValueError, match="one lower and one upper"):
        interval_offsets([-1.0], [1.0, 2.0], 3)
