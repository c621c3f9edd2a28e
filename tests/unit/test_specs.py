"""Dataset specs: validation messages name the field, YAML round trip, built-in specs against the real
files' headers, and ``resolve_dataset_spec`` (uploaded spec next to the data vs built-in) under moto.

The ingest engine is not run here: headers are read with the csv module (and gzip), values with pandas.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path

import boto3
import pandas as pd
import pytest
import yaml
from moto import mock_aws

from sluice.aws import reset_clients
from sluice.errors import SourceObjectError, SpecError, UnknownDatasetError
from sluice.settings import get_settings
from sluice.specs import (
    SPEC_FILENAMES,
    DatasetSpec,
    dataset_names,
    is_spec_key,
    load_dataset_spec,
    parse_dataset_spec,
    resolve_dataset_spec,
)
from tests.events import DATA

BUILTIN = ["churn", "daily-revenue", "shuttle-anomaly", "transactions", "wine-quality"]

# Every data file in ../shared/data -> the built-in spec that ingests it, and the header fields that
# no spec column claims (unknown columns are kept as extra columns).
DATA_FILES: dict[str, tuple[str, set[str]]] = {
    "transactions/daily_household_transactions.csv": ("transactions", set()),
    "transactions/titans_all_transactions.csv": ("transactions", {"Status", "Reference", "Receipt URL"}),
    "churn/telco_customer_churn_ibm.csv": ("churn", set()),
    "tabular/winequality-red.csv": ("wine-quality", set()),
    "anomaly/shuttle_anomaly.csv.gz": ("shuttle-anomaly", set()),
    "timeseries/cdnow_daily_revenue_DERIVED.csv": ("daily-revenue", set()),
}
NOT_DATA = {"README.md", "winequality.names"}  # documentation shipped next to the data

# -- helpers (also used by test_rules on the real files) ------------------------------------------------


def read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) with the csv module; gzip by suffix; ';' when the header has ';' but no ','."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    text = data.decode("utf-8-sig")
    first = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first and "," not in first else ","
    rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if any(r)]
    return rows[0], rows[1:]


def header_key(name: str) -> str:
    """Case-insensitive, surrounding whitespace ignored, runs of spaces/underscores equal."""
    return re.sub(r"[\s_]+", " ", name.strip().casefold()).strip()


def map_columns(header: list[str], spec: DatasetSpec) -> dict[str, str]:
    """Header field -> canonical column, by the column's name or one of its aliases."""
    mapping: dict[str, str] = {}
    for col in spec.columns:
        keys = {header_key(n) for n in (col.name, *col.aliases)}
        hits = [h for h in header if header_key(h) in keys and h not in mapping]
        if hits:
            mapping[hits[0]] = col.name
    return mapping


