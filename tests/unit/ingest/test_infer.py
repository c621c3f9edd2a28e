"""sluice.ingest.infer.infer_spec: a starter spec from a file, then ingest with it.

Every real file (../shared/data) and files the project has never seen (generated in tmp_path): the
inferred spec validates, round-trips through YAML, and ingesting the same file with it reads every
row and quarantines none. Expected values come from the raw text (csv module), not from the engine.
"""

from __future__ import annotations

import csv
import gzip
import io
import random

import pandas as pd
import pytest
import yaml

from sluice.errors import SourceObjectError
from sluice.ingest import ingest_file, map_header
from sluice.ingest.infer import first_row_is_header, infer_spec
from sluice.specs import DatasetSpec, parse_dataset_spec
from tests.events import DATA
from tests.unit.ingest.helpers import CHURN, HOUSEHOLD, REVENUE, SHUTTLE, TITANS, WINE, rows_of

REAL_FILES = sorted(p for p in DATA.rglob("*") if p.is_file() and p.suffix in (".csv", ".gz"))


def raw_rows(path, delimiter=","):
    """The file's records (header included) with the csv module."""
    if path.suffix == ".gz":
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
    else:
        text = path.read_bytes().decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def round_trips(spec: DatasetSpec) -> bool:
    return parse_dataset_spec(yaml.safe_load(spec.to_yaml())) == spec


def accept(path, spec, out):
    """Ingest ``path`` with ``spec`` (quality gate on) and check the accounting."""
    outcome = ingest_file(path, spec, out)
    q = outcome.quality
    assert q["rows_read"] == q["rows_clean"] + q["rows_quarantined"]
    return outcome


@pytest.fixture(scope="module")
def inferred():
    return {p.name: infer_spec(p, name=p.name.split(".")[0].lower()) for p in REAL_FILES}


def test_every_real_file_is_found():
    assert {p.name for p in REAL_FILES} == {
        HOUSEHOLD.name,
        TITANS.name,
        CHURN.name,
        WINE.name,
        SHUTTLE.name,
        REVENUE.name,
    }


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_real_file_infer_then_ingest_accepts_every_row(path, inferred, tmp_path):
    spec = inferred[path.name]
    assert isinstance(spec, DatasetSpec)
    assert round_trips(spec)
    assert spec.max_quarantine_share == DatasetSpec.model_fields["max_quarantine_share"].default
    delimiter = spec.format.delimiter
    rows = raw_rows(path, delimiter)
    header, data = rows[0], [r for r in rows[1:] if any(f.strip() for f in r)]
    # one column per header field, every one required, each header mapping back to its own column
    assert len(spec.columns) == len(header)
    assert all(c.required for c in spec.columns)
    canonical, extras = map_header([h.strip() for h in header], spec)
    assert canonical == {i: c.name for i, c in enumerate(spec.columns)} and extras == {}
    # nullable exactly where the file has an empty value
    for i, col in enumerate(spec.columns):
        assert col.nullable == any(not r[i].strip() for r in data), col.name

    outcome = accept(path, spec, tmp_path / "out")
    q = outcome.quality
    assert q["rows_read"] == len(data)
    assert q["rows_quarantined"] == 0 and q["failures"] == {}
    assert q["format"]["header"] is True
    assert q["format"]["delimiter"] == delimiter
    assert q["format"]["encoding"] == spec.format.encoding
    assert q["column_mapping"] == {h.strip(): c.name for h, c in zip(header, spec.columns, strict=True)}
    assert outcome.types == {c.name: c.type for c in spec.columns}


