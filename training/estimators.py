"""Candidate estimators per task: how each is built, its defaults and the preprocessing it needs.

Every entry converts to ONNX (skl2onnx, and onnxmltools for XGBoost; the converters are registered in
``training.export``) and is covered by the parity contract test. Defaults are sized for a Lambda:
100-200 trees, one thread, a fixed seed. A spec's ``params`` override the defaults.

Two small subclasses make estimators fit the pipeline:

- ``StringLabelXGBClassifier``: XGBoost wants labels 0..k-1; this one encodes string labels, turns
  ``class_weight`` into sample weights and exposes the labels as ``classes_`` (so the ONNX graph's
  ``label`` output is the class name, as for scikit-learn's classifiers).
- ``SubsampledOneClassSVM``: fitting is quadratic in the rows, so it fits a seeded sample of at most
  ``max_samples`` rows (the graph holds the support vectors, so this also bounds its size).

``voting`` (classification and regression) is an ensemble of other candidates: each member is a whole
pipeline with its own preprocessing (a linear model's TF-IDF and scaling beside a forest's raw counts),
and the ensemble averages their probabilities (``SoftVotingClassifier``) or values
(``AveragingRegressor``) with the spec's weights. Its params name the members like candidates:
``{members: [logistic_regression, {name: extra_trees, params: {...}}], weights: [1, 1]}``. The members
are built by ``training.pipeline.build_pipeline``; ``make_estimator`` builds them bare (validation and
the registry's parameters). The search cross-validates it like any candidate, so it is chosen only when
the blend beats every single model on the spec's metric.

LocalOutlierFactor(novelty=True) converts too but is not offered: its graph computes distances in
float32 by expansion (|a|^2 + |b|^2 - 2ab), and on data with repeated rows (the shuttle sensors) its
scores differed from scikit-learn's by up to 0.5% on a few rows, outside the parity tolerance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    IsolationForest,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import LabelEncoder
from sklearn.svm import OneClassSVM
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted
from xgboost import XGBClassifier, XGBRegressor

from sluice.errors import SpecError
from sluice.specs import EstimatorSpec, Task

# -- estimators that need a small adaptation ---------------------------------------------------------


class StringLabelXGBClassifier(XGBClassifier):
    """XGBClassifier on string labels, with scikit-learn's ``class_weight``."""

    def __init__(self, *, class_weight: str | dict[str, float] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.class_weight = class_weight

    @property
    def classes_(self) -> np.ndarray:
        labels = self.__dict__.get("_labels")
        if labels is not None:
            return labels
        check_is_fitted(self, "n_classes_")
        return np.arange(self.n_classes_)

    def get_xgb_params(self) -> dict[str, Any]:
        params = super().get_xgb_params()
        params.pop("class_weight", None)
        return params

    def fit(self, X: Any, y: Any, **kwargs: Any) -> StringLabelXGBClassifier:
        self.__dict__.pop("_labels", None)
        encoder = LabelEncoder().fit(y)
        if self.class_weight is not None and "sample_weight" not in kwargs:
            kwargs["sample_weight"] = compute_sample_weight(self.class_weight, y)
        super().fit(X, encoder.transform(y), **kwargs)
        self._labels = encoder.classes_.astype(object)
        return self

    def predict(self, X: Any, **kwargs: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X, **kwargs), axis=1)]


class SubsampledOneClassSVM(OneClassSVM):
    """OneClassSVM fitted on at most ``max_samples`` rows drawn with ``random_state``."""

    def __init__(
        self,
        *,
        kernel: str = "rbf",
        gamma: str | float = "scale",
        nu: float = 0.05,
        tol: float = 1e-3,
        max_samples: int = 2000,
        random_state: int | None = None,
    ):
        super().__init__(kernel=kernel, gamma=gamma, nu=nu, tol=tol)
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> SubsampledOneClassSVM:
        X = np.asarray(X)
        if len(X) > self.max_samples:
            rng = np.random.default_rng(self.random_state)
            X = X[np.sort(rng.choice(len(X), self.max_samples, replace=False))]
        return super().fit(X)


class _Blend(BaseEstimator):
    """Members fitted on the same rows and averaged with ``weights`` (equal when None).

    Members are fitted in place, as a Pipeline fits its steps (``build_pipeline`` makes fresh ones)."""

    def __init__(self, members: Sequence[Any] = (), weights: Sequence[float] | None = None):
        self.members = members
        self.weights = weights

    def _fit_members(self, X: Any, y: Any) -> None:
        if len(self.members) < 2:
            raise ValueError("an ensemble needs at least 2 members")
        weights = np.ones(len(self.members)) if self.weights is None else np.asarray(self.weights, float)
        if weights.shape != (len(self.members),) or not (weights > 0).all():
            raise ValueError("weights: one positive number per member")
        self.weights_ = weights / weights.sum()
        self.members_ = [member.fit(X, y) for member in self.members]


