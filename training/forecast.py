"""Train a daily forecast: aggregate, backtest candidates, forecast the holdout, export, prove parity.

``train_forecast`` is pure (a ``task: forecast`` spec and curated rows in, a ``ForecastTrained``
out). The steps:

1. ``daily_series``: rows (after ``spec.where``) -> one value per calendar day (sum, mean or count
   of ``forecast.value``; with ``forecast.sign``, rows whose sign column is one of ``negative``
   count as ``-abs(value)`` and the others as ``+abs(value)``). Days without rows are 0 for sum and
   count, interpolated for mean.
2. Rolling-origin backtest: fold origins step back ``horizon`` days from the holdout; each fold fits
   on the days before its origin only and forecasts ``horizon`` days by recursion from it. The
   candidate with the lowest mean MASE wins (MASE: MAE over the in-sample MAE of the seasonal-naive
   forecast with period ``forecast.season``, on the fold's own training days).
3. Holdout: the last ``horizon`` days, forecast by recursion from the end of the training days by
   the winner fitted on those days (the model that is exported), against the seasonal-naive
   forecast of the same days.
4. Interval: per-step quantiles of the winner's backtest residuals (``actual - predicted``), pooled
   over ``INTERVAL_POOL`` neighbouring steps either side and widened monotonically with the step;
   ``sluice.forecasting.interval_offsets`` extends them past the horizon.
5. ONNX export of the whole pipeline (one ``[None, 1]`` float input per feature, output ``value``)
   and a parity document replayed with onnxruntime, plus the 30-day recursion run both ways.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import onnx
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from skl2onnx import convert_sklearn, get_latest_tested_opset_version, update_registered_converter
from skl2onnx.common.data_types import FloatTensorType
from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes
from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_regressor_converter
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from threadpoolctl import threadpool_limits

from sluice.contracts import Feature, FeatureSchema, ForecastInfo, Interval
from sluice.errors import ParityError, SpecError, TrainingError
from sluice.features import build_feed
from sluice.forecasting import (
    feature_matrix,
    feature_names,
    history_needed,
    recursive_forecast,
    recursive_paths,
    to_feed,
)
from sluice.parity import TOLERANCE, onnx_session
from sluice.specs import EstimatorSpec, ModelSpec
from sluice.storage import sha256_hex
from training.train import BLAS_THREADS, library_versions

VALUE_OUTPUT = "value"
ML_OPSET = 3  # the highest ai.onnx.ml opset skl2onnx 1.20 converts to
MIN_FIT_DAYS = 30  # feature rows (days after the warm-up) the earliest backtest fold fits on
MIN_FOLDS = 2
INTERVAL_POOL = 3  # steps either side whose residuals join a step's quantiles
SINGLE_ROWS = 8  # single-row parity batches (serving predicts one day at a time)
PARITY_DAYS = 30  # days of the recursion compared between onnxruntime and the native pipeline
HISTORY_SHOWN = 180  # days of history before the holdout in the diagnostics
FORECAST_LIBRARIES = ("xgboost-cpu", "onnxmltools")


# -- daily series ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DailySeries:
    """One value per consecutive calendar day, oldest first."""

    dates: np.ndarray  # datetime64[D]
    values: np.ndarray  # float64
    rows: int  # curated rows aggregated
    dropped_rows: dict[str, int]

    def iso(self, start: int = 0, stop: int | None = None) -> list[str]:
        return [str(d) for d in self.dates[start:stop]]


def _folded(column: pd.Series) -> pd.Series:
    return column.astype("string").str.strip().str.casefold()


def apply_where(spec: ModelSpec, df: pd.DataFrame) -> pd.DataFrame:
    """Rows kept by every ``spec.where`` filter (values compared stripped and case-insensitively)."""
    keep = pd.Series(True, index=df.index)
    for rule in spec.where:
        values = _folded(df[rule.column])
        wanted = {v.strip().casefold() for v in (rule.in_ or rule.not_in or [])}
        hit = values.isin(wanted).fillna(False).astype(bool)
        keep &= hit if rule.in_ is not None else ~hit
    return df.loc[keep]


def signed_values(spec: ModelSpec, df: pd.DataFrame) -> pd.Series:
    """``forecast.value`` as numbers, signed by ``forecast.sign`` when the spec has one."""
    fc = spec.forecast
    values = pd.to_numeric(df[fc.value], errors="coerce").astype("float64")
    if fc.sign is None:
        return values
    negative = _folded(df[fc.sign.column]).isin({v.strip().casefold() for v in fc.sign.negative})
    return values.abs().where(~negative.fillna(False).astype(bool), -values.abs())


def daily_series(spec: ModelSpec, df: pd.DataFrame) -> DailySeries:
    """Aggregate the curated rows into the daily series (see the module docstring)."""
    fc = _forecast(spec)
    missing = [c for c in spec.input_columns if c not in df.columns]
    if missing:
        raise TrainingError(f"{spec.name}: column(s) missing from the curated data: {', '.join(missing)}")
    rows = apply_where(spec, df)
    dropped = {"where": len(df) - len(rows)}
    days = pd.to_datetime(rows[fc.date], errors="coerce").dt.normalize()
    values = signed_values(spec, rows)
    dropped[f"missing_{fc.date}"] = int(days.isna().sum())
    ok = days.notna() & values.notna() & np.isfinite(values.fillna(0.0))
    dropped[f"missing_{fc.value}"] = int((days.notna() & ~ok).sum())
    if not ok.any():
        raise TrainingError(f"{spec.name}: no rows with both {fc.date!r} and {fc.value!r} to aggregate")
    per_day = values[ok].groupby(days[ok].to_numpy()).agg(fc.aggregate)
    calendar = pd.date_range(per_day.index.min(), per_day.index.max(), freq="D")
    series = per_day.reindex(calendar)
    series = series.interpolate().ffill() if fc.aggregate == "mean" else series.fillna(0.0)
    return DailySeries(
        dates=calendar.to_numpy().astype("datetime64[D]"),
        values=series.to_numpy(dtype=np.float64),
        rows=int(ok.sum()),
        dropped_rows=dropped,
    )


def _forecast(spec: ModelSpec) -> Any:
    if spec.task != "forecast" or spec.forecast is None:
        raise SpecError(f"{spec.name}: train_forecast needs a task: forecast spec, not {spec.task}")
    return spec.forecast


# -- metrics and the seasonal-naive baseline ----------------------------------------------------------


def seasonal_naive(history: np.ndarray, season: int, steps: int) -> np.ndarray:
    """Repeat the last ``season`` days of ``history`` over ``steps`` days."""
    last = np.asarray(history, dtype=np.float64)[-season:]
    return np.resize(last, steps)


def mase_scale(history: np.ndarray, season: int) -> float:
    """In-sample MAE of the one-season-back forecast: the denominator of MASE."""
    history = np.asarray(history, dtype=np.float64)
    return float(np.mean(np.abs(history[season:] - history[:-season])))


def forecast_metrics(actual: np.ndarray, predicted: np.ndarray, scale: float) -> dict[str, float]:
    mae = float(mean_absolute_error(actual, predicted))
    return {
        "mase": mae / scale,
        "mean_absolute_error": mae,
        "root_mean_squared_error": float(root_mean_squared_error(actual, predicted)),
        "r2": float(r2_score(actual, predicted)),
    }


# -- candidates -----------------------------------------------------------------------------------


def _xgb_regressor(**params: Any) -> Any:
    from xgboost import XGBRegressor

    return XGBRegressor(**params)


@dataclass(frozen=True)
class Forecaster:
    """A forecast candidate: its regressor and the defaults a spec's params override."""

    factory: Callable[..., Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    random_state_param: str | None = "random_state"

    def build(self, params: Mapping[str, Any], random_state: int) -> Any:
        kwargs = {**self.defaults, **params}
        if self.random_state_param:
            kwargs.setdefault(self.random_state_param, random_state)
        return self.factory(**kwargs)


#: forecast candidates (``forecast`` names of ``DEFAULT_CANDIDATES``) and their defaults
FORECASTERS: dict[str, Forecaster] = {
    "ridge": Forecaster(Ridge, defaults={"alpha": 1.0}, random_state_param=None),
    "hist_gradient_boosting": Forecaster(
        HistGradientBoostingRegressor,
        defaults={
            "loss": "absolute_error",
            "learning_rate": 0.05,
            "max_iter": 200,
            "max_leaf_nodes": 15,
            "min_samples_leaf": 20,
            "early_stopping": False,
        },
    ),
    "xgboost": Forecaster(
        _xgb_regressor,
        defaults={
            "objective": "reg:absoluteerror",
            "n_estimators": 200,
            "learning_rate": 0.05,
            "max_depth": 4,
            "min_child_weight": 5,
            "subsample": 0.8,
            "n_jobs": 1,
            "tree_method": "hist",
        },
    ),
}
SCALED = {"ridge"}


def forecaster_params(est: EstimatorSpec, random_state: int) -> dict[str, Any]:
    entry = _entry(est)
    params = {**entry.defaults, **est.params}
    if entry.random_state_param:
        params.setdefault(entry.random_state_param, random_state)
    return params


def _entry(est: EstimatorSpec) -> Forecaster:
    entry = FORECASTERS.get(est.name)
    if entry is None:
        raise SpecError(
            f"candidates: unknown forecast estimator {est.name!r}; known: {', '.join(sorted(FORECASTERS))}"
        )
    return entry


def build_forecaster(est: EstimatorSpec, names: Sequence[str], random_state: int) -> Pipeline:
    """ColumnTransformer (scaling for linear models) -> regressor, over the named feature columns."""
    try:
        model = _entry(est).build(est.params, random_state)
    except TypeError as exc:
        raise SpecError(f"candidates.params: invalid parameter for {est.name}: {exc}") from exc
    step = StandardScaler() if est.name in SCALED else "passthrough"
    features = ColumnTransformer([("num", step, list(names))], remainder="drop")
    return Pipeline([("features", features), ("model", model)])


def native_predict(pipeline: Pipeline, names: Sequence[str]) -> Callable[[Mapping[str, np.ndarray]], Any]:
    """The fitted pipeline as a ``sluice.forecasting.Predict``: same float32 feed as the graph."""

    def predict(feed: Mapping[str, np.ndarray]) -> np.ndarray:
        frame = pd.DataFrame({n: np.asarray(feed[n]).reshape(-1).astype(np.float64) for n in names})
        return pipeline.predict(frame)

    return predict


# -- supervised rows and the backtest --------------------------------------------------------------


def supervised_rows(values: np.ndarray, dates: np.ndarray, info: Any, stop: int) -> tuple[pd.DataFrame, Any]:
    """Teacher-forced rows of the days ``need..stop-1`` (features from the days before each only)."""
    need = history_needed(info)
    if stop <= need:
        raise TrainingError(f"no feature rows: need more than {need} days before day {stop}")
    tails = sliding_window_view(values[: stop - 1], need)
    days = [d.item() for d in dates[need:stop]]
    feed = to_feed(feature_matrix(tails, days, info), feature_names(info))
    frame = pd.DataFrame({n: a.reshape(-1).astype(np.float64) for n, a in feed.items()})
    return frame, values[need:stop]


def fit_until(est: EstimatorSpec, series: DailySeries, info: Any, origin: int, random_state: int) -> Pipeline:
    """A candidate fitted on the days before ``origin`` only."""
    x, y = supervised_rows(series.values, series.dates, info, origin)
    return build_forecaster(est, feature_names(info), random_state).fit(x, y)


def forecast_from(pipeline: Pipeline, series: DailySeries, info: Any, origin: int, steps: int) -> np.ndarray:
    """Recursive forecast of the days ``origin..origin+steps-1`` from the days before ``origin``."""
    need = history_needed(info)
    tail = series.values[origin - need : origin].reshape(1, need)
    first = series.dates[origin].item()
    predict = native_predict(pipeline, feature_names(info))
    return recursive_paths(predict, tail, [first], steps, info)[0].astype(np.float64)


def fold_origins(n_days: int, horizon: int, need: int, folds: int) -> list[int]:
    """Backtest origins (day indexes), oldest first: ``horizon`` apart, the last one ``horizon`` days
    before the holdout, each leaving at least ``MIN_FIT_DAYS`` feature rows to fit on."""
    holdout_start = n_days - horizon
    origins = [holdout_start - k * horizon for k in range(1, folds + 1)]
    return sorted(o for o in origins if o - need >= MIN_FIT_DAYS)


def days_required(horizon: int, need: int) -> int:
    return need + MIN_FIT_DAYS + (MIN_FOLDS + 1) * horizon


@dataclass
class Backtest:
    """One candidate's rolling-origin backtest: forecasts (``[folds, horizon]``) and fold MASEs."""

    name: str
    predicted: np.ndarray
    actual: np.ndarray
    mase: list[float]
    mae: list[float]
    fit_s: float

    def summary(self) -> dict[str, float]:
        return {
            "mase": float(np.mean(self.mase)),
            "mase_std": float(np.std(self.mase)),
            "mean_absolute_error": float(np.mean(self.mae)),
            "folds": float(len(self.mase)),
        }


def backtest(
    est: EstimatorSpec, series: DailySeries, info: Any, origins: Sequence[int], season: int, seed: int
) -> Backtest:
    horizon = info.horizon
    predicted, actual, mase, mae = [], [], [], []
    t0 = time.perf_counter()
    for origin in origins:
        pipeline = fit_until(est, series, info, origin, seed)
        forecast = forecast_from(pipeline, series, info, origin, horizon)
        truth = series.values[origin : origin + horizon]
        scores = forecast_metrics(truth, forecast, _scale(series, origin, season))
        predicted.append(forecast)
        actual.append(truth)
        mase.append(scores["mase"])
        mae.append(scores["mean_absolute_error"])
    return Backtest(est.name, np.array(predicted), np.array(actual), mase, mae, time.perf_counter() - t0)


def _scale(series: DailySeries, stop: int, season: int) -> float:
    scale = mase_scale(series.values[:stop], season)
    if not scale > 0:
        raise TrainingError(
            f"the daily series does not change over {season}-day seasons before {series.dates[stop]}: "
            "MASE is undefined (its seasonal-naive scale is 0)"
        )
    return scale


# -- intervals ------------------------------------------------------------------------------------


def residual_interval(residuals: np.ndarray, level: float) -> Interval:
    """Per-step offsets from backtest residuals (``[folds, horizon]``, actual - predicted)."""
    horizon = residuals.shape[1]
    alpha = (1.0 - level) / 2.0
    lower, upper = [], []
    for step in range(horizon):
        pool = residuals[:, max(0, step - INTERVAL_POOL) : step + INTERVAL_POOL + 1].reshape(-1)
        lower.append(min(float(np.quantile(pool, alpha)), 0.0))
        upper.append(max(float(np.quantile(pool, 1.0 - alpha)), 0.0))
    # uncertainty does not shrink with the step: later steps are at least as wide as earlier ones
    return Interval(
        level=level,
        lower=[float(v) for v in np.minimum.accumulate(lower)],
        upper=[float(v) for v in np.maximum.accumulate(upper)],
    )


def coverage(actual: np.ndarray, predicted: np.ndarray, interval: Interval) -> float:
    steps = len(actual)
    lower = predicted + np.asarray(interval.lower[:steps])
    upper = predicted + np.asarray(interval.upper[:steps])
    return float(np.mean((actual >= lower) & (actual <= upper)))


# -- export and parity ----------------------------------------------------------------------------


class _IntFlagsContainer:
    """A converter container whose ``add_node`` writes tree flags as ints.

    skl2onnx 1.20 emits ``nodes_missing_value_tracks_true`` for HistGradientBoosting* as numpy
    uint8 flags for branches mixed with Python ``False`` for leaves; protobuf in onnx 1.23 refuses a
    bool in an INTS attribute ("Expected an int, got a boolean")."""

    def __init__(self, container: Any):
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, *args: Any, **attrs: Any) -> Any:
        flags = attrs.get("nodes_missing_value_tracks_true")
        if flags is not None:
            attrs["nodes_missing_value_tracks_true"] = [int(v) for v in flags]
        return self._container.add_node(*args, **attrs)


