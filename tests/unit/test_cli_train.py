"""`sluice train` on real files: the Lambdas' code end to end on a laptop, gates decided locally."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sluice.specs import load_model_spec
from sluice_cli.main import main
from tests.events import DATA

WINE = DATA / "tabular" / "winequality-red.csv"


def test_trains_wine_quality_and_writes_the_model_its_metadata_and_report(tmp_path: Path, capsys) -> None:
    code = main(["train", str(WINE), "--model", "wine-quality", "--out", str(tmp_path)])

    assert code == 0, capsys.readouterr().err
    assert {"model.onnx", "metadata.json", "report.html", "ingest"} <= {p.name for p in tmp_path.iterdir()}
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert set(meta["metrics"]) >= {"cv", "holdout", "baseline"}
    mae = meta["metrics"]["holdout"]["mean_absolute_error"]
    assert mae < meta["metrics"]["baseline"]["mean_absolute_error"]
    assert meta["metric"] == "mean_absolute_error" and meta["status"] == "candidate" and meta["reasons"] == []
    assert {g["gate"] for g in meta["gates"]} == {"parity", "beat_baseline", "min_metric"}
    assert all(g["passed"] for g in meta["gates"]) and meta["parity"]["passed"] is True
    assert f"{mae:.4f}" in capsys.readouterr().out
    assert "<html" in (tmp_path / "report.html").read_text()[:200]
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["value"]


def test_a_gate_it_misses_exits_1_with_the_reason(tmp_path: Path, capsys) -> None:
    spec = load_model_spec("wine-quality").to_dict()
    spec["gates"]["min_metric"] = 0.05  # a mean absolute error nobody reaches on this data
    spec["candidates"] = [{"name": "ridge"}]
    path = tmp_path / "strict.yaml"
    path.write_text(yaml.safe_dump(spec))

    code = main(["train", str(WINE), "--spec", str(path), "--out", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert code == 1 and err.startswith("rejected: wine-quality: min_metric: holdout mean_absolute_error")
    assert len(err.strip().splitlines()) == 1
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta["status"] == "rejected" and meta["reasons"][0].startswith("min_metric")


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (lambda rows: [r for r in rows if r.split(";")[-1].strip() == "5"], "class"),  # one quality value
        (lambda rows: rows[:12], "rows"),  # too few rows
    ],
)
def test_data_that_cannot_make_a_model_is_refused_before_training(
    tmp_path: Path, capsys, keep, message
) -> None:
    header, *rows = WINE.read_text().splitlines()
    path = tmp_path / "wine.csv"
    path.write_text("\n".join([header, *keep(rows)]) + "\n")
    spec = load_model_spec("wine-quality").to_dict() | {"task": "classification", "metric": "accuracy"}
    spec["gates"] = {"beat_baseline": True}
    spec["candidates"] = [{"name": "logistic_regression"}]
    spec_path = tmp_path / "cls.yaml"
    spec_path.write_text(yaml.safe_dump(spec))

    code = main(["train", str(path), "--spec", str(spec_path), "--out", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert code == 1 and err.startswith("rejected: TrainingError") and message in err
    assert not (tmp_path / "out" / "model.onnx").exists()
