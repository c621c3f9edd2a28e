"""The ONNX export: named inputs and outputs, tokenisation identical to scikit-learn, the amount transform."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType

from sluice.features import build_feed, onnx_input_names
from training.export import LABEL_OUTPUT, PROBABILITIES_OUTPUT, TEXT_LOCALE, export_onnx, initial_types
from training.parity import check_parity
from training.pipeline import TOKEN_PATTERN, SignedLog1p

TRICKY_TEXT = [
    "",
    "!",
    "a b c",
    "ÉCOLE Café fees",
    "İstanbul KELVIN cab",
    "AMAZON Prime 2x 10kg",
    "snacks_and tea",
    "ÄÖÜ ß",
    "Food\tfood\nFOOD",
    "1 month subscription",
    "Idli medu Vada mix 2 plates",
    "  leading and trailing  ",
    "emoji 🍕 pizza",
]


def test_graph_inputs_and_outputs(household_model, spec):
    model = onnx.load_from_string(household_model.onnx)
    inputs = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    assert list(inputs) == onnx_input_names(spec.features)
    assert inputs["description"] == onnx.TensorProto.STRING
    assert inputs["payment_method"] == onnx.TensorProto.STRING
    assert inputs["amount"] == onnx.TensorProto.FLOAT
    assert inputs["date__hour"] == onnx.TensorProto.FLOAT
    assert [o.name for o in model.graph.output] == [LABEL_OUTPUT, PROBABILITIES_OUTPUT]
    assert not [n for n in model.graph.node if n.op_type == "ZipMap"]


def test_text_normaliser_has_a_locale_and_the_tokenizer_our_pattern(household_model):
    model = onnx.load_from_string(household_model.onnx)
    attrs = {
        (n.op_type, a.name): onnx.helper.get_attribute_value(a)
        for n in model.graph.node
        if n.op_type in ("StringNormalizer", "Tokenizer")
        for a in n.attribute
    }
    assert attrs[("StringNormalizer", "locale")] == TEXT_LOCALE.encode()
    assert attrs[("Tokenizer", "tokenexp")] == TOKEN_PATTERN.encode()


def test_feature_schema_travels_in_the_model_metadata(household_model):
    model = onnx.load_from_string(household_model.onnx)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["sluice.model"] == "transaction-category"
    assert json.loads(props["sluice.feature_schema"]) == household_model.feature_schema.to_event()


@pytest.mark.parametrize("text", TRICKY_TEXT)
def test_tokenisation_matches_scikit_learn(household_model, spec, text):
    record = {
        "description": text,
        "payment_method": "Cash",
        "amount": 42.0,
        "date": datetime(2018, 9, 20, 12, 4),
    }
    report = check_parity(household_model.pipeline, household_model.onnx, [record], spec.features)
    assert report.passed, report


def test_batch_of_tricky_rows_and_unseen_categories(household_model, spec):
    records = [
        {"description": t, "payment_method": p, "amount": a, "date": "2021-02-03T04:05:06"}
        for t, p, a in zip(
            TRICKY_TEXT, ["Cash", "Bitcoin", "", "Credit Card"] * 4, np.linspace(-1e6, 1e6, 13), strict=False
        )
    ]
    report = check_parity(household_model.pipeline, household_model.onnx, records, spec.features)
    assert report.passed, report
    session = ort.InferenceSession(household_model.onnx, providers=["CPUExecutionProvider"])
    _, proba = session.run(None, build_feed(records, spec.features))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_signed_log1p_converter_matches_numpy():
    values = np.array([[-1e6], [-250.5], [-1.0], [-1e-3], [0.0], [1e-3], [0.5], [1.0], [199.0], [3.5e7]])
    transformer = SignedLog1p().fit(values)
    model = convert_sklearn(transformer, initial_types=[("x", FloatTensorType([None, 1]))])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    [out] = session.run(None, {"x": values.astype(np.float32)})
    np.testing.assert_allclose(out, transformer.transform(values), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.sign(out), np.sign(values))


def test_initial_types_follow_the_feature_kinds(spec):
    types = initial_types(spec.features)
    assert [name for name, _ in types] == onnx_input_names(spec.features)
    assert isinstance(dict(types)["description"], StringTensorType)
    assert isinstance(dict(types)["date__month"], FloatTensorType)
    assert all(t.shape == [None, 1] for _, t in types)


def test_export_is_repeatable(household_model, spec):
    assert export_onnx(household_model.pipeline, spec) == household_model.onnx
