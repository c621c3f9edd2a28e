"""Hostile variants generated (in tmp_path) from the real files: encodings, delimiters, layouts,
line endings, compression, truncation, junk, ragged rows, dates, signs, headerless files."""

from __future__ import annotations

import codecs
import gzip
import os

import pandas as pd
import pytest

from sluice.errors import MissingColumnsError, QualityGateError, SourceObjectError
from sluice.ingest import ingest_bytes
from sluice.ingest.source import SAMPLE_BYTES
from sluice.specs import load_dataset_spec, parse_dataset_spec
from tests.unit.ingest.helpers import HOUSEHOLD, TITANS, WINE, assert_accounting, rows_of, to_csv


@pytest.fixture(scope="module")
def rows():
    return rows_of(HOUSEHOLD)


def write(tmp_path, name: str, body: bytes):
    path = tmp_path / name
    path.write_bytes(body)
    return path.read_bytes()


# -- encodings -------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_latin1_with_accents(tmp_path, spec, rows, household, encoding):
    variant = [r[:] for r in rows]
    variant[1][4] = "Café à Zürich"
    variant[7][4] = "Crème brûlée, 2 parts"
    if encoding == "cp1252":
        variant[9][4] = "Sushi \u2013 \u20ac12"  # en dash and euro sign exist in cp1252 only
    outcome = ingest_bytes(write(tmp_path, "latin.csv", to_csv(variant).encode(encoding)), spec)
    assert outcome.quality["format"]["encoding"] == "cp1252"
    assert outcome.rows_clean == 2461
    notes = outcome.clean["description"]
    assert notes.iloc[0] == "Café à Zürich" and notes.iloc[6] == "Crème brûlée, 2 parts"
    if encoding == "cp1252":
        assert notes.iloc[8] == "Sushi \u2013 \u20ac12"
    pd.testing.assert_series_equal(outcome.clean["amount"], household.clean["amount"])


def test_mostly_utf8_with_a_stray_cp1252_byte_far_into_the_file(tmp_path, spec, rows):
    """Detection sees valid UTF-8; the invalid byte 1 MiB later is read as cp1252 and counted."""
    body = [rows[0]] + rows[1:] * 12
    text = to_csv(body)
    assert len(text) > 2 * SAMPLE_BYTES
    raw = text.encode("utf-8")
    at = raw.rfind(b"\n", 0, len(raw) - 1) + 1  # start of the last line
    line = raw[at:].rstrip(b"\n").split(b",")
    line[4] = "Caf\xe9 Noir".encode("latin-1")  # an é in cp1252: invalid UTF-8
    raw = raw[:at] + b",".join(line) + b"\n"
    outcome = ingest_bytes(write(tmp_path, "mixed.csv", raw), spec)
    assert outcome.quality["format"]["encoding"] == "utf-8"
    assert outcome.quality["format"]["encoding_fallback_bytes"] == 1
    assert outcome.clean["description"].iloc[-1] == "Café Noir"
    assert outcome.rows_clean == len(body) - 1


def test_utf8_bom_and_crlf(tmp_path, spec, rows, household):
    body = codecs.BOM_UTF8 + to_csv(rows, lineterminator="\r\n").encode()
    outcome = ingest_bytes(write(tmp_path, "bom.csv", body), spec)
    fmt = outcome.quality["format"]
    assert (fmt["encoding"], fmt["line_endings"]) == ("utf-8-sig", "CRLF")
    assert outcome.quality["column_mapping"]["Date"] == "date"
    pd.testing.assert_frame_equal(outcome.clean, household.clean)


def test_lf_and_old_mac_cr_line_endings_give_the_same_rows(tmp_path, spec, rows, household):
    for ending, name in (("\n", "LF"), ("\r", "CR")):
        outcome = ingest_bytes(
            write(tmp_path, f"{name}.csv", to_csv(rows, lineterminator=ending).encode()), spec
        )
        assert outcome.quality["format"]["line_endings"] == name
        pd.testing.assert_frame_equal(outcome.clean, household.clean)


def test_utf16_with_bom(tmp_path, spec, household):
    body = HOUSEHOLD.read_text().encode("utf-16")
    outcome = ingest_bytes(write(tmp_path, "utf16.csv", body), spec)
    assert outcome.quality["format"]["encoding"] == "utf-16"
    pd.testing.assert_frame_equal(outcome.clean, household.clean)


