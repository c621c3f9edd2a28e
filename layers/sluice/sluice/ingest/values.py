"""Typing values: numbers, dates and strings, decided per column from a sample and applied per chunk.

The parser hands each column over as pandas categorical codes + categories (the distinct raw
strings of the chunk): every distinct string is typed once and the result is gathered back to the
rows with one ``take`` (what ``pandas.to_datetime(cache=True)`` does). Real columns repeat a lot
(categories, amounts, dates), so typing costs per distinct value, not per row.

**Numbers.** Per column, the decimal mark is decided from the detection sample (``format.decimal``
overrides): ``1.234,56`` / ``12,5`` mean a decimal comma, a comma followed by exactly three digits is
a thousands separator, and a ``;``-delimited file with only commas in a column reads them as decimal
commas. Plain numbers go through ``float()``; anything else (currency symbols and codes, thousands
separators, spaces and apostrophes as group marks, parentheses or a trailing minus for negatives)
through a vectorised cleanup. ``nan``, ``inf``, overflow and double signs are not numbers.

**Dates.** A column with ``formats`` in the spec is parsed with exactly those (in order). Without,
the formats are detected from the sample: ISO 8601 (``YYYY-MM-DD[THH:MM[:SS[.f]]][Z|±hh:mm]``),
``YYYY/MM/DD``, ``dd-mm-YYYY`` / ``MM/DD/YYYY`` (any of ``-/.``, 2- or 4-digit years, optional time,
``AM/PM``), ``YYYYMMDD[HHMM[SS]]`` and ``YYMMDD`` (by length), ``20 Sep 2018`` / ``Sep 20, 2018``.
Every value is parsed with the first format that matches it, so one column may mix several.
Day-first vs month-first (``01/02/2024``) is decided **per column from the data**: a first field
above 12 proves day-first, a second field above 12 proves month-first (the majority wins if both
occur; the losing values are quarantined as unparseable). When no value decides: ``format.dayfirst``
if set, else day-first for ``-`` and ``.`` separators (dd-mm-YYYY, dd.mm.YYYY: the conventions
that use them are day-first), else day-first when the file looks European (``;`` delimiter or a
decimal comma), else month-first (``/``, the US convention). The decision, its reason and the
evidence are reported in quality.json ``format.dates.<column>``. Formats that first appear after the
sample are detected on the values that no known format parses, with the column's decision.
Zero-padded fixed-width formats are parsed by a vectorised numpy routine (digits, separators and
calendar checked), everything else by ``pandas.to_datetime(format=...)``. Timezone offsets are
converted to UTC and dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sluice.specs import ColumnSpec, DatasetSpec

NAT = np.iinfo(np.int64).min  # datetime64 NaT as int64
US_PER_DAY = 86_400_000_000

# -- numbers ---------------------------------------------------------------------------------------

_CURRENCY = re.compile(r"[$€£¥₹₩₽₺₦₱₫₪]|\b(?:INR|USD|EUR|GBP|JPY|CHF|CAD|AUD|NGN|Rs\.?)(?![A-Za-z])", re.I)
_SIGNED = re.compile(r"^(?P<lead>[-+\u2212]?)\s*(?P<body>.*?)\s*(?P<trail>-?)$", re.S)
_NUMBER = re.compile(r"^(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
_GROUPING = "[ \u00a0\u202f']"  # spaces and apostrophes used as thousands separators


def decimal_separator(values: list[str], delimiter: str) -> str:
    """Infer a column's decimal mark: ``,`` when values look like ``1.234,56`` or ``12,5``."""
    if not any("," in str(v) for v in values):
        return "."  # no comma at all (the usual case): nothing to weigh
    s = pd.Series(values, dtype=object).astype(str)
    both = s[s.str.contains(",", regex=False) & s.str.contains(".", regex=False)]
    if len(both):
        comma_last = (both.str.rfind(",") > both.str.rfind(".")).mean()
        return "," if comma_last > 0.5 else "."
    commas = s[s.str.contains(",", regex=False)]
    if not len(commas):
        return "."
    if (commas.str.count(",") > 1).any():
        return "."  # a decimal mark occurs once: repeated commas group thousands (or Indian lakhs)
    if commas.str.contains(r",(?!\d{3}(?:\D|$))", regex=True).any():
        return ","  # a comma not followed by a group of exactly three digits is no thousands mark
    return "," if delimiter == ";" and not s.str.contains(".", regex=False).any() else "."