def _convert_hist_gradient_boosting(scope: Any, operator: Any, container: Any) -> None:
    convert_sklearn_random_forest_regressor_converter(scope, operator, _IntFlagsContainer(container))


update_registered_converter(
    HistGradientBoostingRegressor,
    "SklearnHistGradientBoostingRegressor",
    calculate_linear_regressor_output_shapes,
    _convert_hist_gradient_boosting,
)


def _register_xgboost() -> None:
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from xgboost import XGBRegressor

    update_registered_converter(
        XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost
    )


def export_forecast_onnx(pipeline: Pipeline, spec: ModelSpec, schema: FeatureSchema) -> bytes:
    """The fitted pipeline as ONNX: one ``[None, 1]`` float input per feature, output ``value``."""
    if pipeline.steps[-1][1].__class__.__name__ == "XGBRegressor":
        _register_xgboost()
    model = convert_sklearn(
        pipeline,
        name=spec.name,
        initial_types=[(f.name, FloatTensorType([None, 1])) for f in schema.features],
        final_types=[(VALUE_OUTPUT, FloatTensorType([None, 1]))],
        # onnxmltools writes XGBoost as ai.onnx.ml 5 TreeEnsemble unless told the highest ml opset
        # skl2onnx accepts; the other converters stay within it anyway
        target_opset={"": get_latest_tested_opset_version(), "ai.onnx.ml": ML_OPSET},
    )
    # skl2onnx collects opset imports in a set: sorted, equal models give equal bytes (and sha256)
    imports = sorted(model.opset_import, key=lambda o: o.domain)
    del model.opset_import[:]
    model.opset_import.extend(imports)
    props = {
        "sluice.model": spec.name,
        "sluice.feature_schema": json.dumps(schema.to_event(), sort_keys=True),
    }
    onnx.helper.set_model_props(model, props)
    estimator = pipeline.steps[-1][0]
    model.doc_string = (
        f"Sluice forecast {spec.name}: daily features -> {estimator} ({type(pipeline[-1]).__name__})"
    )
    return model.SerializeToString()


