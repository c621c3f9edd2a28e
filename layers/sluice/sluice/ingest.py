"""Ingest: an uploaded CSV -> typed curated data, a quality report and the quarantined rows.

``ingest_bytes`` is pure (bytes and a dataset spec in, an ``IngestOutcome`` out); ``ingest`` adds S3:
it reads the uploaded object, writes ``curated/<dataset>/<run_id>/`` and returns the ``IngestResult``
the next state consumes.

Parsing uses the ``csv`` module rather than ``pandas.read_csv`` so that every record keeps its source
line number and raw text (quarantine needs both, multi-line quoted fields included) and so that a
ragged row becomes a quarantined row instead of a parser crash. Values are then typed column by column
with pandas.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sluice.contracts import IngestRequest, IngestResult, SourceObject
from sluice.curated import write_curated
from sluice.errors import MissingColumnsError, QualityGateError, SourceObjectError
from sluice.settings import get_settings
from sluice.specs import ColumnSpec, DatasetSpec, dataset_for_key, load_dataset_spec, model_specs_for
from sluice.storage import get_object, put_bytes, put_json, sha256_hex

if TYPE_CHECKING:
    import pandas as pd

DELIMITERS = ",;\t|"
SNIFF_BYTES = 64 * 1024
QUARANTINE_COLUMNS = ("line", "reasons", "raw")

_CURRENCY = re.compile(r"[$€£¥₹₩₽₺₦₱₫₪]|\b(?:INR|USD|EUR|GBP|JPY|CHF|CAD|AUD|NGN|Rs\.?)(?![A-Za-z])", re.I)
_SIGNED = re.compile(r"^(?P<lead>[-+\u2212]?)\s*(?P<body>.*?)\s*(?P<trail>-?)$", re.S)
_NUMBER = re.compile(r"^(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
_GROUPING = "[ \u00a0\u202f']"  # spaces and apostrophes used as thousands separators


# -- result ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuarantinedRow:
    line: int  # 1-based physical line where the record starts (header = line 1)
    raw: str  # the record's source text, without its line terminator
    reasons: tuple[str, ...]  # e.g. ("date:unparseable", "amount:null")


@dataclass
class IngestOutcome:
    clean: pd.DataFrame  # canonical typed columns in spec order, then extra columns (strings)
    quarantine: list[QuarantinedRow]
    quality: dict[str, Any]
    types: dict[str, str] = field(default_factory=dict)  # column -> curated type, for write_curated

    @property
    def rows_read(self) -> int:
        return int(self.quality["rows_read"])

    @property
    def rows_clean(self) -> int:
        return int(self.quality["rows_clean"])

    @property
    def rows_quarantined(self) -> int:
        return int(self.quality["rows_quarantined"])

    def quarantine_csv(self) -> bytes:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(QUARANTINE_COLUMNS)
        for row in self.quarantine:
            writer.writerow([row.line, ";".join(row.reasons), row.raw])
        return buf.getvalue().encode("utf-8")


# -- decoding and dialect ---------------------------------------------------------------------------


def decode(body: bytes) -> tuple[str, str]:
    """Bytes -> (text, encoding): UTF-8 (with or without BOM), UTF-16 with BOM, else cp1252."""
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return body.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise SourceObjectError(
                f"file starts with a UTF-16 byte order mark but is not UTF-16: {exc}"
            ) from exc
    if b"\x00" in body[:SNIFF_BYTES]:
        raise SourceObjectError("file is not text (it contains NUL bytes); expected a CSV file")
    encoding = "utf-8-sig" if body.startswith(codecs.BOM_UTF8) else "utf-8"
    for candidate in (encoding, "cp1252", "latin-1"):
        try:
            return body.decode(candidate), candidate
        except UnicodeDecodeError:
            continue
    raise AssertionError("unreachable: latin-1 decodes any bytes")  # pragma: no cover


def sniff_delimiter(text: str) -> str:
    """The delimiter among ``,;\\t|``: csv.Sniffer on a sample, checked against the header line."""
    sample = text[:SNIFF_BYTES]
    if len(text) > SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    header = sample.lstrip("\r\n").splitlines()[0] if sample.strip() else ""
    counts = {d: header.count(d) for d in DELIMITERS}
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        sniffed = ""
    if sniffed and counts.get(sniffed, 0) > 0:
        return sniffed
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties keep the order of DELIMITERS
    return best if counts[best] > 0 else ","


class _LineTracker:
    """Feeds physical lines to csv.reader and remembers which ones the current record used."""

    def __init__(self, text: str):
        self._lines = iter(io.StringIO(text, newline=""))
        self.consumed = 0
        self.pending: list[str] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.consumed += 1
        self.pending.append(line)
        return line

    def take(self) -> tuple[int, str]:
        """(first line number, raw text) of the record just read."""
        first = self.consumed - len(self.pending) + 1
        raw = "".join(self.pending).rstrip("\r\n")
        self.pending = []
        return first, raw


# -- header mapping -----------------------------------------------------------------------------------


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
    return canonical, extras


# -- typing ----------------------------------------------------------------------------------------


@dataclass
class _Typed:
    values: pd.Series
    null: pd.Series  # bool: value absent (empty after stripping)
    failures: dict[str, pd.Series]  # reason code suffix -> bool mask of present but invalid values
    info: dict[str, Any] = field(default_factory=dict)


def _strip(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    s = raw.astype("string").str.strip()
    return s, s.isna() | (s == "")


def _coerce_datetime(raw: pd.Series, col: ColumnSpec) -> _Typed:
    import pandas as pd

    s, null = _strip(raw)
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us]")
    todo = ~null
    used: dict[str, int] = {}
    for fmt in col.formats or ["ISO8601"]:
        if not todo.any():
            break
        utc = "%z" in fmt or fmt == "ISO8601"
        parsed = pd.to_datetime(s[todo], format=fmt, errors="coerce", utc=utc)
        if utc:
            parsed = parsed.dt.tz_convert(None)
        parsed = parsed.astype("datetime64[us]")
        ok = parsed.notna()
        if ok.any():
            used[fmt] = int(ok.sum())
            out[ok[ok].index] = parsed[ok]
            todo = todo & out.isna()
    return _Typed(out, null, {"unparseable": todo}, {"formats_used": used})


def _decimal_separator(s: pd.Series, delimiter: str) -> str:
    """Infer a column's decimal mark: ``,`` when values look like ``1.234,56`` or ``12,5``."""
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


