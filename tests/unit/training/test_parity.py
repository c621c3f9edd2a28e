"""Parity catches broken exports: tampered weights, a tokenizer that no longer lowercases, junk bytes."""

from __future__ import annotations

import onnx
import pytest

import training.train
from sluice.errors import ParityError
from training.parity import check_parity, require_parity
from training.pipeline import to_records
from training.train import train_model


def scale_coefficients(onnx_bytes: bytes, factor: float = 1.05) -> bytes:
    model = onnx.load_from_string(onnx_bytes)
    [node] = [n for n in model.graph.node if n.op_type == "LinearClassifier"]
    for attr in node.attribute:
        if attr.name == "coefficients":
            attr.floats[:] = [v * factor for v in attr.floats]
    return model.SerializeToString()


def stop_lowercasing(onnx_bytes: bytes) -> bytes:
    """The classic text export bug: the graph's normaliser does not do what scikit-learn's lowercase did."""
    model = onnx.load_from_string(onnx_bytes)
    [node] = [n for n in model.graph.node if n.op_type == "StringNormalizer"]
    for attr in node.attribute:
        if attr.name == "case_change_action":
            attr.s = b"NONE"
    return model.SerializeToString()


@pytest.mark.parametrize("tamper", [scale_coefficients, stop_lowercasing])
def test_tampered_export_fails_parity(household_model, household_df, spec, tamper):
    records = to_records(household_df.sample(300, random_state=1), spec.features)
    report = check_parity(household_model.pipeline, tamper(household_model.onnx), records, spec.features)
    assert not report.passed
    assert report.max_abs_prob_diff > 1e-4
    with pytest.raises(ParityError, match="transaction-category: ONNX and native predictions differ"):
        require_parity(report, "transaction-category")


def test_the_untampered_export_passes_on_the_same_rows(household_model, household_df, spec):
    records = to_records(household_df.sample(300, random_state=1), spec.features)
    assert check_parity(household_model.pipeline, household_model.onnx, records, spec.features).passed


def test_unloadable_bytes_are_a_parity_error(household_model, household_df, spec):
    records = to_records(household_df.head(5), spec.features)
    with pytest.raises(ParityError, match="onnxruntime cannot run"):
        check_parity(household_model.pipeline, b"not an onnx model", records, spec.features)


def test_train_model_refuses_a_broken_export(monkeypatch, spec, titans_df):
    real_export = training.train.export_onnx
    monkeypatch.setattr(training.train, "export_onnx", lambda p, s: stop_lowercasing(real_export(p, s)))
    with pytest.raises(ParityError):
        train_model(spec, titans_df)


def test_tied_classes_are_not_a_parity_failure(spec, household_df):
    """Without dates, some household rows cannot tell two classes apart (equal probabilities):
    float32 vs float64 rounding picks either one, which is not a divergence of the graph."""
    no_date = spec.model_copy(update={"features": [f for f in spec.features if f.kind != "date"]})
    model = train_model(no_date, household_df)
    assert model.parity.passed and model.parity.label_agreement == 1.0