def relative_gap(got: Sequence[float], expected: Sequence[float]) -> float:
    """max |got - expected| over the largest |expected| (at least 1): a difference relative to the
    values' scale, not to each value (near-zero days of a net cash flow would make that meaningless)."""
    got_a = np.asarray(got, dtype=np.float64).reshape(-1)
    expected_a = np.asarray(expected, dtype=np.float64).reshape(-1)
    if got_a.shape != expected_a.shape:
        return float("inf")
    if not expected_a.size:
        return 0.0
    return float(np.max(np.abs(got_a - expected_a)) / max(1.0, float(np.max(np.abs(expected_a)))))


def _records(rows: pd.DataFrame) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in row.items()} for row in rows.to_dict(orient="records")]


def recursion_rows(info: ForecastInfo, days: tuple[list[str], list[float]]) -> pd.DataFrame:
    """The feature rows the native recursion built: the history tail extended by its forecasts."""
    values = np.array([*info.history_values, *days[1]], dtype=np.float64)
    dates = np.array([*info.history_dates, *days[0]], dtype="datetime64[D]")
    rows, _ = supervised_rows(values, dates, info, len(values))
    return rows.iloc[-len(days[0]) :]


def parity_document(
    schema: FeatureSchema,
    predict: Callable[[Mapping[str, np.ndarray]], Any],
    holdout: pd.DataFrame,
    recursion: pd.DataFrame,
) -> dict[str, Any]:
    """Native answers as a ``sluice.parity``-style document whose batches hold ``values``: the
    holdout's teacher-forced rows, the rows of the native recursion, and single holdout rows."""
    records = _records(holdout)
    batches = [records, _records(recursion), *([r] for r in records[:SINGLE_ROWS])]
    features = schema.features
    return {
        "feature_schema": schema.to_event(),
        "tolerance": TOLERANCE,
        "batches": [
            {
                "records": batch,
                "values": [float(v) for v in np.asarray(predict(build_feed(batch, features))).reshape(-1)],
            }
            for batch in batches
        ],
    }


