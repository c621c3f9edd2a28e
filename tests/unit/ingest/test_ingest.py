"""Unit tests of sluice.ingest.ingest_bytes (pure: bytes + spec in, outcome out) on the real files."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from sluice.errors import MissingColumnsError, QualityGateError, SourceObjectError
from sluice.ingest import ingest_bytes, map_header, run_id_for, snake_case, sniff_delimiter
from sluice.specs import parse_dataset_spec
from tests.unit.ingest.helpers import HOUSEHOLD, TITANS, rows_of

CANONICAL = ["date", "amount", "description", "category", "subcategory", "payment_method", "type", "currency"]


@pytest.fixture(scope="module")
def titans(spec):
    return ingest_bytes(TITANS.read_bytes(), spec)


def to_csv(rows: list[list[str]], delimiter: str = ",", lineterminator: str = "\n") -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator=lineterminator).writerows(rows)
    return buf.getvalue()


def assert_accounting(outcome) -> None:
    q = outcome.quality
    assert q["rows_read"] == q["rows_clean"] + q["rows_quarantined"]
    assert len(outcome.clean) == q["rows_clean"]
    assert len(outcome.quarantine) == q["rows_quarantined"]


# -- the real files ------------------------------------------------------------------------------------


def test_household_maps_every_column_and_keeps_every_row(household):
    q = household.quality
    assert q["rows_read"] == 2461
    assert q["rows_clean"] == 2461 and q["rows_quarantined"] == 0
    assert_accounting(household)
    fmt = q["format"]
    assert (fmt["encoding"], fmt["delimiter"], fmt["header"], fmt["compression"]) == (
        "utf-8",
        ",",
        True,
        "none",
    )
    assert (fmt["line_endings"], fmt["layout"], fmt["decimal"]) == ("CRLF", "delimited", ".")
    assert q["header"] == [
        "Date",
        "Mode",
        "Category",
        "Subcategory",
        "Note",
        "Amount",
        "Income/Expense",
        "Currency",
    ]
    assert q["column_mapping"] == {
        "Date": "date",
        "Mode": "payment_method",
        "Category": "category",
        "Subcategory": "subcategory",
        "Note": "description",
        "Amount": "amount",
        "Income/Expense": "type",
        "Currency": "currency",
    }
    assert q["extra_columns"] == {} and q["absent_columns"] == []
    assert list(household.clean.columns) == CANONICAL


def test_household_types_and_nulls(household):
    df = household.clean
    assert pd.api.types.is_datetime64_any_dtype(df["date"])
    assert df["amount"].dtype == "float64"
    assert all(df[c].dtype == "string" for c in CANONICAL[2:])
    # Both date formats of this file are parsed: "dd-mm-YYYY HH:MM" (1303) and "dd-mm-YYYY" (1158).
    assert household.quality["columns"]["date"]["formats_used"] == {"%d-%m-%Y %H:%M": 1303, "%d-%m-%Y": 1158}
    assert df["date"].iloc[0] == pd.Timestamp("2018-09-20 12:04")
    assert df["date"].iloc[2] == pd.Timestamp("2018-09-19")
    assert df["date"].min().year == 2015 and df["date"].max().year == 2018
    # Empty Note / Subcategory become nulls, not empty strings.
    assert df["description"].isna().sum() == 521
    assert df["subcategory"].isna().sum() == 635
    assert household.quality["null_rates"]["description"] == pytest.approx(521 / 2461, abs=1e-6)
    # A quoted note keeps its comma.
    assert "Soap, shampoo, razor" in set(df["description"].dropna())
    assert (df["currency"] == "INR").all()
    assert df["category"].value_counts()["Food"] == 907


def test_titans_signed_amounts_extra_and_absent_columns(titans):
    q = titans.quality
    assert q["rows_read"] == 127 and q["rows_clean"] == 127
    assert_accounting(titans)
    assert q["column_mapping"] == {
        "Date": "date",
        "Type": "type",
        "Description": "description",
        "Amount": "amount",
        "Category": "category",
        "Payment Method": "payment_method",
    }
    # Unknown columns are kept with snake_case names, after the canonical ones.
    assert q["extra_columns"] == {"Status": "status", "Reference": "reference", "Receipt URL": "receipt_url"}
    assert list(titans.clean.columns) == [*CANONICAL, "status", "reference", "receipt_url"]
    # Optional canonical columns absent from the file exist, all null.
    assert q["absent_columns"] == ["subcategory", "currency"]
    assert titans.clean["subcategory"].isna().all() and titans.clean["currency"].isna().all()
    df = titans.clean
    assert (df["amount"] < 0).sum() == 100
    assert df["amount"].iloc[1] == pytest.approx(-1295.83)
    assert (df.loc[df["type"] == "Income", "amount"] > 0).all()
    assert df["category"].isna().sum() == 27 and df["payment_method"].isna().sum() == 27
    # The last line has no trailing newline and is still complete.
    assert df["receipt_url"].iloc[-1].endswith(".png")
    assert df["date"].iloc[0] == pd.Timestamp("2024-12-06")


# -- format variants built from the real files ---------------------------------------------------------


def european(value: str) -> str:
    """-1295.83 -> -1.295,83 (dot thousands, comma decimals)."""
    number = float(value)
    text = f"{abs(number):,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
    return ("-" if number < 0 else "") + text


def test_semicolon_decimal_comma_variant(tmp_path, spec, titans):
    rows = rows_of(TITANS)
    amount = rows[0].index("Amount")
    for row in rows[1:]:
        row[amount] = european(row[amount])
    path = tmp_path / "titans_semicolon.csv"
    path.write_text(to_csv(rows, delimiter=";"))
    assert "-1.295,83" in path.read_text()

    outcome = ingest_bytes(path.read_bytes(), spec)
    assert outcome.quality["format"]["delimiter"] == ";"
    assert outcome.quality["columns"]["amount"]["decimal"] == ","
    assert outcome.rows_clean == 127
    pd.testing.assert_series_equal(outcome.clean["amount"], titans.clean["amount"])
    pd.testing.assert_frame_equal(outcome.clean, titans.clean)


def test_tab_cp1252_currency_symbols_and_header_spelling(tmp_path, spec, titans):
    rows = rows_of(TITANS)
    # Other spellings of the header: case, surrounding spaces, another alias.
    rows[0] = [
        " DATE ",
        "type",
        "Memo",
        "amount",
        "CATEGORY",
        "payment  method",
        "Status",
        "Reference",
        "URL",
    ]
    for row in rows[1:]:
        value = float(row[3])
        row[3] = f"({abs(value):,.2f} €)" if value < 0 else f"€{value:,.2f}"
    rows[1][2] = "Café \u2013 Zürich"  # cp1252 has é, en dash and ü
    path = tmp_path / "titans_tab.tsv"
    path.write_bytes(to_csv(rows, delimiter="\t", lineterminator="\r\n").encode("cp1252"))

    outcome = ingest_bytes(path.read_bytes(), spec)
    q = outcome.quality
    assert q["format"]["encoding"] == "cp1252" and q["format"]["delimiter"] == "\t"
    assert q["column_mapping"] == {
        "DATE": "date",
        "type": "type",
        "Memo": "description",
        "amount": "amount",
        "CATEGORY": "category",
        "payment  method": "payment_method",
    }
    assert outcome.rows_clean == 127
    pd.testing.assert_series_equal(outcome.clean["amount"], titans.clean["amount"])
    assert outcome.clean["description"].iloc[0] == "Café \u2013 Zürich"
    assert outcome.clean["url"].iloc[-1].endswith(".png")


def test_utf8_bom_is_not_part_of_the_first_header(spec):
    outcome = ingest_bytes(b"\xef\xbb\xbf" + HOUSEHOLD.read_bytes()[:2000].rsplit(b"\n", 1)[0], spec)
    assert outcome.quality["format"]["encoding"] == "utf-8-sig"
    assert outcome.quality["column_mapping"]["Date"] == "date"
    assert outcome.quality["failures"] == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,234.50", 1234.5),
        ("₹12,34,567", 1234567.0),
        ("INR 99", 99.0),
        ("$-15.99", -15.99),
        ("15.99-", -15.99),
        ("(15.99)", -15.99),
        ("+7", 7.0),
        ("1e3", 1000.0),
        (" 42 ", 42.0),
    ],
)
def test_amount_spellings(spec, text, expected):
    outcome = ingest_bytes(to_csv([["Date", "Amount"], ["2024-01-02", text]]).encode(), spec)
    assert outcome.quality["failures"] == {}
    assert outcome.clean["amount"].iloc[0] == pytest.approx(expected)


@pytest.mark.parametrize("text", ["abc", "1e999", "nan", "inf", "--5", "-(5)", "12..5", "1-2", "€", '"1\n2"'])
def test_non_numbers_are_quarantined(spec, text):
    body = f"Date,Amount\n2024-01-02,5\n2024-01-02,{text}\n".encode()
    outcome = ingest_bytes(body, spec, gate=False)
    assert [(r.line, r.reasons) for r in outcome.quarantine] == [(3, ("amount:not_a_number",))]
    assert outcome.clean["amount"].tolist() == [5.0]


# -- bad rows ------------------------------------------------------------------------------------------------


def test_bad_rows_are_quarantined_with_line_numbers_and_reasons(tmp_path, spec):
    lines = HOUSEHOLD.read_text().splitlines()[:31]  # header + 30 rows
    assert not any('"' in line for line in lines)  # one physical line per record below
    cells = [line.split(",") for line in lines]
    cells[3][0] = "31-02-2018"  # line 4: no such date
    cells[5][5] = "abc"  # line 6: not a number
    cells[7][5] = ""  # line 8: empty amount
    cells[9][0], cells[9][5] = "yesterday", "12..5"  # line 10: both
    cells[11][0] = ""  # line 12: empty date
    cells[13] = cells[13][:5]  # line 14: ragged row
    text = "\n".join(",".join(c) for c in cells) + "\n"
    path = tmp_path / "bad_rows.csv"
    path.write_text(text)

    outcome = ingest_bytes(path.read_bytes(), spec)
    assert_accounting(outcome)
    assert outcome.rows_read == 30 and outcome.rows_quarantined == 6 and outcome.rows_clean == 24
    by_line = {r.line: r for r in outcome.quarantine}
    assert {n: r.reasons for n, r in by_line.items()} == {
        4: ("date:unparseable",),
        6: ("amount:not_a_number",),
        8: ("amount:null",),
        10: ("date:unparseable", "amount:not_a_number"),
        12: ("date:null",),
        14: ("row:too_few_fields", "amount:null"),
    }
    physical = text.splitlines()
    assert all(r.raw == physical[r.line - 1] for r in outcome.quarantine)
    assert outcome.quality["failures"] == {
        "amount:not_a_number": 2,
        "amount:null": 2,
        "date:null": 1,
        "date:unparseable": 2,
        "row:too_few_fields": 1,
    }
    assert outcome.clean["amount"].notna().all() and outcome.clean["date"].notna().all()

    report = list(csv.DictReader(io.StringIO(outcome.quarantine_csv().decode())))
    assert list(report[0]) == ["line", "reasons", "raw"]
    assert report[3] == {"line": "10", "reasons": "date:unparseable;amount:not_a_number", "raw": physical[9]}


def test_multiline_record_keeps_its_first_line_number(spec):
    text = 'Date,Amount,Note\n01-01-2018,5,"two\nlines"\n02-01-2018,oops,x\n'
    outcome = ingest_bytes(text.encode(), spec, gate=False)
    assert outcome.clean["description"].iloc[0] == "two\nlines"
    [bad] = outcome.quarantine
    assert (bad.line, bad.raw, bad.reasons) == (4, "02-01-2018,oops,x", ("amount:not_a_number",))


def test_too_many_bad_rows_fail_the_quality_gate(spec):
    rows = rows_of(TITANS)[:11]
    for row in rows[1:4]:
        row[3] = "n/a"
    body = to_csv(rows).encode()
    with pytest.raises(QualityGateError, match=r"3 of 10 rows quarantined .*amount:not_a_number x3"):
        ingest_bytes(body, spec)
    outcome = ingest_bytes(body, spec, gate=False)  # the handler path writes the report first
    assert outcome.quality["gate"]["passed"] is False
    assert_accounting(outcome)


def test_missing_required_columns_name_them_and_the_header(spec):
    rows = [[v for i, v in enumerate(r) if i not in (0, 5)] for r in rows_of(HOUSEHOLD)[:21]]
    with pytest.raises(MissingColumnsError) as info:
        ingest_bytes(to_csv(rows).encode(), spec)
    assert info.value.missing == ["date", "amount"]
    message = str(info.value)
    assert "date, amount" in message
    assert "Mode, Category, Subcategory, Note, Income/Expense, Currency" in message


@pytest.mark.parametrize("body", [b"", b"  \r\n\n", b"\r\n"])
def test_empty_file_is_a_source_error(spec, body):
    with pytest.raises(SourceObjectError, match="empty"):
        ingest_bytes(body, spec)


def test_header_only_fails_the_gate_with_a_clear_message(spec):
    with pytest.raises(QualityGateError, match="header but no data rows"):
        ingest_bytes(HOUSEHOLD.read_bytes().splitlines()[0], spec)


def test_binary_file_is_a_source_error(spec):
    with pytest.raises(SourceObjectError, match="not text"):
        ingest_bytes(b"PK\x03\x04\x00\x00binary", spec)


# -- helpers -------------------------------------------------------------------------------------------------


def test_snake_case_names():
    assert snake_case("Receipt URL") == "receipt_url"
    assert snake_case("Income/Expense") == "income_expense"
    assert snake_case("TotalCharges") == "total_charges"
    assert snake_case(" 2nd Value ") == "c_2nd_value"
    assert snake_case("", 4) == "column_4"
    assert all(snake_case(h).isidentifier() for h in ["a b", "x-y", "€ amount", "Ünit"])


def test_duplicate_and_colliding_headers_stay_unique(spec):
    # The canonical name wins over an alias; the loser is kept as an extra column.
    canonical, extras = map_header(["Note", "Description", "amount", "Date", "Date", "Currency "], spec)
    assert canonical == {1: "description", 2: "amount", 3: "date", 5: "currency"}
    assert extras == {0: "note", 4: "date_2"}


def test_sniffer_falls_back_to_the_header():
    assert sniff_delimiter("Date|Amount\n") == "|"
    assert sniff_delimiter("Date\n2024-01-01\n") == ","
    assert sniff_delimiter(TITANS.read_text()) == ","


def test_run_id_is_deterministic():
    a = run_id_for("b", "raw/t/x.csv", "v1", "abc")
    assert a == run_id_for("b", "raw/t/x.csv", "v1", "def")  # the version identifies the object
    assert a != run_id_for("b", "raw/t/x.csv", "v2", "abc")
    assert run_id_for("b", "k", None, "abc") != run_id_for("b", "k", None, "abd")
    assert len(a) == 16 and int(a, 16) >= 0


def test_int_and_iso_datetime_columns_of_a_user_spec():
    spec = parse_dataset_spec(
        {
            "name": "visits",
            "max_quarantine_share": 0.5,
            "columns": [
                {"name": "at", "type": "datetime", "required": True, "nullable": False},
                {"name": "count", "type": "int", "aliases": ["Visits"]},
            ],
        }
    )
    text = "At;Visits;Note\n2024-01-02T03:04:05;1.234;a\n2024-01-03;;b\n2024-01-04;2,5;c\n2024-13-01;3;d\n"
    outcome = ingest_bytes(text.encode(), spec)
    assert outcome.clean["count"].dtype == "Int64"
    counts = outcome.clean["count"]
    assert counts.iloc[0] == 1234 and counts.isna().tolist() == [False, True]
    assert outcome.clean["at"].tolist() == [pd.Timestamp("2024-01-02 03:04:05"), pd.Timestamp("2024-01-03")]
    assert outcome.clean["note"].tolist() == ["a", "b"]
    reasons = [(r.line, r.reasons) for r in outcome.quarantine]
    assert reasons == [(4, ("count:not_an_integer",)), (5, ("at:unparseable",))]