def test_household(inferred, tmp_path):
    spec = inferred[HOUSEHOLD.name]
    f = spec.format
    assert (f.encoding, f.delimiter, f.header, f.decimal, f.dayfirst) == ("utf-8", ",", True, ".", True)
    date = spec.column("date")
    assert date.type == "datetime" and date.aliases == ["Date"] and not date.nullable
    assert sorted(date.formats) == ["%d-%m-%Y", "%d-%m-%Y %H:%M"]  # both formats of the file
    amount = spec.column("amount")
    assert amount.type == "float" and amount.aliases == ["Amount"] and not amount.nullable
    assert amount.rules.min == 0 and amount.rules.max is None
    assert spec.column("note").type == "text" and spec.column("note").nullable  # 521 empty notes
    assert spec.column("subcategory").nullable
    assert spec.column("income_expense").aliases == ["Income/Expense"]
    assert spec.column("income_expense").rules.allowed == ["Expense", "Income", "Transfer-Out"]
    assert spec.column("currency").rules.allowed == ["INR"]
    assert spec.column("category").rules.allowed is None  # 50 categories: no list suggested
    assert not any(c.rules.unique for c in spec.columns)

    outcome = accept(HOUSEHOLD, spec, tmp_path / "out")
    rows = rows_of(HOUSEHOLD)[1:]
    df = outcome.clean
    assert df["amount"].tolist() == [float(r[5]) for r in rows]
    assert df["note"].isna().sum() == sum(1 for r in rows if not r[4].strip()) == 521
    for r, ts in zip(rows[:40], df["date"][:40], strict=True):
        fmt = "%d-%m-%Y %H:%M" if " " in r[0] else "%d-%m-%Y"
        assert ts == pd.to_datetime(r[0], format=fmt)
    used = outcome.quality["format"]["dates"]["date"]
    assert used["decided_by"] == "spec formats"


def test_churn_total_charges_blanks_are_nulls(inferred, tmp_path):
    spec = inferred[CHURN.name]
    total = spec.column("total_charges")
    assert total.type == "float" and total.nullable and total.aliases == ["TotalCharges"]
    assert total.rules.min == 0
    assert spec.column("monthly_charges").type == "float" and not spec.column("monthly_charges").nullable
    assert spec.column("tenure").type == "int"
    assert spec.column("senior_citizen").type == "int" and spec.column("senior_citizen").rules.allowed is None
    cid = spec.column("customer_id")
    assert cid.type == "string" and cid.aliases == ["customerID"] and cid.rules.unique
    assert spec.column("contract").rules.allowed == ["Month-to-month", "One year", "Two year"]
    assert spec.column("churn").rules.allowed == ["No", "Yes"]

    outcome = accept(CHURN, spec, tmp_path / "out")
    rows = rows_of(CHURN)[1:]
    blanks = sum(1 for r in rows if not r[19].strip())
    assert blanks == 11
    assert outcome.rows_quarantined == 0
    assert outcome.clean["total_charges"].isna().sum() == blanks
    assert outcome.quality["null_rates"]["total_charges"] == round(blanks / len(rows), 6)


def test_wine_semicolons_and_quoted_header(inferred, tmp_path):
    spec = inferred[WINE.name]
    assert spec.format.delimiter == ";" and spec.format.decimal == "."
    quality = spec.column("quality")
    assert quality.type == "int" and quality.rules.allowed is None and quality.rules.min == 0
    assert spec.column("fixed_acidity").type == "float"
    assert spec.column("fixed_acidity").aliases == ["fixed acidity"]
    outcome = accept(WINE, spec, tmp_path / "out")
    rows = raw_rows(WINE, ";")[1:]
    assert outcome.clean["quality"].tolist() == [int(r[11]) for r in rows]
    assert outcome.clean["alcohol"].tolist() == [float(r[10]) for r in rows]


def test_shuttle_gzip(inferred, tmp_path):
    spec = inferred[SHUTTLE.name]
    assert spec.format.compression is None  # detected from the magic bytes, as the Lambda does
    anomaly = spec.column("anomaly")
    assert anomaly.type == "int" and anomaly.rules.allowed is None and anomaly.rules.min == 0
    assert all(spec.column(f"f{i}").type == "int" for i in range(1, 10))
    outcome = accept(SHUTTLE, spec, tmp_path / "out")
    assert outcome.quality["format"]["compression"] == "gzip"
    assert outcome.rows_read == 49097
    assert int(outcome.clean["anomaly"].sum()) == 3511


def test_revenue_date_is_unique(inferred, tmp_path):
    spec = inferred[REVENUE.name]
    date = spec.column("date")
    assert date.type == "datetime" and date.rules.unique and date.formats == ["ISO8601"]
    assert spec.column("revenue").type == "float" and not spec.column("revenue").rules.unique
    assert spec.column("n_transactions").type == "int"
    outcome = accept(REVENUE, spec, tmp_path / "out")
    assert outcome.rows_read == 546
    assert outcome.clean["date"].iloc[0] == pd.Timestamp("1997-01-01")


