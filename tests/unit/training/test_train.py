"""train_model on the real files: better than the baseline, parity proven, ONNX reloadable, and the
refusals that happen before any fitting."""

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
from tests.unit.training.conftest import only, quick
from training.data import prepare_data
from training.pipeline import to_records
from training.train import conformal_interval, spec_sha256, train_model

INGEST = {
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
}


def fresh_session(onnx_bytes: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])


def test_household_model_beats_the_majority_baseline(household_model):
    m = household_model
    holdout, baseline = m.metrics["holdout"], m.metrics["baseline"]
    assert holdout["accuracy"] > baseline["accuracy"] + 0.3
    assert holdout["f1_macro"] > baseline["f1_macro"] + 0.3
    assert holdout["log_loss"] < baseline["log_loss"]
    assert m.rows_train + m.rows_holdout == 2461
    assert m.rows_holdout == pytest.approx(0.2 * 2461, abs=1)
    assert m.params["majority_class"] == "Food" and m.params["split"] == "time"


def test_household_parity_passes(household_model):
    parity = household_model.parity
    assert parity.passed
    assert parity.label_agreement == 1.0
    assert parity.max_abs_prob_diff <= 1e-4
    assert parity.rows > household_model.rows_holdout  # holdout + single rows + probes


def test_titans_model_with_many_rare_classes(titans_model):
    m = titans_model
    assert m.parity.passed
    assert m.metrics["holdout"]["accuracy"] > m.metrics["baseline"]["accuracy"]
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
    assert len(m.onnx_sha256) == 64 and len(m.spec_sha256) == 64
    assert m.params["onnx_size_bytes"] == len(m.onnx)
    assert {"prepare_s", "search_s", "fit_s", "export_s", "total_s"} <= set(m.timings)
    assert {"scikit-learn", "skl2onnx", "onnx", "xgboost-cpu", "onnxmltools", "sluice"} <= set(
        m.library_versions
    )
    result = TrainResult.model_validate(
        {
            "model": m.spec.name,
            "run_id": "r",
            "artifact_key": "k",
            "onnx_sha256": m.onnx_sha256,
            "metrics": m.metrics,
            "candidates": [c.to_event() for c in m.candidates],
            "parity": m.parity.to_event(),
            "params": m.params,
            "feature_schema": m.feature_schema.to_event(),
            "rows_train": m.rows_train,
            "rows_holdout": m.rows_holdout,
            "spec": m.spec.to_dict(),
            "diagnostics": m.diagnostics,
            "ingest": INGEST,
        }
    )
    assert len(json.dumps(result.to_event())) < 64 * 1024  # Step Functions carries at most 256 KB


def test_spec_hash_is_canonical(spec):
    assert spec_sha256(spec) == spec_sha256(quick(spec, split={"time_column": "date", "cv_folds": 5}))
    assert spec_sha256(spec) != spec_sha256(quick(spec))


def test_same_data_gives_the_same_onnx_bytes(spec, titans_df, titans_model):
    assert (
        train_model(only(spec, "logistic_regression", C=20.0), titans_df).onnx_sha256
        == titans_model.onnx_sha256
    )
    model = onnx.load_from_string(titans_model.onnx)
    assert [o.domain for o in model.opset_import] == sorted(o.domain for o in model.opset_import)


def test_regression_interval_covers_about_its_level_on_the_holdout(wine_df):
    trained = train_model(quick("wine-quality", candidates=[{"name": "random_forest"}]), wine_df)
    interval = trained.feature_schema.interval
    batch = trained.parity_document["batches"][0]
    values, targets = np.asarray(batch["values"]), np.asarray(batch["targets"])
    inside = (targets >= values + interval.lower[0]) & (targets <= values + interval.upper[0])
    assert 0.8 <= inside.mean() <= 0.98
    assert (
        trained.metrics["holdout"]["mean_absolute_error"] < trained.metrics["baseline"]["mean_absolute_error"]
    )


def test_conformal_interval_is_a_quantile_pair():
    residuals = np.arange(-50, 50, dtype=float)  # 100 residuals
    interval = conformal_interval(residuals, 0.9)
    assert interval.lower == [-46.0] and interval.upper == [45.0]
    assert conformal_interval(np.ones(10), 0.9).lower == [0.0]  # always brackets the prediction


# -- refusals before training ----------------------------------------------------------------------


def test_prepare_drops_missing_targets_and_merges_rare_classes(spec):
    df = pd.DataFrame(
        {
            "date": pd.to_datetime(["2024-01-01"] * 34),
            "amount": [None] + [1.0] * 33,
            "description": ["x"] * 34,
            "payment_method": ["Cash"] * 34,
            "category": pd.array(["A"] * 16 + ["B"] * 15 + ["C", "D", None], dtype="string"),
        }
    )
    data = prepare_data(spec, df)
    assert data.dropped_rows["missing_target"] == 1
    assert data.merged_classes == ["C", "D"]
    assert sorted(set(data.y)) == ["A", "B", "Other"]
    assert len(data.records) == len(data.y) == 33
    assert data.records[0]["date"].year == 2024
    assert data.records[0]["amount"] is None  # kept: the graph imputes it


def test_too_few_classes_is_a_training_error(spec, titans_df):
    with pytest.raises(TrainingError, match="at least 2 classes"):
        train_model(spec, titans_df.assign(category="food"))


def test_target_all_null_is_a_training_error(spec, titans_df, wine_df):
    with pytest.raises(TrainingError, match="target 'category' is empty in every row"):
        train_model(spec, titans_df.assign(category=None))
    with pytest.raises(TrainingError, match="target 'quality' has no numeric value"):
        train_model(quick("wine-quality"), wine_df.assign(quality=np.nan))


def test_too_few_rows_is_a_training_error(wine_df):
    with pytest.raises(TrainingError, match=r"only 40 usable rows .* min_rows is 50"):
        train_model(quick("wine-quality", min_rows=50), wine_df.head(40))


def test_missing_columns_is_a_training_error(spec, titans_df):
    with pytest.raises(TrainingError, match="payment_method"):
        train_model(spec, titans_df.drop(columns=["payment_method"]))


def test_unknown_estimator_is_a_spec_error(spec, titans_df):
    with pytest.raises(SpecError, match="no_such_model"):
        train_model(quick(spec, candidates=[{"name": "no_such_model"}]), titans_df)


def test_where_filters_rows_first(household_df):
    spec = quick(
        "transaction-amount", candidates=[{"name": "ridge"}], where=[{"column": "type", "in": ["Expense"]}]
    )
    trained = train_model(spec, household_df)
    expenses = int((household_df["type"] == "Expense").sum())
    assert trained.rows_train + trained.rows_holdout == expenses
    assert trained.params["filtered_rows"] == len(household_df) - expenses


def test_forecast_without_its_module_is_a_clear_training_error(monkeypatch, household_df):
    import sys

    monkeypatch.setitem(sys.modules, "training.forecast", None)  # import fails
    with pytest.raises(TrainingError, match="cashflow-forecast: forecast family not available"):
        train_model(quick("cashflow-forecast"), household_df)
