"""Training's scikit-learn metrics, the Verify step's numpy metrics (``sluice.metrics``), and the
baselines: the two implementations agree on real models' answers and on the awkward cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

import sluice.metrics as fast
from training import metrics


def assert_same(a: dict[str, float], b: dict[str, float]) -> None:
    assert set(a) == set(b)
    for name in a:
        assert a[name] == pytest.approx(b[name], rel=1e-9, abs=1e-12), name


@pytest.fixture(scope="module")
def churn_answers(churn_model):
    trained = churn_model
    batch = trained.parity_document["batches"][0]
    return trained, batch["targets"], np.asarray(batch["probabilities"])


def test_household_classification_metrics_agree(household_model):
    batch = household_model.parity_document["batches"][0]
    args = (batch["targets"], np.asarray(batch["probabilities"]), household_model.classes)
    ours = metrics.classification_metrics(*args)
    assert_same(ours, fast.classification_metrics(*args))
    # the holdout holds a class the model never saw (dividends appear in the last months only)
    assert set(batch["targets"]) - set(household_model.classes)
    assert ours == pytest.approx(household_model.metrics["holdout"])


def test_binary_metrics_agree_and_use_the_positive_label(churn_answers):
    trained, targets, proba = churn_answers
    ours = metrics.classification_metrics(targets, proba, trained.classes, "Yes")
    assert_same(ours, fast.classification_metrics(targets, proba, trained.classes, "Yes"))
    truth = np.asarray(targets) == "Yes"
    assert ours["roc_auc"] == pytest.approx(roc_auc_score(truth, proba[:, trained.classes.index("Yes")]))
    flipped = metrics.classification_metrics(targets, proba, trained.classes, "No")
    assert flipped["roc_auc"] == pytest.approx(ours["roc_auc"])  # AUC is symmetric
    assert flipped["average_precision"] != pytest.approx(ours["average_precision"])
    assert {"roc_auc", "average_precision", "f1", "log_loss"} <= set(ours)


def test_regression_metrics_agree(wine_model):
    trained = wine_model
    batch = trained.parity_document["batches"][0]
    args = (batch["targets"], batch["values"])
    assert_same(metrics.regression_metrics(*args), fast.regression_metrics(*args))
    m = fast.regression_metrics(*args)
    assert m["root_mean_squared_error"] == pytest.approx(np.sqrt(m["mean_squared_error"]))


def test_anomaly_metrics_agree_with_ties(shuttle_model):
    trained = shuttle_model
    batch = trained.parity_document["batches"][0]
    scores = np.round(np.asarray(batch["scores"]), 2)  # many ties
    threshold = trained.feature_schema.threshold
    args = (scores, threshold, batch["targets"])
    assert_same(metrics.anomaly_metrics(*args), fast.anomaly_metrics(*args))
    assert fast.anomaly_metrics(scores, threshold) == {
        "flag_rate": pytest.approx(np.mean(scores >= threshold))
    }


@pytest.mark.parametrize("seed", range(5))
def test_ranking_metrics_match_scikit_learn_on_random_ties(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random(300) < 0.2
    score = rng.integers(0, 8, 300).astype(float)
    assert fast.roc_auc(truth, score) == pytest.approx(roc_auc_score(truth, score))
    assert fast.average_precision(truth, score) == pytest.approx(average_precision_score(truth, score))


def test_awkward_classification_cases_agree():
    classes = ["a", "b", "c"]
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.5, 0.0]])
    for y in (["a", "b", "c", "a"], ["a", "a", "a", "a"], ["a", "z", "c", "b"], ["c", "c", "b", "b"]):
        assert_same(
            metrics.classification_metrics(y, proba, classes), fast.classification_metrics(y, proba, classes)
        )
    assert "roc_auc" not in fast.classification_metrics(["a"] * 4, proba, classes)


def test_baselines():
    assert metrics.majority_class(["b", "a", "b"]) == "b"
    assert metrics.majority_class(["b", "a"]) == "a"  # ties: smallest label
    base = metrics.classification_baseline(["x", "x", "y"], ["x", "y", "y", "y"], ["x", "y"], "y")
    assert base["accuracy"] == 0.25 and base["roc_auc"] == 0.5
    assert base["average_precision"] == pytest.approx(0.75)  # a constant score: AP = positive rate
    reg = metrics.regression_baseline([1.0, 2.0, 9.0], [2.0, 4.0])
    assert reg["mean_absolute_error"] == pytest.approx(1.0)  # median 2
    assert reg["root_mean_squared_error"] == pytest.approx(
        np.sqrt(((2 - 4) ** 2 + (4 - 4) ** 2) / 2)
    )  # mean 4
    anomaly = metrics.anomaly_baseline([0, 0, 0, 1], 0.1)
    assert anomaly["average_precision"] == 0.25 and anomaly["recall"] == 0.1 and anomaly["flag_rate"] == 0.1
    assert metrics.anomaly_baseline(None, 0.02) == {"flag_rate": 0.02}
