"""Model specs: what to train on which dataset, how to pick among candidates, and the gates.

A model spec is plain data (YAML in ``sluice/specs/models/`` or a user's file) validated at load;
every error names the field. The four task families share one shape:

- ``classification``: ``target`` is a string column; binary or multiclass. Rare classes (fewer
  than ``min_class_rows`` rows) are merged into ``rare_label``; ``positive_label`` names the positive
  class of a binary task (needed by ``roc_auc`` and ``average_precision``).
- ``regression``: ``target`` is a numeric column; predictions come with an interval.
- ``anomaly``: no target; ``anomaly.label`` optionally names a 0/1 column used only to evaluate
  (never as a feature). Scores are calibrated to ``anomaly.contamination`` (the share flagged).
- ``forecast``: a daily series aggregated from the dataset (``forecast.date``, ``forecast.value``,
  ``forecast.aggregate``, an optional sign rule); features are built from the series itself
  (calendar and lags), so ``features`` stays empty.

Metrics use scikit-learn's names (``accuracy``, ``f1_macro``, ``roc_auc``, ``r2``,
``mean_absolute_error``, ...), plus ``mase`` for forecasts; ``METRICS`` says which way is better.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_serializer, model_validator

from sluice.kinds import Task
from sluice.specs.base import FeatureKind, Spec

#: metric name -> (greater is better, tasks it applies to)
METRICS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "accuracy": (True, ("classification",)),
    "balanced_accuracy": (True, ("classification",)),
    "f1_macro": (True, ("classification",)),
    "f1_weighted": (True, ("classification",)),
    "f1": (True, ("classification",)),
    "log_loss": (False, ("classification",)),
    "roc_auc": (True, ("classification", "anomaly")),
    "average_precision": (True, ("classification", "anomaly")),
    "r2": (True, ("regression", "forecast")),
    "mean_absolute_error": (False, ("regression", "forecast")),
    "median_absolute_error": (False, ("regression", "forecast")),
    "mean_squared_error": (False, ("regression", "forecast")),
    "root_mean_squared_error": (False, ("regression", "forecast")),
    "mase": (False, ("forecast",)),
}

DEFAULT_METRIC: dict[str, str | None] = {
    "classification": "f1_macro",
    "regression": "r2",
    "anomaly": "average_precision",  # only when anomaly.label is set; None otherwise
    "forecast": "mase",
}

#: candidate estimators tried when a spec lists none (names of ``training.pipeline.ESTIMATORS``)
DEFAULT_CANDIDATES: dict[str, tuple[str, ...]] = {
    "classification": ("logistic_regression", "random_forest", "hist_gradient_boosting", "xgboost"),
    "regression": ("ridge", "random_forest", "hist_gradient_boosting", "xgboost"),
    "anomaly": ("isolation_forest", "one_class_svm"),
    "forecast": ("ridge", "hist_gradient_boosting", "xgboost"),
}


def greater_is_better(metric: str) -> bool:
    return METRICS[metric][0]


DatePart = Literal["month", "day", "dayofweek", "hour"]  # sluice.features.DATE_PARTS
DATE_PART_NAMES: tuple[str, ...] = get_args(DatePart)


class FeatureSpec(Spec):
    """One input field. A date reaches the model as calendar parts (``sluice.features``); ``parts``
    picks the ones the model uses (default: all). Serving still sends every part (the graph's inputs
    do not change), so a spec can drop one without changing what callers send. Where labels follow
    a regime that changes over the years, month-of-year only names the regime and misleads a model
    validated on later rows."""

    name: str
    kind: FeatureKind
    parts: list[DatePart] | None = Field(None, description="date features: the calendar parts used")

    @model_validator(mode="after")
    def _parts(self) -> FeatureSpec:
        if self.parts is not None:
            if self.kind != "date":
                raise ValueError(f"features.parts: only for a date feature, not {self.kind} ({self.name!r})")
            if not self.parts or len(set(self.parts)) != len(self.parts):
                raise ValueError(f"features.parts: list distinct calendar parts for {self.name!r}")
        return self

    @property
    def date_parts(self) -> list[str]:
        """The calendar parts the model uses, in ``DATE_PARTS`` order."""
        chosen = self.parts or list(DATE_PART_NAMES)
        return [p for p in DATE_PART_NAMES if p in chosen]

    @model_serializer(mode="wrap")
    def _without_default_parts(self, handler: Any) -> dict[str, Any]:
        """``parts`` unset is not dumped: specs that do not use it keep their canonical JSON (and
        sha256) from before the field existed."""
        data = handler(self)
        if data.get("parts") is None:
            data.pop("parts", None)
        return data


class EstimatorSpec(Spec):
    """One candidate: an estimator name and the parameters that override its defaults."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class FilterSpec(Spec):
    """Keep only rows whose ``column`` is (``in_``) or is not (``not_in``) one of the values."""

    column: str
    in_: list[str] | None = Field(None, alias="in")
    not_in: list[str] | None = None

    @model_validator(mode="after")
    def _one_list(self) -> FilterSpec:
        if (self.in_ is None) == (self.not_in is None):
            raise ValueError(f"where: give exactly one of 'in' or 'not_in' for column {self.column!r}")
        return self


