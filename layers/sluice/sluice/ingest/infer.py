"""A starter dataset spec inferred from a file (``sluice infer-spec``), with the engine's own detection.

Nothing here parses differently from ingest: ``open_source`` (compression, encoding),
``detect_layout`` (delimiter, quoting, records), ``BlockReader`` + ``parse_block`` (the records of
the first ``sample_rows`` rows), ``decimal_separator`` / ``parse_numbers`` (numbers) and
``plan_dates`` / ``parse_dates`` (dates). What the sample showed is written into the spec
(``format`` and each column's ``formats``), so ``sluice ingest --spec`` reads the file exactly as it
was inferred instead of detecting again.

- **Header**: the first record is a header when its values do not type like the rest of their column
  (a name over a numeric or date column); with no typed column, unless most first-row values occur
  again further down their column. A headerless file gets ``column_1``.. with positions and
  ``format.header: false``.
- **Types**: ``datetime`` when every non-empty value is a date the engine detects (digit-only values
  such as ``20240131`` only under a date-like name); ``int`` / ``float`` when every value parses as a
  number with the file's decimal mark (``int`` when all are integral; digit strings with leading
  zeros stay strings: codes lose their zeros as numbers); ``text`` for long or free-form values
  (mean length above 25, or mostly distinct values with spaces); else ``string``.
- **Names**: ``snake_case`` of the header, the header itself as an alias when it differs.
- **Flags and rules** (suggestions to review): every column present is ``required``; ``nullable:
  false`` when the sample has no empty value; ``min: 0`` for numbers never negative; ``allowed`` for
  strings with at most 12 distinct values over at least 20 rows; ``unique`` for id-like columns
  (name with id/key/ref/code, or distinct values without spaces) whose values are all distinct over
  at least 20 rows.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sluice.errors import SourceObjectError
from sluice.ingest.dialect import Layout, _key, detect_layout, snake_case
from sluice.ingest.parse import BlockReader, parse_block
from sluice.ingest.source import Source, open_source
from sluice.ingest.values import (
    NAT,
    classify_date,
    decimal_separator,
    discover_formats,
    parse_dates,
    parse_numbers,
    plan_dates,
)
from sluice.specs import ColumnSpec, DatasetSpec, FormatSpec, parse_dataset_spec

DEFAULT_SAMPLE_ROWS = 20_000
MAX_ALLOWED = 12  # at most this many distinct values: suggest ``allowed``
MIN_ROWS = 20  # ``allowed`` and ``unique`` need at least this many sampled rows
TEXT_MEAN_LENGTH = 25  # longer on average: free text
TEXT_DISTINCT_RATIO = 0.5  # at least this share of distinct values, mostly with spaces: free text

_DATE_HINT = re.compile(r"(?:^|_)(?:date|time|day|dt|ts|timestamp|datetime|period|month|when)(?:_|$)")
_ID_TOKEN = re.compile(
    r"(?:^|_)(?:id|ids|no|num|number|reference)(?:_|$)|(?:key|ref|code|uuid|guid|id)(?:_|$)"
)
_NOT_ID = frozenset(
    {"paid", "valid", "invalid", "void", "avoid", "acid", "fluid", "liquid", "solid", "humid"}
)
_SEPARATED_DATE = ("ymd", "xxy", "dmony", "mondy")  # families that cannot be mistaken for a number
_LEADING_ZERO = re.compile(r"^[-+]?0\d")
_ALL_DIGITS = re.compile(r"^\d+$")


@dataclass
class _Column:
    """What the sample holds for one source column."""

    header: str
    position: int
    counts: Counter[str] = field(default_factory=Counter)  # non-empty stripped value -> rows
    empty: int = 0

    @property
    def values(self) -> list[str]:
        return list(self.counts)

    @property
    def present(self) -> int:
        return sum(self.counts.values())


@dataclass
class _Dates:
    formats: list[str]
    dayfirst: bool | None  # the day/month decision, None when no value needed one
    us: np.ndarray  # per distinct value (``_Column.values`` order)


def infer_spec(path: Path | str, name: str, *, sample_rows: int = DEFAULT_SAMPLE_ROWS) -> DatasetSpec:
    """A starter DatasetSpec for the file at ``path`` (plain or gzip), from its first ``sample_rows``
    records. Raises SourceObjectError for an empty, binary or unreadable file."""
    path = Path(path)
    with path.open("rb") as fh:
        source = open_source(fh)
        layout = _layout(source)
        columns, rows = _sample(source, layout, max(1, int(sample_rows)))
    delimiter = layout.dialect.delimiter
    decimal = _decimal(columns, delimiter)
    european = delimiter == ";" or decimal == ","
    names = _names(layout.header) if layout.has_header else [f"column_{i + 1}" for i in range(layout.width)]
    specs: list[dict[str, Any]] = []
    numeric = False
    dayfirsts: set[bool] = set()
    for col, canonical in zip(columns, names, strict=True):
        spec, dayfirst = _column(col, canonical, layout.has_header, decimal, european, rows)
        numeric |= spec["type"] in ("int", "float")
        if dayfirst is not None:
            dayfirsts.add(dayfirst)
        specs.append(spec)
    fmt = FormatSpec(
        encoding=source.encoding,
        delimiter=delimiter,
        header=layout.has_header,
        decimal=decimal if numeric else None,  # type: ignore[arg-type]
        dayfirst=dayfirsts.pop() if len(dayfirsts) == 1 else None,
    )
    data = {
        "name": name,
        "description": (
            f"Inferred by sluice infer-spec from {path.name} ({rows} sampled rows): review the types, "
            "required flags and rules before relying on it."
        ),
        "columns": specs,
        "format": fmt.to_dict(),
    }
    return parse_dataset_spec(data, f"the spec inferred from {path}")


# -- layout ----------------------------------------------------------------------------------------


def _probe(header: bool) -> DatasetSpec:
    """A spec with no columns: detection runs on the data alone, the header decision forced."""
    return DatasetSpec(name="infer-spec", columns=[], format=FormatSpec(header=header))


def _layout(source: Source) -> Layout:
    layout = detect_layout(source.sample, source.at_eof, _probe(True))
    if layout.width == 0:
        raise SourceObjectError("no header found: the first 1 MiB of the file holds only blank lines")
    if first_row_is_header(layout.header, layout.records, layout.dialect.delimiter):
        return layout
    return detect_layout(source.sample, source.at_eof, _probe(False))


def _kind_of(values: list[str], delimiter: str) -> tuple[str, str] | None:
    """("number", decimal) or ("date", "") when all ``values`` type as such; else None."""
    if all((hit := classify_date(v)) is not None and hit[0] in _SEPARATED_DATE for v in values):
        return "date", ""
    if any(_LEADING_ZERO.match(v) and _ALL_DIGITS.match(v.lstrip("+-")) for v in values):
        return None
    decimal = decimal_separator(values, delimiter)
    if parse_numbers(values, decimal, None)[1].all():
        return "number", decimal
    return None


def first_row_is_header(first: list[str], records: list[list[str]], delimiter: str) -> bool:
    """Is ``first`` a header over ``records``? Yes when a first-row value does not type like the rest
    of its column (a name over numbers or dates); no when the typed columns all agree with their
    first-row value; with no typed column, no when most first-row values occur again in their column.
    """
    data = [r for r in records if any(f.strip() for f in r)]
    if not data:
        return True
    header_votes = data_votes = seen = named = 0
    for j, head in enumerate(first):
        head = head.strip()
        values = list(dict.fromkeys(v for r in data if j < len(r) and (v := r[j].strip())))
        if not head or not values:
            continue
        named += 1
        seen += head in values
        kind = _kind_of(values, delimiter)
        if kind is None:
            continue
        if kind[0] == "date":
            like = (hit := classify_date(head)) is not None and hit[0] in _SEPARATED_DATE
        else:
            like = bool(parse_numbers([head], kind[1], None)[1].all())
        header_votes += not like
        data_votes += like
    if header_votes:
        return True
    if data_votes:
        return False
    return not (seen and seen * 2 >= named)


# -- sample ----------------------------------------------------------------------------------------


def _sample(source: Source, layout: Layout, sample_rows: int) -> tuple[list[_Column], int]:
    """Per source column, the value counts of the first ``sample_rows`` records that ingest would
    keep (blank and ragged records left out); and how many records were kept."""
    header = layout.header if layout.has_header else [""] * layout.width
    columns = [_Column(h, i) for i, h in enumerate(header)]
    dialect = layout.dialect
    data = source.sample[layout.data_offset :]
    per_record = len(data) / max(1, data.count(b"\n")) if data else 100.0
    quote = "" if dialect.spans else dialect.quotechar
    target = int(min(sample_rows, 1_000_000) * max(per_record, 1.0) * 1.1) + 1
    reader = BlockReader(source.stream, data, layout.data_line, target, quote, dialect)
    read = kept = 0
    for block in reader:
        recs = parse_block(block, dialect, layout.width)
        k = min(recs.n, sample_rows - read)
        read += k
        keep = ~(recs.too_few[:k] | recs.too_many[:k])
        for mask in recs.extra.values():
            keep &= ~mask[:k]
        nulls = []
        for codes, categories in recs.columns:
            null_u = np.fromiter((not c.strip() for c in categories), dtype=bool, count=len(categories))
            nulls.append(null_u[codes[:k]] if len(categories) else np.ones(k, dtype=bool))
        if nulls:
            keep &= ~np.logical_and.reduce(nulls)
        kept += int(keep.sum())
        for col, (codes, categories) in zip(columns, recs.columns, strict=True):
            used = codes[:k][keep]
            used = used[used >= 0]
            counts = np.bincount(used, minlength=len(categories))
            for idx in np.flatnonzero(counts).tolist():
                value = categories[idx].strip()
                if value:
                    col.counts[value] += int(counts[idx])
                else:
                    col.empty += int(counts[idx])
        if read >= sample_rows:
            break
    return columns, kept


# -- columns ---------------------------------------------------------------------------------------


def _names(header: list[str]) -> list[str]:
    """Canonical names: snake_case of each header, unique, and none matching another column's header
    (so that ingest maps every header back to its own column)."""
    keys = [_key(h) for h in header]
    taken: set[str] = set()
    out: list[str] = []
    for i, h in enumerate(header):
        base = name = snake_case(h, i + 1)
        n = 2
        while name in taken or any(k == _key(name) and k != keys[i] for k in keys):
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        out.append(name)
    return out


def _decimal(columns: list[_Column], delimiter: str) -> str:
    """The file's decimal mark: the majority of the columns whose numbers carry a mark."""
    votes: Counter[str] = Counter()
    for col in columns:
        values = col.values
        if not values or not any("," in v or "." in v for v in values):
            continue
        if all((hit := classify_date(v)) is not None and hit[0] in _SEPARATED_DATE for v in values):
            continue
        decimal = decimal_separator(values, delimiter)
        if parse_numbers(values, decimal, None)[1].all():
            votes[decimal] += 1
    return "," if votes[","] > votes["."] else "."


