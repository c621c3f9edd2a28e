"""Parity catches broken exports (tampered weights, a tokenizer that no longer lowercases, junk bytes)
for every task, and the document carries what the Verify step needs (holdout targets, probes)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import training.train
from sluice.errors import ParityError, TrainingError
from sluice.parity import holdout_batch, replay, require_parity, verify_document
from tests.unit.training.conftest import only, quick
from training.parity import MAX_HOLDOUT_ROWS, check_parity, native_document
from training.pipeline import to_records
from training.train import train_model


def scale_attribute(onnx_bytes: bytes, op_type: str, attribute: str, factor: float = 1.05) -> bytes:
    model = onnx.load_from_string(onnx_bytes)
    [node] = [n for n in model.graph.node if n.op_type == op_type]
    for attr in node.attribute:
        if attr.name == attribute:
            attr.floats[:] = [v * factor for v in attr.floats]
    return model.SerializeToString()


def scale_coefficients(onnx_bytes: bytes) -> bytes:
    return scale_attribute(onnx_bytes, "LinearClassifier", "coefficients")


def stop_lowercasing(onnx_bytes: bytes) -> bytes:
    """The classic text export bug: the graph's normaliser does not do what scikit-learn's lowercase did."""
    model = onnx.load_from_string(onnx_bytes)
    [node] = [n for n in model.graph.node if n.op_type == "StringNormalizer"]
    for attr in node.attribute:
        if attr.name == "case_change_action":
            attr.s = b"NONE"
    return model.SerializeToString()


@pytest.fixture(scope="module")
def records(household_df, spec):
    return to_records(household_df.sample(300, random_state=1), spec.features)


@pytest.mark.parametrize("tamper", [scale_coefficients, stop_lowercasing])
def test_tampered_export_fails_parity(household_model, records, tamper):
    m = household_model
    report = check_parity(m.pipeline, tamper(m.onnx), records, m.feature_schema)
    assert not report.passed
    assert report.max_abs_prob_diff > 1e-4
    with pytest.raises(ParityError, match="transaction-category: ONNX and native predictions differ"):
        require_parity(report, "transaction-category")


def test_the_untampered_export_passes_on_the_same_rows(household_model, records):
    m = household_model
    assert check_parity(m.pipeline, m.onnx, records, m.feature_schema).passed


def test_unloadable_bytes_are_a_parity_error(household_model, records):
    m = household_model
    with pytest.raises(ParityError, match="onnxruntime cannot run"):
        check_parity(m.pipeline, b"not an onnx model", records[:5], m.feature_schema)


def test_tampered_regression_and_anomaly_exports_fail_parity(wine_model, shuttle_model):
    ridge = wine_model
    report = verify_document(
        scale_attribute(ridge.onnx, "LinearRegressor", "coefficients"), ridge.parity_document
    )
    assert not report.passed and report.max_rel_diff > 1e-4 and report.label_agreement is None
    with pytest.raises(ParityError, match="max relative diff"):
        require_parity(report, "wine-quality")

    forest = shuttle_model
    model = onnx.load_from_string(forest.onnx)
    [neg] = [n for n in model.graph.node if n.name == "SluiceAnomalyScore"]
    neg.op_type = "Identity"  # the score's sign lost: normal rows would look anomalous
    assert not verify_document(model.SerializeToString(), forest.parity_document).passed


def test_train_model_refuses_a_broken_export(monkeypatch, spec, titans_df):
    real_export = training.train.export_onnx
    monkeypatch.setattr(training.train, "export_onnx", lambda *a, **k: stop_lowercasing(real_export(*a, **k)))
    with pytest.raises(ParityError):
        train_model(only(spec, "logistic_regression"), titans_df)


def test_a_candidate_whose_export_fails_gives_way_to_the_next_best(monkeypatch, spec, titans_df):
    real_export = training.train.export_onnx
    failed = []

    def export(pipeline, *args, **kwargs):
        if not failed:  # the best candidate's export fails
            failed.append(type(pipeline.steps[-1][1]).__name__)
            raise RuntimeError("no converter today")
        return real_export(pipeline, *args, **kwargs)

    monkeypatch.setattr(training.train, "export_onnx", export)
    two = quick(spec, candidates=[{"name": "logistic_regression"}, {"name": "random_forest"}])
    trained = train_model(two, titans_df)
    status = {c.name: (c.status, c.reason) for c in trained.candidates}
    best = "logistic_regression" if failed == ["LogisticRegression"] else "random_forest"
    [other] = set(status) - {best}
    assert status[best] == ("dropped", "export failed: RuntimeError: no converter today")
    assert status[other] == ("selected", None)
    assert trained.params["estimator"] == other

    failed.clear()
    with pytest.raises(TrainingError, match="no candidate could be trained and exported"):
        train_model(only(spec, "logistic_regression"), titans_df)


def test_tied_classes_are_not_a_parity_failure(spec, household_df):
    """Without dates, some household rows cannot tell two classes apart (equal probabilities):
    float32 vs float64 rounding picks either one, which is not a divergence of the graph."""
    no_date = only(spec, "logistic_regression", C=20.0).model_copy(
        update={"features": [f for f in spec.features if f.kind != "date"]}
    )
    model = train_model(no_date, household_df)
    assert model.parity.passed and model.parity.label_agreement == 1.0


def test_the_document_carries_holdout_targets_probes_and_is_json(household_model):
    doc = household_model.parity_document
    json.dumps(doc)
    holdout = holdout_batch(doc)
    assert holdout is doc["batches"][0]
    assert len(holdout["records"]) == len(holdout["targets"]) == household_model.rows_holdout
    assert set(holdout["targets"]) <= set(household_model.classes) | {"Dividend earned on Shares"}
    assert all(b.get("targets") is None for b in doc["batches"][1:])
    missing = [b for b in doc["batches"] if b["records"][0]["amount"] is None]
    assert len(missing) == 1 and missing[0]["records"][0]["date"] is None  # the imputation probe
    report, answers = replay(household_model.onnx, doc)
    assert report.passed and answers["probabilities"].shape[0] == household_model.rows_holdout


def test_a_large_holdout_is_sampled_into_the_document(shuttle_model, shuttle_df):
    trained = shuttle_model
    records = to_records(shuttle_df, trained.spec.features) * 2
    targets = shuttle_df["anomaly"].tolist() * 2
    assert len(records) > MAX_HOLDOUT_ROWS
    doc = native_document(trained.pipeline, trained.feature_schema, records, targets, seed=1)
    holdout = holdout_batch(doc)
    assert len(holdout["records"]) == len(holdout["targets"]) == MAX_HOLDOUT_ROWS
    assert np.isclose(np.mean(holdout["targets"]), np.mean(targets), atol=0.02)
