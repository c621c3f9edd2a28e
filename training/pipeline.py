"""Feature pipelines and candidate estimators: one sklearn Pipeline(ColumnTransformer -> estimator).

The pipeline's input columns are the ONNX input names (``sluice.features.onnx_input_names``) and
its input frame is built from ``sluice.features.build_feed``, the function serving uses, so the
native model and the exported graph see the same values (dates expanded the same way, numbers as
float32, missing strings as ``""``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, OneToOneFeatureMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_array, check_is_fitted

from sluice.errors import SpecError, TrainingError
from sluice.features import build_feed, date_input_names
from sluice.specs import EstimatorSpec, FeatureSpec, ModelSpec

# Tokens are runs of 2+ ASCII letters, digits or underscores. scikit-learn's default pattern
# ``(?u)\b\w\w+\b`` cannot be reproduced by onnxruntime's re2 tokenizer (skl2onnx silently swaps
# it for ``[a-zA-Z0-9_]+``, which keeps 1-char tokens and breaks n-grams), so both sides use this
# one pattern: Python's ``re`` and re2 agree on it.
TOKEN_PATTERN = r"[a-zA-Z0-9_]{2,}"

TEXT_PARAMS: dict[str, Any] = {
    "token_pattern": TOKEN_PATTERN,
    "lowercase": True,
    "ngram_range": (1, 1),
    "min_df": 1,
    "max_features": 20000,
    "dtype": np.float32,
    # sublinear_tf converts to log(tf + 1) in ONNX but is 1 + log(tf) in scikit-learn: keep it off.
    "sublinear_tf": False,
}


class SignedLog1p(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """``sign(x) * log1p(|x|)``: tames heavy-tailed amounts (1 to 10^6) for linear models.

    Stateless; exported by a small registered converter (training.export).
    """

    def fit(self, X: Any, y: Any = None) -> SignedLog1p:
        X = check_array(X, dtype=np.float64)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        X = check_array(X, dtype=np.float64)
        return np.sign(X) * np.log1p(np.abs(X))


# -- estimator registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EstimatorEntry:
    """One candidate estimator: how to build it and the defaults the spec's params override."""

    factory: Callable[..., ClassifierMixin]
    defaults: dict[str, Any] = field(default_factory=dict)
    random_state_param: str | None = "random_state"

    def build(self, params: Mapping[str, Any], random_state: int) -> ClassifierMixin:
        kwargs = {**self.defaults, **params}
        if self.random_state_param:
            kwargs.setdefault(self.random_state_param, random_state)
        return self.factory(**kwargs)


ESTIMATORS: dict[str, EstimatorEntry] = {
    "logistic_regression": EstimatorEntry(
        LogisticRegression,
        # class_weight None, not "balanced": over 5 holdout seeds of the household file (C=5) it scored
        # accuracy 0.739 / macro-F1 0.544 against 0.665 / 0.533, and "balanced" pushed confident
        # majority-class rows (a Food note) towards rare classes. A spec can still ask for it.
        defaults={"C": 1.0, "class_weight": None, "max_iter": 3000},
    ),
}


def make_estimator(spec: EstimatorSpec, random_state: int) -> ClassifierMixin:
    entry = ESTIMATORS.get(spec.name)
    if entry is None:
        raise SpecError(
            f"estimator.name: unknown estimator {spec.name!r}; known: {', '.join(sorted(ESTIMATORS))}"
        )
    try:
        return entry.build(spec.params, random_state)
    except TypeError as exc:
        raise SpecError(f"estimator.params: invalid parameter for {spec.name}: {exc}") from exc


def estimator_params(spec: EstimatorSpec, random_state: int) -> dict[str, Any]:
    """The effective (JSON-friendly) parameters of the estimator a spec asks for."""
    entry = ESTIMATORS[spec.name]
    params = {**entry.defaults, **spec.params}
    if entry.random_state_param:
        params.setdefault(entry.random_state_param, random_state)
    return params


# -- pipeline -------------------------------------------------------------------------------------


def build_preprocessor(features: Iterable[FeatureSpec]) -> ColumnTransformer:
    transformers: list[tuple[str, Any, Any]] = []
    for f in features:
        if f.kind == "text":
            # A single column name (not a list) hands the vectorizer the 1-D text it expects.
            transformers.append((f"text_{f.name}", TfidfVectorizer(**TEXT_PARAMS), f.name))
        elif f.kind == "categorical":
            transformers.append(
                (f"cat_{f.name}", OneHotEncoder(handle_unknown="ignore", dtype=np.float32), [f.name])
            )
        elif f.kind == "numeric":
            transformers.append(
                (f"num_{f.name}", Pipeline([("log", SignedLog1p()), ("scale", StandardScaler())]), [f.name])
            )
        elif f.kind == "date":
            transformers.append((f"date_{f.name}", StandardScaler(), date_input_names(f.name)))
        else:  # pragma: no cover - FeatureKind is a closed Literal
            raise SpecError(f"features: unsupported kind {f.kind!r} for {f.name!r}")
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.3)


