"""The vectorised typing routines against the library they stand in for (pandas / Python)."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from sluice.ingest.values import NAT, fixed_layout, parse_dates, parse_numbers


def reference(values: list[str], fmt: str) -> list[int]:
    out = []
    for v in values:
        ts = pd.to_datetime(pd.Series([v], dtype=object), format=fmt, errors="coerce").iloc[0]
        out.append(NAT if pd.isna(ts) else int(np.datetime64(ts, "us").astype(np.int64)))
    return out


@pytest.mark.parametrize(
    "fmt", ["%d-%m-%Y %H:%M", "%d/%m/%Y", "%m/%d/%Y %H:%M:%S", "%Y%m%d", "%y%m%d", "%Y.%m.%d"]
)
def test_the_fixed_width_date_parser_agrees_with_pandas(fmt):
    assert fixed_layout(fmt) is not None
    rng = random.Random(fmt)
    values = []
    for _ in range(400):
        y, m, d = rng.randint(1950, 2049), rng.randint(0, 13), rng.randint(0, 32)
        hh, mm, ss = rng.randint(0, 25), rng.randint(0, 61), rng.randint(0, 61)
        v = (
            fmt.replace("%Y", f"{y:04d}")
            .replace("%y", f"{y % 100:02d}")
            .replace("%m", f"{m:02d}")
            .replace("%d", f"{d:02d}")
            .replace("%H", f"{hh:02d}")
            .replace("%M", f"{mm:02d}")
            .replace("%S", f"{ss:02d}")
        )
        values.append(v)
    values += ["29-02-2019 10:00", "29/02/2020", "1x/02/2020", "00000000", "991231", "000229"]
    us, which = parse_dates(values, [fmt])
    assert us.tolist() == reference(values, fmt)
    assert ((which == 0) == (us != NAT)).all()
    assert (us != NAT).sum() > 100  # plenty of valid values among them


def test_each_value_takes_the_first_format_that_parses_it():
    values = ["20-09-2018 12:04", "19-09-2018", "2018-09-18", "1-2-2018", "junk"]
    us, which = parse_dates(values, ["%d-%m-%Y %H:%M", "%d-%m-%Y", "ISO8601"])
    assert which.tolist() == [0, 1, 2, 1, -1]
    assert us[3] == np.datetime64("2018-02-01", "us").astype(np.int64)


def test_parse_numbers_fast_and_slow_paths():
    values = ["1", "2.5", "-3e2", "1_000", "nan", "inf", "1,234.50", "(7)", "€5", "5-", "--5", "abc"]
    numbers, ok = parse_numbers(values, ".", None)
    assert ok.tolist() == [True, True, True, False, False, False, True, True, True, True, False, False]
    assert numbers[ok].tolist() == [1.0, 2.5, -300.0, 1234.5, -7.0, 5.0, -5.0]
    comma, ok = parse_numbers(["1.234,5", "12,5", "7"], ",", None)
    assert comma.tolist() == [1234.5, 12.5, 7.0] and ok.all()
    _, ok = parse_numbers(["1.234", "1234"], ",", "")
    assert ok.tolist() == [False, True]
