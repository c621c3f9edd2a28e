"""Candidate search: every candidate of a spec cross-validated on the train part, best mean CV first.

Folds (``spec.split.cv_folds``, seeded):

- by time (``spec.split.time_column``): the train part is in time order and ``TimeSeriesSplit``
  validates each fold on rows later than all of its training rows;
- else stratified on the class (classification) or the anomaly label, plain ``KFold`` for regression.

``spec.search.max_rows`` caps the rows used for CV (an even sample in time order when by time).
``spec.search.time_budget_s`` bounds the search: the first candidate always completes; a later one is
not started, or stopped between folds, once the budget is spent, and recorded as dropped with the
reason. An unlabelled anomaly spec has no metric: nothing is cross-validated and the candidates are
tried in the spec's order.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit

from sluice.specs import EstimatorSpec, ModelSpec, greater_is_better
from training.metrics import anomaly_metrics, classification_metrics, regression_metrics
from training.pipeline import answers, build_pipeline

Folds = list[tuple[np.ndarray, np.ndarray]]


@dataclass
class CandidateOutcome:
    """One candidate's cross-validation: mean metrics, time spent, why it was dropped (if it was),
    and, for regression, the out-of-fold residuals (truth - prediction) that calibrate the interval."""

    candidate: EstimatorSpec
    cv: dict[str, float] = field(default_factory=dict)
    fit_s: float = 0.0
    reason: str | None = None
    residuals: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def cv_rows(spec: ModelSpec, n: int) -> np.ndarray:
    """Positions of the train part used for CV: all, or ``search.max_rows`` of them."""
    limit = spec.search.max_rows
    if limit is None or n <= limit:
        return np.arange(n)
    if spec.split.time_column:
        return np.unique(np.linspace(0, n - 1, limit).round().astype(int))
    return np.sort(np.random.default_rng(spec.random_state).choice(n, limit, replace=False))


def cv_folds(spec: ModelSpec, y: np.ndarray | None, n: int) -> Folds:
    """(train, validation) positions over ``n`` rows in the train part's order."""
    k = spec.split.cv_folds
    index = np.arange(n)
    if spec.split.time_column:
        return list(TimeSeriesSplit(n_splits=k).split(index))
    if y is not None and spec.task in ("classification", "anomaly"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a class rarer than k: some folds lack it
            return list(StratifiedKFold(k, shuffle=True, random_state=spec.random_state).split(index, y))
    return list(KFold(k, shuffle=True, random_state=spec.random_state).split(index))


def fold_metrics(
    spec: ModelSpec, pipeline: Any, x_valid: pd.DataFrame, y_valid: Any, x_train: pd.DataFrame
) -> tuple[dict[str, float], np.ndarray | None]:
    """Metrics of a fitted pipeline on validation rows (and regression residuals)."""
    native = answers(pipeline, spec.task, x_valid)
    if spec.task == "classification":
        classes = [str(c) for c in pipeline.classes_]
        return classification_metrics(y_valid, native["probabilities"], classes, spec.positive_label), None
    if spec.task == "regression":
        return regression_metrics(y_valid, native["values"]), np.asarray(y_valid) - native["values"]
    threshold = anomaly_threshold(answers(pipeline, "anomaly", x_train)["scores"], spec)
    return anomaly_metrics(native["scores"], threshold, y_valid), None


def anomaly_threshold(train_scores: np.ndarray, spec: ModelSpec) -> float:
    """The score flagging ``anomaly.contamination`` of the training rows."""
    contamination = spec.anomaly.contamination if spec.anomaly else 0.05
    return float(np.quantile(train_scores, 1.0 - contamination))


def _mean(per_fold: Sequence[dict[str, float]]) -> dict[str, float]:
    names = dict.fromkeys(name for m in per_fold for name in m)
    return {name: float(np.mean([m[name] for m in per_fold if name in m])) for name in names}


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def cross_validate(
    spec: ModelSpec,
    candidate: EstimatorSpec,
    x: pd.DataFrame,
    y: np.ndarray | None,
    folds: Folds,
    deadline: float | None = None,
) -> CandidateOutcome:
    """Fit and score ``candidate`` on every fold; stop (dropped) when ``deadline`` passes."""
    outcome = CandidateOutcome(candidate)
    per_fold: list[dict[str, float]] = []
    residuals: list[np.ndarray] = []
    t0 = time.perf_counter()
    try:
        for i, (tr, va) in enumerate(folds):
            if deadline is not None and time.perf_counter() > deadline:
                outcome.reason = f"time budget: stopped after {i} of {len(folds)} folds"
                break
            y_tr = None if y is None else y[tr]
            if spec.task == "classification" and len(set(y_tr.tolist())) < 2:
                continue  # an early time-ordered fold may hold a single class
            pipeline = build_pipeline(spec, candidate)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                pipeline.fit(x.iloc[tr], y_tr)
            metrics, res = fold_metrics(spec, pipeline, x.iloc[va], None if y is None else y[va], x.iloc[tr])
            per_fold.append(metrics)
            if res is not None:
                residuals.append(res)
    except Exception as exc:  # a candidate that cannot fit is dropped, the others go on
        outcome.reason = _reason(exc)
    outcome.fit_s = round(time.perf_counter() - t0, 3)
    if outcome.ok:
        outcome.cv = _mean(per_fold)
        metric = spec.effective_metric
        if metric is not None and metric not in outcome.cv:
            outcome.reason = f"{metric} could not be computed on any fold"
        outcome.residuals = np.concatenate(residuals) if residuals else None
    return outcome


def search_budget(spec: ModelSpec) -> float:
    """The spec's budget, capped by the deployment's ``SLUICE_SEARCH_BUDGET_SECONDS`` (0: no cap)."""
    from sluice.settings import get_settings

    cap = get_settings().search_budget_seconds
    return min(spec.search.time_budget_s, cap) if cap > 0 else spec.search.time_budget_s


def search(spec: ModelSpec, x: pd.DataFrame, y: np.ndarray | None) -> list[CandidateOutcome]:
    """Cross-validate every candidate of ``spec`` on the train part (``x``, ``y`` in its order)."""
    rows = cv_rows(spec, len(x))
    x_cv = x.iloc[rows].reset_index(drop=True)
    y_cv = None if y is None else y[rows]
    folds = cv_folds(spec, y_cv, len(rows))
    start = time.perf_counter()
    budget = search_budget(spec)
    deadline = start + budget
    outcomes = []
    for i, candidate in enumerate(spec.candidate_specs):
        if i and time.perf_counter() > deadline:
            spent = f"{time.perf_counter() - start:.0f} s spent of {budget:g} s"
            outcomes.append(CandidateOutcome(candidate, reason=f"time budget: not started ({spent})"))
            continue
        outcomes.append(cross_validate(spec, candidate, x_cv, y_cv, folds, deadline if i else None))
    return outcomes


def ranked(spec: ModelSpec, outcomes: Sequence[CandidateOutcome]) -> list[CandidateOutcome]:
    """Candidates that completed CV, best mean ``effective_metric`` first (ties: spec order)."""
    metric = spec.effective_metric
    ok = [o for o in outcomes if o.ok]
    if metric is None:
        return ok
    sign = -1.0 if greater_is_better(metric) else 1.0
    return sorted(ok, key=lambda o: sign * o.cv[metric])
