"""`sluice infer-spec` and `sluice ingest` through the CLI entry point (sluice_cli.main.main)."""

from __future__ import annotations

import csv
import io
import json

import pytest
import yaml

from sluice.specs import parse_dataset_spec
from sluice_cli.main import main
from tests.unit.ingest.helpers import HOUSEHOLD, SHUTTLE, WINE, rows_of, to_csv

OUTPUTS = {"data.npz", "schema.json", "quality.json", "quarantine.csv", "profile.json"}


def infer_to_file(capsys, path, tmp_path, name="x"):
    assert main(["infer-spec", str(path), "--name", name]) == 0
    out = capsys.readouterr().out
    spec = parse_dataset_spec(yaml.safe_load(out))
    spec_file = tmp_path / f"{name}.yaml"
    spec_file.write_text(out)
    return spec, spec_file


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("path", [HOUSEHOLD, WINE, SHUTTLE], ids=lambda p: p.name)
def test_infer_spec_then_ingest_spec(capsys, tmp_path, path):
    spec, spec_file = infer_to_file(capsys, path, tmp_path)
    assert spec.name == "x"
    out_dir = tmp_path / "out"
    assert main(["ingest", str(path), "--spec", str(spec_file), "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"accepted {path.name} as x:")
    assert {p.name for p in out_dir.iterdir()} == OUTPUTS
    quality = json.loads((out_dir / "quality.json").read_text())
    assert quality["rows_read"] == quality["rows_clean"] > 0
    assert quality["rows_quarantined"] == 0
    assert quality["format"]["delimiter"] == spec.format.delimiter
    assert quality["format"]["header"] is True
    schema = json.loads((out_dir / "schema.json").read_text())
    assert [c["name"] for c in schema["columns"]] == [c.name for c in spec.columns]
    quarantine = list(csv.reader(io.StringIO((out_dir / "quarantine.csv").read_text())))
    assert quarantine == [["line", "reasons", "raw"]]


def test_infer_spec_household_yaml(capsys, tmp_path):
    spec, _ = infer_to_file(capsys, HOUSEHOLD, tmp_path, name="household")
    date = spec.column("date")
    assert date.type == "datetime" and set(date.formats) == {"%d-%m-%Y %H:%M", "%d-%m-%Y"}
    assert spec.column("amount").type == "float"
    assert spec.format.delimiter == "," and spec.format.header is True


def test_infer_spec_default_name_from_the_file(capsys):
    assert main(["infer-spec", str(WINE)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["name"] == "winequality-red"


def test_infer_spec_on_an_empty_file_fails_with_one_line(capsys, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert main(["infer-spec", str(path)]) == 1
    assert "empty" in one_line_error(capsys)


def test_ingest_builtin_dataset(capsys, tmp_path):
    out_dir = tmp_path / "out"
    assert main(["ingest", str(HOUSEHOLD), "--dataset", "transactions", "--out", str(out_dir)]) == 0
    assert {p.name for p in out_dir.iterdir()} == OUTPUTS
    quality = json.loads((out_dir / "quality.json").read_text())
    assert quality["rows_read"] == 2461 and quality["rows_clean"] == 2461
    assert quality["rows_quarantined"] == 0
    assert quality["format"]["encoding"] == "utf-8" and quality["format"]["delimiter"] == ","
    assert "2461 rows read, 2461 clean, 0 quarantined" in capsys.readouterr().out


def without_amount(tmp_path):
    rows = [r[:5] + r[6:] for r in rows_of(HOUSEHOLD)]
    path = tmp_path / "no_amount.csv"
    path.write_text(to_csv(rows))
    return path


def test_missing_required_column_builtin_spec(capsys, tmp_path):
    path = without_amount(tmp_path)
    assert main(["ingest", str(path), "--dataset", "transactions", "--out", str(tmp_path / "o")]) == 1
    err = one_line_error(capsys)
    assert err.startswith("rejected: MissingColumnsError: missing required column(s): amount;")


def test_missing_required_column_inferred_spec(capsys, tmp_path):
    _, spec_file = infer_to_file(capsys, HOUSEHOLD, tmp_path)
    path = without_amount(tmp_path)
    assert main(["ingest", str(path), "--spec", str(spec_file), "--out", str(tmp_path / "o")]) == 1
    err = one_line_error(capsys)
    assert "missing required column(s): amount;" in err


def test_quality_gate_failure(capsys, tmp_path):
    _, spec_file = infer_to_file(capsys, HOUSEHOLD, tmp_path)
    rows = rows_of(HOUSEHOLD)
    for r in rows[1::3]:  # a third of the rows: above the 20% gate
        r[5] = "n/a"
    path = tmp_path / "bad_amounts.csv"
    path.write_text(to_csv(rows))
    out_dir = tmp_path / "o"
    assert main(["ingest", str(path), "--spec", str(spec_file), "--out", str(out_dir)]) == 1
    err = one_line_error(capsys)
    assert err.startswith("rejected: QualityGateError:") and "amount:not_a_number" in err
    # what is left to read: the report and the quarantined rows, nothing to train on
    assert {p.name for p in out_dir.iterdir()} == {"quality.json", "quarantine.csv"}
    quality = json.loads((out_dir / "quality.json").read_text())
    assert quality["rows_quarantined"] == len(rows[1::3]) and quality["gate"]["passed"] is False


def test_model_spec_file_is_refused(capsys, tmp_path):
    spec_file = tmp_path / "model.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {"name": "m", "dataset": "d", "target": "y", "features": [{"name": "a", "kind": "numeric"}]}
        )
    )
    assert main(["ingest", str(HOUSEHOLD), "--spec", str(spec_file), "--out", str(tmp_path / "o")]) == 1
    assert "model spec" in one_line_error(capsys)
