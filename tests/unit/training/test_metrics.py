from __future__ import annotations

import pytest

from training.metrics import classification_metrics, majority_baseline, majority_class


def test_classification_metrics():
    m = classification_metrics(["a", "a", "b", "b"], ["a", "a", "b", "a"])
    assert m["accuracy"] == 0.75
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_majority_baseline_predicts_the_training_majority():
    assert majority_class(["b", "a", "b"]) == "b"
    assert majority_class(["b", "a"]) == "a"  # ties: smallest label
    base = majority_baseline(["x", "x", "y"], ["x", "y", "y", "y"])
    assert base["accuracy"] == 0.25
    assert base["macro_f1"] == pytest.approx((0.4 + 0.0) / 2)