def _numbers(values: list[str], decimal: str) -> np.ndarray | None:
    """The numbers of ``values`` read with ``decimal`` (None unless all of them are numbers, with no
    separator contradicting the mark and no zero-padded digit string)."""
    grouping = "." if decimal == "," else ","
    wrong_group = re.compile(rf"\{grouping}(?!\d{{3}}(?:\D|$))")
    for v in values:
        if wrong_group.search(v) or (_LEADING_ZERO.match(v) and _ALL_DIGITS.match(v.lstrip("+-"))):
            return None
    numbers, ok = parse_numbers(values, decimal, None)
    return numbers if ok.all() else None


def _dates(col: _Column, canonical: str, european: bool) -> _Dates | None:
    """The column's date formats when the engine's detection parses every value; else None."""
    values = col.values
    hits = [classify_date(v) for v in values]
    if any(h is None for h in hits):
        return None
    if not all(h[0] in _SEPARATED_DATE for h in hits if h is not None) and not _DATE_HINT.search(canonical):
        return None  # digit strings are numbers unless the name says dates
    probe = ColumnSpec(name="probe", type="datetime")
    plan = plan_dates(probe, values, None, european)
    us, _ = parse_dates(values, plan.formats)
    left = [v for v, t in zip(values, us.tolist(), strict=True) if t == NAT]
    if left:
        known = len(plan.formats)
        discover_formats(left, plan)
        if len(plan.formats) > known:
            us, _ = parse_dates(values, plan.formats)
    if not plan.formats or (us == NAT).any():
        return None
    dayfirst = plan.dayfirst if any(h is not None and h[0] == "xxy" for h in hits) else None
    return _Dates(list(plan.formats), dayfirst, us)