def ort_predict(session: Any, output: str = VALUE_OUTPUT) -> Callable[[Mapping[str, np.ndarray]], Any]:
    def predict(feed: Mapping[str, np.ndarray]) -> np.ndarray:
        return session.run([output], dict(feed))[0]

    return predict


def verify_forecast(
    onnx_bytes: bytes, document: dict[str, Any], native_days: tuple[list[str], list[float]]
) -> dict[str, Any]:
    """Replay the parity batches and the recursion through onnxruntime; compare relatively."""
    schema = FeatureSchema.model_validate(document["feature_schema"])
    tolerance = float(document.get("tolerance", TOLERANCE))
    try:
        session = onnx_session(onnx_bytes)
        gaps = [
            relative_gap(ort_predict(session)(build_feed(b["records"], schema.features)), b["values"])
            for b in document["batches"]
        ]
        dates, values = recursive_forecast(ort_predict(session), schema.forecast, len(native_days[0]))
    except Exception as exc:  # any failure to load or run the graph is a parity failure
        raise ParityError(f"onnxruntime cannot run the exported model: {type(exc).__name__}: {exc}") from exc
    recursion_gap = relative_gap(values, native_days[1]) if dates == native_days[0] else float("inf")
    rows = sum(len(b["records"]) for b in document["batches"])
    return {
        "rows": rows,
        "max_relative_diff": max(gaps),
        "recursive_days": len(dates),
        "recursive_max_relative_diff": recursion_gap,
        "tolerance": tolerance,
        "passed": bool(rows and max(gaps) <= tolerance and recursion_gap <= tolerance),
    }


