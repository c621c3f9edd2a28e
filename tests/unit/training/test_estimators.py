"""One contract test over every candidate estimator: fit, predict, export, reload, parity."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest

from sluice.errors import SpecError
from sluice.specs import EstimatorSpec
from training.pipeline import ESTIMATORS, estimator_params, make_estimator
from training.train import train_model


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimator_contract(spec, household_sample, name):
    candidate = spec.model_copy(update={"estimator": EstimatorSpec(name=name)})
    model = train_model(candidate, household_sample)

    assert model.parity.passed and model.parity.label_agreement == 1.0
    assert model.metrics["accuracy"] > model.baseline["accuracy"]
    session = ort.InferenceSession(model.onnx, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]
    assert session.get_outputs()[1].shape[1] == len(model.classes)
    assert model.params["estimator"] == name
    json.dumps(model.params)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimator_params_merge_defaults_spec_and_seed(name):
    params = estimator_params(EstimatorSpec(name=name, params={}), random_state=7)
    assert params == {
        **ESTIMATORS[name].defaults,
        **({"random_state": 7} if ESTIMATORS[name].random_state_param else {}),
    }
    json.dumps(params)


def test_spec_params_override_defaults():
    estimator = make_estimator(EstimatorSpec(name="logistic_regression", params={"C": 0.5}), random_state=3)
    assert estimator.C == 0.5 and estimator.random_state == 3 and estimator.class_weight is None


def test_bad_estimator_params_are_a_spec_error():
    with pytest.raises(SpecError, match=r"estimator\.params"):
        make_estimator(EstimatorSpec(name="logistic_regression", params={"no_such_param": 1}), random_state=0)