class SoftVotingClassifier(ClassifierMixin, _Blend):
    """The weighted mean of the members' class probabilities; the label is its argmax."""

    def fit(self, X: Any, y: Any) -> SoftVotingClassifier:
        self._fit_members(X, y)
        classes = [np.asarray(m.classes_).astype(str) for m in self.members_]
        if any(not np.array_equal(c, classes[0]) for c in classes[1:]):
            raise ValueError("ensemble members disagree on the classes")
        self.classes_ = np.asarray(self.members_[0].classes_)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "members_")
        probabilities = [np.asarray(m.predict_proba(X), dtype=np.float64) for m in self.members_]
        return sum(w * p for w, p in zip(self.weights_.tolist(), probabilities, strict=True))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class AveragingRegressor(RegressorMixin, _Blend):
    """The weighted mean of the members' predictions."""

    def fit(self, X: Any, y: Any) -> AveragingRegressor:
        self._fit_members(X, y)
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "members_")
        values = [np.asarray(m.predict(X), dtype=np.float64).reshape(-1) for m in self.members_]
        return sum(w * v for w, v in zip(self.weights_.tolist(), values, strict=True))


# -- the registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocessing:
    """What an estimator needs from the feature step.

    ``scale``: numbers and date parts through signed log1p + standard scaling (linear and distance
    models); trees take them as they are (fewer float operations, so native and ONNX split alike).
    ``dense``: trees and XGBoost get a dense matrix (XGBoost reads a sparse matrix's absent entries as
    missing, where the ONNX graph sees zeros) and a capped text vocabulary to keep it small.
    ``text_counts``: trees get raw term counts, not TF-IDF weights. Counts are integers on both sides,
    while a TF-IDF weight computed by the graph can differ from scikit-learn's in the last bit; XGBoost
    splits at values seen in training (``x < cut``), so such a bit flipped a branch (measured: one
    household holdout row off by 28 in amount). Trees do not need the weighting anyway.
    """

    scale: bool
    dense: bool
    text_max_features: int
    text_counts: bool = False


LINEAR = Preprocessing(scale=True, dense=False, text_max_features=20000)
TREES = Preprocessing(scale=False, dense=True, text_max_features=500, text_counts=True)
DISTANCE = Preprocessing(scale=True, dense=True, text_max_features=500)


@dataclass(frozen=True)
class EstimatorEntry:
    """One candidate estimator: how to build it and the defaults the spec's params override.
    ``preprocessing`` is None for an ensemble: each member brings its own."""

    factory: Callable[..., BaseEstimator]
    preprocessing: Preprocessing | None
    defaults: dict[str, Any] = field(default_factory=dict)
    random_state_param: str | None = "random_state"
    class_weight: bool = False  # accepts class_weight (classification imbalance)

    def params(self, overrides: Mapping[str, Any], random_state: int) -> dict[str, Any]:
        params = {**self.defaults, **overrides}
        if self.random_state_param:
            params.setdefault(self.random_state_param, random_state)
        return params


_FOREST = {"n_estimators": 200, "min_samples_leaf": 2, "max_features": "sqrt", "n_jobs": 1}
_HGB = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 31, "early_stopping": False}
_XGB = {
    "n_estimators": 200,
    "max_depth": 6,
    "learning_rate": 0.1,
    "subsample": 0.9,
    "colsample_bytree": 0.8,
    "tree_method": "hist",
    "n_jobs": 1,
    "verbosity": 0,
}
VOTING = "voting"

ESTIMATORS: dict[Task, dict[str, EstimatorEntry]] = {
    "classification": {
        "logistic_regression": EstimatorEntry(
            LogisticRegression, LINEAR, {"C": 1.0, "max_iter": 3000}, class_weight=True
        ),
        "random_forest": EstimatorEntry(RandomForestClassifier, TREES, _FOREST, class_weight=True),
        "extra_trees": EstimatorEntry(ExtraTreesClassifier, TREES, _FOREST, class_weight=True),
        "hist_gradient_boosting": EstimatorEntry(
            HistGradientBoostingClassifier, TREES, _HGB, class_weight=True
        ),
        "xgboost": EstimatorEntry(StringLabelXGBClassifier, TREES, _XGB, class_weight=True),
        VOTING: EstimatorEntry(
            SoftVotingClassifier,
            None,
            {"members": ["logistic_regression", "random_forest"], "weights": None},
            random_state_param=None,
        ),
    },
    "regression": {
        "ridge": EstimatorEntry(Ridge, LINEAR, {"alpha": 1.0}, random_state_param=None),
        "random_forest": EstimatorEntry(RandomForestRegressor, TREES, {**_FOREST, "max_features": 0.5}),
        "extra_trees": EstimatorEntry(ExtraTreesRegressor, TREES, {**_FOREST, "max_features": 0.5}),
        "hist_gradient_boosting": EstimatorEntry(HistGradientBoostingRegressor, TREES, _HGB),
        "xgboost": EstimatorEntry(XGBRegressor, TREES, _XGB),
        VOTING: EstimatorEntry(
            AveragingRegressor,
            None,
            {"members": ["ridge", "random_forest"], "weights": None},
            random_state_param=None,
        ),
    },
    "anomaly": {
        "isolation_forest": EstimatorEntry(IsolationForest, TREES, {"n_estimators": 200, "n_jobs": 1}),
        "one_class_svm": EstimatorEntry(SubsampledOneClassSVM, DISTANCE, {"nu": 0.05, "max_samples": 2000}),
    },
}

