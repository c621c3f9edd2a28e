"""The file's dialect from a sample: delimiter, quoting, layout, header; and header -> spec mapping.

Standard library only (csv.Sniffer, csv.reader): importable without pandas.

- **Delimiter**: ``csv.Sniffer`` over the first 64 KiB restricted to ``, ; TAB |``, accepted when the
  header line contains it; else the candidate most frequent in the header line. A header with none
  of them but with whitespace-separated names (and data lines that agree) is **whitespace-aligned**:
  column boundaries are inferred from gutters that are blank on every sampled line (fixed width,
  like ``pandas.read_fwf``), so values holding single spaces stay whole; without such gutters, runs
  of whitespace separate the fields. ``format.delimiter`` in the spec overrides (``whitespace`` too).
- **Quoting**: ``"`` (doubled inside quoted fields), or ``'`` when the sniffer finds it and the sample
  has no ``"``. Reported as ``none`` / ``minimal`` / ``all`` from the sample.
- **Header present or not** (``format.header`` overrides): a first record naming at least one spec
  column (name or alias) is a header; otherwise, when every spec column has a ``position`` and the
  first record's values type like data (numbers where the spec has numbers, dates where it has
  dates), the file is headerless; otherwise the first record is the header (and missing required
  columns are reported against it).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sluice.specs import DatasetSpec

DELIMITERS = ",;\t|"
SNIFF_BYTES = 16 * 1024
HEAD_CHARS = 64 * 1024  # bytes of records parsed with the csv module for the header and the layout
WHITESPACE = "whitespace"


# -- delimiter -------------------------------------------------------------------------------------


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line
    return ""


def _sniff_sample(text: str) -> str:
    sample = text[:SNIFF_BYTES]
    if len(text) > SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    return sample


def infer_fixed_width(lines: list[str]) -> list[tuple[int, int | None]] | None:
    """Column spans of whitespace-aligned lines: gutters are positions blank on every line.

    Gutters two or more characters wide are preferred (a value such as ``20-09-2018 12:04`` has a
    one-character blank at the same place on every line); one-wide gutters are used only when the
    wide ones do not give two columns. Boundaries sit in the middle of each gutter, so a value a
    little wider than the sampled ones (left or right aligned) still lands in its column.
    None when fewer than two columns show.
    """
    lines = [line.rstrip("\r\n") for line in lines if line.strip()][:2000]
    if len(lines) < 2:
        return None
    width = max(len(line) for line in lines)
    blank = [True] * width
    for line in lines:
        for i, ch in enumerate(line):
            if blank[i] and not ch.isspace():
                blank[i] = False
    gaps: list[tuple[int, int]] = []  # (start, end) of blank runs between non-blank ones
    start = None
    for i, is_blank in enumerate(blank):
        if is_blank and start is None:
            start = i
        elif not is_blank and start is not None:
            if start > 0:
                gaps.append((start, i))
            start = None
    for min_gap in (2, 1):
        wide = [(a, b) for a, b in gaps if b - a >= min_gap]
        if wide:
            cuts = [(a + b) // 2 for a, b in wide]
            bounds = [0, *cuts]
            return [(bounds[i], bounds[i + 1] if i + 1 < len(bounds) else None) for i in range(len(bounds))]
    return None


def _aligned_spans(text: str) -> list[tuple[int, int | None]] | None:
    """Fixed-width spans when the gutters agree with the first line's fields (split on two or more
    blanks or a tab); None: fields are separated by runs of whitespace."""
    lines = [line for line in text.splitlines() if line.strip()][:2000]
    spans = infer_fixed_width(lines)
    if spans and lines and len(spans) == len(re.split(r"\s{2,}|\t", lines[0].strip())):
        return spans
    return None


def _whitespace_aligned(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()][:200]
    if len(lines) < 2 or len(lines[0].split()) < 2:
        return False
    if infer_fixed_width(lines) is not None:
        return True
    counts = Counter(len(line.split()) for line in lines[1:])
    return counts.get(len(lines[0].split()), 0) >= 0.8 * (len(lines) - 1)


def sniff_delimiter(text: str) -> str:
    """The delimiter among ``,;\\t|`` (csv.Sniffer, checked against the header line), or
    ``whitespace`` for whitespace-aligned columns; ``,`` for a single-column file."""
    return sniff_dialect(text)[0]


def sniff_dialect(text: str) -> tuple[str, str]:
    """(delimiter, quotechar): see ``sniff_delimiter``; the quote is ``'`` only when the sniffer
    finds it and the sample holds no ``"``."""
    sample = _sniff_sample(text)
    header = _first_line(sample)
    counts = {d: header.count(d) for d in DELIMITERS}
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=DELIMITERS)
        delimiter, quote = sniffed.delimiter, sniffed.quotechar
    except csv.Error:
        delimiter, quote = "", '"'
    quote = "'" if quote == "'" and '"' not in sample else '"'
    if delimiter and counts.get(delimiter, 0) > 0:
        return delimiter, quote
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties keep the order of DELIMITERS
    if counts[best] > 0:
        return best, '"'
    if _whitespace_aligned(sample):
        return WHITESPACE, '"'
    return ",", '"'