def _clean_numbers(values: list[str], decimal: str, thousands: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The slow, thorough path: currency, grouping, parentheses, trailing minus. (numbers, valid)."""
    s = pd.Series(values, dtype=object).astype(str)
    paren = s.str.fullmatch(r"\(.*\)")
    body = s.where(~paren, s.str.slice(1, -1))
    body = body.str.replace(_CURRENCY, "", regex=True).str.strip()
    parts = body.str.extract(_SIGNED).fillna("")
    negative = paren | parts["lead"].isin(["-", "\u2212"]) | (parts["trail"] == "-")
    if thousands is None:
        grouping = _GROUPING[:-1] + ("." if decimal == "," else ",") + "]"
    elif thousands == "":
        grouping = ""
    else:
        extra = " \u00a0\u202f" if thousands.isspace() else ""
        grouping = "[" + re.escape(thousands) + extra + "]"
    digits = parts["body"].str.replace(grouping, "", regex=True) if grouping else parts["body"]
    foreign = pd.Series(False, index=s.index)
    if decimal == ",":
        foreign = digits.str.contains(".", regex=False)  # a dot that is no group mark: not a number
        digits = digits.str.replace(",", ".", regex=False)
    signs = paren.astype(int) + (parts["lead"] != "").astype(int) + (parts["trail"] != "").astype(int)
    valid = digits.str.fullmatch(_NUMBER).fillna(False).astype(bool) & (signs <= 1) & ~foreign
    numbers = pd.to_numeric(digits.where(valid), errors="coerce").astype("float64").to_numpy(copy=True)
    numbers = np.where(negative.to_numpy(dtype=bool), -numbers, numbers)
    ok = valid.to_numpy(dtype=bool) & np.isfinite(numbers)
    return np.where(ok, numbers, np.nan), ok


def _safe_float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return np.nan


def parse_numbers(values: list[str], decimal: str, thousands: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Non-empty stripped strings -> (float64 numbers, valid mask)."""
    n = len(values)
    if not n:
        return np.empty(0), np.zeros(0, dtype=bool)
    if decimal == "." and not thousands:
        try:
            numbers = np.fromiter(map(float, values), dtype=np.float64, count=n)
        except ValueError:
            numbers = np.fromiter(map(_safe_float, values), dtype=np.float64, count=n)
        ok = np.isfinite(numbers)
        if "_" in "".join(values):  # float() accepts 1_000; a CSV number does not
            ok &= np.fromiter(("_" not in v for v in values), dtype=bool, count=n)
    else:
        numbers, ok = np.full(n, np.nan), np.zeros(n, dtype=bool)
    rest = np.flatnonzero(~ok)
    if len(rest):
        sub = [values[i] for i in rest]
        numbers[rest], ok[rest] = _clean_numbers(sub, decimal, thousands)
    return np.where(ok, numbers, np.nan), ok


# -- dates -----------------------------------------------------------------------------------------

_TIME = (
    r"(?:(?P<tsep>[T ])(?P<H>\d{1,2}):(?P<Mi>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d{1,9})?)?"
    r"(?P<p>\s?[AaPp][Mm])?)?"
)
_TZ = r"(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?"
_FAMILIES: list[tuple[str, re.Pattern[str]]] = [
    ("ymd", re.compile(r"(?P<Y>\d{4})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})" + _TIME + _TZ)),
    ("xxy", re.compile(r"(?P<a>\d{1,2})(?P<sep>[-/.])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})" + _TIME)),
    (
        "compact",
        re.compile(
            r"(?P<Y>\d{4})(?P<m>\d{2})(?P<d>\d{2})(?:(?P<T>T?)(?P<H>\d{2})(?P<Mi>\d{2})(?P<S>\d{2})?)?"
        ),
    ),
    ("yymmdd", re.compile(r"\d{6}")),
    ("dmony", re.compile(r"(?P<d>\d{1,2})(?P<sep>[ -])(?P<mon>[A-Za-z]{3,9})(?P=sep)(?P<Y>\d{4})" + _TIME)),
    ("mondy", re.compile(r"(?P<mon>[A-Za-z]{3,9}) (?P<d>\d{1,2})(?P<comma>,?) (?P<Y>\d{4})" + _TIME)),
]


def _time_format(m: re.Match[str]) -> str:
    if not m.group("H"):
        return ""
    hour = "%I" if m.group("p") else "%H"
    fmt = m.group("tsep") + hour + ":%M"
    if m.group("S"):
        fmt += ":%S"
        if m.group("f"):
            fmt += ".%f"
    if m.group("p"):
        fmt += (" " if m.group("p")[0].isspace() else "") + "%p"
    return fmt


def _format_of(family: str, m: re.Match[str], dayfirst: bool) -> str:
    """The strptime format of a value matched by ``family``."""
    if family == "ymd":
        sep = m.group("sep")
        iso = (
            sep == "-"
            and len(m.group("m")) == 2
            and len(m.group("d")) == 2
            and not m.group("p")
            and (not m.group("H") or len(m.group("H")) == 2)
        )
        if iso:
            return "ISO8601"
        fmt = f"%Y{sep}%m{sep}%d" + _time_format(m)
        return fmt + ("%z" if m.group("tz") and m.group("tz") != "Z" else "")
    if family == "xxy":
        sep = m.group("sep")
        year = "%Y" if len(m.group("y")) == 4 else "%y"
        first, second = ("%d", "%m") if dayfirst else ("%m", "%d")
        return f"{first}{sep}{second}{sep}{year}" + _time_format(m)
    if family == "compact":
        if not m.group("H"):
            return "%Y%m%d"
        return "%Y%m%d" + m.group("T") + "%H%M" + ("%S" if m.group("S") else "")
    if family == "yymmdd":
        return "%y%m%d"
    month = "%b" if len(m.group("mon")) == 3 else "%B"
    if family == "dmony":
        sep = m.group("sep")
        return f"%d{sep}{month}{sep}%Y" + _time_format(m)
    return f"{month} %d{m.group('comma')} %Y" + _time_format(m)


def classify_date(value: str) -> tuple[str, re.Match[str]] | None:
    for family, pattern in _FAMILIES:
        m = pattern.fullmatch(value)
        if m:
            return family, m
    return None


def default_dayfirst(separator: str, european: bool) -> tuple[bool, str]:
    if separator in "-.":
        return True, f"no value decides; '{separator}'-separated dates are day-first by convention"
    if european:
        return True, "no value decides; the file looks European (';' delimiter or decimal comma)"
    return False, f"no value decides; '{separator}'-separated dates are month-first (US convention)"


@dataclass
class DatePlan:
    formats: list[str]
    detect: bool  # formats were detected (new ones may be added for values found later)
    dayfirst: bool | None  # decided from data or spec; None: by the default rule per separator
    european: bool
    report: dict[str, Any] = field(default_factory=dict)

    def dayfirst_for(self, separator: str) -> bool:
        return self.dayfirst if self.dayfirst is not None else default_dayfirst(separator, self.european)[0]


def plan_dates(col: ColumnSpec, values: list[str], dayfirst: bool | None, european: bool) -> DatePlan:
    """Formats of a datetime column: the spec's, or detected from sample values (see module doc)."""
    if col.formats:
        return DatePlan(
            list(col.formats),
            False,
            None,
            european,
            {"formats": list(col.formats), "decided_by": "spec formats"},
        )
    distinct = list(dict.fromkeys(values))
    matches: list[tuple[str, re.Match[str]]] = []
    day_first = month_first = 0
    examples: dict[str, str] = {}
    separators: Counter[str] = Counter()
    for v in distinct:
        hit = classify_date(v)
        if hit is None:
            continue
        matches.append(hit)
        family, m = hit
        if family == "xxy":
            separators[m.group("sep")] += 1
            a, b = int(m.group("a")), int(m.group("b"))
            if a > 12 >= b:
                day_first += 1
                examples.setdefault("day_first", v)
            elif b > 12 >= a:
                month_first += 1
                examples.setdefault("month_first", v)
    evidence = {
        "distinct_values_checked": len(distinct),
        "first_field_over_12": day_first,
        "second_field_over_12": month_first,
        **{f"example_{k}": v for k, v in examples.items()},
    }
    decided: bool | None
    if dayfirst is not None:
        decided, why = dayfirst, "spec format.dayfirst"
    elif day_first or month_first:
        decided = day_first >= month_first
        why = "data: " + (
            f"{day_first} value(s) have a first field above 12"
            if decided
            else f"{month_first} value(s) have a second field above 12"
        )
        if day_first and month_first:
            why += f" (conflicting: {min(day_first, month_first)} value(s) the other way are quarantined)"
    elif separators:
        decided, why = default_dayfirst(separators.most_common(1)[0][0], european)
    else:
        decided, why = None, "no day/month-ambiguous value in the sample"
    plan = DatePlan([], True, decided, european)
    formats: Counter[str] = Counter()
    for family, m in matches:
        sep = m.group("sep") if family == "xxy" else "-"
        formats[_format_of(family, m, plan.dayfirst_for(sep))] += 1
    plan.formats = [f for f, _ in formats.most_common()]
    plan.report = {
        "formats": list(plan.formats),
        "dayfirst": decided,
        "decided_by": why,
        "evidence": evidence,
    }
    return plan


@dataclass(frozen=True)
class _Fixed:
    width: int
    fields: tuple[tuple[str, int, int], ...]  # (directive, start, length)
    literals: tuple[tuple[int, int], ...]  # (position, code point)


_FIXED_WIDTHS = {"Y": 4, "y": 2, "m": 2, "d": 2, "H": 2, "M": 2, "S": 2}


def fixed_layout(fmt: str) -> _Fixed | None:
    """A format made only of zero-padded numeric directives and literals, as fixed positions."""
    if fmt == "ISO8601":
        return None
    fields: list[tuple[str, int, int]] = []
    literals: list[tuple[int, int]] = []
    pos = i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%":
            if i + 1 >= len(fmt):
                return None
            d = fmt[i + 1]
            if d == "%":
                literals.append((pos, ord("%")))
                pos += 1
            elif d in _FIXED_WIDTHS:
                fields.append((d, pos, _FIXED_WIDTHS[d]))
                pos += _FIXED_WIDTHS[d]
            else:
                return None
            i += 2
        else:
            literals.append((pos, ord(ch)))
            pos += 1
            i += 1
    directives = {d for d, _, _ in fields}
    if not ({"Y", "y"} & directives) or "m" not in directives or "d" not in directives:
        return None
    return _Fixed(pos, tuple(fields), tuple(literals))


def _parse_fixed(values: list[str], lay: _Fixed) -> tuple[np.ndarray, np.ndarray]:
    """Strings of exactly ``lay.width`` characters -> (int64 microseconds, ok). Vectorised."""
    n = len(values)
    codes = np.array(values, dtype=f"U{lay.width}").view(np.uint32).reshape(n, lay.width)
    digits = codes.astype(np.int64) - 48
    ok = np.ones(n, dtype=bool)
    for pos, cp in lay.literals:
        ok &= codes[:, pos] == cp
    parts: dict[str, np.ndarray] = {}
    for d, start, length in lay.fields:
        block = digits[:, start : start + length]
        ok &= ((block >= 0) & (block <= 9)).all(axis=1)
        value = np.zeros(n, dtype=np.int64)
        for j in range(length):
            value = value * 10 + block[:, j]
        parts[d] = value
    year = parts["Y"] if "Y" in parts else parts["y"] + np.where(parts["y"] < 69, 2000, 1900)
    month, day = parts["m"], parts["d"]
    hour, minute, second = (parts.get(k, np.zeros(n, dtype=np.int64)) for k in ("H", "M", "S"))
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (hour <= 23) & (minute <= 59) & (second <= 61)
    ok &= (year >= 1) & (year <= 9999)
    months = np.where(ok, (year - 1970) * 12 + month - 1, 0).astype("datetime64[M]")
    first = months.astype("datetime64[D]")
    days_in_month = ((months + 1).astype("datetime64[D]") - first).astype(np.int64)
    ok &= day <= days_in_month
    us = (first.astype(np.int64) + day - 1) * US_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1_000_000
    return np.where(ok, us, NAT), ok


def _to_datetime(values: list[str], fmt: str) -> np.ndarray:
    """pandas.to_datetime with ``fmt`` -> int64 microseconds (NAT where it fails)."""
    utc = "%z" in fmt or fmt == "ISO8601"
    s = pd.Series(values, dtype=object)
    try:
        parsed = pd.to_datetime(s, format=fmt, errors="coerce", utc=utc)
    except (ValueError, OverflowError):
        return np.full(len(values), NAT, dtype=np.int64)
    if utc:
        parsed = parsed.dt.tz_convert(None)
    return parsed.astype("datetime64[us]").to_numpy().view(np.int64).copy()


def parse_dates(values: list[str], formats: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Non-empty stripped strings -> (int64 microseconds or NAT, index of the format that parsed, -1).

    Each value takes the first format (in order) that parses it; zero-padded fixed-width values are
    tried on the vectorised path first, the others with ``pandas.to_datetime``.
    """
    n = len(values)
    out = np.full(n, NAT, dtype=np.int64)
    which = np.full(n, -1, dtype=np.int64)
    if not n or not formats:
        return out, which
    todo = np.ones(n, dtype=bool)
    lens = np.fromiter(map(len, values), dtype=np.int64, count=n)
    layouts = [fixed_layout(f) for f in formats]
    for k, lay in enumerate(layouts):
        if lay is None:
            continue
        sel = np.flatnonzero(todo & (lens == lay.width))
        if not len(sel):
            continue
        us, ok = _parse_fixed([values[i] for i in sel], lay)
        hit = sel[ok]
        out[hit], which[hit], todo[hit] = us[ok], k, False
    for k, (fmt, lay) in enumerate(zip(formats, layouts, strict=True)):
        mask = todo if lay is None else todo & (lens != lay.width)
        sel = np.flatnonzero(mask)
        if not len(sel):
            continue
        us = _to_datetime([values[i] for i in sel], fmt)
        ok = us != NAT
        hit = sel[ok]
        out[hit], which[hit], todo[hit] = us[ok], k, False
        if not todo.any():
            break
    return out, which


def discover_formats(values: list[str], plan: DatePlan) -> list[str]:
    """Formats (not yet in the plan) of values no known format parsed; added to the plan."""
    new: list[str] = []
    for v in values:
        hit = classify_date(v)
        if hit is None:
            continue
        family, m = hit
        sep = m.group("sep") if family == "xxy" else "-"
        fmt = _format_of(family, m, plan.dayfirst_for(sep))
        if fmt not in plan.formats and fmt not in new:
            new.append(fmt)
    new.sort()
    plan.formats.extend(new)
    return new


# -- plans and typed chunks ------------------------------------------------------------------------


@dataclass
class Plan:
    """How one output column is typed: decided once per file (from the sample and the spec)."""

    name: str
    type: str  # float | int | datetime | string | text
    source: int | None  # position in the file; None: a spec column absent from the file
    spec: ColumnSpec | None  # None for extra (unknown) columns
    decimal: str = "."
    thousands: str | None = None
    dates: DatePlan | None = None
    formats_used: Counter[str] = field(default_factory=Counter)

    @property
    def nullable(self) -> bool:
        return self.spec is None or self.spec.nullable

    def info(self) -> dict[str, Any]:
        if self.type in ("float", "int"):
            return {"decimal": self.decimal}
        if self.type == "datetime":
            return {"formats_used": dict(self.formats_used)}
        return {}


def build_plans(
    spec: DatasetSpec,
    canonical: dict[int, str],
    extras: dict[int, str],
    samples: dict[int, list[str]],
    delimiter: str,
) -> list[Plan]:
    """Plans for the spec's columns (spec order) then the extra columns (file order).

    ``samples``: per source position, the distinct non-empty stripped values of the sample.
    """
    position = {name: i for i, name in canonical.items()}

    def sample(i: int | None) -> list[str]:
        return [] if i is None else samples.get(i, [])

    fmt = spec.format
    plans: list[Plan] = []
    decimals: list[str] = []
    for col in spec.columns:
        i = position.get(col.name)
        plan = Plan(col.name, col.type, i, col)
        if col.type in ("float", "int"):
            plan.decimal = fmt.decimal or decimal_separator(sample(i), delimiter)
            plan.thousands = fmt.thousands
            decimals.append(plan.decimal)
        plans.append(plan)
    european = delimiter == ";" or "," in decimals or fmt.decimal == ","
    for plan in plans:
        if plan.type == "datetime":
            assert plan.spec is not None
            plan.dates = plan_dates(plan.spec, sample(plan.source), fmt.dayfirst, european)
    for i, name in sorted(extras.items()):
        plans.append(Plan(name, "string", i, None))
    return plans


@dataclass
class Typed:
    """One column of one chunk, typed per distinct raw string; rows index those with ``codes``."""

    plan: Plan
    codes: np.ndarray  # row -> distinct value
    null_u: np.ndarray  # bool per distinct value: empty after stripping
    value_u: np.ndarray  # float64 (NaN) | int64 microseconds (NAT) | object str ('' when null)
    fail_u: dict[str, np.ndarray] = field(default_factory=dict)  # reason suffix -> bool per value
    lens_u: np.ndarray | None = None  # text length per distinct value (string/text)
    fmt_u: np.ndarray | None = None  # datetime: index of the format that parsed each value, -1
    value_rows: np.ndarray | None = None  # row-level override (sign column applied)

    def take(self, keep: np.ndarray) -> Typed:
        """The same column restricted to rows ``keep`` (indices)."""
        out = Typed(
            self.plan,
            self.codes[keep],
            self.null_u,
            self.value_u,
            self.fail_u,
            self.lens_u,
            self.fmt_u,
        )
        if self.value_rows is not None:
            out.value_rows = self.value_rows[keep]
        return out

    def null(self) -> np.ndarray:
        return self.null_u[self.codes]

    def failures(self) -> dict[str, np.ndarray]:
        return {k: v[self.codes] for k, v in self.fail_u.items()}

    def values(self) -> np.ndarray:
        return self.value_rows if self.value_rows is not None else self.value_u[self.codes]

    def series(self) -> pd.Series:
        """Typed values as the curated dtype (for the rules)."""
        values = self.values()
        kind = self.plan.type
        if kind == "float":
            return pd.Series(values, dtype="float64")
        if kind == "int":
            return pd.Series(pd.array(np.round(values), dtype="Int64"))
        if kind == "datetime":
            return pd.Series(values.view("datetime64[us]"))
        out = pd.array(self.value_u, dtype="string")
        out[self.null_u] = pd.NA
        return pd.Series(out.take(self.codes))


def type_chunk(plan: Plan, codes: np.ndarray | None, categories: list[str] | None, n: int) -> Typed:
    """Type one column of a chunk given its distinct raw strings (``categories``) and row codes."""
    if codes is None or categories is None:  # spec column absent from the file: all null
        codes, categories = np.zeros(n, dtype=np.int8), [""]
    stripped = [c.strip() for c in categories]
    null_u = np.fromiter((not s for s in stripped), dtype=bool, count=len(stripped))
    present = np.flatnonzero(~null_u)
    values = [stripped[i] for i in present]
    kind = plan.type
    if kind in ("float", "int"):
        numbers = np.full(len(stripped), np.nan)
        ok = np.zeros(len(stripped), dtype=bool)
        numbers[present], ok[present] = parse_numbers(values, plan.decimal, plan.thousands)
        fail = {"not_a_number": ~null_u & ~ok}
        if kind == "int":
            integral = np.isnan(numbers) | (numbers == np.floor(numbers))
            fail["not_an_integer"] = ok & ~integral
            ok = ok & integral
            numbers = np.where(ok, numbers, np.nan)
        return Typed(plan, codes, null_u, numbers, fail)
    if kind == "datetime":
        assert plan.dates is not None
        us = np.full(len(stripped), NAT, dtype=np.int64)
        which = np.full(len(stripped), -1, dtype=np.int64)
        us[present], which[present] = parse_dates(values, plan.dates.formats)
        if plan.dates.detect:
            left = np.flatnonzero(~null_u & (us == NAT))
            if len(left):
                leftovers = [stripped[i] for i in left]
                known = len(plan.dates.formats)
                if discover_formats(leftovers, plan.dates):
                    more, more_which = parse_dates(leftovers, plan.dates.formats[known:])
                    hit = more != NAT
                    us[left[hit]], which[left[hit]] = more[hit], more_which[hit] + known
        fail = {"unparseable": ~null_u & (us == NAT)}
        return Typed(plan, codes, null_u, us, fail, fmt_u=which)
    lens = np.fromiter(map(len, stripped), dtype=np.int64, count=len(stripped))
    return Typed(plan, codes, null_u, np.array(stripped, dtype=object), {}, lens)