def _coerce_number(raw: pd.Series, col: ColumnSpec, delimiter: str) -> _Typed:
    import numpy as np
    import pandas as pd

    s, null = _strip(raw)
    s = s.fillna("")
    decimal = _decimal_separator(s[~null], delimiter)
    paren = s.str.fullmatch(r"\(.*\)")
    body = s.where(~paren, s.str.slice(1, -1))
    body = body.str.replace(_CURRENCY, "", regex=True).str.strip()
    parts = body.str.extract(_SIGNED).fillna("")
    negative = paren | (parts["lead"].isin(["-", "\u2212"])) | (parts["trail"] == "-")
    digits = parts["body"].str.replace(_GROUPING, "", regex=True)
    if decimal == ",":
        digits = digits.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    else:
        digits = digits.str.replace(",", "", regex=False)
    # Two signs ("-(5)", "--5") or a sign on both ends is not a number.
    signs = paren.astype(int) + (parts["lead"] != "").astype(int) + (parts["trail"] != "").astype(int)
    valid = digits.str.fullmatch(_NUMBER).fillna(False).astype(bool) & (signs <= 1) & ~null
    numbers = pd.to_numeric(digits.where(valid), errors="coerce").astype("float64")
    numbers = numbers.where(~negative, -numbers)
    valid = valid & np.isfinite(numbers)  # "1e999" overflows to inf: not a usable number
    numbers = numbers.where(valid)
    failed = ~null & ~valid
    info = {"decimal": decimal}
    if col.type == "int":
        integral = numbers.isna() | (numbers == np.floor(numbers))
        not_int = valid & ~integral
        values = numbers.where(~not_int).round().astype("Int64")
        return _Typed(values, null, {"not_a_number": failed, "not_an_integer": not_int}, info)
    return _Typed(numbers, null, {"not_a_number": failed}, info)


def _coerce(raw: pd.Series, col: ColumnSpec, delimiter: str) -> _Typed:
    if col.type == "datetime":
        return _coerce_datetime(raw, col)
    if col.type in ("float", "int"):
        return _coerce_number(raw, col, delimiter)
    s, null = _strip(raw)
    return _Typed(s.mask(null), null, {})


# -- the pure step --------------------------------------------------------------------------------------