def require_forecast_parity(report: dict[str, Any], model: str) -> dict[str, Any]:
    if not report["passed"]:
        raise ParityError(
            f"{model}: ONNX and native forecasts differ: {report['rows']} rows max relative diff "
            f"{report['max_relative_diff']:.2e}, {report['recursive_days']}-day recursion "
            f"{report['recursive_max_relative_diff']:.2e} (need <= {report['tolerance']:g})"
        )
    return report


# -- training -------------------------------------------------------------------------------------


@dataclass
class ForecastTrained:
    """A fitted forecaster, its ONNX export, the backtest evidence and the parity proof."""

    spec: ModelSpec
    pipeline: Pipeline  # fitted on the days before the holdout: the exported model
    onnx: bytes
    feature_schema: FeatureSchema
    metrics: dict[str, dict[str, float]]
    candidates: list[dict[str, Any]]
    parity_document: dict[str, Any]
    params: dict[str, Any]
    rows_train: int  # days
    rows_holdout: int  # days
    timings: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    parity: dict[str, Any] | None = None  # set when verified

    @property
    def onnx_sha256(self) -> str:
        return sha256_hex(self.onnx)


def train_forecast(spec: ModelSpec, df: pd.DataFrame, *, verify: bool = True) -> ForecastTrained:
    """Aggregate ``df`` into the daily series of ``spec`` and train, evaluate and export a forecaster.

    Raises TrainingError when the series is too short (``forecast.min_days``, or too few days for the
    warm-up, the backtest folds and the holdout) and ParityError when onnxruntime does not reproduce
    the native forecasts. BLAS and OpenMP run single-threaded: besides BLAS (see ``training.train``),
    HistGradientBoosting's OpenMP threads took 9.0 s instead of 0.4 s for one 450-row fit on a busy
    2-vCPU machine.
    """
    with threadpool_limits(limits=BLAS_THREADS):
        return _train_forecast(spec, df, verify)


