"""Candidate search: folds by time or stratified, the budget, ranking by the spec's metric, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from sluice.specs import greater_is_better
from tests.unit.training.conftest import quick
from training.data import holdout_split, prepare_data
from training.search import cv_folds, cv_rows
from training.train import train_model


def test_time_split_holds_out_the_latest_rows_and_folds_never_train_on_the_future(spec, household_df):
    data = prepare_data(spec, household_df)
    train_idx, holdout_idx = holdout_split(spec, data)
    assert data.times[train_idx].max() <= data.times[holdout_idx].min()
    train_times = data.times[train_idx]
    assert (np.diff(train_times) >= np.timedelta64(0)).all()  # the train part is in time order
    folds = cv_folds(spec, data.y[train_idx], len(train_idx))
    assert len(folds) == spec.split.cv_folds
    for tr, va in folds:
        assert train_times[tr].max() <= train_times[va].min()


def test_random_split_is_stratified_and_seeded(churn_df):
    spec = quick("churn")
    data = prepare_data(spec, churn_df)
    train_idx, holdout_idx = holdout_split(spec, data)
    rate = np.mean(data.y == "Yes")
    assert np.mean(data.y[holdout_idx] == "Yes") == pytest.approx(rate, abs=0.005)
    again = holdout_split(spec, data)
    assert (again[1] == holdout_idx).all()
    for _, va in cv_folds(spec, data.y[train_idx], len(train_idx)):
        assert np.mean(data.y[train_idx][va] == "Yes") == pytest.approx(rate, abs=0.01)


def test_max_rows_caps_the_cv_rows(spec):
    capped = quick(spec, search={"max_rows": 100})
    rows = cv_rows(capped, 1000)
    assert len(rows) == 100 and rows[0] == 0 and rows[-1] == 999  # evenly spread, in time order
    assert len(cv_rows(quick("churn", search={"max_rows": 100}), 1000)) == 100
    assert len(cv_rows(spec, 1000)) == 1000


def test_the_best_mean_cv_wins_in_the_metric_direction(wine_df):
    spec = quick("wine-quality", candidates=[{"name": "ridge"}, {"name": "extra_trees"}])
    trained = train_model(spec, wine_df)
    metric = spec.effective_metric
    assert not greater_is_better(metric)  # mean absolute error: lower wins
    by_name = {c.name: c for c in trained.candidates}
    best = min(by_name.values(), key=lambda c: c.cv[metric])
    assert best.status == "selected" and trained.params["estimator"] == best.name
    assert [c.status for c in trained.candidates].count("ok") == 1
    assert trained.metrics["cv"] == best.cv
    assert all(c.fit_s > 0 for c in trained.candidates)


def test_the_time_budget_keeps_the_first_candidate_and_drops_the_rest(wine_df):
    spec = quick(
        "wine-quality",
        candidates=[{"name": "ridge"}, {"name": "random_forest"}, {"name": "xgboost"}],
        search={"time_budget_s": 0.001},
    )
    trained = train_model(spec, wine_df)
    first, *rest = trained.candidates
    assert (first.name, first.status, first.reason) == ("ridge", "selected", None)
    assert first.cv
    for c in rest:
        assert c.status == "dropped" and c.reason.startswith("time budget")


def test_search_is_reproducible(titans_df, spec):
    two = quick(spec, candidates=[{"name": "logistic_regression"}, {"name": "extra_trees"}])
    a, b = train_model(two, titans_df), train_model(two, titans_df)
    assert [c.cv for c in a.candidates] == [c.cv for c in b.candidates]
    assert a.onnx_sha256 == b.onnx_sha256


def test_unlabelled_anomaly_keeps_the_first_candidate_that_exports(household_sample):
    trained = train_model(quick("transaction-anomaly"), household_sample)
    assert [c.status for c in trained.candidates] == ["selected", "dropped"]
    assert trained.candidates[1].reason.startswith("not tried")
    assert trained.metrics["cv"] == {}
    assert set(trained.metrics["holdout"]) == {"flag_rate"}
    schema = trained.feature_schema
    scores = np.asarray(trained.parity_document["batches"][0]["scores"])
    assert schema.threshold is not None
    assert 0.0 < np.mean(scores >= schema.threshold) < 0.1  # about the 2% contamination of the spec


def test_labelled_anomaly_is_scored_against_its_label(shuttle_df):
    trained = train_model(quick("shuttle-anomaly"), shuttle_df)
    holdout, baseline = trained.metrics["holdout"], trained.metrics["baseline"]
    assert holdout["average_precision"] > 0.5 > baseline["average_precision"]
    assert baseline["average_precision"] == pytest.approx(np.mean(shuttle_df["anomaly"]), abs=0.01)
    assert {"precision", "recall", "f1", "flag_rate", "roc_auc"} <= set(holdout)
    assert "anomaly" not in {f.name for f in trained.feature_schema.features}