def test_titans(inferred, tmp_path):
    spec = inferred[TITANS.name]
    assert spec.column("amount").type == "float" and spec.column("amount").rules.min is None  # signed
    assert spec.column("date").formats == ["ISO8601"]
    assert spec.column("description").type == "text"
    assert spec.column("receipt_url").aliases == ["Receipt URL"]
    assert spec.column("payment_method").nullable  # 27 income rows leave it empty
    assert "credit_car" in spec.column("payment_method").rules.allowed  # the typo is data too
    accept(TITANS, spec, tmp_path / "out")


# -- files the project has never seen -------------------------------------------------------------

PAYEES = ["Müller GmbH", "Bäckerei Süß", "Café Élan", "Stadtwerke Köln", "Gehalt Firma AG", "Apotheke Zürich"]


def german_amount(x: float) -> str:
    return f"{x:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")


@pytest.fixture
def bank_export(tmp_path):
    """A German bank export: cp1252, ';', CRLF, decimal commas with '.' thousands, dd.mm.yyyy dates,
    a Soll/Haben (debit/credit) column, accents in headers and values."""
    rng = random.Random(3)
    rows = []
    for i in range(80):
        day, month = rng.randint(1, 28), rng.randint(1, 12)
        amount = rng.randint(1, 900_000) / 100
        rows.append(
            [
                f"{day:02d}.{month:02d}.2023",
                f"{min(day + 1, 28):02d}.{month:02d}.2023",
                rng.choice(PAYEES),
                f"Überweisung Rechnung Nr. {1000 + i} vom {day}.{month}.",
                german_amount(amount),
                rng.choice(["Soll", "Haben"]),
                "EUR",
            ]
        )
    rows[5][4] = "1.234,56"
    header = [
        "Buchungstag",
        "Valuta",
        "Empfänger/Auftraggeber",
        "Verwendungszweck",
        "Betrag (€)",
        "S/H",
        "Währung",
    ]
    text = "\r\n".join(";".join(r) for r in [header, *rows]) + "\r\n"
    path = tmp_path / "umsaetze.csv"
    path.write_bytes(text.encode("cp1252"))
    return path, rows


def test_never_seen_bank_export(bank_export, tmp_path):
    path, rows = bank_export
    spec = infer_spec(path, name="bank")
    assert round_trips(spec)
    f = spec.format
    assert (f.encoding, f.delimiter, f.header, f.decimal, f.dayfirst) == ("cp1252", ";", True, ",", True)
    assert [c.name for c in spec.columns] == [
        "buchungstag",
        "valuta",
        "empfänger_auftraggeber",
        "verwendungszweck",
        "betrag",
        "s_h",
        "währung",
    ]
    assert spec.column("buchungstag").type == "datetime"
    assert spec.column("buchungstag").formats == ["%d.%m.%Y"]
    betrag = spec.column("betrag")
    assert betrag.type == "float" and betrag.aliases == ["Betrag (€)"] and betrag.rules.min == 0
    assert spec.column("s_h").rules.allowed == ["Haben", "Soll"]
    assert spec.column("verwendungszweck").type == "text"
    assert spec.column("empfänger_auftraggeber").rules.allowed == sorted(PAYEES)

    outcome = accept(path, spec, tmp_path / "out")
    assert outcome.rows_read == 80 and outcome.rows_quarantined == 0
    df = outcome.clean
    assert df["betrag"].iloc[5] == 1234.56
    expected = [float(r[4].replace(".", "").replace(",", ".")) for r in rows]
    assert df["betrag"].tolist() == pytest.approx(expected)
    assert df["buchungstag"].tolist() == [pd.to_datetime(r[0], format="%d.%m.%Y") for r in rows]
    assert set(df["empfänger_auftraggeber"]) <= set(PAYEES)  # accents decoded from cp1252
    assert outcome.quality["format"]["encoding"] == "cp1252"


