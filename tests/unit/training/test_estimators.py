"""One contract test over every registered estimator of every task, on real data: fit, export,
reload the graph in a fresh onnxruntime session, and parity with the native pipeline."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from sluice.errors import SpecError
from sluice.features import build_feed, onnx_input_names
from sluice.specs import EstimatorSpec
from tests.unit.training.conftest import only, quick
from training.estimators import ESTIMATORS, estimator_params, make_estimator
from training.pipeline import feature_frame, to_records
from training.train import train_model

#: task -> [(model spec, data fixture, spec changes)]: every estimator of the task runs on each.
#: The household category classes are cut to the frequent ones (min_class_rows) so that the
#: per-class boosters stay quick; the rows keep text, categorical, numeric and date features.
DATASETS = {
    "classification": [
        ("transaction-category", "household_sample", {"min_class_rows": 25}),
        ("churn", "churn_sample", {}),
    ],
    "regression": [("transaction-amount", "household_sample", {}), ("wine-quality", "wine_df", {})],
    "anomaly": [("shuttle-anomaly", "shuttle_df", {}), ("transaction-anomaly", "household_sample", {})],
}
CASES = [
    pytest.param(task, name, model, data, changes, id=f"{task}-{name}-{model}")
    for task, datasets in DATASETS.items()
    for name in sorted(ESTIMATORS[task])
    for model, data, changes in datasets
]
OUTPUTS = {
    "classification": ["label", "probabilities"],
    "regression": ["value"],
    "anomaly": ["score"],
}


@pytest.mark.parametrize(("task", "name", "model", "data", "changes"), CASES)
def test_estimator_contract(request, task, name, model, data, changes):
    df = request.getfixturevalue(data)
    spec = quick(model, candidates=[{"name": name}], **changes)
    trained = train_model(spec, df)

    assert trained.parity.passed and trained.parity.rows > trained.rows_holdout
    assert [c.status for c in trained.candidates] == ["selected"]
    assert trained.params["estimator"] == name and trained.params["task"] == task
    json.dumps(trained.params)

    session = ort.InferenceSession(trained.onnx, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == onnx_input_names(spec.features)
    assert [o.name for o in session.get_outputs()] == OUTPUTS[task]
    records = to_records(df.head(20), spec.features)
    outputs = session.run(None, build_feed(records, spec.features))
    if task == "classification":
        labels, proba = outputs
        assert proba.shape == (20, len(trained.classes))
        assert list(labels) == [trained.classes[i] for i in proba.argmax(axis=1)]
    else:
        assert outputs[0].shape == (20, 1) and np.isfinite(outputs[0]).all()
    if spec.effective_metric is not None:
        metric = spec.effective_metric
        assert set(trained.metrics) == {"cv", "holdout", "baseline"}
        assert metric in trained.metrics["cv"] and metric in trained.metrics["holdout"]


@pytest.mark.parametrize(("task", "name"), [(t, n) for t in ESTIMATORS for n in sorted(ESTIMATORS[t])])
def test_estimator_params_merge_defaults_spec_and_seed(task, name):
    entry = ESTIMATORS[task][name]
    params = estimator_params(EstimatorSpec(name=name), random_state=7, task=task)
    if entry.preprocessing is None:  # an ensemble: its members' own parameters
        members = [
            {"name": m, "params": estimator_params(EstimatorSpec(name=m), 7, task)}
            for m in entry.defaults["members"]
        ]
        assert params == {"members": members, "weights": None}
    else:
        assert params == {**entry.defaults, **({"random_state": 7} if entry.random_state_param else {})}
    json.dumps(params)
    if "n_jobs" in params:
        assert params["n_jobs"] == 1


def test_class_weights_follow_the_metric():
    lr = EstimatorSpec(name="logistic_regression")
    assert "class_weight" not in estimator_params(lr, 0, "classification", "accuracy")
    assert estimator_params(lr, 0, "classification", "f1_macro")["class_weight"] == "balanced"
    pinned = EstimatorSpec(name="xgboost", params={"class_weight": None})
    assert estimator_params(pinned, 0, "classification", "balanced_accuracy")["class_weight"] is None
    assert "class_weight" not in estimator_params(EstimatorSpec(name="ridge"), 0, "regression", "r2")


def test_xgboost_class_weight_becomes_sample_weights(household_sample, spec):
    """Balanced weights move predictions towards rare classes: fewer rows go to the majority."""
    counts = {}
    for weight in (None, "balanced"):
        trained = train_model(only(spec, "xgboost", class_weight=weight, n_estimators=30), household_sample)
        labels = trained.parity_document["batches"][0]["labels"]
        counts[weight] = labels.count(trained.params["majority_class"])
    assert counts["balanced"] < counts[None]


def test_spec_params_override_defaults():
    estimator = make_estimator(EstimatorSpec(name="logistic_regression", params={"C": 0.5}), random_state=3)
    assert estimator.C == 0.5 and estimator.random_state == 3


def test_unknown_estimator_and_bad_params_are_spec_errors():
    with pytest.raises(SpecError, match=r"unknown regression estimator 'logistic_regression'"):
        make_estimator(EstimatorSpec(name="logistic_regression"), 0, "regression")
    with pytest.raises(SpecError, match=r"candidates\.params: invalid parameter for logistic_regression"):
        make_estimator(EstimatorSpec(name="logistic_regression", params={"no_such_param": 1}), random_state=0)


def test_voting_averages_its_members_with_their_own_preprocessing(household_sample, spec):
    members = [{"name": "logistic_regression", "params": {"C": 20.0}}, {"name": "extra_trees"}]
    trained = train_model(only(spec, "voting", members=members, weights=[3, 1]), household_sample)
    ensemble = trained.pipeline.steps[-1][1]
    assert trained.parity.passed and trained.params["estimator"] == "voting"
    assert [m["estimator"] for m in trained.params["members"]] == ["logistic_regression", "extra_trees"]
    assert [m["text"]["weights"] for m in trained.params["members"]] == ["tf-idf", "counts"]
    assert trained.params["estimator_params"] == {"weights": [3.0, 1.0]}
    rows = feature_frame(to_records(household_sample.head(30), spec.features), spec.features)
    linear, trees = (m.predict_proba(rows) for m in ensemble.members_)
    np.testing.assert_allclose(ensemble.predict_proba(rows), 0.75 * linear + 0.25 * trees)
    assert trained.params["n_features"] == sum(
        m.steps[0][1].transform(rows).shape[1] for m in ensemble.members_
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"members": ["ridge", "logistic_regression"]}, "unknown classification estimator 'ridge'"),
        ({"members": ["logistic_regression"]}, "members must list at least 2 candidates"),
        ({"members": ["logistic_regression", "voting"]}, "a member cannot itself be an ensemble"),
        ({"members": ["logistic_regression", {"nme": "x"}]}, "invalid member"),
        ({"weights": [1]}, "weights must be one positive number per member"),
        ({"weights": [1, 0]}, "weights must be one positive number per member"),
        ({"voting": "soft"}, "unknown parameter.s. voting"),
        (
            {"members": ["random_forest", {"name": "logistic_regression", "params": {"nope": 1}}]},
            "invalid parameter for logistic_regression",
        ),
    ],
)
def test_voting_members_and_weights_are_checked_up_front(params, message):
    with pytest.raises(SpecError, match=message):
        make_estimator(EstimatorSpec(name="voting", params=params), 0, "classification")


@pytest.mark.parametrize("name", ["transaction-category", "churn", "transaction-amount", "wine-quality"])
def test_builtin_candidates_build(name):
    spec = quick(name)
    for candidate in spec.candidate_specs:
        make_estimator(candidate, spec.random_state, spec.task, spec.effective_metric)