def _check_length(spec: ModelSpec, series: DailySeries, need: int) -> None:
    fc = spec.forecast
    n = len(series.values)
    span = f"{series.dates[0]}..{series.dates[-1]}"
    if n < fc.min_days:
        raise TrainingError(
            f"{spec.name}: the daily series has {n} days ({span}); forecast.min_days is {fc.min_days}"
        )
    required = days_required(fc.horizon, need)
    if n < required:
        raise TrainingError(
            f"{spec.name}: the daily series has {n} days ({span}); a {fc.horizon}-day horizon with lags "
            f"and windows up to {need} days needs at least {required} ({need} warm-up, {MIN_FIT_DAYS} to "
            f"fit, {MIN_FOLDS} backtest folds and the holdout of {fc.horizon} days each; forecast.min_days "
            f"is {fc.min_days}): shorten forecast.horizon or forecast.lags, or add history"
        )


def _run_candidates(
    spec: ModelSpec, series: DailySeries, info: ForecastInfo, origins: list[int]
) -> tuple[list[dict[str, Any]], dict[str, Backtest]]:
    t0 = time.perf_counter()
    records: list[dict[str, Any]] = []
    results: dict[str, Backtest] = {}
    for i, est in enumerate(spec.candidate_specs):
        record: dict[str, Any] = {"name": est.name, "status": "dropped", "cv": {}, "fit_s": 0.0, "reason": ""}
        records.append(record)
        if i and time.perf_counter() - t0 > spec.search.time_budget_s:
            record["reason"] = f"time budget of {spec.search.time_budget_s:g} s spent before it started"
            continue
        if est.name == "xgboost":
            try:
                import onnxmltools  # noqa: F401
                import xgboost  # noqa: F401
            except ImportError as exc:
                record["reason"] = f"not installed: {exc}"
                continue
        try:
            result = backtest(est, series, info, origins, spec.forecast.season, spec.random_state)
        except InvalidParameterError as exc:  # the spec's params, not the data: say so
            raise SpecError(f"candidates.params: invalid parameter for {est.name}: {exc}") from exc
        except (ValueError, ArithmeticError) as exc:  # e.g. a fit that diverges on this series
            record["reason"] = f"backtest failed: {type(exc).__name__}: {exc}"
            continue
        results[est.name] = result
        record.update(status="ok", cv=result.summary(), fit_s=round(result.fit_s, 4))
    if not results:
        reasons = "; ".join(f"{r['name']}: {r['reason']}" for r in records)
        raise TrainingError(f"{spec.name}: no forecast candidate could be backtested ({reasons})")
    return records, results


