"""The streaming ingest: a byte stream in, typed chunks appended to files, a report out.

One pass over the input, one chunk (about ``chunk_rows`` records) in memory at a time:

    open_source (compression, encoding, line endings)  ->  detect_layout on the first 1 MiB
    (delimiter, quoting, header, column mapping)  ->  build_plans (number and date formats per
    column)  ->  for each block: parse_block (pandas C parser)  ->  type every column  ->  drop blank
    rows  ->  sign column  ->  checks: ragged rows, typing failures, nulls, the spec's rules
    (``sluice.rules``, one RuleState for the file)  ->  quarantine.csv gets the failing rows (line,
    reasons, raw text), data.npz the clean ones  ->  the profile absorbs the clean chunk.

Every decision that depends on the data (delimiter, header, decimal marks, date formats, day-first,
histogram bins) is taken from the file's start, never from a chunk, so the outputs do not depend on
``chunk_rows``. Row accounting holds at every chunk: each non-blank record is either clean or
quarantined (``rows_read = rows_clean + rows_quarantined``); blank records are counted apart.

Curated data is ``data.npz`` + ``schema.json`` (``sluice.curated``: typed arrays, column by column in
row groups), neither Parquet (pyarrow, ~128 MB, does not fit beside the train function's ML layer) nor
CSV (writing every row back out as text took about a quarter of the time).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from sluice.curated import DATA_FILE, Column, CuratedWriter, Strings
from sluice.curated import DESCRIPTION as CURATED_FORMAT
from sluice.errors import MissingColumnsError, QualityGateError, SourceObjectError, SpecError
from sluice.ingest.dialect import WHITESPACE, Layout, detect_layout
from sluice.ingest.outcome import (
    OUTPUT_FILES,
    QUARANTINE_COLUMNS,
    UNPUBLISHED,
    IngestOutcome,
    gate_problem,
    write_json,
)
from sluice.ingest.parse import (
    Block,
    BlockReader,
    ParseAhead,
    Records,
    complete_records,
    count_records,
    parse_block,
)
from sluice.ingest.source import HashingReader, Serial, Source, open_source
from sluice.ingest.values import Plan, Typed, build_plans, type_chunk
from sluice.profile import Categories, Coded, Profiler
from sluice.rules import RuleState, evaluate_rules
from sluice.specs import DatasetSpec, RuleSpec

DEFAULT_CHUNK_ROWS = 50_000
VALUE_SAMPLE_BYTES = 256 * 1024  # the file's first records, whose distinct values decide number/date formats
_NO_RULES = RuleSpec()


def _distinct(recs: Records, k: int | None = None) -> dict[int, list[str]]:
    """Distinct non-empty stripped values per source column of the first ``k`` records."""
    out: dict[int, list[str]] = {}
    for i, (codes, categories) in enumerate(recs.columns):
        used = np.unique(codes if k is None else codes[:k])
        values = (categories[j].strip() for j in used.tolist())
        out[i] = [v for v in values if v]
    return out


def _curated(t: Typed) -> Column:
    """One typed column of clean rows as the curated writer takes it."""
    if t.plan.type in ("string", "text"):
        return Strings(t.codes, t.value_u, t.null_u)
    return t.values()


def _check_format(spec: DatasetSpec) -> None:
    d = spec.format.delimiter
    if d is not None and d != WHITESPACE and len(d) != 1:
        raise SpecError(f"format.delimiter: {d!r} must be one character or 'whitespace'")


class _Run:
    """One ingest: state carried from chunk to chunk."""

    def __init__(self, spec: DatasetSpec, chunk_rows: int, out_dir: Path):
        self.spec = spec
        self.chunk_rows = max(1, int(chunk_rows))
        self.out_dir = out_dir
        self.rows_read = self.rows_clean = self.rows_quarantined = self.blank = 0
        self.chunks = 0
        self.engines: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.sign_marked = self.sign_negated = 0
        self.state = RuleState(spec)

    # -- set-up ------------------------------------------------------------------------------------

    def open(self, stream: BinaryIO | Any) -> None:
        _check_format(self.spec)
        fmt = self.spec.format
        compression = None if fmt.compression is None else fmt.compression
        self.source: Source = open_source(stream, compression, fmt.encoding)
        self.layout: Layout = detect_layout(self.source.sample, self.source.at_eof, self.spec)
        layout = self.layout
        if layout.width == 0:
            raise SourceObjectError("no header found: the first 1 MiB of the file holds only blank lines")
        missing = [
            c.name for c in self.spec.columns if c.required and c.name not in layout.canonical.values()
        ]
        if missing:
            raise MissingColumnsError(missing, layout.header if layout.has_header else [])
        data = self.source.sample[layout.data_offset :]
        quote = b"" if layout.dialect.spans else layout.dialect.quotechar.encode()
        region = data[:VALUE_SAMPLE_BYTES]
        whole = self.source.at_eof and len(data) <= VALUE_SAMPLE_BYTES
        end = len(region) if whole else complete_records(region, quote)
        region = region[:end]
        per_record = len(region) / max(1, region.count(b"\n")) if region else 100.0
        self.reader = BlockReader(
            self.source.stream,
            data,
            layout.data_line,
            int(self.chunk_rows * max(per_record, 1.0)),
            quote.decode(),
            layout.dialect,
        )
        blocks: Iterator[Block] = iter(self.reader)
        self.first: Records | None = None
        samples: dict[int, list[str]] = {}
        first = next(blocks, None) if region else None
        if first is not None and len(first.data) < len(region):
            blocks, first = itertools.chain([first], blocks), None
        # from here on a worker thread reads and parses the next block: the second block while this
        # thread parses the first one, then one block ahead of the chunk being handled
        self.ahead = ParseAhead(blocks, layout.dialect, layout.width)
        if region:
            if first is not None:
                # the first chunk holds the sample: one parse serves detection and the chunk
                self.first = parse_block(first, layout.dialect, layout.width)
                k = count_records(region, quote) if self.first.engine == "pandas" else -1
                if 0 < k <= self.first.n:
                    samples = _distinct(self.first, k)
                else:
                    samples = _distinct(
                        parse_block(Block(region, layout.data_line, True), layout.dialect, layout.width)
                    )
            else:
                samples = _distinct(
                    parse_block(Block(region, layout.data_line, True), layout.dialect, layout.width)
                )
        self.plans: list[Plan] = build_plans(
            self.spec, layout.canonical, layout.extras, samples, layout.dialect.delimiter
        )
        self.by_name = {p.name: p for p in self.plans}
        self.types = {p.name: p.type for p in self.plans}
        self.rules = [p.name for p in self.plans if p.spec is not None and p.spec.rules != _NO_RULES]
        self.nulls = dict.fromkeys(self.types, 0)
        self.profiler = Profiler(self.types)
        self.source.sample = b""  # the reader holds what is left of it
        self.layout.records = []  # detection's parsed sample: not needed any more
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.writer = Serial()  # data.npz is written on a worker thread while the next chunk is parsed
        self.curated = CuratedWriter(self.out_dir / DATA_FILE, self.types, submit=self.writer.submit)
        self.quarantine_file = (self.out_dir / "quarantine.csv").open("w", encoding="utf-8", newline="")
        self.quarantine_writer = csv.writer(self.quarantine_file, lineterminator="\n")
        self.quarantine_writer.writerow(QUARANTINE_COLUMNS)

    def _take_first(self) -> Records:
        first, self.first = self.first, None
        assert first is not None
        return first

    def records(self) -> Iterator[Records]:
        """The parsed chunks, in file order (the next one is parsed while the caller handles one)."""
        if self.first is not None:
            yield self._take_first()  # no local keeps it (nor its block) once it has been handled
        yield from self.ahead

    # -- one chunk ---------------------------------------------------------------------------------

    def chunk(self, recs: Records) -> None:
        n = recs.n
        typed: list[Typed] = []
        for plan in self.plans:
            if plan.source is None:
                typed.append(type_chunk(plan, None, None, n))
            else:
                codes, categories = recs.columns[plan.source]
                typed.append(type_chunk(plan, codes, categories, n))
        lines, too_few, too_many = recs.lines, recs.too_few, recs.too_many
        origin: np.ndarray | None = None
        sourced = [t for t in typed if t.plan.source is not None]
        if all(t.null_u.any() for t in sourced):  # else no row can be blank
            blank = ~too_many
            for t in sourced:
                blank &= t.null()
            if blank.any():
                origin = np.flatnonzero(~blank)
                typed = [t.take(origin) for t in typed]
                lines, too_few, too_many = lines[origin], too_few[origin], too_many[origin]
                self.blank += n - len(origin)
                n = len(origin)
        by_name = {t.plan.name: t for t in typed}
        if self.spec.sign is not None and n:
            self._sign(by_name)

        checks: list[tuple[str, np.ndarray]] = [
            ("row:too_few_fields", too_few),
            ("row:too_many_fields", too_many),
        ]
        for code, mask in recs.extra.items():
            checks.append((code, mask if origin is None else mask[origin]))
        for t in typed:
            if t.plan.spec is None:
                continue
            for code, mask_u in t.fail_u.items():
                if mask_u.any():
                    checks.append((f"{t.plan.name}:{code}", mask_u[t.codes]))
            if not t.plan.nullable and t.null_u.any():
                checks.append((f"{t.plan.name}:null", t.null()))
        if self.rules and n:
            frame = pd.DataFrame({name: by_name[name].series() for name in self.rules})
            for code, mask in evaluate_rules(frame, self.spec, self.state).items():
                checks.append((code, np.asarray(mask, dtype=bool)))
        bad = np.zeros(n, dtype=bool)
        failing: list[tuple[str, np.ndarray]] = []
        for code, mask in checks:
            if not mask.any():
                continue
            hits = np.flatnonzero(mask)
            if len(hits):
                bad[hits] = True
                failing.append((code, hits))
                self.failures[code] += len(hits)

        if failing:
            reasons: dict[int, list[str]] = {}
            for code, hits in failing:
                for i in hits.tolist():
                    reasons.setdefault(i, []).append(code)
            rows = []
            for i in sorted(reasons):
                source_index = int(origin[i]) if origin is not None else i
                rows.append([int(lines[i]), ";".join(reasons[i]), recs.raw(source_index)])
            self.quarantine_writer.writerows(rows)

        good = np.flatnonzero(~bad) if failing else None
        clean = typed if good is None else [t.take(good) for t in typed]
        m = n if good is None else len(good)
        self.rows_read += n
        self.rows_clean += m
        self.rows_quarantined += n - m
        self.curated.append(m, [_curated(t) for t in clean])
        self._observe(typed, clean, m)
        self.chunks += 1
        self.engines[recs.engine] += 1

    def _sign(self, by_name: dict[str, Typed]) -> None:
        sign = self.spec.sign
        assert sign is not None
        marker, amount = by_name[sign.column], by_name[sign.amount]
        negative = {v.strip().casefold() for v in sign.negative}
        neg_u = np.fromiter(
            (str(v).strip().casefold() in negative for v in marker.value_u),
            dtype=bool,
            count=len(marker.value_u),
        )
        marked = neg_u[marker.codes] & ~marker.null()
        values = amount.values().astype(np.float64, copy=True)
        flip = marked & (values > 0)
        self.sign_marked += int(marked.sum())
        if flip.any():
            self.sign_negated += int(flip.sum())
            values[flip] = -values[flip]
            amount.value_rows = values

    def _observe(self, typed: list[Typed], clean: list[Typed], m: int) -> None:
        """Formats used (all rows read), nulls and the profile (clean rows)."""
        columns: dict[str, Any] = {}
        for t, c in zip(typed, clean, strict=True):
            plan = t.plan
            if plan.type == "datetime" and t.fmt_u is not None and plan.dates is not None:
                per_value = np.bincount(t.codes, minlength=len(t.fmt_u))
                parsed = t.fmt_u >= 0
                counts = np.bincount(
                    t.fmt_u[parsed], weights=per_value[parsed], minlength=len(plan.dates.formats)
                )
                for k in np.flatnonzero(counts).tolist():
                    plan.formats_used[plan.dates.formats[k]] += round(counts[k])
            if not m:
                continue
            if c.null_u.any():
                self.nulls[plan.name] += int(np.count_nonzero(c.null()))
            if plan.type in ("float", "int", "datetime"):
                columns[plan.name] = (
                    Coded(c.value_rows) if c.value_rows is not None else Coded(c.value_u, c.codes)
                )
            elif plan.type == "text":
                assert c.lens_u is not None
                columns[plan.name] = Coded(np.where(c.null_u, np.nan, c.lens_u.astype(np.float64)), c.codes)
            else:
                columns[plan.name] = Categories(c.codes, c.value_u.tolist(), c.null_u)
        if m:
            self.profiler.update(m, columns)

    # -- the end -----------------------------------------------------------------------------------

    def finish(self, started: float) -> IngestOutcome:
        self.ahead.close()
        storage = self.curated.close()
        self.writer.close()
        self.quarantine_file.close()
        if self.rows_read != self.rows_clean + self.rows_quarantined:
            raise AssertionError(
                f"row accounting broken: {self.rows_read} != {self.rows_clean} + {self.rows_quarantined}"
            )
        profile = self.profiler.result()
        outcome = IngestOutcome(self._quality(started), dict(self.types), self.out_dir, profile, storage)
        write_json(self.out_dir / "schema.json", outcome.schema())
        write_json(self.out_dir / "profile.json", profile)
        problem = gate_problem(outcome, self.spec)
        outcome.quality["gate"].update(passed=problem is None, problem=problem)
        return outcome

    def abort(self) -> None:
        ahead = getattr(self, "ahead", None)
        if ahead is not None:
            ahead.close()
        writer = getattr(self, "writer", None)
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.close()
        curated = getattr(self, "curated", None)
        if curated is not None:
            with contextlib.suppress(OSError, ValueError):  # the archive is incomplete anyway
                curated.abort()
        quarantine = getattr(self, "quarantine_file", None)
        if quarantine is not None:
            quarantine.close()

    def _format(self) -> dict[str, Any]:
        src, layout, spec = self.source, self.layout, self.spec
        dialect = layout.dialect
        numeric = [p.decimal for p in self.plans if p.type in ("float", "int") and p.source is not None]
        dates = {p.name: p.dates.report for p in self.plans if p.dates is not None and p.source is not None}
        dayfirst = {r.get("dayfirst") for r in dates.values() if r.get("dayfirst") is not None}
        out: dict[str, Any] = {
            "compression": src.compression,
            "encoding": src.encoding,
            "encoding_fallback_bytes": src.stream.fallback_bytes,
            "delimiter": dialect.delimiter,
            "layout": dialect.layout,
            "quotechar": dialect.quotechar,
            "quoting": layout.quoting,
            "line_endings": src.line_endings,
            "header": layout.has_header,
            "decimal": Counter(numeric).most_common(1)[0][0] if numeric else None,
            "thousands": spec.format.thousands,
            "dayfirst": dayfirst.pop() if len(dayfirst) == 1 else None,
            "dates": dates,
            "decided_by": {**src.decided_by, **layout.decided_by},
        }
        if dialect.spans:
            out["column_spans"] = [[a, b] for a, b in dialect.spans]
        return out

    def _quality(self, started: float) -> dict[str, Any]:
        spec, layout = self.spec, self.layout
        header = layout.header
        quality: dict[str, Any] = {
            "dataset": spec.name,
            "rows_read": self.rows_read,
            "rows_clean": self.rows_clean,
            "rows_quarantined": self.rows_quarantined,
            "quarantine_share": self.rows_quarantined / self.rows_read if self.rows_read else 0.0,
            "blank_rows_skipped": self.blank,
            "chunk_rows": self.chunk_rows,
            "chunks": self.chunks,
            "parser": dict(self.engines),
            "format": self._format(),
            "header": header if layout.has_header else None,
            "column_mapping": {header[i]: name for i, name in sorted(layout.canonical.items())},
            "extra_columns": {header[i]: name for i, name in sorted(layout.extras.items())},
            "absent_columns": [c.name for c in spec.columns if c.name not in layout.canonical.values()],
            "columns": {p.name: p.info() for p in self.plans if p.spec is not None and p.info()},
            "null_rates": {
                c: round(self.nulls[c] / self.rows_clean, 6) if self.rows_clean else None for c in self.types
            },
            "failures": dict(sorted(self.failures.items())),
            "gate": {"max_quarantine_share": spec.max_quarantine_share},
            "curated_format": CURATED_FORMAT,
            "elapsed_s": round(time.perf_counter() - started, 4),
        }
        if spec.sign is not None:
            quality["sign"] = {
                **spec.sign.to_dict(),
                "rows_marked_negative": self.sign_marked,
                "amounts_negated": self.sign_negated,
            }
        if self.reader.forced_cuts:
            quality["warnings"] = [
                f"{self.reader.forced_cuts} chunk boundary(ies) placed inside an open quoted field "
                "(no record ended within 16 MB): records near them may be split"
            ]
        return quality


def ingest_stream(
    stream: BinaryIO | Any,
    spec: DatasetSpec,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    gate: bool = True,
    out_dir: Path | str,
) -> IngestOutcome:
    """Ingest a binary stream chunk by chunk into ``out_dir`` (data.npz, quarantine.csv,
    schema.json, profile.json); memory is bounded by ``chunk_rows``, not by the file.

    Raises SourceObjectError (empty / not text / unreadable), MissingColumnsError (required columns
    absent; nothing is written), and with ``gate`` QualityGateError (data.npz, schema.json and
    profile.json are then removed; quarantine.csv stays). ``gate=False`` leaves the decision to the
    caller (``outcome.quality["gate"]``).
    """
    started = time.perf_counter()
    run = _Run(spec, chunk_rows, Path(out_dir))
    try:
        run.open(stream)
        for records in run.records():
            run.chunk(records)
            del records  # before the next is asked for: two chunks in memory, not three
    except BaseException:
        run.abort()
        raise
    outcome = run.finish(started)
    if gate and not outcome.quality["gate"]["passed"]:
        unpublish(outcome)
        raise QualityGateError(outcome.quality["gate"]["problem"])
    return outcome


def unpublish(outcome: IngestOutcome) -> None:
    """Remove what must not be trained on when the gate fails (data.npz, schema.json, profile.json)."""
    for name in UNPUBLISHED:
        outcome.path(name).unlink(missing_ok=True)


def ingest_bytes(
    body: bytes, spec: DatasetSpec, *, gate: bool = True, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> IngestOutcome:
    """Decode, sniff, map, type and validate one in-memory CSV file against a dataset spec.

    The outcome holds the clean rows (``.clean``) and the quarantined rows in memory. Raises like
    ``ingest_stream``; with ``gate=False`` a failing gate is only reported in ``quality["gate"]``.
    """
    tmp = Path(tempfile.mkdtemp(prefix="sluice-ingest-"))
    try:
        outcome = ingest_stream(io.BytesIO(body), spec, chunk_rows=chunk_rows, gate=False, out_dir=tmp).load()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    outcome.out_dir = None
    if gate and not outcome.quality["gate"]["passed"]:
        raise QualityGateError(outcome.quality["gate"]["problem"])
    return outcome


def ingest_file(
    path: Path | str,
    spec: DatasetSpec,
    out_dir: Path | str,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    gate: bool = True,
) -> IngestOutcome:
    """Ingest a local file into ``out_dir`` exactly as the Lambda writes ``curated/<dataset>/<run_id>/``:
    data.npz, schema.json, quality.json, quarantine.csv, profile.json.

    When the quality gate fails, only quality.json and quarantine.csv are written, and with ``gate``
    QualityGateError is raised after writing them.
    """
    from sluice.ingest.service import run_id_for

    path, out_dir = Path(path), Path(out_dir)
    started = time.perf_counter()
    with path.open("rb") as fh:
        reader = HashingReader(fh)
        try:
            outcome = ingest_stream(reader, spec, chunk_rows=chunk_rows, gate=False, out_dir=out_dir)
            reader.drain()
            sha = reader.hexdigest()
        finally:
            reader.close()
    t1 = time.perf_counter()
    run_id = run_id_for("file", str(path.resolve()), None, sha)
    problem = outcome.quality["gate"]["problem"]
    if problem is not None:
        unpublish(outcome)
    report = {
        **outcome.quality,
        "run_id": run_id,
        "source": {"path": str(path), "sha256": sha, "size": reader.size},
        "outputs": {name: str(out_dir / name) for name in _published(problem)},
        "timings": {
            "read_s": round(reader.read_s, 4),
            "ingest_s": round(t1 - started - reader.read_s, 4),
            "write_s": 0.0,  # the files are written while ingesting (in ingest_s)
        },
    }
    write_json(out_dir / "quality.json", report)
    outcome.quality = report
    if gate and problem is not None:
        raise QualityGateError(f"{problem} (report: {out_dir / 'quality.json'})")
    return outcome


def _published(problem: str | None) -> tuple[str, ...]:
    if problem is not None:
        return tuple(name for name in OUTPUT_FILES if name not in UNPUBLISHED)
    return OUTPUT_FILES