# -- records of the sample -------------------------------------------------------------------------


@dataclass
class Dialect:
    delimiter: str  # one character, or "whitespace"
    quotechar: str = '"'
    spans: list[tuple[int, int | None]] | None = None  # fixed-width columns (whitespace layout)

    @property
    def layout(self) -> str:
        if self.delimiter != WHITESPACE:
            return "delimited"
        return "fixed-width" if self.spans else "whitespace-runs"

    def split_line(self, line: str) -> list[str]:
        """Fields of one physical line in a whitespace layout."""
        line = line.rstrip("\r\n")
        if self.spans:
            return [line[a:b] for a, b in self.spans]
        if self.quotechar in line:
            return next(
                csv.reader(
                    [line.strip().replace("\t", " ")],
                    delimiter=" ",
                    quotechar=self.quotechar,
                    skipinitialspace=True,
                    strict=False,
                ),
                [],
            )
        return line.split()

    def csv_reader(self, lines: Any) -> Any:
        return csv.reader(
            lines, delimiter=self.delimiter, quotechar=self.quotechar, doublequote=True, strict=False
        )


def sample_records(text: str, dialect: Dialect, complete: bool) -> list[tuple[int, int, list[str]]]:
    """(first line, lines spanned, fields) of every record of the sample, blank lines included.

    When the sample is not the whole file its last record may be cut: it is left out.
    """
    out: list[tuple[int, int, list[str]]] = []
    if dialect.delimiter == WHITESPACE:
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for i, line in enumerate(lines):
            out.append((i + 1, 1, dialect.split_line(line)))
    else:
        source = io.StringIO(text, newline="")
        consumed = 0

        def feed() -> Any:
            nonlocal consumed
            for line in source:
                consumed += 1
                yield line

        start = 1
        for fields in dialect.csv_reader(feed()):
            out.append((start, consumed - start + 1, fields))
            start = consumed + 1
    if not complete and out:
        out.pop()
    return out


def quoting_style(text: str, dialect: Dialect) -> str:
    q = dialect.quotechar
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    if not any(q in line for line in lines):
        return "none"
    if dialect.delimiter == WHITESPACE:
        return "minimal"
    fields = [f for line in lines for f in line.split(dialect.delimiter)]
    quoted = sum(1 for f in fields if f.strip().startswith(q))
    return "all" if quoted >= 0.9 * len(fields) else "minimal"


# -- header mapping --------------------------------------------------------------------------------


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name.strip().casefold()).strip()


def snake_case(name: str, position: int = 0) -> str:
    """A header -> a lowercase identifier: ``Receipt URL`` -> ``receipt_url``, ``TotalCharges`` ->
    ``total_charges``; an empty header becomes ``column_<position>``."""
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name.strip())
    s = re.sub(r"\W+", "_", s.lower()).strip("_")
    if not s:
        return f"column_{position}"
    return s if s[0].isalpha() or s[0] == "_" else f"c_{s}"


def map_header(header: list[str], spec: DatasetSpec) -> tuple[dict[int, str], dict[int, str]]:
    """Source positions -> canonical names, and -> snake_case names of the extra (unknown) columns.

    Each canonical column takes the first of its ``name`` and ``aliases`` (in that order) found in
    the header, matched case-insensitively, ignoring surrounding whitespace. A second source column
    matching an already mapped canonical column is kept as an extra column.
    """
    keys = [_key(h) for h in header]
    canonical: dict[int, str] = {}
    for col in spec.columns:
        for candidate in (col.name, *col.aliases):
            hits = [i for i, k in enumerate(keys) if k == _key(candidate) and i not in canonical]
            if hits:
                canonical[hits[0]] = col.name
                break
    return canonical, _extras(header, canonical, spec)


def _extras(header: list[str], canonical: dict[int, str], spec: DatasetSpec) -> dict[int, str]:
    taken = set(canonical.values()) | {c.name for c in spec.columns}
    extras: dict[int, str] = {}
    for i, h in enumerate(header):
        if i in canonical:
            continue
        base = name = snake_case(h, i + 1)
        n = 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        extras[i] = name
    return extras


def map_positions(width: int, spec: DatasetSpec) -> tuple[dict[int, str], dict[int, str]]:
    """A headerless file: canonical columns by their spec ``position``, the others ``column_<n>``."""
    canonical = {c.position: c.name for c in spec.columns if c.position is not None and c.position < width}
    return canonical, _extras([""] * width, canonical, spec)