def typed_frame(path: Path, spec: DatasetSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(typed canonical columns, raw stripped strings) of a real file, typed with plain pandas."""
    header, rows = read_table(path)
    raw = pd.DataFrame(rows, columns=header, dtype="string")
    mapping = map_columns(header, spec)
    raw = raw[list(mapping)].rename(columns=mapping)
    raw = raw.apply(lambda s: s.str.strip().mask(s.str.strip() == ""))
    typed = {}
    for col in spec.columns:
        if col.name not in raw:
            continue
        s = raw[col.name]
        if col.type in ("float", "int"):
            numbers = pd.to_numeric(s, errors="coerce")
            typed[col.name] = numbers.astype("Int64") if col.type == "int" else numbers.astype(float)
        elif col.type == "datetime":
            out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us]")
            for fmt in col.formats or ["ISO8601"]:
                todo = out.isna() & s.notna()
                out[todo] = pd.to_datetime(s[todo], format=fmt, errors="coerce").astype("datetime64[us]")
            typed[col.name] = out
        else:
            typed[col.name] = s
    return pd.DataFrame(typed), raw


def dataset_spec(**overrides) -> dict:
    base = {
        "name": "demo",
        "columns": [
            {"name": "id", "type": "string", "required": True, "rules": {"unique": True}},
            {"name": "when", "type": "datetime"},
            {"name": "score", "type": "float", "rules": {"min": 0, "max": 1}},
            {"name": "label", "type": "string", "rules": {"allowed": ["a", "b"]}},
        ],
    }
    return {**base, **overrides}


def with_rules(column: int, **rules) -> dict:
    data = dataset_spec()
    data["columns"][column] = {**data["columns"][column], "rules": rules}
    return data


# -- validation messages ----------------------------------------------------------------------------


def test_a_valid_spec_parses():
    spec = parse_dataset_spec(dataset_spec())
    assert spec.column("score").rules.max == 1
    assert spec.column("id").rules.unique


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (with_rules(1, min=0), "columns.1.rules.min", "float and int"),
        (with_rules(1, max=5), "columns.1.rules.max", "'when' is datetime"),
        (with_rules(2, allowed=["1"]), "columns.2.rules.allowed", "string and text"),
        (with_rules(2, regex=r"\d+"), "columns.2.rules.regex", "'score' is float"),
        (with_rules(1, regex="x"), "columns.1.rules.regex", "datetime"),
        (with_rules(2, min=5, max=1), "columns.2.rules.min", "greater than max"),
        (with_rules(3, allowed=[]), "columns.3.rules.allowed", "at least one value"),
        (with_rules(3, regex="(unclosed"), "columns.3.rules.regex", "does not compile"),
        (with_rules(3, maximum=3), "columns.3.rules.maximum", "Extra inputs"),
        (with_rules(2, min="low"), "columns.2.rules.min", "number"),
    ],
)
def test_invalid_rules_name_the_field(data, field, words):
    with pytest.raises(SpecError) as err:
        parse_dataset_spec(data, "my.yaml")
    message = str(err.value)
    assert "invalid DatasetSpec in my.yaml" in message
    assert field in message and words in message


def test_other_invalid_fields_are_named():
    data = dataset_spec()
    data["columns"][0] = {"name": "id", "type": "integer"}
    with pytest.raises(SpecError, match=r"columns\.0\.type"):
        parse_dataset_spec(data)
    with pytest.raises(SpecError, match=r"columns\.1\.name"):
        parse_dataset_spec(dataset_spec(columns=[{"name": "ok"}, {"name": "Not An Identifier"}]))
    with pytest.raises(SpecError, match=r"max_quarantine_share"):
        parse_dataset_spec(dataset_spec(max_quarantine_share=1.5))
    with pytest.raises(SpecError, match=r"duplicate column name\(s\): id"):
        parse_dataset_spec(dataset_spec(columns=[{"name": "id"}, {"name": "id"}]))


def test_rules_that_fit_their_types_are_accepted():
    spec = parse_dataset_spec(
        {
            "name": "ok",
            "columns": [
                {"name": "n", "type": "int", "rules": {"min": 0, "max": 0, "unique": True}},
                {"name": "t", "type": "text", "rules": {"regex": ".+", "allowed": ["x"]}},
                {"name": "d", "type": "datetime", "rules": {"unique": True}},
            ],
        }
    )
    assert [c.rules.unique for c in spec.columns] == [True, False, True]


# -- round trip and built-in specs ----------------------------------------------------------------------


def test_round_trip_to_yaml_and_back():
    spec = parse_dataset_spec(
        dataset_spec(
            description="demo spec",
            format={"delimiter": ";", "compression": "gzip"},
            sign={"amount": "score", "column": "label", "negative": ["b"]},
            columns=[
                *dataset_spec()["columns"],
                {"name": "code", "aliases": ["Code #"], "rules": {"regex": r"[A-Z]{2}\d+"}},
            ],
        )
    )
    again = parse_dataset_spec(yaml.safe_load(spec.to_yaml()))
    assert again == spec
    assert parse_dataset_spec(json.loads(json.dumps(spec.to_dict()))) == spec


def test_builtin_dataset_names():
    assert dataset_names() == BUILTIN


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_spec_validates_and_round_trips(name):
    spec = load_dataset_spec(name)
    assert spec.name == name
    assert parse_dataset_spec(yaml.safe_load(spec.to_yaml())) == spec
    assert any(c.required for c in spec.columns)


def test_every_data_file_has_a_builtin_spec():
    files = {
        p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file() and p.name not in NOT_DATA
    }
    assert files == set(DATA_FILES)
    assert {name for name, _ in DATA_FILES.values()} == set(BUILTIN)


@pytest.mark.parametrize("relpath", sorted(DATA_FILES))
def test_builtin_spec_matches_the_file_header(relpath):
    name, extras = DATA_FILES[relpath]
    spec = load_dataset_spec(name)
    header, rows = read_table(DATA / relpath)
    mapping = map_columns(header, spec)
    assert set(header) - set(mapping) == extras
    assert len(set(mapping.values())) == len(mapping)
    missing = [c.name for c in spec.columns if c.required and c.name not in mapping.values()]
    assert missing == []
    assert rows and all(len(r) == len(header) for r in rows)


@pytest.mark.parametrize("relpath", sorted(DATA_FILES))
def test_builtin_types_fit_the_real_values(relpath):
    """Every non-empty value types as its spec says, and non-nullable columns have no empty value."""
    spec = load_dataset_spec(DATA_FILES[relpath][0])
    typed, raw = typed_frame(DATA / relpath, spec)
    for col in spec.columns:
        if col.name not in typed:
            continue
        failed = raw[col.name].notna() & typed[col.name].isna()
        assert not failed.any(), f"{col.name}: {raw[col.name][failed].head(3).tolist()}"
        if col.type == "int":
            numbers = pd.to_numeric(raw[col.name], errors="coerce").dropna()
            assert (numbers == numbers.round()).all(), col.name
        if not col.nullable:
            assert typed[col.name].notna().all(), col.name


def test_churn_and_wine_spec_details():
    churn = load_dataset_spec("churn")
    assert len(churn.columns) == 21
    assert churn.column("total_charges").nullable and churn.column("total_charges").type == "float"
    assert churn.column("customer_id").rules.unique
    assert set(churn.column("churn").rules.allowed) == {"Yes", "No"}
    wine = load_dataset_spec("wine-quality")
    assert "fixed acidity" in wine.column("fixed_acidity").aliases
    assert (wine.column("quality").rules.min, wine.column("quality").rules.max) == (0, 10)
    assert load_dataset_spec("daily-revenue").column("date").rules.unique


def test_is_spec_key():
    assert all(is_spec_key(f"raw/churn/{name}") for name in SPEC_FILENAMES)
    assert not is_spec_key("raw/churn/telco.csv")
    assert not is_spec_key("raw/churn/2024/dataset.yaml")
    assert not is_spec_key("curated/churn/dataset.yaml")


# -- resolve_dataset_spec under moto ------------------------------------------------------------------

BUCKET = "sluice-test-data"
CHURN_KEY = "raw/churn/telco.csv"
USER_SPEC = {
    "description": "uploaded by a user",
    "columns": [
        {"name": "customer_id", "required": True, "aliases": ["customerID"]},
        {"name": "churn", "required": True, "aliases": ["Churn"], "rules": {"allowed": ["Yes", "No"]}},
    ],
}


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("SLUICE_DATA_BUCKET", BUCKET)
    monkeypatch.setenv("SLUICE_REGISTRY_TABLE", "sluice-test-registry")
    with mock_aws():
        reset_clients()
        get_settings.cache_clear()
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client
        reset_clients()
        get_settings.cache_clear()


def put(s3, key: str, body: str | bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode() if isinstance(body, str) else body)


def test_builtin_spec_when_nothing_is_uploaded(s3):
    put(s3, CHURN_KEY, "customerID,Churn\n1234-ABCDE,No\n")
    spec, source = resolve_dataset_spec(BUCKET, CHURN_KEY)
    assert source == "builtin:churn"
    assert spec == load_dataset_spec("churn")


def test_uploaded_spec_wins_over_the_builtin(s3):
    put(s3, "raw/churn/dataset.yaml", yaml.safe_dump({"name": "churn", **USER_SPEC}))
    spec, source = resolve_dataset_spec(BUCKET, CHURN_KEY)
    assert source == f"s3://{BUCKET}/raw/churn/dataset.yaml"
    assert spec.description == "uploaded by a user"
    assert [c.name for c in spec.columns] == ["customer_id", "churn"]


def test_uploaded_spec_may_omit_its_name_and_be_json_or_yml(s3):
    put(s3, "raw/churn/dataset.json", json.dumps(USER_SPEC))
    spec, source = resolve_dataset_spec(BUCKET, CHURN_KEY)
    assert (spec.name, source) == ("churn", f"s3://{BUCKET}/raw/churn/dataset.json")
    put(s3, "raw/churn/dataset.yml", yaml.safe_dump({**USER_SPEC, "description": "yml"}))
    spec, source = resolve_dataset_spec(BUCKET, CHURN_KEY)
    assert (spec.description, source) == ("yml", f"s3://{BUCKET}/raw/churn/dataset.yml")


def test_uploaded_spec_for_a_dataset_without_builtin(s3):
    put(s3, "raw/leads/dataset.yaml", yaml.safe_dump(USER_SPEC))
    spec, source = resolve_dataset_spec(BUCKET, "raw/leads/2024-06.csv")
    assert (spec.name, source) == ("leads", f"s3://{BUCKET}/raw/leads/dataset.yaml")


def test_invalid_uploaded_spec_names_the_field(s3):
    bad = {**USER_SPEC, "columns": [{"name": "signup", "type": "datetime", "rules": {"min": 0}}]}
    put(s3, "raw/churn/dataset.yaml", yaml.safe_dump(bad))
    with pytest.raises(SpecError) as err:
        resolve_dataset_spec(BUCKET, CHURN_KEY)
    assert f"s3://{BUCKET}/raw/churn/dataset.yaml" in str(err.value)
    assert "columns.0.rules.min" in str(err.value)

    put(
        s3,
        "raw/churn/dataset.yaml",
        yaml.safe_dump({**USER_SPEC, "columns": [{"name": "x", "type": "blob"}]}),
    )
    with pytest.raises(SpecError, match=r"columns\.0\.type"):
        resolve_dataset_spec(BUCKET, CHURN_KEY)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("columns: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        (b"\xff\xfe\x00bad", "not UTF-8"),
        (yaml.safe_dump({"name": "other", **USER_SPEC}), "name: 'other' differs from the dataset folder"),
    ],
)
def test_unreadable_uploaded_spec_is_an_error_not_a_fallback(s3, body, words):
    put(s3, "raw/churn/dataset.yaml", body)
    with pytest.raises(SpecError, match=re.escape(words)):
        resolve_dataset_spec(BUCKET, CHURN_KEY)


def test_invalid_json_spec(s3):
    put(s3, "raw/churn/dataset.json", "{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        resolve_dataset_spec(BUCKET, CHURN_KEY)


def test_unknown_dataset_lists_the_known_ones(s3):
    put(s3, "raw/mystery/file.csv", "a,b\n1,2\n")
    with pytest.raises(UnknownDatasetError) as err:
        resolve_dataset_spec(BUCKET, "raw/mystery/file.csv")
    message = str(err.value)
    assert "'mystery'" in message and f"s3://{BUCKET}/raw/mystery/dataset.yaml" in message
    assert all(name in message for name in BUILTIN)


def test_key_outside_raw_is_an_unknown_dataset(s3):
    with pytest.raises(UnknownDatasetError, match="raw/<dataset>/<file>"):
        resolve_dataset_spec(BUCKET, "uploads/file.csv")


def test_missing_bucket_is_not_a_silent_fallback(s3):
    with pytest.raises(SourceObjectError, match="NoSuchBucket"):
        resolve_dataset_spec("no-such-bucket", CHURN_KEY)
