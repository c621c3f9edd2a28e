"""Streaming: the same outcome whatever the chunk size, exact line numbers across chunk boundaries,
ingest_file's five files, and memory bounded by the chunk size rather than the file size."""

from __future__ import annotations

import csv
import gc
import hashlib
import io
import json
import random
import tracemalloc

import pandas as pd
import pytest

from sluice.curated import load
from sluice.errors import QualityGateError
from sluice.ingest import ingest_bytes, ingest_file, ingest_stream
from sluice.specs import load_dataset_spec, parse_dataset_spec
from tests.unit.ingest.helpers import (
    CHURN,
    HOUSEHOLD,
    SHUTTLE,
    TITANS,
    assert_accounting,
    comparable,
    rows_of,
    to_csv,
)


def rounded(value):
    """Floats to 9 significant digits (mean/std are summed in another order when chunked)."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def outputs(tmp_path, name, body: bytes, spec, chunk_rows: int):
    source = tmp_path / f"{name}.src"
    source.write_bytes(body)
    out = tmp_path / f"{name}-{chunk_rows}"
    outcome = ingest_file(source, spec, out, chunk_rows=chunk_rows, gate=False)
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    quality = json.loads(files.pop("quality.json"))
    profile = json.loads(files.pop("profile.json", b"{}"))
    return (
        outcome,
        files,
        comparable({k: v for k, v in quality.items() if k not in ("timings", "outputs")}),
        profile,
    )


def household_with_trouble() -> bytes:
    """Bad values, blank lines, ragged rows and multi-line quoted notes spread over the file."""
    rows = rows_of(HOUSEHOLD)
    for i in range(3, len(rows), 97):
        rows[i][5] = "n/a"
    for i in range(5, len(rows), 89):
        rows[i][4] = f"first line\nsecond line, with a comma {i}"
    for i in range(7, len(rows), 211):
        rows[i] = rows[i][:4]
    lines = to_csv(rows).split("\n")
    for i in range(50, len(lines), 500):
        lines.insert(i, "")
    return "\n".join(lines).encode()


def churn_with_duplicates() -> bytes:
    rows = rows_of(CHURN)
    rows += [rows[10], rows[3000], rows[10]]  # the same customers again: customer_id is unique
    return to_csv(rows).encode()


CASES = {
    "household": (HOUSEHOLD.read_bytes, "transactions", (97, 1000)),
    "trouble": (household_with_trouble, "transactions", (61, 500)),
    "titans": (TITANS.read_bytes, "transactions", (1, 5)),
    "churn": (churn_with_duplicates, "churn", (333, 2000)),
    "shuttle": (SHUTTLE.read_bytes, "shuttle-anomaly", (4000,)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_small_chunks_give_the_same_outcome_as_one_chunk(tmp_path, name):
    make, dataset, sizes = CASES[name]
    body, spec = make(), load_dataset_spec(dataset)
    whole, files, quality, profile = outputs(tmp_path, name, body, spec, 10**9)
    assert whole.chunks == 1
    for size in sizes:
        chunked, c_files, c_quality, c_profile = outputs(tmp_path, name, body, spec, size)
        assert chunked.chunks > 1
        assert c_files == files  # data.npz, schema.json, quarantine.csv byte for byte
        assert c_quality == quality
        assert rounded(c_profile) == rounded(profile)
    assert_accounting(whole)


def test_quarantine_lines_stay_exact_across_multiline_records_and_chunks(tmp_path):
    body = household_with_trouble()
    text = body.decode()
    # where each record starts, by the csv module
    consumed = 0
    lines = io.StringIO(text, newline="")

    def feed():
        nonlocal consumed
        for line in lines:
            consumed += 1
            yield line

    first = 1
    records = []
    for fields in csv.reader(feed()):
        records.append((first, fields))
        first = consumed + 1
    bad = [(line, f) for line, f in records[1:] if f and (len(f) < 8 or f[5] == "n/a")]
    for chunk_rows in (50, 10**6):
        outcome = ingest_bytes(body, load_dataset_spec("transactions"), gate=False, chunk_rows=chunk_rows)
        assert [r.line for r in outcome.quarantine] == [line for line, _ in bad]
        physical = text.split("\n")
        for r in outcome.quarantine:
            assert r.raw.split("\n")[0] == physical[r.line - 1]
    assert outcome.quality["blank_rows_skipped"] == 5
    multi = outcome.clean["description"].str.contains("\n", regex=False).sum()
    assert multi == sum(1 for _, f in records[1:] if len(f) == 8 and "\n" in f[4] and f[5] != "n/a")


def test_duplicates_across_chunks_are_caught(tmp_path):
    outcome = ingest_bytes(churn_with_duplicates(), load_dataset_spec("churn"), chunk_rows=500)
    assert outcome.quality["failures"] == {"customer_id:duplicate": 3}
    assert [r.line for r in outcome.quarantine] == [7045, 7046, 7047]


def test_ingest_file_writes_the_five_files(tmp_path):
    out = tmp_path / "out"
    outcome = ingest_file(HOUSEHOLD, load_dataset_spec("transactions"), out)
    assert sorted(p.name for p in out.iterdir()) == [
        "data.npz",
        "profile.json",
        "quality.json",
        "quarantine.csv",
        "schema.json",
    ]
    schema = json.loads((out / "schema.json").read_text())
    assert schema["columns"][:2] == [
        {"name": "date", "type": "datetime"},
        {"name": "amount", "type": "float"},
    ]
    df = load((out / "data.npz").read_bytes(), schema)
    pd.testing.assert_frame_equal(df, outcome.clean)
    assert len(df) == 2461
    quality = json.loads((out / "quality.json").read_text())
    assert quality["source"] == {
        "path": str(HOUSEHOLD),
        "sha256": hashlib.sha256(HOUSEHOLD.read_bytes()).hexdigest(),
        "size": HOUSEHOLD.stat().st_size,
    }
    assert quality["rows_read"] == 2461 and quality["gate"]["passed"] is True
    assert set(quality["timings"]) == {"read_s", "ingest_s", "write_s"}
    assert "Parquet" in quality["curated_format"]["why_not_parquet"] or "pyarrow" in json.dumps(
        quality["curated_format"]
    )
    assert json.loads((out / "profile.json").read_text()) == json.loads(json.dumps(outcome.profile))
    assert (out / "quarantine.csv").read_text() == "line,reasons,raw\n"


def test_ingest_file_when_the_gate_fails(tmp_path):
    rows = rows_of(TITANS)[:11]
    for row in rows[1:5]:
        row[3] = "unknown"
    source = tmp_path / "bad.csv"
    source.write_text(to_csv(rows))
    out = tmp_path / "out"
    with pytest.raises(QualityGateError, match="4 of 10 rows quarantined"):
        ingest_file(source, load_dataset_spec("transactions"), out)
    assert sorted(p.name for p in out.iterdir()) == ["quality.json", "quarantine.csv"]
    quality = json.loads((out / "quality.json").read_text())
    assert quality["gate"]["passed"] is False and "4 of 10" in quality["gate"]["problem"]
    assert quality["outputs"] == {n: str(out / n) for n in ("quality.json", "quarantine.csv")}
    outcome = ingest_file(source, load_dataset_spec("transactions"), tmp_path / "again", gate=False)
    assert outcome.rows_quarantined == 4


def test_ingest_stream_reads_any_binary_stream(tmp_path):
    class Trickle(io.RawIOBase):
        """A stream that returns at most 1000 bytes per read, like a slow socket."""

        def __init__(self, data: bytes):
            self.data, self.pos = data, 0

        def readable(self):
            return True

        def read(self, n=-1):
            n = 1000 if n is None or n < 0 else min(n, 1000)
            piece = self.data[self.pos : self.pos + n]
            self.pos += len(piece)
            return piece

    outcome = ingest_stream(
        Trickle(SHUTTLE.read_bytes()), load_dataset_spec("shuttle-anomaly"), out_dir=tmp_path
    )
    assert outcome.rows_clean == 49097
    assert int(outcome.clean["anomaly"].sum()) == 3511


def test_a_header_spec_column_absent_from_the_file_is_all_null(tmp_path):
    spec = parse_dataset_spec(
        {
            "name": "x",
            "columns": [{"name": "a", "type": "int", "required": True}, {"name": "b", "type": "datetime"}],
        }
    )
    outcome = ingest_bytes(b"a\n1\n2\n", spec)
    assert outcome.clean["b"].isna().all() and outcome.quality["absent_columns"] == ["b"]


# -- memory ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """300k records drawn from the household file (about 22 MB)."""
    rows = rows_of(HOUSEHOLD)
    rng = random.Random(7)
    path = tmp_path_factory.mktemp("big") / "household_300k.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(rows[0])
        writer.writerows(rng.choices(rows[1:], k=300_000))
    return path


def traced_peak(call) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_is_bounded_by_the_chunk_not_the_file(big_file, tmp_path):
    spec = load_dataset_spec("transactions")
    whole = traced_peak(lambda: pd.read_csv(big_file, dtype=str, keep_default_na=False))
    chunked = traced_peak(lambda: ingest_file(big_file, spec, tmp_path / "a", chunk_rows=10_000))
    one_chunk = traced_peak(lambda: ingest_file(big_file, spec, tmp_path / "b", chunk_rows=10**7))
    rows = json.loads((tmp_path / "a" / "quality.json").read_text())
    assert rows["rows_read"] == rows["rows_clean"] == 300_000 and rows["chunks"] >= 25
    print(
        f"traced peaks: read_csv whole {whole / 2**20:.1f} MiB, ingest one chunk "
        f"{one_chunk / 2**20:.1f} MiB, ingest 10k-row chunks {chunked / 2**20:.1f} MiB"
    )
    assert chunked < whole / 5, (chunked, whole)
    assert chunked < one_chunk / 5, (chunked, one_chunk)
    assert (tmp_path / "a" / "data.npz").read_bytes() == (tmp_path / "b" / "data.npz").read_bytes()
