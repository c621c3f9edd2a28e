"""Daily forecast features and recursion, shared by training and serving (numpy and stdlib only).

A forecast model predicts one day's value from the days before it. The feature row of a day
``t`` is built from the series strictly before ``t`` and from ``t``'s calendar:

- ``lag_<k>``: the value ``k`` days before ``t`` (one per ``ForecastInfo.lags``);
- ``roll_mean_<w>``, ``roll_std_<w>``: mean and population standard deviation of the ``w`` days
  before ``t`` (``w`` in ``ROLLING_WINDOWS``), so never ``t`` itself;
- ``dow_0`` .. ``dow_6``: day of week one-hot (Monday = 0, as ``sluice.features.expand_date``);
  ``day`` (of month), ``month``, ``month_start`` and ``month_end`` (1.0 or 0.0).

Each feature is one ONNX input (``[None, 1]`` float32): ``to_feed`` makes the feed from a feature
matrix, and ``sluice.features.build_feed`` makes the same feed from feature dicts. Days further
ahead are forecast by recursion: each prediction, rounded to float32 (the graph's precision), is
appended to the history the next day's features are built from.

Intervals: ``Interval.lower/upper`` hold one offset pair per step up to the training horizon.
Beyond it (serving allows up to ``ForecastInfo.max_horizon`` days) the last pair is widened by
``sqrt(step / horizon)``, the growth of a random walk's spread (``interval_offsets``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any, Protocol

import numpy as np

ROLLING_WINDOWS = (7, 28)
CALENDAR_FEATURES = (*(f"dow_{i}" for i in range(7)), "day", "month", "month_start", "month_end")
ONE_DAY = timedelta(days=1)

#: maps an ONNX-style feed ({feature name: float32 array [n, 1]}) to n predicted values
Predict = Callable[[Mapping[str, np.ndarray]], Any]


class SeriesInfo(Protocol):
    """What the features need (``sluice.contracts.ForecastInfo`` has it)."""

    lags: list[int]
    max_horizon: int
    history_dates: list[str]
    history_values: list[float]


def feature_names(info: Any) -> list[str]:
    """The model's inputs, in graph order: lags, rolling statistics, calendar."""
    names = [f"lag_{k}" for k in info.lags]
    for w in ROLLING_WINDOWS:
        names += [f"roll_mean_{w}", f"roll_std_{w}"]
    return [*names, *CALENDAR_FEATURES]


def history_needed(info: Any) -> int:
    """Days of history before a day whose features are built: the largest lag or window."""
    return max(*info.lags, *ROLLING_WINDOWS)


def to_day(value: Any) -> date:
    """A calendar day from a ``date``, a ``datetime``, a numpy datetime64 or an ISO string."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, np.datetime64):
        return date.fromisoformat(str(value.astype("datetime64[D]")))
    if isinstance(value, str):
        return date.fromisoformat(value.strip()[:10])
    raise TypeError(f"not a date: {value!r}")


def _calendar(day: date) -> list[float]:
    dow = [0.0] * 7
    dow[day.weekday()] = 1.0
    month_end = (day + ONE_DAY).day == 1
    return [*dow, float(day.day), float(day.month), float(day.day == 1), float(month_end)]


def feature_matrix(tails: np.ndarray, next_days: Sequence[date], info: Any) -> np.ndarray:
    """Feature rows (float64, ``[n, len(feature_names)]``) of ``n`` days to predict.

    ``tails[i]`` holds the ``history_needed(info)`` values before ``next_days[i]``, oldest first
    (the last one is the day before)."""
    tails = np.ascontiguousarray(tails, dtype=np.float64)
    need = history_needed(info)
    if tails.ndim != 2 or tails.shape[1] != need:
        raise ValueError(f"history: need {need} days before each forecast day, got shape {tails.shape}")
    columns = [tails[:, -k] for k in info.lags]
    for w in ROLLING_WINDOWS:
        window = tails[:, -w:]
        columns += [window.mean(axis=1), window.std(axis=1)]
    calendar = np.array([_calendar(d) for d in next_days], dtype=np.float64).reshape(len(next_days), -1)
    return np.column_stack([*columns, calendar])


def to_feed(matrix: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Feature matrix -> ONNX feed: one float32 ``[n, 1]`` array per feature name."""
    values = np.asarray(matrix, dtype=np.float32)
    return {name: values[:, i : i + 1] for i, name in enumerate(names)}


