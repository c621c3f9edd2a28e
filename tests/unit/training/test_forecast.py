"""Forecast training on the real files, typed by the real ingest and read back as curated data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from sluice.contracts import FeatureSchema, ForecastInfo
from sluice.curated import load
from sluice.errors import ParityError, TrainingError
from sluice.features import build_feed
from sluice.forecasting import feature_names, feature_row, history_needed, recursive_forecast
from sluice.ingest import ingest_file
from sluice.parity import onnx_session
from sluice.specs import ModelSpec, load_dataset_spec, load_model_spec
from tests.events import DATA
from tests.unit.training.conftest import HOUSEHOLD, TITANS
from training.forecast import (
    VALUE_OUTPUT,
    DailySeries,
    ForecastTrained,
    daily_series,
    fit_until,
    fold_origins,
    forecast_from,
    native_predict,
    ort_predict,
    relative_gap,
    require_forecast_parity,
    supervised_rows,
    train_forecast,
    verify_forecast,
)
from training.train import BLAS_THREADS

REVENUE = DATA / "timeseries" / "cdnow_daily_revenue_DERIVED.csv"
OUTFLOWS = {"expense", "transfer-out"}


@pytest.fixture(autouse=True)
def _one_thread():
    """As in training: OpenMP threads of the tree models crawl on a busy machine."""
    with threadpool_limits(limits=BLAS_THREADS):
        yield


def read_curated_file(path: Path, dataset: str, out_dir: Path) -> pd.DataFrame:
    """Ingest a real file as the pipeline does and read its curated output back as training does."""
    ingest_file(path, load_dataset_spec(dataset), out_dir)
    schema = json.loads((out_dir / "schema.json").read_text())
    return load(out_dir / "data.npz", schema)


@pytest.fixture(scope="module")
def cash_df(tmp_path_factory) -> pd.DataFrame:
    return read_curated_file(HOUSEHOLD, "transactions", tmp_path_factory.mktemp("household"))


@pytest.fixture(scope="module")
def titans_cash_df(tmp_path_factory) -> pd.DataFrame:
    return read_curated_file(TITANS, "transactions", tmp_path_factory.mktemp("titans"))


@pytest.fixture(scope="module")
def revenue_df(tmp_path_factory) -> pd.DataFrame:
    return read_curated_file(REVENUE, "daily-revenue", tmp_path_factory.mktemp("revenue"))


@pytest.fixture(scope="module")
def cash_spec() -> ModelSpec:
    return load_model_spec("cashflow-forecast")


@pytest.fixture(scope="module")
def revenue_spec() -> ModelSpec:
    return load_model_spec("revenue-forecast")


def variant(spec: ModelSpec, **changes) -> ModelSpec:
    data = spec.to_dict()
    data["forecast"].update(changes.pop("forecast", {}))
    return ModelSpec.model_validate({**data, **changes})


@pytest.fixture(scope="module")
def models(cash_spec, cash_df, revenue_spec, revenue_df) -> dict[str, ForecastTrained]:
    """Both built-in forecast specs trained once, on the whole real files."""
    return {"cash": train_forecast(cash_spec, cash_df), "revenue": train_forecast(revenue_spec, revenue_df)}


@pytest.fixture(params=["cash", "revenue"])
def trained(request, models) -> ForecastTrained:
    return models[request.param]


# -- aggregation ----------------------------------------------------------------------------------


def test_daily_cash_flow_is_the_signed_sum_per_day(cash_spec, cash_df):
    series = daily_series(cash_spec, cash_df)
    outflow = cash_df["type"].str.lower().isin(OUTFLOWS)
    signed = np.where(outflow, -cash_df["amount"].abs(), cash_df["amount"].abs())
    expected = pd.Series(signed).groupby(cash_df["date"].dt.normalize().to_numpy()).sum()
    got = pd.Series(series.values, index=pd.DatetimeIndex(series.dates))
    assert got.index[0] == expected.index.min() and got.index[-1] == expected.index.max()
    assert len(got) == (expected.index.max() - expected.index.min()).days + 1
    np.testing.assert_allclose(got.loc[expected.index].to_numpy(), expected.to_numpy(), rtol=1e-12)
    assert (got.drop(expected.index) == 0.0).all()  # days without a transaction
    assert series.rows == len(cash_df)


def test_already_signed_amounts_keep_their_sign(cash_spec, titans_cash_df):
    """The titans export writes expenses as negative amounts with type Expense: -abs keeps them."""
    series = daily_series(cash_spec, titans_cash_df)
    assert series.values.sum() == pytest.approx(titans_cash_df["amount"].sum(), rel=1e-12)


def test_revenue_series_is_the_revenue_column(revenue_spec, revenue_df):
    series = daily_series(revenue_spec, revenue_df)
    np.testing.assert_array_equal(series.values, revenue_df["revenue"].to_numpy())
    assert str(series.dates[0]) == "1997-01-01" and len(series.values) == 546


def test_count_and_mean_aggregates(cash_spec, cash_df):
    days = cash_df["date"].dt.normalize()
    counts = daily_series(variant(cash_spec, forecast={"aggregate": "count", "sign": None}), cash_df)
    expected = cash_df.groupby(days.to_numpy()).size()
    got = pd.Series(counts.values, index=pd.DatetimeIndex(counts.dates))
    np.testing.assert_array_equal(got.loc[expected.index].to_numpy(), expected.to_numpy())
    assert got.sum() == len(cash_df)

    means = daily_series(variant(cash_spec, forecast={"aggregate": "mean", "sign": None}), cash_df)
    got = pd.Series(means.values, index=pd.DatetimeIndex(means.dates))
    observed = cash_df.groupby(days.to_numpy())["amount"].mean()
    np.testing.assert_allclose(got.loc[observed.index].to_numpy(), observed.to_numpy(), rtol=1e-12)
    gap = got.index.difference(observed.index)[0]  # a day without rows: between its neighbours
    before, after = observed[:gap].iloc[-1], observed[gap:].iloc[0]
    assert min(before, after) <= got[gap] <= max(before, after)


def test_where_filters_rows_before_aggregating(cash_spec, cash_df):
    spec = variant(cash_spec, where=[{"column": "type", "not_in": ["transfer-out"]}])
    series = daily_series(spec, cash_df)
    transfers = cash_df["type"].str.lower().eq("transfer-out")
    assert series.dropped_rows["where"] == int(transfers.sum()) > 0
    kept = cash_df.loc[~transfers]
    signed = np.where(kept["type"].str.lower().eq("expense"), -kept["amount"].abs(), kept["amount"].abs())
    assert series.values.sum() == pytest.approx(signed.sum(), rel=1e-9)


def test_a_series_shorter_than_min_days_is_refused(cash_spec, cash_df):
    recent = cash_df.loc[cash_df["date"] >= cash_df["date"].max() - pd.Timedelta(days=59)]
    with pytest.raises(TrainingError, match=r"has 60 days .*forecast\.min_days is 90"):
        train_forecast(cash_spec, recent)


def test_titans_is_too_short_for_a_30_day_horizon_but_not_for_14(cash_spec, titans_cash_df):
    with pytest.raises(TrainingError, match=r"123 days .* needs at least 148 .*forecast\.min_days is 90"):
        train_forecast(cash_spec, titans_cash_df)
    spec = variant(cash_spec, forecast={"horizon": 14}, candidates=[{"name": "ridge"}])
    trained = train_forecast(spec, titans_cash_df)
    assert trained.rows_holdout == 14 and trained.parity["passed"]


def test_missing_columns_are_named(cash_spec, cash_df):
    with pytest.raises(TrainingError, match="missing from the curated data: type"):
        daily_series(cash_spec, cash_df.drop(columns=["type"]))


# -- backtest -------------------------------------------------------------------------------------


def test_folds_never_train_on_their_future(revenue_spec, revenue_df):
    series = daily_series(revenue_spec, revenue_df)
    ridge = revenue_spec.candidate_specs[0]
    info = ForecastInfo(
        horizon=30, lags=revenue_spec.forecast.lags, season=7, history_dates=[], history_values=[]
    )
    need = history_needed(info)
    origins = fold_origins(len(series.values), 30, need, 5)
    assert len(origins) == 5 and origins[-1] == len(series.values) - 60
    assert (np.diff(origins) == 30).all()
    for origin in origins:
        x, y = supervised_rows(series.values, series.dates, info, origin)
        assert len(x) == origin - need and y[-1] == series.values[origin - 1]
    origin = origins[0]
    before = forecast_from(fit_until(ridge, series, info, origin, 0), series, info, origin, 30)
    future = series.values.copy()
    future[origin:] *= 1000.0  # whatever happens after the origin
    changed = DailySeries(series.dates, future, series.rows, series.dropped_rows)
    after = forecast_from(fit_until(ridge, changed, info, origin, 0), changed, info, origin, 30)
    np.testing.assert_array_equal(before, after)


def test_training_rows_are_the_serving_feature_rows(revenue_spec, revenue_df, models):
    series = daily_series(revenue_spec, revenue_df)
    info = models["revenue"].feature_schema.forecast
    x, _ = supervised_rows(series.values, series.dates, info, len(series.values))
    need = history_needed(info)
    for p in (need, 200, len(series.values) - 1):
        row = feature_row(series.values[:p].tolist(), series.iso(0, p), str(series.dates[p]), info)
        expected = x.iloc[p - need].to_numpy()
        np.testing.assert_array_equal(np.float32(list(row.values())), np.float32(expected))


# -- trained models -------------------------------------------------------------------------------


def test_selected_model_beats_mase_1(trained):
    metrics = trained.metrics
    assert metrics["holdout"]["mase"] < 1.0
    assert metrics["cv"]["mase"] < 1.0
    for name in ("mase", "mean_absolute_error", "root_mean_squared_error", "r2"):
        assert np.isfinite(metrics["holdout"][name]) and np.isfinite(metrics["baseline"][name])
    mae, base_mae = metrics["holdout"]["mean_absolute_error"], metrics["baseline"]["mean_absolute_error"]
    assert metrics["holdout"]["mase"] / metrics["baseline"]["mase"] == pytest.approx(mae / base_mae)


def test_candidates_are_ranked_on_cv_mase(trained):
    names = [c["name"] for c in trained.candidates]
    assert names == ["ridge", "hist_gradient_boosting", "xgboost"]
    ok = [c for c in trained.candidates if c["status"] in ("ok", "selected")]
    selected = [c for c in trained.candidates if c["status"] == "selected"]
    assert len(selected) == 1 and selected[0]["name"] == trained.params["estimator"]
    assert selected[0]["cv"]["mase"] == min(c["cv"]["mase"] for c in ok)
    assert selected[0]["cv"] == trained.metrics["cv"]


def test_interval_offsets_and_holdout_coverage(trained):
    interval = trained.feature_schema.interval
    horizon = trained.spec.forecast.horizon
    assert interval.level == 0.9 and len(interval.lower) == len(interval.upper) == horizon
    lower, upper = np.array(interval.lower), np.array(interval.upper)
    assert (lower <= 0).all() and (upper >= 0).all() and (upper - lower > 0).all()
    assert (np.diff(upper - lower) >= 0).all()
    assert 0.6 <= trained.metrics["holdout"]["interval_coverage"] <= 1.0
    holdout = trained.diagnostics["forecast"]["holdout"]
    inside = np.mean(
        (np.array(holdout["actual"]) >= np.array(holdout["lower"]))
        & (np.array(holdout["actual"]) <= np.array(holdout["upper"]))
    )
    assert inside == trained.metrics["holdout"]["interval_coverage"]


def test_feature_schema_carries_what_serving_needs(trained):
    schema = FeatureSchema.model_validate(json.loads(json.dumps(trained.feature_schema.to_event())))
    info = schema.forecast
    assert schema.task == "forecast" and schema.value_output == VALUE_OUTPUT
    assert [f.name for f in schema.features] == feature_names(info)
    assert {f.kind for f in schema.features} == {"numeric"}
    assert (info.horizon, info.lags, info.season) == (30, trained.spec.forecast.lags, 7)
    assert len(info.history_values) >= history_needed(info)
    assert info.history_dates[-1] == trained.params["series"]["last"]
    assert trained.rows_train + trained.rows_holdout == trained.params["series"]["days"]


def test_onnx_graph_inputs_and_output(trained):
    model = onnx.load_from_string(trained.onnx)
    inputs = {
        i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    assert list(inputs) == feature_names(trained.feature_schema.forecast)
    assert all(shape[1] == 1 for shape in inputs.values())
    assert {i.type.tensor_type.elem_type for i in model.graph.input} == {onnx.TensorProto.FLOAT}
    assert [o.name for o in model.graph.output] == [VALUE_OUTPUT]
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["sluice.feature_schema"]) == json.loads(
        json.dumps(trained.feature_schema.to_event(), sort_keys=True)
    )


def test_parity_document_replays_through_onnxruntime(trained):
    document = trained.parity_document
    assert set(document) == {"feature_schema", "tolerance", "batches"} and document["tolerance"] == 1e-4
    holdout = document["batches"][0]
    assert len(holdout["records"]) == len(holdout["values"]) == trained.rows_holdout
    recursion = document["batches"][1]  # the native 30-day recursion's own rows
    assert len(recursion["records"]) == 30
    assert all(len(b["records"]) == 1 for b in document["batches"][2:])
    session = onnx_session(trained.onnx)
    schema = FeatureSchema.model_validate(document["feature_schema"])
    for batch in document["batches"]:
        got = session.run([VALUE_OUTPUT], build_feed(batch["records"], schema.features))[0]
        assert relative_gap(got, batch["values"]) <= document["tolerance"]
    # teacher-forced values on the holdout are the native pipeline's
    native = native_predict(trained.pipeline, feature_names(schema.forecast))
    np.testing.assert_allclose(native(build_feed(holdout["records"], schema.features)), holdout["values"])


def test_onnxruntime_and_native_recursion_agree_for_30_days(trained):
    info = trained.feature_schema.forecast
    ort_dates, ort_values = recursive_forecast(ort_predict(onnx_session(trained.onnx)), info, 30)
    native = native_predict(trained.pipeline, feature_names(info))
    dates, values = recursive_forecast(native, info, 30)
    assert ort_dates == dates and dates[0] > info.history_dates[-1]
    np.testing.assert_allclose(values, trained.parity_document["batches"][1]["values"], rtol=1e-6)
    np.testing.assert_allclose(ort_values, values, rtol=1e-4, atol=1e-4 * np.max(np.abs(values)))
    assert trained.parity["passed"] and trained.parity["recursive_max_relative_diff"] <= 1e-4


def test_a_diverging_graph_fails_parity(models):
    cash_model = models["cash"]
    document = json.loads(json.dumps(cash_model.parity_document))
    document["batches"][0]["values"][3] += 0.01 * max(abs(v) for v in document["batches"][0]["values"])
    info = cash_model.feature_schema.forecast
    native_days = recursive_forecast(native_predict(cash_model.pipeline, feature_names(info)), info, 30)
    report = verify_forecast(cash_model.onnx, document, native_days)
    assert not report["passed"] and report["max_relative_diff"] > 1e-4
    with pytest.raises(ParityError, match="ONNX and native forecasts differ"):
        require_forecast_parity(report, cash_model.spec.name)


def test_diagnostics_and_versions(trained):
    diag = trained.diagnostics["forecast"]
    holdout = diag["holdout"]
    assert (
        len(holdout["dates"]) == len(holdout["actual"]) == len(holdout["predicted"]) == trained.rows_holdout
    )
    assert diag["history"]["dates"][-1] < holdout["dates"][0]
    assert len(diag["history"]["dates"]) == len(diag["history"]["values"]) > 0
    assert trained.library_versions["xgboost-cpu"] != "not installed"
    assert set(trained.timings) >= {"cv_s", "fit_s", "export_s", "parity_s", "total_s"}


def test_a_missing_xgboost_is_a_dropped_candidate(revenue_spec, revenue_df, monkeypatch):
    monkeypatch.setitem(sys.modules, "xgboost", None)  # import xgboost now raises ImportError
    spec = variant(revenue_spec, candidates=[{"name": "ridge"}, {"name": "xgboost"}])
    trained = train_forecast(spec, revenue_df, verify=False)
    assert trained.parity is None
    status = {c["name"]: (c["status"], c["reason"]) for c in trained.candidates}
    assert status["ridge"][0] == "selected"
    assert status["xgboost"][0] == "dropped" and "not installed" in status["xgboost"][1]


def test_equal_inputs_give_equal_onnx_bytes(revenue_spec, revenue_df):
    spec = variant(revenue_spec, candidates=[{"name": "ridge"}])
    first = train_forecast(spec, revenue_df, verify=False)
    second = train_forecast(spec, revenue_df, verify=False)
    assert first.onnx_sha256 == second.onnx_sha256


@pytest.mark.parametrize("name", ["ridge", "xgboost"])
def test_every_candidate_exports_with_parity(revenue_spec, revenue_df, name):
    """The built-in specs select hist_gradient_boosting; the other candidates must export as well."""
    trained = train_forecast(variant(revenue_spec, candidates=[{"name": name}]), revenue_df)
    assert trained.params["estimator"] == name
    assert trained.parity["passed"] and trained.parity["rows"] == 2 * 30 + 8