# -- delimiters and layouts ------------------------------------------------------------------------


def european(value: str) -> str:
    number = float(value)
    text = f"{abs(number):,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
    return ("-" if number < 0 else "") + text


def test_semicolons_with_decimal_commas_and_thousands_dots(tmp_path, spec, rows, household):
    variant = [r[:] for r in rows]
    for r in variant[1:]:
        r[5] = european(r[5])
    assert any("." in r[5] and "," in r[5] for r in variant[1:])  # 1.234,56 occurs
    outcome = ingest_bytes(write(tmp_path, "semi.csv", to_csv(variant, delimiter=";").encode()), spec)
    assert outcome.quality["format"]["delimiter"] == ";"
    assert outcome.quality["columns"]["amount"]["decimal"] == ","
    assert outcome.quality["format"]["decimal"] == ","
    pd.testing.assert_frame_equal(outcome.clean, household.clean)


@pytest.mark.parametrize(("delimiter", "name"), [("\t", "tab"), ("|", "pipe")])
def test_tab_and_pipe(tmp_path, spec, rows, household, delimiter, name):
    outcome = ingest_bytes(write(tmp_path, f"{name}.csv", to_csv(rows, delimiter=delimiter).encode()), spec)
    assert outcome.quality["format"]["delimiter"] == delimiter
    pd.testing.assert_frame_equal(outcome.clean, household.clean)