class SplitSpec(Spec):
    """Holdout and cross-validation. With ``time_column`` both are time-aware: the holdout is the
    latest rows and CV folds never train on rows later than their validation rows."""

    holdout_fraction: float = Field(0.2, gt=0.0, lt=0.5)
    cv_folds: int = Field(5, ge=2, le=10)
    time_column: str | None = Field(None, description="a datetime column: split by time, not at random")


class SearchSpec(Spec):
    """Candidate search: each candidate is cross-validated on the spec's metric; the best one wins.

    A candidate not finished within the budget is dropped with that reason (the first candidate is
    always completed, so a budget cannot leave nothing to register)."""

    time_budget_s: float = Field(300.0, gt=0.0)
    max_rows: int | None = Field(None, ge=100, description="sample the training rows for CV beyond this")


class GateSpec(Spec):
    """What a candidate must show on the holdout before it becomes champion."""

    min_metric: float | None = Field(None, description="the metric must reach this (or not exceed it)")
    beat_baseline: bool = True
    baseline_margin: float = Field(0.0, ge=0.0, description="by at least this much, in metric units")
    champion_tolerance: float | None = Field(
        0.0,
        ge=0.0,
        description="may be worse than the champion on the same holdout by at most this; null: ignore",
    )


class AnomalySpec(Spec):
    contamination: float = Field(0.05, gt=0.0, lt=0.5, description="share of rows flagged")
    label: str | None = Field(None, description="0/1 column used to evaluate, never as a feature")
    positive: str = Field("1", description="the label value meaning an anomaly")


class ForecastSignSpec(Spec):
    """Values in rows whose ``column`` is in ``negative`` count as outflows (``-abs(value)``)."""

    column: str
    negative: list[str]


class ForecastSpec(Spec):
    date: str = Field(description="datetime column; rows are aggregated per calendar day")
    value: str = Field(description="numeric column aggregated into the daily series")
    aggregate: Literal["sum", "mean", "count"] = "sum"
    sign: ForecastSignSpec | None = None
    horizon: int = Field(30, ge=1, le=90, description="days predicted by recursion")
    lags: list[int] = Field(default_factory=lambda: [1, 2, 3, 7, 14, 28])
    season: int = Field(7, ge=1, description="seasonal period (days) of the seasonal-naive baseline")
    interval: float = Field(0.9, gt=0.0, lt=1.0, description="coverage of the prediction interval")
    min_days: int = Field(90, ge=30, description="fewer days of history are an error")

    @field_validator("lags")
    @classmethod
    def _lags(cls, v: list[int]) -> list[int]:
        if not v or any(lag < 1 for lag in v):
            raise ValueError("lags: list positive day offsets, e.g. [1, 7, 14]")
        return sorted(set(v))


