"""Ingest: an uploaded CSV -> typed curated data, a quality report, a profile and the quarantined rows.

Public API:

- ``ingest(request) -> IngestResult``: the Lambda step (S3 object in, ``curated/<dataset>/<run_id>/``
  out: data.npz, schema.json, quality.json, quarantine.csv, profile.json). Idempotent per object
  version.
- ``ingest_stream(stream, spec, *, chunk_rows=50_000, gate=True, out_dir) -> IngestOutcome``: any
  binary stream, chunk by chunk, files written progressively into ``out_dir``.
- ``ingest_file(path, spec, out_dir, *, chunk_rows=50_000, gate=True) -> IngestOutcome``: a local
  file, the five files exactly as the Lambda writes them.
- ``ingest_bytes(body, spec, *, gate=True) -> IngestOutcome``: in memory; ``.clean`` holds the rows.

Modules: ``source`` (compression, encoding, line endings), ``dialect`` (delimiter, quoting, header,
header mapping), ``parse`` (blocks of records, pandas C parser with an exact csv-module fallback),
``values`` (numbers, dates, strings), ``engine`` (the chunk loop, quarantine, report), ``service``
(S3). ``sluice.profile`` builds profile.json. Importing this package does not import pandas: the
engine loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluice.ingest.dialect import map_header, snake_case, sniff_delimiter
from sluice.ingest.outcome import IngestOutcome, QuarantinedRow, check_quality_gate, gate_problem
from sluice.ingest.service import ingest, run_id_for
from sluice.ingest.source import decode

if TYPE_CHECKING:
    from sluice.ingest.engine import DEFAULT_CHUNK_ROWS, ingest_bytes, ingest_file, ingest_stream

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "IngestOutcome",
    "QuarantinedRow",
    "check_quality_gate",
    "decode",
    "gate_problem",
    "ingest",
    "ingest_bytes",
    "ingest_file",
    "ingest_stream",
    "map_header",
    "run_id_for",
    "snake_case",
    "sniff_delimiter",
]

_ENGINE = ("DEFAULT_CHUNK_ROWS", "ingest_bytes", "ingest_file", "ingest_stream")


def __getattr__(name: str) -> Any:
    if name in _ENGINE:
        from sluice.ingest import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