def _train_forecast(spec: ModelSpec, df: pd.DataFrame, verify: bool) -> ForecastTrained:
    fc = _forecast(spec)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    series = daily_series(spec, df)
    probe = ForecastInfo(
        horizon=fc.horizon, lags=fc.lags, season=fc.season, history_dates=[], history_values=[]
    )
    need = history_needed(probe)
    _check_length(spec, series, need)
    n, horizon = len(series.values), fc.horizon
    holdout_start = n - horizon
    tail_days = max(need, horizon)
    info = probe.model_copy(
        update={
            "aggregate": fc.aggregate,
            "history_dates": series.iso(n - tail_days),
            "history_values": [float(v) for v in series.values[n - tail_days :]],
        }
    )
    origins = fold_origins(n, horizon, need, spec.split.cv_folds)
    timings["aggregate_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    candidates, results = _run_candidates(spec, series, info, origins)
    best = min(results.values(), key=lambda r: np.mean(r.mase))
    for record in candidates:
        if record["name"] == best.name:
            record["status"] = "selected"
    timings["cv_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    est = next(e for e in spec.candidate_specs if e.name == best.name)
    pipeline = fit_until(est, series, info, holdout_start, spec.random_state)
    timings["fit_s"] = time.perf_counter() - t2
    names = feature_names(info)
    predicted = forecast_from(pipeline, series, info, holdout_start, horizon)
    actual = series.values[holdout_start:]
    scale = _scale(series, holdout_start, fc.season)
    naive = seasonal_naive(series.values[:holdout_start], fc.season, horizon)
    interval = residual_interval(best.actual - best.predicted, fc.interval)
    holdout = {
        **forecast_metrics(actual, predicted, scale),
        "interval_coverage": coverage(actual, predicted, interval),
        "interval_level": fc.interval,
    }
    metrics = {
        "cv": best.summary(),
        "holdout": holdout,
        "baseline": {**forecast_metrics(actual, naive, scale), "season": float(fc.season)},
    }

    schema = FeatureSchema(
        features=[Feature(name=name, kind="numeric") for name in names],
        target=fc.value,
        task="forecast",
        value_output=VALUE_OUTPUT,
        interval=interval,
        forecast=info,
    )
    t3 = time.perf_counter()
    onnx_bytes = export_forecast_onnx(pipeline, spec, schema)
    timings["export_s"] = time.perf_counter() - t3

    t4 = time.perf_counter()
    predict = native_predict(pipeline, names)
    rows, _ = supervised_rows(series.values, series.dates, info, n)
    native_days = recursive_forecast(predict, info, PARITY_DAYS)
    document = parity_document(
        schema, predict, rows.iloc[holdout_start - need :], recursion_rows(info, native_days)
    )
    parity = (
        require_forecast_parity(verify_forecast(onnx_bytes, document, native_days), spec.name)
        if verify
        else None
    )
    timings["parity_s"] = time.perf_counter() - t4
    timings["total_s"] = time.perf_counter() - t0

    shown = max(0, holdout_start - HISTORY_SHOWN)
    diagnostics = {
        "forecast": {
            "history": {
                "dates": series.iso(shown, holdout_start),
                "values": series.values[shown:holdout_start].tolist(),
            },
            "holdout": {
                "dates": series.iso(holdout_start),
                "actual": actual.tolist(),
                "predicted": predicted.tolist(),
                "lower": (predicted + np.asarray(interval.lower)).tolist(),
                "upper": (predicted + np.asarray(interval.upper)).tolist(),
            },
        }
    }
    params = {
        "estimator": best.name,
        "estimator_params": forecaster_params(est, spec.random_state),
        "features": names,
        "fold_origins": [str(series.dates[o]) for o in origins],
        "series": {
            "first": str(series.dates[0]),
            "last": str(series.dates[-1]),
            "days": n,
            "rows_aggregated": series.rows,
            "dropped_rows": series.dropped_rows,
            "aggregate": fc.aggregate,
            "sign": fc.sign.to_dict() if fc.sign else None,
        },
        "interval": {
            "level": fc.interval,
            "method": f"per-step quantiles of backtest residuals pooled over +-{INTERVAL_POOL} steps",
            "beyond_horizon": "last step's offsets x sqrt(step / horizon)",
        },
        "onnx_size_bytes": len(onnx_bytes),
    }
    versions = library_versions()
    for lib in FORECAST_LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = "not installed"
    return ForecastTrained(
        spec=spec,
        pipeline=pipeline,
        onnx=onnx_bytes,
        feature_schema=schema,
        metrics=metrics,
        candidates=candidates,
        parity_document=document,
        params=params,
        rows_train=holdout_start,
        rows_holdout=horizon,
        timings={k: round(v, 4) for k, v in timings.items()},
        diagnostics=diagnostics,
        library_versions=versions,
        parity=parity,
    )