class MonitoringSpec(Spec):
    """What the API captures of this model's traffic, and how a new version meets it."""

    capture_rate: float | None = Field(None, ge=0.0, le=1.0, description="share of requests captured")
    drop: list[str] = Field(default_factory=list, description="fields never captured")
    hash: list[str] = Field(default_factory=list, description="fields captured as a keyed hash")
    canary: bool = Field(False, description="a version that passes the gates starts as challenger")
    challenger_share: float | None = Field(None, gt=0.0, le=1.0, description="callers a challenger serves")
    drift: dict[str, float] = Field(
        default_factory=dict,
        description="drift thresholds overriding the monitor's defaults (psi_warn, psi_alert, p_value, "
        "min_rows, missing_rate_delta, out_of_range_rate, new_category_rate)",
    )

    @field_validator("drift")
    @classmethod
    def _known_thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        known = {
            "psi_warn", "psi_alert", "p_value", "min_rows", "missing_rate_delta",
            "out_of_range_rate", "new_category_rate", "rate_alert_factor",
        }  # fmt: skip
        unknown = sorted(set(v) - known)
        if unknown:
            raise ValueError(
                f"drift: unknown threshold(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return v


class ModelSpec(Spec):
    name: str
    dataset: str
    description: str = ""
    task: Task = "classification"
    target: str | None = None
    features: list[FeatureSpec] = Field(default_factory=list)
    candidates: list[EstimatorSpec] = Field(default_factory=list)
    metric: str | None = None
    positive_label: str | None = None
    where: list[FilterSpec] = Field(default_factory=list)
    split: SplitSpec = Field(default_factory=SplitSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    min_rows: int = Field(30, ge=10, description="fewer usable rows are an error before training")
    min_class_rows: int = Field(5, ge=2, description="rarer classes are merged into rare_label")
    rare_label: str = "Other"
    random_state: int = 42
    gates: GateSpec = Field(default_factory=GateSpec)
    anomaly: AnomalySpec | None = None
    forecast: ForecastSpec | None = None
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        """Specs written before candidate search: ``estimator`` is one candidate; ``holdout_fraction``
        and ``macro_f1`` moved to ``split`` and scikit-learn's ``f1_macro``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "estimator" in data:
            data.setdefault("candidates", [data.pop("estimator")])
        if "holdout_fraction" in data:
            data["split"] = {**(data.get("split") or {}), "holdout_fraction": data.pop("holdout_fraction")}
        if data.get("metric") == "macro_f1":
            data["metric"] = "f1_macro"
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        task = self.task
        names = [f.name for f in self.features]
        if task in ("classification", "regression"):
            if not self.target:
                raise ValueError(f"target: a {task} model needs a target column")
            if not self.features:
                raise ValueError("features: at least one feature is required")
        if task == "anomaly" and not self.features:
            raise ValueError("features: at least one feature is required")
        if self.target is not None and self.target in names:
            raise ValueError(f"target: {self.target!r} is also listed as a feature")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features: listed twice: {', '.join(dupes)}")
        if task == "forecast":
            if self.forecast is None:
                raise ValueError("forecast: a forecast model needs a forecast section (date, value)")
            if self.features:
                raise ValueError("features: a forecast builds its own features from the series; list none")
        elif self.forecast is not None:
            raise ValueError(f"forecast: only for task forecast, not {task}")
        if self.anomaly is not None and task != "anomaly":
            raise ValueError(f"anomaly: only for task anomaly, not {task}")
        if self.anomaly is not None and self.anomaly.label in names:
            raise ValueError(f"anomaly.label: {self.anomaly.label!r} is also listed as a feature")
        metric = self.effective_metric
        if metric is not None:
            if metric not in METRICS:
                raise ValueError(f"metric: unknown metric {metric!r}; known: {', '.join(sorted(METRICS))}")
            if task not in METRICS[metric][1]:
                raise ValueError(f"metric: {metric!r} does not apply to a {task} model")
            if task == "anomaly" and (self.anomaly is None or self.anomaly.label is None):
                raise ValueError("metric: an anomaly metric needs anomaly.label (a 0/1 column)")
        if self.gates.min_metric is not None and metric is None:
            raise ValueError("gates.min_metric: this model has no metric to compare")
        return self

    @property
    def effective_metric(self) -> str | None:
        """The selection metric: the spec's, else the task's default (None for unlabelled anomaly)."""
        if self.metric is not None:
            return self.metric
        if self.task == "anomaly" and (self.anomaly is None or self.anomaly.label is None):
            return None
        return DEFAULT_METRIC[self.task]

    @property
    def candidate_specs(self) -> list[EstimatorSpec]:
        """The spec's candidates, else the task's defaults (in order: the first is the fallback)."""
        if self.candidates:
            return list(self.candidates)
        return [EstimatorSpec(name=n) for n in DEFAULT_CANDIDATES[self.task]]

    @property
    def input_columns(self) -> list[str]:
        """Every curated column training reads."""
        cols = [f.name for f in self.features]
        if self.target:
            cols.append(self.target)
        if self.anomaly is not None and self.anomaly.label:
            cols.append(self.anomaly.label)
        if self.forecast is not None:
            cols += [self.forecast.date, self.forecast.value]
            if self.forecast.sign is not None:
                cols.append(self.forecast.sign.column)
        cols += [w.column for w in self.where]
        if self.split.time_column:
            cols.append(self.split.time_column)
        return list(dict.fromkeys(cols))