def build_pipeline(spec: ModelSpec) -> Pipeline:
    return Pipeline(
        [
            ("features", build_preprocessor(spec.features)),
            ("model", make_estimator(spec.estimator, spec.random_state)),
        ]
    )


def pipeline_params(spec: ModelSpec) -> dict[str, Any]:
    """What was trained, for the registry: estimator parameters and preprocessing choices."""
    return {
        "estimator": spec.estimator.name,
        "estimator_params": estimator_params(spec.estimator, spec.random_state),
        "text": {k: (list(v) if isinstance(v, tuple) else v) for k, v in TEXT_PARAMS.items() if k != "dtype"},
        "categorical": {"encoder": "one_hot", "handle_unknown": "ignore"},
        "numeric": {"transform": "signed_log1p", "scaler": "standard"},
        "date": {"parts": "month, day, dayofweek, hour", "scaler": "standard"},
    }


# -- data preparation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedData:
    """Rows fit for training: features as records (the shape serving receives) and the target."""

    records: list[dict[str, Any]]
    y: np.ndarray
    merged_classes: list[str]
    dropped_rows: dict[str, int]


def _cell(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_records(df: pd.DataFrame, features: Iterable[FeatureSpec]) -> list[dict[str, Any]]:
    """DataFrame rows -> plain dicts of the feature fields (NA -> None, Timestamps -> datetimes)."""
    names = [f.name for f in features]
    cols = [df[n].tolist() for n in names]
    return [{n: _cell(v) for n, v in zip(names, row, strict=True)} for row in zip(*cols, strict=True)]


def feature_frame(records: Sequence[Mapping[str, Any]], features: Iterable[FeatureSpec]) -> pd.DataFrame:
    """The pipeline's input: one column per ONNX input, with exactly the values the ONNX feed holds."""
    feed = build_feed(records, features)
    columns: dict[str, Any] = {}
    for name, arr in feed.items():
        flat = arr.reshape(-1)
        columns[name] = flat.astype(object) if arr.dtype == object else flat.astype(np.float64)
    return pd.DataFrame(columns)


def prepare_data(spec: ModelSpec, df: pd.DataFrame) -> PreparedData:
    """Drop rows without a target (or with unusable numbers/dates), merge rare classes."""
    missing = [c for c in [spec.target, *(f.name for f in spec.features)] if c not in df.columns]
    if missing:
        raise TrainingError(f"{spec.name}: column(s) missing from the curated data: {', '.join(missing)}")
    dropped: dict[str, int] = {}
    target = df[spec.target].astype("string").str.strip()
    keep = target.notna() & (target != "")
    dropped["missing_target"] = int((~keep).sum())
    for f in spec.features:
        if f.kind == "numeric":
            values = pd.to_numeric(df[f.name], errors="coerce").astype("float64")
            ok = values.notna() & np.isfinite(values.fillna(0.0))
        elif f.kind == "date":
            ok = pd.to_datetime(df[f.name], errors="coerce").notna()
        else:
            continue
        dropped[f"missing_{f.name}"] = int((keep & ~ok).sum())
        keep &= ok
    df = df.loc[keep.to_numpy()]
    y = target[keep].astype(str).to_numpy(dtype=object)

    counts = pd.Series(y).value_counts()
    rare = sorted(str(c) for c in counts[counts < spec.min_class_rows].index if c != spec.rare_label)
    if rare:
        y = np.where(np.isin(y, rare), spec.rare_label, y).astype(object)
    # Stratification needs 2 rows per class; a merged bucket that is still smaller is dropped.
    counts = pd.Series(y).value_counts()
    tiny = set(counts[counts < 2].index)
    if tiny:
        mask = ~np.isin(y, list(tiny))
        dropped["tiny_class"] = int((~mask).sum())
        df, y = df.loc[mask], y[mask]
    classes = sorted(set(y))
    if len(classes) < 2:
        raise TrainingError(f"{spec.name}: need at least 2 classes of {spec.target!r}, found {classes}")
    if len(y) < 10:
        raise TrainingError(f"{spec.name}: only {len(y)} usable rows; need at least 10")
    return PreparedData(records=to_records(df, spec.features), y=y, merged_classes=rare, dropped_rows=dropped)