def test_never_seen_bank_export_through_yaml(bank_export, tmp_path):
    """The YAML as printed, loaded back from a file: ingest reads the file the same way."""
    path, _ = bank_export
    spec_file = tmp_path / "bank.yaml"
    spec_file.write_text(infer_spec(path, name="bank").to_yaml())
    from sluice.specs import load_spec_file

    spec = load_spec_file(spec_file)
    outcome = accept(path, spec, tmp_path / "out")
    assert outcome.rows_clean == 80


def test_never_seen_headerless_tab_file(tmp_path):
    rng = random.Random(5)
    rows = [
        [
            str(5000 + i),
            f"sensor-{i % 3}",
            f"{rng.uniform(-5, 30):.3f}",
            f"2024-03-{1 + i % 28:02d} 10:{i:02d}:00",
        ]
        for i in range(50)
    ]
    path = tmp_path / "readings.tsv"
    path.write_text("\n".join("\t".join(r) for r in rows) + "\n")
    spec = infer_spec(path, name="readings")
    assert round_trips(spec)
    assert spec.format.header is False and spec.format.delimiter == "\t"
    assert [(c.name, c.position, c.type) for c in spec.columns] == [
        ("column_1", 0, "int"),
        ("column_2", 1, "string"),
        ("column_3", 2, "float"),
        ("column_4", 3, "datetime"),
    ]
    assert all(c.aliases == [] for c in spec.columns)
    assert spec.column("column_2").rules.allowed == ["sensor-0", "sensor-1", "sensor-2"]
    assert spec.column("column_3").rules.min is None  # negative readings
    outcome = accept(path, spec, tmp_path / "out")
    assert outcome.rows_read == 50  # the first row is data, not a header
    assert outcome.clean["column_1"].tolist() == [int(r[0]) for r in rows]
    assert outcome.clean["column_4"].iloc[0] == pd.Timestamp("2024-03-01 10:00:00")


def test_never_seen_pipe_file_with_bom_us_dates_and_zip_codes(tmp_path):
    rng = random.Random(9)
    rows = [
        [
            f"{rng.randint(1, 12)}/{rng.randint(13, 28)}/2024",
            f"0{1000 + i}",
            f"${rng.randint(10, 900)}.{rng.randint(10, 99)}",
            rng.choice(["open", "shipped", "closed"]),
            f'"Left at door, ring {i}"',
        ]
        for i in range(30)
    ]
    text = "Order Date|ZIP|Total|Status|Notes\r\n" + "\r\n".join("|".join(r) for r in rows) + "\r\n"
    path = tmp_path / "orders.txt"
    path.write_bytes(("\ufeff" + text).encode("utf-8"))
    spec = infer_spec(path, name="orders")
    assert spec.format.encoding == "utf-8-sig" and spec.format.delimiter == "|"
    assert spec.format.dayfirst is False  # second fields above 12: month-first
    assert spec.column("order_date").formats == ["%m/%d/%Y"]
    zip_code = spec.column("zip")
    assert zip_code.type == "string" and zip_code.rules.unique  # leading zeros: a code, not a number
    assert spec.column("total").type == "float"
    outcome = accept(path, spec, tmp_path / "out")
    assert outcome.rows_quarantined == 0
    assert outcome.clean["zip"].tolist() == [r[1] for r in rows]
    assert outcome.clean["notes"].iloc[3] == "Left at door, ring 3"


def test_never_seen_whitespace_aligned_file(tmp_path):
    lines = ["name    city        score   joined"]
    people = [("Ann", "Paris", "12.5"), ("Bob", "New York", "7"), ("Cid", "Rome", "9.25")]
    for i, (name, city, score) in enumerate(people * 8):
        lines.append(f"{name:<8}{city:<12}{score:<8}2021-01-{i + 1:02d}")
    path = tmp_path / "people.txt"
    path.write_text("\n".join(lines) + "\n")
    spec = infer_spec(path, name="people")
    assert spec.format.delimiter == "whitespace"
    assert [(c.name, c.type) for c in spec.columns] == [
        ("name", "string"),
        ("city", "string"),
        ("score", "float"),
        ("joined", "datetime"),
    ]
    assert spec.column("city").rules.allowed == ["New York", "Paris", "Rome"]
    outcome = accept(path, spec, tmp_path / "out")
    assert outcome.rows_read == 24 and outcome.rows_quarantined == 0
    assert outcome.clean["city"].iloc[1] == "New York"