def _id_like(name: str) -> bool:
    """A name that says identifier: a token ``id``/``no``/``number``.., or one ending in
    ``id``/``key``/``ref``/``code`` (``customerid``, ``postcode``), ``paid`` and the like aside."""
    return bool(_ID_TOKEN.search("_".join(t for t in name.split("_") if t not in _NOT_ID)))


def _all_distinct(col: _Column, typed: np.ndarray | None) -> bool:
    if not col.counts or max(col.counts.values()) > 1:
        return False
    return typed is None or len(np.unique(typed)) == len(typed)


def _column(
    col: _Column,
    canonical: str,
    has_header: bool,
    decimal: str,
    european: bool,
    rows: int,
) -> tuple[dict[str, Any], bool | None]:
    """The ColumnSpec (as a dict) of one column, and the day-first decision its dates needed."""
    spec: dict[str, Any] = {"name": canonical}
    if has_header:
        if col.header != canonical:
            spec["aliases"] = [col.header]
    else:
        spec["position"] = col.position
    spec["required"] = True
    spec["nullable"] = col.empty > 0 or not col.counts
    rules: dict[str, Any] = {}
    values = col.values
    id_like = _id_like(canonical)
    enough = rows >= MIN_ROWS
    dayfirst = None
    dates = _dates(col, canonical, european) if values else None
    numbers = None if dates is not None or not values else _numbers(values, decimal)
    if dates is not None:
        spec["type"] = "datetime"
        spec["formats"] = dates.formats
        dayfirst = dates.dayfirst
        no_spaces = not any(" " in v for v in values)
        if enough and (id_like or no_spaces) and _all_distinct(col, dates.us):
            rules["unique"] = True
    elif numbers is not None:
        integral = bool(np.all(numbers == np.floor(numbers)))
        spec["type"] = "int" if integral else "float"
        if bool(np.all(numbers >= 0)):
            rules["min"] = 0
        if enough and id_like and _all_distinct(col, numbers):
            rules["unique"] = True
    else:
        present = col.present
        distinct = len(values)
        mean_length = sum(len(v) * n for v, n in col.counts.items()) / present if present else 0.0
        spaced = sum(n for v, n in col.counts.items() if " " in v) / present if present else 0.0
        categorical = enough and 0 < distinct <= MAX_ALLOWED
        free = mean_length > TEXT_MEAN_LENGTH or (
            distinct / max(present, 1) >= TEXT_DISTINCT_RATIO and spaced >= 0.5
        )
        spec["type"] = "text" if free and not categorical and distinct > MAX_ALLOWED else "string"
        if categorical:
            rules["allowed"] = sorted(values)
        no_spaces = not any(" " in v for v in values)
        if enough and (id_like or no_spaces) and _all_distinct(col, None):
            rules["unique"] = True
    if rules:
        spec["rules"] = rules
    return spec, dayfirst


__all__ = ["DEFAULT_SAMPLE_ROWS", "first_row_is_header", "infer_spec"]
