"""The registration gates, decided from a TrainResult alone (no AWS): direction-aware for error
metrics, with the baseline margin, the minimum and the champion tolerance."""

from __future__ import annotations

import pytest

from sluice.contracts import ChampionComparison, TrainResult
from sluice.registration import evaluate_gates, spec_of, summary
from sluice.specs import parse_model_spec
from tests.events import load_event


@pytest.fixture
def result() -> TrainResult:
    return TrainResult.model_validate(load_event("register/household.json"))


@pytest.fixture
def error_metric(result) -> TrainResult:
    """The same result read as a lower-is-better model (log loss), baseline 2.0."""
    spec = {**result.spec, "metric": "log_loss", "gates": {"baseline_margin": 0.5, "min_metric": 1.5}}
    result.spec = parse_model_spec(spec).to_dict()
    result.metrics["holdout"]["log_loss"] = 1.0
    result.metrics["baseline"]["log_loss"] = 2.0
    return result


def failed(checks) -> list[str]:
    return [c.gate for c in checks if not c.passed]


def test_the_sample_candidate_passes_every_gate(result):
    checks = evaluate_gates(result, spec_of(result))
    assert [c.gate for c in checks] == ["parity", "beat_baseline", "champion"]
    assert failed(checks) == []
    assert checks[-1].detail == "no champion yet"


def test_equal_to_the_baseline_does_not_beat_it(result):
    result.metrics["holdout"]["accuracy"] = result.metrics["baseline"]["accuracy"]
    assert failed(evaluate_gates(result, spec_of(result))) == ["beat_baseline"]


def test_the_baseline_margin(result):
    spec = parse_model_spec({**result.spec, "gates": {"baseline_margin": 0.5}})
    result.metrics["holdout"]["accuracy"] = result.metrics["baseline"]["accuracy"] + 0.4
    [check] = [c for c in evaluate_gates(result, spec) if c.gate == "beat_baseline"]
    assert not check.passed and check.detail.endswith("by 0.5")


def test_the_spec_metric_decides(result):
    result.metrics["holdout"]["f1_macro"] = 0.0  # the spec selects on accuracy
    assert failed(evaluate_gates(result, spec_of(result))) == []


def test_lower_is_better_metrics(error_metric):
    spec = spec_of(error_metric)
    assert failed(evaluate_gates(error_metric, spec)) == []  # 1.0 < 2.0 - 0.5 and <= 1.5
    error_metric.metrics["holdout"]["log_loss"] = 1.6
    checks = evaluate_gates(error_metric, spec)
    assert failed(checks) == ["beat_baseline", "min_metric"]
    assert checks[2].detail == "holdout log_loss 1.6000 > maximum 1.5000"


def test_parity_and_min_metric(result):
    spec = parse_model_spec({**result.spec, "gates": {"beat_baseline": False, "min_metric": 0.5}})
    result.parity.passed = False
    result.metrics["holdout"]["accuracy"] = 0.45
    checks = evaluate_gates(result, spec)
    assert failed(checks) == ["parity", "min_metric"]
    assert checks[1].detail == "holdout accuracy 0.4500 < minimum 0.5000"
    result.metrics["holdout"]["accuracy"] = 0.5
    assert failed(evaluate_gates(result, spec)) == ["parity"]


@pytest.mark.parametrize(
    ("metric", "candidate", "champion", "passes"),
    [
        ("accuracy", 0.71, 0.72, True),  # within the tolerance 0.01
        ("accuracy", 0.70, 0.72, False),
        ("log_loss", 1.01, 1.00, True),
        ("log_loss", 1.05, 1.00, False),
    ],
)
def test_the_champion_gate_is_direction_aware(result, metric, candidate, champion, passes):
    spec = parse_model_spec({**result.spec, "metric": metric})
    result.champion = ChampionComparison(
        version=3, metric=metric, candidate=candidate, champion=champion, rows=9
    )
    [check] = [c for c in evaluate_gates(result, spec, current_champion=3) if c.gate == "champion"]
    assert check.passed is passes
    assert "champion v3" in check.detail and "same 9 holdout rows" in check.detail


def test_the_champion_gate_can_be_switched_off(result):
    spec = parse_model_spec({**result.spec, "gates": {"champion_tolerance": None}})
    result.champion = ChampionComparison(version=1, metric="accuracy", candidate=0.1, champion=0.9, rows=9)
    [check] = [c for c in evaluate_gates(result, spec, 1) if c.gate == "champion"]
    assert check.passed and check.detail == "not compared (champion_tolerance is null)"


def test_not_applicable_comparisons_pass(result):
    result.champion = ChampionComparison(metric="mase", note="champion comparison not applicable (forecast)")
    [check] = [c for c in evaluate_gates(result, spec_of(result), current_champion=4) if c.gate == "champion"]
    assert check.passed and "not applicable" in check.detail


def test_missing_metric_is_a_failed_gate(result):
    del result.metrics["holdout"]["accuracy"]
    assert failed(evaluate_gates(result, spec_of(result))) == ["metric"]


def test_unlabelled_anomaly_has_only_the_parity_gate():
    result = TrainResult.model_validate(load_event("register/household_anomaly.json"))
    assert [c.gate for c in evaluate_gates(result, spec_of(result))] == ["parity"]


def test_spec_falls_back_to_the_builtin_spec(result):
    result.spec = {}
    assert spec_of(result).name == "transaction-category"


def test_summaries_say_why():
    assert summary("m", 2, "rejected", "r2", 0.5, ["a: x", "b: y"]) == "m v2 rejected: a: x; b: y"
    assert summary("m", 1, "champion", "r2", 0.51234, []) == "m v1 is the champion (r2 0.5123 on the holdout)"