def test_duplicate_and_empty_headers_map_back_to_their_own_columns(tmp_path):
    path = tmp_path / "dupes.csv"
    path.write_text("Amount,amount,Amount ,,amount_2\n1,2,3,4,5\n6,7,8,9,10\n")
    spec = infer_spec(path, name="dupes")
    names = [c.name for c in spec.columns]
    assert len(set(names)) == 5
    canonical, extras = map_header(["Amount", "amount", "Amount", "", "amount_2"], spec)
    assert canonical == dict(enumerate(names)) and extras == {}
    outcome = accept(path, spec, tmp_path / "out")
    assert outcome.clean[names].iloc[1].tolist() == [6, 7, 8, 9, 10]


def test_blank_and_ragged_rows_do_not_make_columns_nullable(tmp_path):
    path = tmp_path / "gaps.csv"
    body = "".join(f"{i},item {i % 4}\n" + ("\n" if i % 5 == 0 else "") for i in range(30))
    path.write_text("id,label\n" + body)
    spec = infer_spec(path, name="gaps")
    assert not spec.column("id").nullable and not spec.column("label").nullable
    assert spec.column("id").rules.unique  # an id, all distinct, 30 rows
    outcome = accept(path, spec, tmp_path / "out")
    assert outcome.rows_read == 30 and outcome.quality["blank_rows_skipped"] == 6


def test_rules_come_from_the_sample_rows(tmp_path):
    path = tmp_path / "late.csv"
    values = [str(i) for i in range(40)] + ["-3"]
    path.write_text("reading\n" + "\n".join(values) + "\n")
    assert infer_spec(path, name="late").column("reading").rules.min is None
    assert infer_spec(path, name="late", sample_rows=40).column("reading").rules.min == 0


def test_digit_dates_only_under_a_date_name(tmp_path):
    body = "".join(f"202401{d:02d},202401{d:02d}\n" for d in range(1, 25))
    path = tmp_path / "digits.csv"
    path.write_text("booking_date,batch\n" + body)
    spec = infer_spec(path, name="digits")
    assert spec.column("booking_date").type == "datetime"
    assert spec.column("booking_date").formats == ["%Y%m%d"]
    assert spec.column("batch").type == "int"
    outcome = accept(path, spec, tmp_path / "out")
    assert outcome.clean["booking_date"].iloc[0] == pd.Timestamp("2024-01-01")


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(SourceObjectError, match="empty"):
        infer_spec(path, name="empty")


@pytest.mark.parametrize(
    ("first", "records", "expected"),
    [
        (["name", "amount"], [["a", "1"], ["b", "2.5"]], True),  # a name over numbers
        (["x", "3"], [["a", "1"], ["b", "2.5"]], False),  # the first row types like the rest
        (["when", "n"], [["2024-01-02", "1"]], True),  # a name over dates
        (["2024-01-01", "x"], [["2024-01-02", "y"]], False),
        (["fruit", "colour"], [["apple", "red"], ["cherry", "red"]], True),  # strings: names unseen
        (["apple", "red"], [["banana", "yellow"], ["apple", "red"]], False),  # first row recurs
        (["only", "header"], [], True),
    ],
)
def test_first_row_is_header(first, records, expected):
    assert first_row_is_header(first, records, ",") is expected


@pytest.mark.parametrize(
    ("header", "unique"),
    [("CustomerID", True), ("postcode", True), ("Invoice No", True), ("paid", False), ("label", False)],
)
def test_unique_needs_an_id_like_name_or_values_without_spaces(tmp_path, header, unique):
    """Distinct values with spaces are unique only under an id-like name."""
    path = tmp_path / "ids.csv"
    path.write_text(f"{header},n\n" + "".join(f"A {i},{i % 3}\n" for i in range(25)))
    spec = infer_spec(path, name="ids")
    assert spec.columns[0].rules.unique is unique
    assert spec.columns[1].rules.unique is False  # repeats
    assert accept(path, spec, tmp_path / "out").rows_quarantined == 0
