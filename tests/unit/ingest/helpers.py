"""Shared helpers of the ingest tests: the real files, CSV writing, accounting and outcome comparison."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from tests.events import DATA

HOUSEHOLD = DATA / "transactions" / "daily_household_transactions.csv"
TITANS = DATA / "transactions" / "titans_all_transactions.csv"
CHURN = DATA / "churn" / "telco_customer_churn_ibm.csv"
WINE = DATA / "tabular" / "winequality-red.csv"
SHUTTLE = DATA / "anomaly" / "shuttle_anomaly.csv.gz"
REVENUE = DATA / "timeseries" / "cdnow_daily_revenue_DERIVED.csv"

# what may differ between two ingests of the same data cut in different chunks
RUN_KEYS = ("chunk_rows", "chunks", "parser", "elapsed_s")


def rows_of(path: Path, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(), newline=""), delimiter=delimiter))


def to_csv(rows: list[list[str]], delimiter: str = ",", lineterminator: str = "\n") -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator=lineterminator).writerows(rows)
    return buf.getvalue()


def assert_accounting(outcome: Any) -> None:
    q = outcome.quality
    assert q["rows_read"] == q["rows_clean"] + q["rows_quarantined"]
    assert len(outcome.clean) == q["rows_clean"]
    assert len(outcome.quarantine) == q["rows_quarantined"]


def comparable(quality: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in quality.items() if k not in RUN_KEYS}