def _check_history(values: Sequence[float], dates: Sequence[Any], need: int) -> list[date]:
    if len(values) != len(dates):
        raise ValueError(f"history: {len(dates)} dates but {len(values)} values")
    if len(values) < need:
        raise ValueError(f"history: need at least {need} days, got {len(values)}")
    days = [to_day(d) for d in dates[-need:]]
    for before, after in pairwise(days):
        if after - before != ONE_DAY:
            raise ValueError(f"history: days must be consecutive, {before} is followed by {after}")
    if not all(math.isfinite(float(v)) for v in values[-need:]):
        raise ValueError("history: values must be finite numbers")
    return days


def feature_row(
    history_values: Sequence[float], history_dates: Sequence[Any], next_date: Any, info: Any
) -> dict[str, float]:
    """The features of ``next_date`` from the consecutive days before it (the last is the day before)."""
    need = history_needed(info)
    days = _check_history(history_values, history_dates, need)
    day = to_day(next_date)
    if day - days[-1] != ONE_DAY:
        raise ValueError(f"next_date: {day} does not follow the last history day {days[-1]}")
    tail = np.asarray(history_values[-need:], dtype=np.float64).reshape(1, need)
    row = feature_matrix(tail, [day], info)[0]
    return {name: float(v) for name, v in zip(feature_names(info), row, strict=True)}


def recursive_paths(
    predict: Predict, tails: np.ndarray, first_days: Sequence[date], steps: int, info: Any
) -> np.ndarray:
    """Forecast ``steps`` days after each of ``n`` histories at once: ``[n, steps]`` float32 values.

    ``tails[i]`` ends the day before ``first_days[i]``; each step predicts one day for every path in
    one call of ``predict`` and feeds the float32-rounded predictions back as history."""
    names = feature_names(info)
    tails = np.array(tails, dtype=np.float64)
    days = [to_day(d) for d in first_days]
    out = np.empty((len(days), steps), dtype=np.float32)
    for step in range(steps):
        feed = to_feed(feature_matrix(tails, days, info), names)
        predicted = np.asarray(predict(feed), dtype=np.float32).reshape(-1)
        if predicted.shape[0] != len(days):
            raise ValueError(f"predict returned {predicted.shape[0]} values for {len(days)} rows")
        out[:, step] = predicted
        tails = np.column_stack([tails[:, 1:], predicted.astype(np.float64)])
        days = [d + ONE_DAY for d in days]
    return out


def recursive_forecast(
    predict: Predict, info: SeriesInfo, days: int, start: Any = None
) -> tuple[list[str], list[float]]:
    """Forecast ``days`` days from the history in ``info``: (ISO dates, values).

    ``start`` (default: the day after the last history day) is the first day returned; days between
    the history and ``start`` are forecast too (they count towards ``info.max_horizon``)."""
    need = history_needed(info)
    history = _check_history(info.history_values, info.history_dates, need)
    first = history[-1] + ONE_DAY
    begin = first if start is None else to_day(start)
    if begin < first:
        raise ValueError(f"start: {begin} is not after the last history day {history[-1]}")
    if days < 1:
        raise ValueError("days: forecast at least 1 day")
    gap = (begin - first).days
    if gap + days > info.max_horizon:
        raise ValueError(
            f"days: {gap + days} days after the history ({history[-1]}) exceed max_horizon {info.max_horizon}"
        )
    tail = np.asarray(info.history_values[-need:], dtype=np.float64).reshape(1, need)
    values = recursive_paths(predict, tail, [first], gap + days, info)[0, gap:]
    dates = [(begin + i * ONE_DAY).isoformat() for i in range(days)]
    return dates, [float(v) for v in values]


def interval_offsets(lower: Sequence[float], upper: Sequence[float], steps: int) -> tuple[list[float], ...]:
    """Offsets (lower, upper) for steps 1..``steps``: the stored pairs, then the last pair widened by
    ``sqrt(step / len(lower))`` past the stored horizon."""
    if not lower or len(lower) != len(upper):
        raise ValueError("interval: need one lower and one upper offset per horizon step")
    horizon = len(lower)
    lo: list[float] = []
    hi: list[float] = []
    for step in range(1, steps + 1):
        if step <= horizon:
            lo.append(float(lower[step - 1]))
            hi.append(float(upper[step - 1]))
        else:
            widen = math.sqrt(step / horizon)
            lo.append(float(lower[-1]) * widen)
            hi.append(float(upper[-1]) * widen)
    return lo, hi