def _read_records(text: str, delimiter: str) -> tuple[list[str], list[tuple[int, str, list[str]]], int]:
    """(header, [(line, raw, fields)], blank rows skipped)."""
    tracker = _LineTracker(text)
    reader = csv.reader(tracker, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
    header: list[str] | None = None
    records: list[tuple[int, str, list[str]]] = []
    blank = 0
    try:
        for fields in reader:
            line, raw = tracker.take()
            if not any(f.strip() for f in fields):
                if header is not None:
                    blank += 1
                continue
            if header is None:
                header = fields
            else:
                records.append((line, raw, fields))
    except csv.Error as exc:
        raise SourceObjectError(f"cannot parse the CSV near line {tracker.consumed}: {exc}") from exc
    if header is None:
        raise SourceObjectError("the file is empty: no header and no rows")
    return header, records, blank


def ingest_bytes(body: bytes, spec: DatasetSpec, *, gate: bool = True) -> IngestOutcome:
    """Decode, sniff, map, type and validate one CSV file against a dataset spec.

    Raises SourceObjectError (empty / not text), MissingColumnsError (required columns absent) and,
    when ``gate`` is true, QualityGateError (see ``check_quality_gate``). ``ingest`` passes
    ``gate=False`` so that it can write the report before enforcing the gate.
    """
    import numpy as np
    import pandas as pd

    if not body.strip():
        raise SourceObjectError("the file is empty (0 bytes or only whitespace)")
    text, encoding = decode(body)
    if not text.strip():
        raise SourceObjectError("the file is empty (only whitespace)")
    delimiter = sniff_delimiter(text)
    header, records, blank = _read_records(text, delimiter)
    header = [h.strip() for h in header]

    canonical, extras = map_header(header, spec)
    missing = [c.name for c in spec.columns if c.required and c.name not in canonical.values()]
    if missing:
        raise MissingColumnsError(missing, header)

    width = len(header)
    row_reasons: list[list[str]] = [[] for _ in records]
    cells: list[list[str]] = []
    for n, (_, _, fields) in enumerate(records):
        if len(fields) > width:
            if any(f.strip() for f in fields[width:]):
                row_reasons[n].append("row:too_many_fields")
            fields = fields[:width]
        elif len(fields) < width:
            row_reasons[n].append("row:too_few_fields")
            fields = fields + [""] * (width - len(fields))
        cells.append(fields)
    frame = pd.DataFrame(cells, columns=range(width), dtype=object) if cells else None

    def source(i: int) -> pd.Series:
        if frame is None:
            return pd.Series([], dtype="string")
        return frame[i]

    by_name = {name: i for i, name in canonical.items()}
    columns: dict[str, pd.Series] = {}
    column_info: dict[str, dict[str, Any]] = {}
    fail_masks: list[tuple[str, np.ndarray]] = []
    for col in spec.columns:
        if col.name in by_name:
            raw = source(by_name[col.name])
        else:
            raw = pd.Series([""] * len(records), dtype="string")
        typed = _coerce(raw, col, delimiter)
        columns[col.name] = typed.values.reset_index(drop=True)
        if typed.info:
            column_info[col.name] = typed.info
        for code, mask in typed.failures.items():
            fail_masks.append((f"{col.name}:{code}", mask.to_numpy(dtype=bool)))
        if not col.nullable:
            fail_masks.append((f"{col.name}:null", typed.null.to_numpy(dtype=bool)))
    for i, name in extras.items():
        s, null = _strip(source(i))
        columns[name] = s.mask(null).reset_index(drop=True)

    for code, mask in fail_masks:
        for n in np.flatnonzero(mask):
            row_reasons[n].append(code)

    bad = np.array([bool(r) for r in row_reasons], dtype=bool)
    data = pd.DataFrame(columns, index=pd.RangeIndex(len(records)))
    clean = data.loc[~bad].reset_index(drop=True)
    quarantine = [
        QuarantinedRow(line, raw, tuple(row_reasons[n]))
        for n, (line, raw, _) in enumerate(records)
        if row_reasons[n]
    ]
    rows_read, rows_clean, rows_quarantined = len(records), len(clean), len(quarantine)
    if rows_read != rows_clean + rows_quarantined:
        raise AssertionError(f"row accounting broken: {rows_read} != {rows_clean} + {rows_quarantined}")

    types = {c.name: c.type for c in spec.columns} | {name: "string" for name in extras.values()}
    quality: dict[str, Any] = {
        "dataset": spec.name,
        "rows_read": rows_read,
        "rows_clean": rows_clean,
        "rows_quarantined": rows_quarantined,
        "quarantine_share": rows_quarantined / rows_read if rows_read else 0.0,
        "blank_rows_skipped": blank,
        "format": {"encoding": encoding, "delimiter": delimiter, "header": header},
        "column_mapping": {header[i]: name for i, name in sorted(canonical.items())},
        "extra_columns": {header[i]: name for i, name in sorted(extras.items())},
        "absent_columns": [c.name for c in spec.columns if c.name not in by_name],
        "columns": column_info,
        "null_rates": {c: round(float(clean[c].isna().mean()), 6) if rows_clean else None for c in clean},
        "failures": dict(sorted(Counter(r for rs in row_reasons for r in rs).items())),
        "gate": {"max_quarantine_share": spec.max_quarantine_share},
    }
    outcome = IngestOutcome(clean=clean, quarantine=quarantine, quality=quality, types=types)
    quality["gate"]["passed"] = gate_problem(outcome, spec) is None
    if gate:
        check_quality_gate(outcome, spec)
    return outcome


def gate_problem(outcome: IngestOutcome, spec: DatasetSpec) -> str | None:
    """Why the outcome fails the dataset's quality gate, or None when it passes."""
    q = outcome.quality
    if q["rows_read"] == 0:
        return "the file has a header but no data rows"
    if q["quarantine_share"] > spec.max_quarantine_share or q["rows_clean"] == 0:
        top = ", ".join(f"{k} x{v}" for k, v in Counter(q["failures"]).most_common(3))
        return (
            f"{q['rows_quarantined']} of {q['rows_read']} rows quarantined ({q['quarantine_share']:.1%}), "
            f"above max_quarantine_share {spec.max_quarantine_share:.1%} of dataset {spec.name!r}; "
            f"most frequent reasons: {top}"
        )
    return None


def check_quality_gate(outcome: IngestOutcome, spec: DatasetSpec) -> None:
    problem = gate_problem(outcome, spec)
    if problem:
        raise QualityGateError(problem)


# -- the S3 step ------------------------------------------------------------------------------------------


def run_id_for(bucket: str, key: str, version_id: str | None, sha256: str) -> str:
    """Deterministic: the same object version (or, unversioned, the same content) -> the same run id."""
    identity = f"{bucket}\n{key}\n{version_id or 'sha256:' + sha256}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def ingest(request: IngestRequest) -> IngestResult:
    """Read the uploaded object, ingest it, write ``curated/<dataset>/<run_id>/`` and return the result.

    quality.json and quarantine.csv are written even when the quality gate fails (then data.csv is
    not written and QualityGateError is raised), so a rejected upload can be diagnosed.
    """
    settings = get_settings()
    settings.require("data_bucket")
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    dataset = request.dataset or dataset_for_key(request.key)
    spec = load_dataset_spec(dataset)

    obj = get_object(request.bucket, request.key, request.version_id)
    version_id = obj.version_id if obj.version_id not in (None, "", "null") else None
    sha = sha256_hex(obj.body)
    run_id = run_id_for(request.bucket, request.key, version_id, sha)
    source = SourceObject(
        bucket=request.bucket, key=request.key, version_id=version_id, sha256=sha, size=len(obj.body)
    )
    t1 = time.perf_counter()

    outcome = ingest_bytes(obj.body, spec, gate=False)
    t2 = time.perf_counter()

    out = settings.data_bucket
    prefix = f"curated/{dataset}/{run_id}/"
    keys = {name: prefix + name for name in ("data.csv", "schema.json", "quality.json", "quarantine.csv")}
    problem = gate_problem(outcome, spec)
    if problem is None:
        write_curated(out, keys["data.csv"], keys["schema.json"], outcome.clean, outcome.types)
    put_bytes(out, keys["quarantine.csv"], outcome.quarantine_csv(), "text/csv")
    t3 = time.perf_counter()
    report = {
        **outcome.quality,
        "run_id": run_id,
        "source": source.to_event(),
        "outputs": {"bucket": out, **keys},
        "started_at": started.isoformat(),
        "timings": {
            "read_s": round(t1 - t0, 4),
            "ingest_s": round(t2 - t1, 4),
            "write_s": round(t3 - t2, 4),
        },
    }
    put_json(out, keys["quality.json"], report)
    if problem is not None:
        raise QualityGateError(f"{problem} (report: s3://{out}/{keys['quality.json']})")

    return IngestResult(
        dataset=dataset,
        run_id=run_id,
        source=source,
        curated_prefix=prefix,
        data_key=keys["data.csv"],
        schema_key=keys["schema.json"],
        quality_key=keys["quality.json"],
        quarantine_key=keys["quarantine.csv"],
        rows_read=outcome.rows_read,
        rows_clean=outcome.rows_clean,
        rows_quarantined=outcome.rows_quarantined,
        models=[m.name for m in model_specs_for(dataset)],
    )