def aligned(table: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [
        "   ".join(
            v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in table
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def test_whitespace_aligned_columns_with_spaces_inside_values(tmp_path, spec, rows, household):
    # Date (with and without a time), Mode ("Saving Bank account 1"), Note (free text), Amount (right aligned)
    table = [[r[0], r[1], r[4], r[5]] for r in rows[:401]]
    table = [t for t in table if t[2]]  # a fixed-width file cannot show an empty middle value apart
    outcome = ingest_bytes(write(tmp_path, "aligned.txt", aligned(table, right={3}).encode()), spec)
    fmt = outcome.quality["format"]
    assert (fmt["delimiter"], fmt["layout"]) == ("whitespace", "fixed-width")
    assert len(fmt["column_spans"]) == 4
    assert outcome.rows_clean == len(table) - 1
    expected = (
        household.clean[household.clean["description"].notna()].head(len(table) - 1).reset_index(drop=True)
    )
    got = outcome.clean
    assert got["date"].tolist() == expected["date"].tolist()
    assert got["payment_method"].tolist() == expected["payment_method"].tolist()
    assert got["description"].tolist() == expected["description"].tolist()
    assert got["amount"].tolist() == expected["amount"].tolist()


def test_whitespace_separated_numbers(tmp_path):
    """Runs of spaces and tabs between numbers (not aligned): the pandas C parser's \\s+ mode."""
    rows = rows_of(WINE, delimiter=";")
    spec = load_dataset_spec("wine-quality")
    rows[0] = [c.name for c in spec.columns]
    text = "\n".join(" \t ".join(r) if i % 2 else "  ".join(r) for i, r in enumerate(rows[:200])) + "\n"
    spec = parse_dataset_spec({**spec.to_dict(), "format": {"delimiter": "whitespace"}})
    outcome = ingest_bytes(write(tmp_path, "wine.txt", text.encode()), spec, gate=False)
    assert outcome.quality["format"]["layout"] == "whitespace-runs"
    assert outcome.rows_clean == 199
    assert outcome.clean["alcohol"].tolist() == [float(r[10]) for r in rows[1:200]]


def test_gzip(tmp_path, spec, household):
    outcome = ingest_bytes(write(tmp_path, "h.csv.gz", gzip.compress(HOUSEHOLD.read_bytes())), spec)
    assert outcome.quality["format"]["compression"] == "gzip"
    pd.testing.assert_frame_equal(outcome.clean, household.clean)


def test_truncated_gzip_is_a_clear_source_error(tmp_path, spec):
    body = gzip.compress(HOUSEHOLD.read_bytes() * 3)
    with pytest.raises(SourceObjectError, match="gzip stream is corrupt or truncated"):
        ingest_bytes(write(tmp_path, "cut.csv.gz", body[: len(body) // 2]), spec)


# -- broken files ----------------------------------------------------------------------------------


def test_truncated_last_line_is_quarantined_with_its_line(tmp_path, spec):
    body = HOUSEHOLD.read_bytes()
    cut = body[: body.rfind(b",", 0, len(body) - 5)]  # the last record loses its Currency field
    outcome = ingest_bytes(write(tmp_path, "cut.csv", cut), spec, gate=False)
    assert_accounting(outcome)
    assert outcome.rows_read == 2461 and outcome.rows_quarantined == 1
    [bad] = outcome.quarantine
    assert bad.line == 2462 and bad.reasons == ("row:too_few_fields",)
    assert bad.raw == cut.decode().splitlines()[-1]


def test_file_ending_inside_a_quoted_field(tmp_path, spec):
    body = HOUSEHOLD.read_bytes() + b'20-09-2018 12:04,Cash,Food,snacks,"never closed,60,Expense,INR\n'
    outcome = ingest_bytes(write(tmp_path, "open.csv", body), spec, gate=False)
    assert outcome.rows_clean == 2461
    [bad] = outcome.quarantine
    assert bad.line == 2463
    assert "row:unterminated_quote" in bad.reasons
    assert bad.raw.startswith("20-09-2018 12:04,Cash,Food,snacks,")


@pytest.mark.parametrize(
    "body",
    [b"", b"   \n\n", b"\xef\xbb\xbf", gzip.compress(b""), gzip.compress(b"\n\n")],
    ids=["empty", "whitespace", "bom-only", "empty-gzip", "blank-gzip"],
)
def test_empty_files(spec, body):
    with pytest.raises(SourceObjectError, match="empty"):
        ingest_bytes(body, spec)


def test_header_only_and_header_with_blank_lines(spec):
    header = HOUSEHOLD.read_bytes().split(b"\n")[0] + b"\n"
    for body in (header, header + b"\n\n,,,\n"):
        with pytest.raises(QualityGateError, match="header but no data rows"):
            ingest_bytes(body, spec)
        outcome = ingest_bytes(body, spec, gate=False)
        assert outcome.rows_read == 0 and len(outcome.clean) == 0


@pytest.mark.parametrize(
    "body",
    [
        os.urandom(4096),
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
        b"PK\x03\x04" + b"x" * 100,
        b"%PDF-1.4\n" + bytes(range(1, 32)) * 40,
    ],
    ids=["random", "png", "zip", "pdf-ish"],
)
def test_binary_junk_is_not_text(spec, body):
    with pytest.raises(SourceObjectError, match="not text"):
        ingest_bytes(body, spec)


def test_duplicate_headers_keep_both_columns(tmp_path, spec, rows, household):
    variant = [[*r, r[5]] for r in rows]  # a second "Amount"
    outcome = ingest_bytes(write(tmp_path, "dup.csv", to_csv(variant).encode()), spec)
    assert outcome.quality["extra_columns"] == {"Amount": "amount_2"}
    assert outcome.clean["amount_2"].tolist() == [r[5] for r in rows[1:]]  # extras stay strings
    pd.testing.assert_series_equal(outcome.clean["amount"], household.clean["amount"])


def test_blank_lines_ragged_rows_and_trailing_delimiters(tmp_path, spec, rows):
    lines = to_csv(rows[:21]).splitlines()
    lines[3] += ","  # an empty extra field: harmless
    lines[5] += ",surprise"  # an extra value: too many fields
    lines[7] = ",".join(lines[7].split(",")[:4])  # too few
    lines.insert(9, "")  # blank
    lines.insert(12, ",,,,,,,")  # only delimiters: blank too
    text = "\n".join(lines) + "\n"
    outcome = ingest_bytes(write(tmp_path, "ragged.csv", text.encode()), spec, gate=False)
    assert_accounting(outcome)
    assert outcome.quality["blank_rows_skipped"] == 2
    assert outcome.rows_read == 20
    by_line = {r.line: r.reasons for r in outcome.quarantine}
    assert by_line == {6: ("row:too_many_fields",), 8: ("row:too_few_fields", "amount:null")}
    physical = text.split("\n")
    assert all(r.raw == physical[r.line - 1] for r in outcome.quarantine)


def test_missing_required_columns(spec, rows):
    variant = [[v for i, v in enumerate(r) if i != 5] for r in rows[:30]]
    with pytest.raises(MissingColumnsError) as info:
        ingest_bytes(to_csv(variant).encode(), spec)
    assert info.value.missing == ["amount"]


# -- dates -----------------------------------------------------------------------------------------

EVENTS = parse_dataset_spec(
    {
        "name": "events",
        "columns": [
            {"name": "at", "type": "datetime", "required": True, "nullable": False},
            {"name": "amount", "type": "float", "aliases": ["Amount"]},
        ],
    }
)


def test_mixed_date_formats_in_one_column(tmp_path, rows):
    """household's dd-mm-YYYY HH:MM and dd-mm-YYYY plus ISO values, no formats in the spec."""
    body = [["at", "Amount"]] + [[r[0], r[5]] for r in rows[1:200]]
    body += [["2018-09-21", "1"], ["2018-09-22T08:30:00", "2"], ["2018-09-23 10:00:00Z", "3"]]
    outcome = ingest_bytes(write(tmp_path, "mixed.csv", to_csv(body).encode()), EVENTS)
    assert outcome.rows_clean == len(body) - 1
    report = outcome.quality["format"]["dates"]["at"]
    assert set(report["formats"]) == {"%d-%m-%Y %H:%M", "%d-%m-%Y", "ISO8601"}
    assert report["dayfirst"] is True and report["decided_by"].startswith("data")
    assert report["evidence"]["first_field_over_12"] > 0
    used = outcome.quality["columns"]["at"]["formats_used"]
    assert used["ISO8601"] == 3 and sum(used.values()) == len(body) - 1
    got = outcome.clean["at"]
    assert got.iloc[0] == pd.Timestamp("2018-09-20 12:04")
    assert got.iloc[2] == pd.Timestamp("2018-09-19")
    assert got.iloc[-2:].tolist() == [pd.Timestamp("2018-09-22 08:30"), pd.Timestamp("2018-09-23 10:00")]


def test_month_first_dates_decided_by_a_day_above_12(tmp_path):
    body = "at,Amount\n03/04/2024,1\n01/02/2024 13:45,2\n12/25/2024,3\n11/05/2024,4\n"
    outcome = ingest_bytes(write(tmp_path, "us.csv", body.encode()), EVENTS)
    report = outcome.quality["format"]["dates"]["at"]
    assert report["dayfirst"] is False
    assert report["evidence"]["example_month_first"] == "12/25/2024"
    assert outcome.clean["at"].tolist() == [
        pd.Timestamp("2024-03-04"),
        pd.Timestamp("2024-01-02 13:45"),
        pd.Timestamp("2024-12-25"),
        pd.Timestamp("2024-11-05"),
    ]


def test_undecidable_dates_follow_the_spec_then_the_conventions(tmp_path):
    slash = "at,Amount\n03/04/2024,1\n05/06/2024,2\n"
    us = ingest_bytes(slash.encode(), EVENTS)
    assert us.clean["at"].tolist() == [pd.Timestamp("2024-03-04"), pd.Timestamp("2024-05-06")]
    assert "US convention" in us.quality["format"]["dates"]["at"]["decided_by"]
    forced = parse_dataset_spec({**EVENTS.to_dict(), "format": {"dayfirst": True}})
    eu = ingest_bytes(slash.encode(), forced)
    assert eu.clean["at"].tolist() == [pd.Timestamp("2024-04-03"), pd.Timestamp("2024-06-05")]
    assert eu.quality["format"]["dates"]["at"]["decided_by"] == "spec format.dayfirst"
    semicolons = ingest_bytes(slash.replace(",", ";").encode(), EVENTS)
    assert semicolons.clean["at"].iloc[0] == pd.Timestamp("2024-04-03")
    dashes = ingest_bytes(slash.replace("/", "-").encode(), EVENTS)
    assert dashes.clean["at"].iloc[0] == pd.Timestamp("2024-04-03")


def test_conflicting_evidence_quarantines_the_minority(tmp_path):
    body = "at,Amount\n13/01/2024,1\n14/01/2024,2\n01/13/2024,3\n"
    outcome = ingest_bytes(body.encode(), EVENTS, gate=False)
    assert outcome.quality["format"]["dates"]["at"]["dayfirst"] is True
    assert "conflicting" in outcome.quality["format"]["dates"]["at"]["decided_by"]
    assert [(r.line, r.reasons) for r in outcome.quarantine] == [(4, ("at:unparseable",))]


def test_compact_dates_by_length(tmp_path):
    body = "at,Amount\n20240131,1\n240229,2\n20240315103000,3\n000101,4\n"
    outcome = ingest_bytes(write(tmp_path, "compact.csv", body.encode()), EVENTS)
    assert outcome.clean["at"].tolist() == [
        pd.Timestamp("2024-01-31"),
        pd.Timestamp("2024-02-29"),
        pd.Timestamp("2024-03-15 10:30"),
        pd.Timestamp("2000-01-01"),
    ]
    assert set(outcome.quality["format"]["dates"]["at"]["formats"]) == {"%Y%m%d", "%y%m%d", "%Y%m%d%H%M%S"}


def test_formats_first_seen_after_the_sample_are_detected(tmp_path, rows):
    """The sample only holds dd-mm-YYYY; ISO dates at the end of a large file still parse."""
    body = [["at", "Amount"]] + [[r[0], r[5]] for r in rows[1:]] * 6 + [["2019-01-31T10:00:00", "5"]]
    outcome = ingest_bytes(write(tmp_path, "late.csv", to_csv(body).encode()), EVENTS, chunk_rows=5000)
    assert outcome.rows_quarantined == 0
    assert outcome.clean["at"].iloc[-1] == pd.Timestamp("2019-01-31 10:00")
    assert outcome.quality["columns"]["at"]["formats_used"]["ISO8601"] == 1


def test_invalid_calendar_dates_are_unparseable(tmp_path):
    body = "at,Amount\n31-02-2018,1\n29-02-2019,2\n29-02-2020,3\n2018-13-01,4\n24:00,5\n"
    outcome = ingest_bytes(body.encode(), EVENTS, gate=False)
    assert outcome.clean["at"].tolist() == [pd.Timestamp("2020-02-29")]
    assert [r.line for r in outcome.quarantine] == [2, 3, 5, 6]


# -- numbers and signs -----------------------------------------------------------------------------


def test_parentheses_negatives_with_a_debit_credit_column(tmp_path):
    spec = parse_dataset_spec(
        {
            "name": "bank",
            "columns": [
                {"name": "date", "type": "datetime", "aliases": ["Date"]},
                {"name": "amount", "type": "float", "aliases": ["Amount"]},
                {"name": "direction", "type": "string", "aliases": ["Dr/Cr"]},
            ],
            "sign": {"amount": "amount", "column": "direction", "negative": ["Debit", "DR"]},
        }
    )
    rows = rows_of(TITANS)[1:41]
    table = [["Date", "Amount", "Dr/Cr"]]
    for r in rows:
        value = float(r[3])
        text = f"({abs(value):,.2f})" if value < 0 and len(table) % 2 else f"₹{abs(value):,.2f}"
        table.append([r[0], text, "dr" if value < 0 else "Credit"])
    outcome = ingest_bytes(write(tmp_path, "bank.csv", to_csv(table).encode()), spec)
    assert outcome.clean["amount"].tolist() == pytest.approx([float(r[3]) for r in rows])
    sign = outcome.quality["sign"]
    negatives = sum(float(r[3]) < 0 for r in rows)
    assert sign["rows_marked_negative"] == negatives
    assert 0 < sign["amounts_negated"] < negatives  # the parenthesised ones were negative already


@pytest.mark.parametrize(
    ("text", "expected"),
    [("(1.234,50)", -1234.5), ("1 234,5", 1234.5), ("€ 12,5", 12.5), ("-0,75", -0.75), ("3", 3.0)],
)
def test_decimal_comma_spellings(text, expected):
    body = f"at;Amount\n2024-01-01;1,5\n2024-01-02;{text}\n".encode()
    outcome = ingest_bytes(body, EVENTS)
    assert outcome.clean["amount"].tolist() == [1.5, expected]


def test_format_overrides_from_the_spec(tmp_path):
    spec = parse_dataset_spec(
        {
            **EVENTS.to_dict(),
            "format": {"delimiter": "|", "decimal": ",", "thousands": ".", "encoding": "cp1252"},
        }
    )
    body = "at|Amount\n2024-01-01|1.234,5\n2024-01-02|7\n".encode("cp1252")
    outcome = ingest_bytes(body, spec)
    assert outcome.clean["amount"].tolist() == [1234.5, 7.0]
    assert outcome.quality["format"]["decided_by"]["encoding"] == "spec format.encoding"


# -- headerless ------------------------------------------------------------------------------------

HEADERLESS = parse_dataset_spec(
    {
        "name": "ledger",
        "columns": [
            {"name": "date", "type": "datetime", "position": 0},
            {"name": "amount", "type": "float", "position": 5},
            {"name": "category", "type": "string", "position": 2},
        ],
    }
)


def test_headerless_file_with_positions(tmp_path, rows, household):
    outcome = ingest_bytes(write(tmp_path, "noheader.csv", to_csv(rows[1:]).encode()), HEADERLESS)
    q = outcome.quality
    assert q["format"]["header"] is False and q["header"] is None
    assert q["rows_read"] == 2461 and q["rows_clean"] == 2461
    assert outcome.clean["amount"].tolist() == household.clean["amount"].tolist()
    assert outcome.clean["date"].tolist() == household.clean["date"].tolist()
    assert outcome.clean["category"].tolist() == household.clean["category"].tolist()
    assert [c for c in outcome.clean.columns if c.startswith("column_")] == [
        "column_2",
        "column_4",
        "column_5",
        "column_7",
        "column_8",
    ]
    first = outcome.quarantine_csv().decode().splitlines()
    assert first == ["line,reasons,raw"]


def test_header_flag_in_the_spec_wins(tmp_path, rows):
    spec = parse_dataset_spec({**HEADERLESS.to_dict(), "format": {"header": False}})
    outcome = ingest_bytes(to_csv(rows[:11]).encode(), spec, gate=False)
    # the real header is now a data row, and fails typing: line 1 is quarantined
    assert [(r.line, r.reasons) for r in outcome.quarantine] == [
        (1, ("date:unparseable", "amount:not_a_number"))
    ]
    assert outcome.rows_clean == 10


# -- rules -----------------------------------------------------------------------------------------


def test_spec_rules_quarantine_with_their_reason_codes(tmp_path):
    spec = load_dataset_spec("wine-quality")
    rows = rows_of(WINE, delimiter=";")
    rows[5][8] = "15"  # pH above 14
    rows[9][11] = "-1"  # quality below 0
    outcome = ingest_bytes(to_csv(rows, delimiter=";").encode(), spec)
    assert {r.line: r.reasons for r in outcome.quarantine} == {
        6: ("ph:above_max",),
        10: ("quality:below_min",),
    }
    assert outcome.quality["failures"] == {"ph:above_max": 1, "quality:below_min": 1}


def test_a_stray_quote_inside_an_unquoted_field(tmp_path, spec, household):
    """``5" screen``: the parsers take the quote literally; chunk boundaries stay on records."""
    lines = HOUSEHOLD.read_bytes().split(b"\n")
    lines[100] = lines[100].replace(b",", b',5" screen ', 1)
    body = write(tmp_path, "stray.csv", b"\n".join(lines))
    for chunk_rows in (50, 10**6):
        outcome = ingest_bytes(body, spec, chunk_rows=chunk_rows)
        assert outcome.rows_clean == 2461 and "warnings" not in outcome.quality
        assert outcome.clean["payment_method"].iloc[99] == '5" screen Saving Bank account 1'
        expected = household.clean.drop(index=99)
        pd.testing.assert_frame_equal(outcome.clean.drop(index=99), expected)


def test_numeric_and_boolean_looking_strings_stay_verbatim():
    spec = parse_dataset_spec(
        {
            "name": "codes",
            "columns": [
                {"name": "zip", "type": "string"},
                {"name": "flag", "type": "string"},
                {"name": "n", "type": "int"},
            ],
        }
    )
    outcome = ingest_bytes(b"zip,flag,n\n00123,TRUE,1\n04567,false,2\n00123,True,3\n", spec)
    assert outcome.clean["zip"].tolist() == ["00123", "04567", "00123"]
    assert outcome.clean["flag"].tolist() == ["TRUE", "false", "True"]
    assert outcome.clean["n"].tolist() == [1, 2, 3]
