"""What an ingest produced (files + report) and the quality gate. No pandas at import."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.errors import QualityGateError
from sluice.specs import DatasetSpec

if TYPE_CHECKING:
    import pandas as pd

QUARANTINE_COLUMNS = ("line", "reasons", "raw")
OUTPUT_FILES = ("data.npz", "schema.json", "quality.json", "quarantine.csv", "profile.json")
UNPUBLISHED = ("data.npz", "schema.json", "profile.json")  # removed when the quality gate fails


@dataclass(frozen=True)
class QuarantinedRow:
    line: int  # 1-based physical line where the record starts (header = line 1)
    raw: str  # the record's source text, without its line terminator
    reasons: tuple[str, ...]  # e.g. ("date:unparseable", "amount:null")


def read_quarantine(body: bytes) -> list[QuarantinedRow]:
    reader = csv.reader(io.StringIO(body.decode("utf-8"), newline=""))
    next(reader, None)
    return [QuarantinedRow(int(line), raw, tuple(reasons.split(";"))) for line, reasons, raw in reader]


@dataclass
class IngestOutcome:
    """Counts and report of one ingest; the typed rows and quarantined rows live in files.

    ``out_dir`` holds ``data.npz`` + ``schema.json`` (sluice.curated's format), ``quarantine.csv`` and
    ``profile.json``. ``clean`` and ``quarantine`` read them back on first use (``ingest_bytes`` loads
    them eagerly, its files being temporary). ``quality`` is the report without the S3/file
    specifics (run id, source, outputs, timings) that ``ingest`` and ``ingest_file`` add.
    """

    quality: dict[str, Any]
    types: dict[str, str]  # column -> curated type, in output order
    out_dir: Path | None = None
    profile: dict[str, Any] | None = None
    storage: dict[str, Any] | None = None  # schema.json's "storage" (sluice.curated)
    _clean: pd.DataFrame | None = field(default=None, repr=False)
    _quarantine: list[QuarantinedRow] | None = field(default=None, repr=False)

    @property
    def rows_read(self) -> int:
        return int(self.quality["rows_read"])

    @property
    def rows_clean(self) -> int:
        return int(self.quality["rows_clean"])

    @property
    def rows_quarantined(self) -> int:
        return int(self.quality["rows_quarantined"])

    @property
    def chunks(self) -> int:
        return int(self.quality.get("chunks", 0))

    def path(self, name: str) -> Path:
        if self.out_dir is None:
            raise FileNotFoundError(f"{name}: this outcome has no output directory")
        return self.out_dir / name

    def schema(self) -> dict[str, Any]:
        from sluice.curated import schema_of

        return schema_of(self.types, self.storage or {})

    @property
    def clean(self) -> pd.DataFrame:
        """The typed clean rows, as ``sluice.curated.read_curated`` returns them."""
        if self._clean is None:
            from sluice.curated import DATA_FILE, load

            self._clean = load(self.path(DATA_FILE), self.schema())
        return self._clean

    @property
    def quarantine(self) -> list[QuarantinedRow]:
        if self._quarantine is None:
            self._quarantine = read_quarantine(self.path("quarantine.csv").read_bytes())
        return self._quarantine

    def quarantine_csv(self) -> bytes:
        if self._quarantine is None and self.out_dir is not None:
            return self.path("quarantine.csv").read_bytes()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(QUARANTINE_COLUMNS)
        for row in self.quarantine:
            writer.writerow([row.line, ";".join(row.reasons), row.raw])
        return buf.getvalue().encode("utf-8")

    def load(self) -> IngestOutcome:
        """Read the clean and quarantined rows into memory (before the files go away)."""
        _ = self.clean, self.quarantine
        return self


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


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
