"""Checks of the benchmark's own logic (no timing assertions): ``.venv/bin/python -m pytest bench``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.httpload import load
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