#: Metrics that weigh every class alike: classifiers then weigh rows by inverse class frequency.
#: Accuracy-like and ranking metrics keep unweighted rows (on the household file "balanced" weights
#: cost about 7 points of accuracy: confident majority-class rows were pushed towards rare classes).
CLASS_BALANCED_METRICS = frozenset({"balanced_accuracy", "f1_macro", "f1"})


def _entry(task: Task, name: str) -> EstimatorEntry:
    known = ESTIMATORS.get(task, {})
    if name not in known:
        raise SpecError(
            f"candidates.name: unknown {task} estimator {name!r}; known: {', '.join(sorted(known))}"
        )
    return known[name]


def preprocessing_for(task: Task, name: str) -> Preprocessing | None:
    return _entry(task, name).preprocessing


def ensemble_members(spec: EstimatorSpec, task: Task) -> tuple[list[EstimatorSpec], list[float] | None]:
    """The members and weights of a ``voting`` candidate (SpecError naming what is wrong)."""
    params = _entry(task, spec.name).params(spec.params, 0)
    where = f"candidates.params: {spec.name}"
    unknown = sorted(set(params) - {"members", "weights"})
    if unknown:
        raise SpecError(f"{where}: unknown parameter(s) {', '.join(unknown)}; it takes members and weights")
    raw = params["members"]
    if not isinstance(raw, list) or len(raw) < 2:
        raise SpecError(f"{where}: members must list at least 2 candidates")
    members = []
    for item in raw:
        try:
            member = EstimatorSpec.model_validate({"name": item} if isinstance(item, str) else item)
        except ValueError as exc:
            raise SpecError(f"{where}: invalid member {item!r}: {exc}".splitlines()[0]) from exc
        if _entry(task, member.name).preprocessing is None:
            raise SpecError(f"{where}: a member cannot itself be an ensemble ({member.name})")
        members.append(member)
    weights = params["weights"]
    if weights is not None:
        ok = isinstance(weights, list) and len(weights) == len(members)
        numbers = all(isinstance(w, int | float) and not isinstance(w, bool) and w > 0 for w in weights)
        if not ok or not numbers:
            raise SpecError(f"{where}: weights must be one positive number per member")
        weights = [float(w) for w in weights]
    return members, weights


def estimator_params(
    spec: EstimatorSpec, random_state: int, task: Task = "classification", metric: str | None = None
) -> dict[str, Any]:
    """The effective (JSON-friendly) parameters of the estimator a candidate asks for (an ensemble's:
    each member's effective parameters, and the weights)."""
    entry = _entry(task, spec.name)
    if entry.preprocessing is None:
        members, weights = ensemble_members(spec, task)
        return {
            "members": [
                {"name": m.name, "params": estimator_params(m, random_state, task, metric)} for m in members
            ],
            "weights": weights,
        }
    params = entry.params(spec.params, random_state)
    if entry.class_weight and metric in CLASS_BALANCED_METRICS:
        params.setdefault("class_weight", "balanced")
    return params


def make_estimator(
    spec: EstimatorSpec, random_state: int, task: Task = "classification", metric: str | None = None
) -> BaseEstimator:
    """A fresh estimator for ``spec`` (SpecError naming the candidate for unknown names or params).
    An ensemble's members are bare estimators here; ``build_pipeline`` gives each its features."""
    entry = _entry(task, spec.name)
    if entry.preprocessing is None:
        members, weights = ensemble_members(spec, task)
        return entry.factory(
            members=[make_estimator(m, random_state, task, metric) for m in members], weights=weights
        )
    try:
        return entry.factory(**estimator_params(spec, random_state, task, metric))
    except TypeError as exc:
        raise SpecError(f"candidates.params: invalid parameter for {spec.name}: {exc}") from exc
