"""Raw fields -> ONNX inputs. One function used by training (parity) and by serving.

Dates are expanded here, outside the graph, into a few numeric inputs; everything else
(text vectorising, encoding, scaling) is inside the ONNX graph.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

DATE_PARTS = ("month", "day", "dayofweek", "hour")


def date_input_names(field: str, parts: Iterable[str] = DATE_PARTS) -> list[str]:
    """The ONNX inputs of a date field (every part), or of the ``parts`` a model uses."""
    return [f"{field}__{part}" for part in parts]


def expand_date(value: datetime | date) -> list[float]:
    """month, day of month, day of week (Mon=0), hour: the same on both sides of the model."""
    hour = value.hour if isinstance(value, datetime) else 0
    return [float(value.month), float(value.day), float(value.weekday()), float(hour)]


def parse_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        return value.to_pydatetime()
    raise TypeError(f"not a date: {value!r}")


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _date_parts(value: Any) -> list[float]:
    if value is None or value == "":
        return [math.nan] * len(DATE_PARTS)
    return expand_date(parse_datetime(value))


def onnx_input_names(features: Iterable[Any]) -> list[str]:
    names: list[str] = []
    for f in features:
        names.extend(date_input_names(f.name) if f.kind == "date" else [f.name])
    return names


def build_feed(records: Sequence[Mapping[str, Any]], features: Iterable[Any]) -> dict[str, Any]:
    """Column arrays of shape (n, 1) keyed by ONNX input name.

    Records must already be validated: text/categorical are strings (None -> ""), numeric are
    finite numbers or None, dates are datetimes, ISO strings or None. A missing number or date
    becomes NaN, which the graph imputes (as the native pipeline did in training).
    """
    import numpy as np

    feed: dict[str, Any] = {}
    n = len(records)
    for f in features:
        if f.kind in ("text", "categorical"):
            col = ["" if r.get(f.name) is None else str(r.get(f.name)) for r in records]
            feed[f.name] = np.array(col, dtype=object).reshape(n, 1)
        elif f.kind == "numeric":
            col = [_number(r.get(f.name)) for r in records]
            if any(math.isinf(x) for x in col):
                raise ValueError(f"{f.name}: numeric values must be finite")
            feed[f.name] = np.array(col, dtype=np.float32).reshape(n, 1)
        else:
            parts = np.array([_date_parts(r.get(f.name)) for r in records], dtype=np.float32)
            parts = parts.reshape(n, len(DATE_PARTS))
            for i, name in enumerate(date_input_names(f.name)):
                feed[name] = parts[:, i : i + 1]
    return feed