# -- header present or not -------------------------------------------------------------------------

_NUMBERISH = re.compile(r"^[-+(]?[^\d]{0,4}\d[\d.,' ]*\)?[^\d]{0,4}$")
_DATEISH = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|^\d{6}$|^\d{8}")


def _types_like_data(first: list[str], spec: DatasetSpec) -> tuple[int, int]:
    """(typed columns whose first-record value looks like data, typed columns) by position."""
    hits = typed = 0
    for col in spec.columns:
        if col.position is None or col.position >= len(first) or col.type in ("string", "text"):
            continue
        typed += 1
        value = first[col.position].strip()
        pattern = _DATEISH if col.type == "datetime" else _NUMBERISH
        hits += bool(pattern.search(value))
    return hits, typed


def decide_header(first: list[str], text: str, spec: DatasetSpec) -> tuple[bool, str]:
    """(the first record is a header, why)."""
    if spec.format.header is not None:
        return spec.format.header, "spec format.header"
    canonical, _ = map_header(first, spec)
    if canonical:
        return True, f"{len(canonical)} of {len(first)} first-row names match the spec"
    if all(c.position is not None for c in spec.columns):
        hits, typed = _types_like_data(first, spec)
        if typed and hits * 2 >= typed:
            return (
                False,
                f"no first-row name matches the spec and {hits} of {typed} typed values look like data",
            )
        if not typed:
            try:
                has = csv.Sniffer().has_header(_sniff_sample(text))
            except csv.Error:
                has = True
            return has, "csv.Sniffer.has_header (no name matches the spec, no typed column to check)"
    return True, "first row taken as the header (no name matches the spec)"


@dataclass
class Layout:
    """What detection decided about the file's structure."""

    dialect: Dialect
    has_header: bool
    header: list[str]  # source names (headerless: column_<n>)
    width: int
    data_line: int  # first physical line after the header (1-based)
    data_offset: int  # byte offset of ``data_line`` in the UTF-8 stream
    canonical: dict[int, str]
    extras: dict[int, str]
    quoting: str
    records: list[list[str]]  # data records at the start of the sample (fields)
    decided_by: dict[str, str] = field(default_factory=dict)


def _offset_of_line(sample: bytes, line: int) -> int:
    """Byte offset where physical ``line`` (1-based) starts."""
    pos = 0
    for _ in range(line - 1):
        nxt = sample.find(b"\n", pos)
        if nxt < 0:
            return len(sample)
        pos = nxt + 1
    return pos


def detect_layout(sample: bytes, complete: bool, spec: DatasetSpec) -> Layout:
    """Delimiter, quoting, header and column mapping from the UTF-8 sample of a file."""
    cut = len(sample) if len(sample) <= HEAD_CHARS else sample.rfind(b"\n", 0, HEAD_CHARS) + 1 or HEAD_CHARS
    head = sample[:cut].decode("utf-8", errors="replace")
    complete = complete and cut == len(sample)
    decided: dict[str, str] = {}
    delimiter, quote = sniff_dialect(head)
    decided["delimiter"] = "csv.Sniffer and the header line"
    if spec.format.delimiter is not None:
        if spec.format.delimiter != delimiter:
            quote = '"'
        delimiter = spec.format.delimiter
        decided["delimiter"] = "spec format.delimiter"
    dialect = Dialect(delimiter, quote)
    if delimiter == WHITESPACE:
        dialect.spans = _aligned_spans(head)
    records = sample_records(head, dialect, complete)
    nonblank = [(line, span, fields) for line, span, fields in records if any(f.strip() for f in fields)]
    if not nonblank:
        # only blank lines in the sample: a header can only be further on if the sample was cut
        return Layout(dialect, True, [], 0, 1, 0, {}, {}, "none", [], decided)
    first_line, first_span, first = nonblank[0]
    has_header, decided["header"] = decide_header(first, head, spec)
    if has_header:
        header = [h.strip() for h in first]
        width = len(header)
        canonical, extras = map_header(header, spec)
        data_line = first_line + first_span
        data = [fields for line, _, fields in records if line >= data_line]
    else:
        counts = Counter(len(fields) for _, _, fields in nonblank)
        positions = [c.position for c in spec.columns if c.position is not None]
        width = max(counts.most_common(1)[0][0], max(positions, default=-1) + 1)
        header = [f"column_{i + 1}" for i in range(width)]
        canonical, extras = map_positions(width, spec)
        data_line = first_line  # leading blank lines are skipped as blank rows
        data = [fields for _, _, fields in nonblank]
    return Layout(
        dialect=dialect,
        has_header=has_header,
        header=header,
        width=width,
        data_line=data_line,
        data_offset=_offset_of_line(sample, data_line),
        canonical=canonical,
        extras=extras,
        quoting=quoting_style(head, dialect),
        records=data,
        decided_by=decided,
    )
