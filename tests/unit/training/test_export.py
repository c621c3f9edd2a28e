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
from tests.unit.training.conftest import only
from training.export import (
    LABEL_OUTPUT,
    PROBABILITIES_OUTPUT,
    TARGET_OPSET,
    TEXT_LOCALE,
    export_onnx,
    initial_types,
)
from training.parity import check_parity
from training.pipeline import TOKEN_PATTERN, SignedLog1p, answers, feature_frame, to_records
from training.train import train_model

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
    m = household_model
    report = check_parity(m.pipeline, m.onnx, [record], m.feature_schema)
    assert report.passed, report


def test_batch_of_tricky_rows_and_unseen_categories(household_model, spec):
    records = [
        {"description": t, "payment_method": p, "amount": a, "date": "2021-02-03T04:05:06"}
        for t, p, a in zip(
            TRICKY_TEXT, ["Cash", "Bitcoin", "", "Credit Card"] * 4, np.linspace(-1e6, 1e6, 13), strict=False
        )
    ]
    report = check_parity(
        household_model.pipeline, household_model.onnx, records, household_model.feature_schema
    )
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


def test_export_is_repeatable(household_model):
    m = household_model
    assert export_onnx(m.pipeline, m.spec, m.feature_schema) == m.onnx


def test_missing_numbers_are_imputed_inside_the_graph(churn_model, churn_sample):
    """Churn's total charges are blank in the first month: the graph imputes them as the pipeline did."""
    trained = churn_model
    blank = churn_sample[churn_sample["total_charges"].isna()]
    records = to_records(blank, trained.spec.features)
    assert all(r["total_charges"] is None for r in records)
    session = ort.InferenceSession(trained.onnx, providers=["CPUExecutionProvider"])
    _, proba = session.run(None, build_feed(records, trained.spec.features))
    native = answers(trained.pipeline, "classification", feature_frame(records, trained.spec.features))
    np.testing.assert_allclose(proba, native["probabilities"], atol=1e-5)
    imputer = trained.pipeline.named_steps["features"].named_transformers_["num_total_charges"][0]
    assert np.isfinite(imputer.statistics_).all()


def test_anomaly_score_is_the_negated_decision_function(shuttle_model, shuttle_df):
    """Higher = more anomalous; skl2onnx's label output (another convention) is not in the graph."""
    trained = shuttle_model
    model = onnx.load_from_string(trained.onnx)
    assert [o.name for o in model.graph.output] == ["score"]
    assert not [n for n in model.graph.node if "label" in n.output]
    records = to_records(shuttle_df.head(200), trained.spec.features)
    session = ort.InferenceSession(trained.onnx, providers=["CPUExecutionProvider"])
    [score] = session.run(None, build_feed(records, trained.spec.features))
    decision = trained.pipeline.decision_function(feature_frame(records, trained.spec.features))
    np.testing.assert_allclose(score[:, 0], -decision, rtol=1e-4, atol=1e-6)
    labels = shuttle_df["anomaly"].head(200).to_numpy()
    assert score[labels == 1].mean() > score[labels == 0].mean()
    schema = trained.feature_schema
    assert schema.threshold is not None and schema.score_output == "score"


def test_regression_exports_one_value_column_and_an_interval(wine_model):
    trained = wine_model
    model = onnx.load_from_string(trained.onnx)
    [output] = model.graph.output
    assert output.name == "value"
    assert [d.dim_value for d in output.type.tensor_type.shape.dim][1:] == [1]
    interval = trained.feature_schema.interval
    assert interval.level == 0.9 and interval.lower[0] < 0 < interval.upper[0]


@pytest.mark.parametrize("params", [{}, {"max_features": 0.5, "contamination": 0.05}])
def test_isolation_forest_converter_matches_scikit_learn(shuttle_df, params):
    """One tree ensemble for the whole forest: scikit-learn's decision function and labels,
    also when each tree sees a subset of the features."""
    from sklearn.ensemble import IsolationForest

    x = shuttle_df.drop(columns="anomaly").to_numpy(dtype=np.float32)
    forest = IsolationForest(n_estimators=50, random_state=0, **params).fit(x[:3000])
    model = convert_sklearn(
        forest, initial_types=[("x", FloatTensorType([None, x.shape[1]]))], target_opset=TARGET_OPSET
    )
    assert [n.op_type for n in model.graph.node].count("TreeEnsembleRegressor") == 1
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    labels, decision = session.run(None, {"x": x[3000:]})
    np.testing.assert_allclose(decision[:, 0], forest.decision_function(x[3000:]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels[:, 0], forest.predict(x[3000:]))


def test_an_empty_note_is_not_a_note_of_unseen_words(household_model, household_df, spec):
    """Neither has a known term; the empty-text indicator tells them apart, in the graph as natively."""
    [base] = to_records(household_df.head(1), spec.features)
    records = [{**base, "description": ""}, {**base, "description": "zzqx vvkw"}]
    session = ort.InferenceSession(household_model.onnx, providers=["CPUExecutionProvider"])
    _, proba = session.run(None, build_feed(records, spec.features))
    native = answers(household_model.pipeline, "classification", feature_frame(records, spec.features))
    np.testing.assert_allclose(proba, native["probabilities"], atol=1e-4)
    assert np.abs(proba[0] - proba[1]).max() > 0.01


def test_a_multiclass_forest_graph_lists_only_its_nonzero_leaf_weights(household_sample, spec):
    trained = train_model(only(spec, "extra_trees", n_estimators=20), household_sample)
    graph = onnx.load_from_string(trained.onnx).graph
    [node] = [n for n in graph.node if n.op_type == "TreeEnsembleClassifier"]
    attrs = {a.name: a for a in node.attribute}
    weights = np.asarray(attrs["class_weights"].floats)
    assert len(weights) and (weights != 0).all()
    assert len(attrs["class_ids"].ints) == len(attrs["class_nodeids"].ints) == len(weights)
    leaves = sum(mode == b"LEAF" for mode in attrs["nodes_modes"].strings)
    assert len(trained.classes) > 2 and len(weights) < leaves * len(trained.classes) / 3
    assert trained.parity.passed


def test_date_parts_left_out_are_inputs_the_model_ignores(household_model, household_df, spec):
    """The category spec uses only the day of the month: serving still sends every part."""
    assert spec.features[-1].date_parts == ["day"]
    session = ort.InferenceSession(household_model.onnx, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == onnx_input_names(spec.features)
    [base] = to_records(household_df.head(1), spec.features)
    moved = {**base, "date": base["date"].replace(month=base["date"].month % 12 + 1, hour=3)}
    outputs = [session.run(None, build_feed([r], spec.features))[1] for r in (base, moved)]
    np.testing.assert_array_equal(*outputs)
