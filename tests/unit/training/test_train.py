"""train_model on the real transaction files: better than the baseline, parity proven, ONNX reloadable."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest

from sluice.contracts import TrainResult
from sluice.errors import SpecError, TrainingError
from sluice.features import build_feed, onnx_input_names
from training.pipeline import prepare_data, to_records
from training.train import train_model


def fresh_session(onnx_bytes: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])


def test_household_model_beats_the_majority_baseline(household_model):
    m = household_model
    assert m.metrics["accuracy"] > m.baseline["accuracy"] + 0.15
    assert m.metrics["macro_f1"] > m.baseline["macro_f1"] + 0.25
    assert m.rows_train + m.rows_holdout == 2461
    assert m.rows_holdout == pytest.approx(0.2 * 2461, abs=1)
    assert m.params["majority_class"] == "Food"


def test_household_parity_passes(household_model):
    parity = household_model.parity
    assert parity.passed
    assert parity.label_agreement == 1.0
    assert parity.max_abs_prob_diff <= 1e-4
    assert parity.rows > household_model.rows_holdout  # holdout + single rows + probes


def test_titans_model_with_many_rare_classes(titans_model):
    m = titans_model
    assert m.parity.passed
    assert m.metrics["accuracy"] > m.baseline["accuracy"]
    assert m.metrics["macro_f1"] > m.baseline["macro_f1"]
    assert m.params["dropped_rows"]["missing_target"] == 27  # income rows have no category
    assert m.rows_train + m.rows_holdout == 100
    assert "Other" in m.classes and m.params["merged_classes"]


def test_onnx_reloads_in_a_fresh_session_and_predicts_raw_records(household_model, household_df, spec):
    m = household_model
    session = fresh_session(m.onnx)
    assert [i.name for i in session.get_inputs()] == onnx_input_names(spec.features)
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]
    records = to_records(household_df.head(50), spec.features)
    labels, proba = session.run(None, build_feed(records, spec.features))
    assert proba.shape == (50, len(m.classes))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert list(labels) == [m.classes[i] for i in proba.argmax(axis=1)]
    assert m.feature_schema.classes == m.classes == [str(c) for c in m.pipeline.classes_]


def test_result_fields_fit_the_train_result_contract(household_model):
    m = household_model
    assert len(m.onnx_sha256) == 64
    assert m.params["onnx_size_bytes"] == len(m.onnx)
    assert {"prepare_s", "fit_s", "export_s", "parity_s", "total_s"} <= set(m.timings)
    assert {"scikit-learn", "skl2onnx", "onnx", "onnxruntime", "sluice"} <= set(m.library_versions)
    json.dumps(m.params)  # lineage must be JSON
    TrainResult.model_validate(
        {
            "model": m.spec.name,
            "run_id": "r",
            "artifact_key": "k",
            "onnx_sha256": m.onnx_sha256,
            "metrics": m.metrics,
            "baseline": m.baseline,
            "parity": m.parity.to_event(),
            "params": m.params,
            "feature_schema": m.feature_schema.to_event(),
            "rows_train": m.rows_train,
            "rows_holdout": m.rows_holdout,
            "ingest": {
                "dataset": "transactions",
                "run_id": "r",
                "source": {"bucket": "b", "key": "k"},
                "curated_prefix": "p",
                "data_key": "d",
                "schema_key": "s",
                "quality_key": "q",
                "quarantine_key": "x",
                "rows_read": 1,
                "rows_clean": 1,
                "rows_quarantined": 0,
            },
        }
    )


def test_same_data_gives_the_same_onnx_bytes(spec, titans_df, titans_model):
    assert train_model(spec, titans_df).onnx_sha256 == titans_model.onnx_sha256
    model = onnx.load_from_string(titans_model.onnx)
    assert [o.domain for o in model.opset_import] == sorted(o.domain for o in model.opset_import)


def test_prepare_drops_missing_targets_and_merges_rare_classes(spec):
    df = pd.DataFrame(
        {
            "date": pd.to_datetime(["2024-01-01"] * 14),
            "amount": [1.0] * 14,
            "description": ["x"] * 14,
            "payment_method": ["Cash"] * 14,
            "category": pd.array(["A"] * 6 + ["B"] * 5 + ["C", "D", None], dtype="string"),
        }
    )
    data = prepare_data(spec, df)
    assert data.dropped_rows["missing_target"] == 1
    assert data.merged_classes == ["C", "D"]
    assert sorted(set(data.y)) == ["A", "B", "Other"]
    assert len(data.records) == len(data.y) == 13
    assert data.records[0]["date"].year == 2024


def test_too_few_classes_is_a_training_error(spec, titans_df):
    one_class = titans_df.assign(category="food")
    with pytest.raises(TrainingError, match="at least 2 classes"):
        train_model(spec, one_class)


def test_missing_columns_is_a_training_error(spec, titans_df):
    with pytest.raises(TrainingError, match="payment_method"):
        train_model(spec, titans_df.drop(columns=["payment_method"]))


def test_unknown_estimator_is_a_spec_error(spec, titans_df):
    bad = spec.model_copy(update={"estimator": spec.estimator.model_copy(update={"name": "no_such_model"})})
    with pytest.raises(SpecError, match="no_such_model"):
        train_model(bad, titans_df)
