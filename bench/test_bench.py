"""Checks of the benchmark's own logic (no timing assertions): ``.venv/bin/python -m pytest bench``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.__main__ import main as bench_main
from bench._ingest_child import measure, outcome_facts
from bench.httpload import load
from bench.ingest import SOURCE, ingest_table, order, resample, size_key, split_records, summarize
from bench.serving import bundle_size, table
from bench.stats import paired_ratio, percentile, summary


def test_percentile_interpolates_like_numpy() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 90) == pytest.approx(4.6)
    assert summary(values)["n"] == 5


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    assert paired_ratio([10.0, 30.0, 20.0], [1.0, 2.0, 4.0]) == 10.0


def test_load_refuses_anything_but_loopback() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        load("http://example.com/", b"{}", {}, requests=1, concurrency=1, time_cap_s=1)


def test_bundle_without_a_build_says_so() -> None:
    root = Path(__file__).resolve().parents[1]
    missing = root / ".aws-sam" / "no-such-build-dir"
    assert not missing.exists()
    assert bundle_size(missing) == {
        "bundle_mb": None,
        "bundle_note": "no .aws-sam/no-such-build-dir: run make build first",
    }


def test_table_renders_every_section() -> None:
    lat = {"p50": 1.0, "p99": 2.0}
    cold = {"p50": 1.0, "min": 0.5, "max": 1.5}
    results = {
        "measured_at": "now",
        "machine": {"cpus": 2},
        "model": {"version": 1, "rows_train": 10, "row": "{}"},
        "in_process_rounds": 3,
        "in_process_latency_ms": {k: lat for k in ("handler", "served_predict", "onnxruntime", "sklearn")},
        "paired_ratios": {"sklearn_to_onnxruntime": 1, "handler_to_onnxruntime": 1, "sklearn_to_handler": 1},
        "cold": {
            "repeats": 1,
            "paired_sklearn_to_handler": 1,
            **{k: {"cold_s": cold} for k in ("handler", "onnxruntime", "sklearn", "python")},
        },
        "bundle_mb": None,
        "bundle_note": "run make build first",
        "http": {"ok": 1, "concurrency": 1},
        "http_rps": 1.0,
        "http_p50_ms": 1.0,
        "http_p95_ms": 1.0,
        "http_p99_ms": 1.0,
        "http_sequential_p50_ms": 1.0,
        "labels_agree": True,
        "duration_s": 1.0,
    }
    text = table(results)
    for heading in ("1. one prediction", "2. cold init", "3. bundle: n/a", "4. HTTP"):
        assert heading in text


# -- ingest ---------------------------------------------------------------------------------------------

STAND_IN = "bench._ingest_child:stand_in_ingest"


def _ingest_run(wall_s: float, peak_mb: float, **extra: float) -> dict:
    figures = {"wall_s": wall_s, "peak_mb": peak_mb, "peak_rss_mb": peak_mb + 50, "baseline_mb": 50.0}
    return {**figures, "import_s": 0.1, **extra}


def test_size_key_names_powers_of_ten() -> None:
    assert size_key(10**5) == "rows_1e5"
    assert size_key(10**6) == "rows_1e6"
    assert size_key(1) == "rows_1e0"
    assert size_key(250) == "rows_250"


def test_split_records_keeps_each_record_text_and_multiline_quotes() -> None:
    text = 'a,b\r\n1,"x, y"\r\n2,"two\r\nlines"\r\n3,z\r\n'
    header, records, terminator = split_records(text)
    assert header == "a,b"
    assert records == ['1,"x, y"', '2,"two\r\nlines"', "3,z"]
    assert terminator == "\r\n"
    assert split_records("a\n1\n\n2")[1:] == (["1", "2"], "\n")


def test_resample_is_seeded_keeps_header_and_source_records(tmp_path: Path) -> None:
    source = tmp_path / "src.csv"
    source.write_bytes(
        b'Date,Note,Amount\r\n20-09-2018 12:04,"a, b",30\r\n2018-09-19,c,1\r\n19-09-2018,"d\r\ne",2\r\n'
    )
    first, second, other = tmp_path / "1.csv", tmp_path / "2.csv", tmp_path / "3.csv"
    facts = resample(source, 50, first, seed=7)
    resample(source, 50, second, seed=7)
    resample(source, 50, other, seed=8)
    assert facts["rows"] == 50 and facts["source_rows"] == 3
    assert first.read_bytes() == second.read_bytes() != other.read_bytes()
    header, records, terminator = split_records(first.read_bytes().decode())
    _, source_records, _ = split_records(source.read_bytes().decode())
    assert header == "Date,Note,Amount" and terminator == "\r\n"
    assert len(records) == 50 and set(records) <= set(source_records)
    assert len(set(records)) > 1  # drawn, not one record repeated


def test_order_alternates_which_path_goes_first() -> None:
    assert order(0) == ("read_csv", "ingest")
    assert order(1) == ("ingest", "read_csv")
    assert order(2) == order(0)


def test_summarize_takes_medians_and_judges_the_ratio() -> None:
    runs = {
        "read_csv": [_ingest_run(1.0, 100.0), _ingest_run(2.0, 120.0), _ingest_run(1.5, 110.0)],
        "ingest": [_ingest_run(2.0, 40.0, chunk_rows=1000), _ingest_run(3.0, 60.0), _ingest_run(4.0, 50.0)],
    }
    s = summarize(1000, 0.1, runs)
    assert s["read_csv_rows_per_s"] == round(1000 / 1.5)
    assert s["ingest_rows_per_s"] == round(1000 / 3.0)
    assert s["ratio"] == pytest.approx(0.5)
    assert s["meets_target"] is True
    assert s["paired_ratio"] == pytest.approx(0.5)  # per repeat: 0.5, 0.667, 0.375
    assert (s["read_csv_peak_mb"], s["ingest_peak_mb"], s["peak_mb_ratio"]) == (110.0, 50.0, 0.45)
    assert s["chunk_rows"] == 1000
    runs["ingest"] = [_ingest_run(3.1, 1.0)] * 3
    assert summarize(1000, 0.1, runs)["meets_target"] is False


def test_outcome_facts_read_attributes_then_the_quality_report() -> None:
    quality = {"rows_clean": 9, "rows_quarantined": 1, "chunk_rows": 5}
    outcome = SimpleNamespace(rows_read=10, quality=quality)
    assert outcome_facts(outcome) == {"rows_read": 10, **quality}
    assert outcome_facts(object()) == {}


def test_child_refuses_a_path_that_did_not_see_every_row(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("Date,Amount\n20-09-2018,1\n20-09-2018,2\n")
    assert measure("ingest", path, 2, STAND_IN, tmp_path / "out")["rows_seen"] == 2
    with pytest.raises(RuntimeError, match="has 3 data rows but the path saw 2"):
        measure("ingest", path, 3, STAND_IN, tmp_path / "out2")


def test_ingest_table_renders_every_size() -> None:
    runs = {"read_csv": [_ingest_run(1.0, 10.0)], "ingest": [_ingest_run(4.0, 5.0)]}
    results = {"rows_1e4": summarize(10**4, 0.7, runs), "target_ratio": 0.5, "options": {"repeats": 1}}
    text = ingest_table(results)
    assert "10,000" in text and "BELOW the 0.5 target" in text and "0.25" in text


@pytest.mark.skipif(not SOURCE.exists(), reason=f"{SOURCE} is not there")
def test_quick_ingest_run_with_a_stand_in_engine(tmp_path: Path) -> None:
    """``--quick`` end to end (10^4 and 10^5 rows, fresh interpreters), with a stand-in engine so that
    it checks the harness, not sluice.ingest; other keys of the results file are kept."""
    output = tmp_path / "results.json"
    output.write_text(json.dumps({"serving": {"kept": True}}))
    args = ["--only", "ingest", "--quick", "--ingest-repeats", "1", "--ingest-engine", STAND_IN]
    assert bench_main([*args, "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    assert results["serving"] == {"kept": True}
    ingest = results["ingest"]
    assert ingest["engine"] == STAND_IN
    for key, rows in (("rows_1e4", 10**4), ("rows_1e5", 10**5)):
        figures = ingest[key]
        assert figures["rows"] == figures["rows_clean"] == rows
        assert figures["ingest_rows_per_s"] > 0 and figures["read_csv_rows_per_s"] > 0
        assert figures["ratio"] == pytest.approx(
            figures["ingest_rows_per_s"] / figures["read_csv_rows_per_s"], rel=0.01
        )
        assert figures["file_mb"] > 0 and figures["read_csv_peak_mb"] >= 0
    assert "rows_1e6" not in ingest


# -- training -----------------------------------------------------------------------------------------


def test_training_plan_covers_each_spec_on_its_files_then_the_resampled_household() -> None:
    from bench.training import TRANSACTION_MODELS, TrainingOptions, plan
    from sluice.specs import _builtin

    jobs = plan(TrainingOptions(factors=(10,)))
    assert ("transaction-category", "household") in jobs and ("transaction-category", "titans") in jobs
    assert {m for m, _ in jobs} == set(_builtin("models"))
    resampled = [m for m, label in jobs if label == "household_x10"]
    assert resampled == [m for m in TRANSACTION_MODELS if m in _builtin("models")]
    assert plan(TrainingOptions(factors=(), models=("no-such-model",))) == []


def test_training_targets_are_judged_in_their_direction() -> None:
    from bench.training import check_target

    run = {"metrics": {"holdout": {"accuracy": 0.79}}}
    assert check_target("transaction-category", "household", run)["met"] is True
    assert check_target("wine-quality", "wine", run)["met"] is None  # its metric is missing here
    wine = {"metrics": {"holdout": {"mean_absolute_error": 0.46}}}
    assert check_target("wine-quality", "wine", wine)["met"] is False
    assert check_target("transaction-category", "household_x10", run) is None
    assert check_target("transaction-category", "household", {"error": "exit 1"}) is None


def test_training_child_trains_the_bookkeeping_file(tmp_path: Path) -> None:
    from bench._training_child import measure as measure_training
    from bench.training import TITANS, training_table

    run = measure_training("transaction-category", TITANS)
    assert run["rows"] > 90 and run["wall_s"] > 0 and run["peak_mb"] >= 0
    holdout = run["metrics"]["holdout"]
    assert 0.0 <= holdout["accuracy"] <= 1.0 and run["onnx_bytes"] > 1000
    assert run["rows_train"] + run["rows_holdout"] <= run["rows"]
    text = training_table(
        {"runs": {"transaction-category@titans": {**run, "target": None}}, "function_mb": None}
    )
    assert "transaction-category@titans" in text and "n/a" in text
