"""The registration gates, decided from a TrainResult alone (no AWS)."""

from __future__ import annotations

import pytest

from sluice.contracts import TrainResult
from sluice.registration import evaluate_gates, spec_of
from sluice.specs import parse_model_spec
from tests.events import load_event


@pytest.fixture
def result() -> TrainResult:
    return TrainResult.model_validate(load_event("register/household.json"))


def failed(checks) -> list[str]:
    return [c.gate for c in checks if not c.passed]


def test_the_sample_candidate_passes_every_gate(result):
    checks = evaluate_gates(result, spec_of(result))
    assert [c.gate for c in checks] == ["parity", "beat_baseline"]
    assert failed(checks) == []


def test_equal_to_the_baseline_does_not_beat_it(result):
    result.metrics["macro_f1"] = result.baseline["macro_f1"]
    assert failed(evaluate_gates(result, spec_of(result))) == ["beat_baseline"]


def test_the_spec_metric_decides(result):
    result.metrics["accuracy"] = 0.0  # the spec selects on macro_f1
    assert failed(evaluate_gates(result, spec_of(result))) == []


def test_parity_and_min_metric(result):
    spec = parse_model_spec(
        {**spec_of(result).to_dict(), "gates": {"beat_baseline": False, "min_metric": 0.5}}
    )
    result.parity.passed = False
    result.metrics["macro_f1"] = 0.45
    checks = evaluate_gates(result, spec)
    assert failed(checks) == ["parity", "min_metric"]
    assert checks[-1].detail == "holdout macro_f1 0.4500 < minimum 0.5000"
    result.metrics["macro_f1"] = 0.5
    assert failed(evaluate_gates(result, spec)) == ["parity"]


def test_missing_metric_is_a_failed_gate(result):
    del result.metrics["macro_f1"]
    assert failed(evaluate_gates(result, spec_of(result))) == ["metric"]


def test_spec_falls_back_to_the_builtin_spec(result):
    result.spec = {}
    assert spec_of(result).name == "transaction-category"
