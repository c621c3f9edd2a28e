"""Feature pipelines: one sklearn Pipeline(ColumnTransformer -> estimator) per candidate; an ensemble
candidate is Pipeline(ensemble) whose members are such pipelines, each with its own preprocessing.

The pipeline's input columns are the ONNX input names (``sluice.features.onnx_input_names``) and
its input frame is built from ``sluice.features.build_feed``, the function serving uses, so the
native model and the exported graph see the same values (dates expanded the same way, numbers as
float32, missing strings as ``""``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_array, check_is_fitted

from sluice.errors import SpecError
from sluice.features import build_feed, date_input_names
from sluice.specs import EstimatorSpec, FeatureSpec, ModelSpec
from training.estimators import (
    LINEAR,
    Preprocessing,
    ensemble_members,
    estimator_params,
    make_estimator,
    preprocessing_for,
)

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


# -- pipeline -------------------------------------------------------------------------------------


def _numbers(prep: Preprocessing) -> Pipeline:
    """Missing numbers (a blank total in the churn file) are imputed inside the graph."""
    steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if prep.scale:
        steps += [("log", SignedLog1p()), ("scale", StandardScaler())]
    return Pipeline(steps)


def _date_parts(prep: Preprocessing) -> Pipeline:
    steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if prep.scale:
        steps.append(("scale", StandardScaler()))
    return Pipeline(steps)


def _empty_text() -> OneHotEncoder:
    """1 where the text is empty. Without it an empty note is only the absence of every term, which a
    linear model cannot tell from a note of unseen words, and a forest rarely draws; yet a missing
    note says much (on the household file, bank transfers and pocket money are the ones left blank)."""
    return OneHotEncoder(categories=[np.array([""], dtype=object)], handle_unknown="ignore", dtype=np.float32)


def build_preprocessor(features: Iterable[FeatureSpec], prep: Preprocessing = LINEAR) -> ColumnTransformer:
    transformers: list[tuple[str, Any, Any]] = []
    text_params = {**TEXT_PARAMS, "max_features": prep.text_max_features}
    if prep.text_counts:
        text_params.update(use_idf=False, norm=None)
    for f in features:
        if f.kind == "text":
            # A single column name (not a list) hands the vectorizer the 1-D text it expects.
            transformers.append((f"text_{f.name}", TfidfVectorizer(**text_params), f.name))
            transformers.append((f"empty_{f.name}", _empty_text(), [f.name]))
        elif f.kind == "categorical":
            transformers.append(
                (f"cat_{f.name}", OneHotEncoder(handle_unknown="ignore", dtype=np.float32), [f.name])
            )
        elif f.kind == "numeric":
            transformers.append((f"num_{f.name}", _numbers(prep), [f.name]))
        elif f.kind == "date":
            parts = date_input_names(f.name, f.date_parts)
            transformers.append((f"date_{f.name}", _date_parts(prep), parts))
        else:  # pragma: no cover - FeatureKind is a closed Literal
            raise SpecError(f"features: unsupported kind {f.kind!r} for {f.name!r}")
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0 if prep.dense else 0.3)


def build_pipeline(spec: ModelSpec, candidate: EstimatorSpec) -> Pipeline:
    """Features -> estimator for one candidate of ``spec`` (the spec's task, seed and metric); for an
    ensemble, Pipeline(ensemble of such pipelines)."""
    estimator = make_estimator(candidate, spec.random_state, spec.task, spec.effective_metric)
    prep = preprocessing_for(spec.task, candidate.name)
    if prep is None:
        members, _ = ensemble_members(candidate, spec.task)
        estimator.set_params(members=[build_pipeline(spec, m) for m in members])
        return Pipeline([("model", estimator)])
    return Pipeline([("features", build_preprocessor(spec.features, prep)), ("model", estimator)])


def feature_count(pipeline: Pipeline, frame: pd.DataFrame) -> int:
    """Columns the estimator sees for ``frame`` (an ensemble: summed over its members)."""
    first = pipeline.steps[0][1]
    if len(pipeline.steps) > 1:
        return int(first.transform(frame[:1]).shape[1])
    return sum(feature_count(member, frame) for member in getattr(first, "members_", []))


def pipeline_params(spec: ModelSpec, candidate: EstimatorSpec) -> dict[str, Any]:
    """What was trained, for the registry: estimator parameters and preprocessing choices (an
    ensemble: its weights, and each member's)."""
    prep = preprocessing_for(spec.task, candidate.name)
    if prep is None:
        members, weights = ensemble_members(candidate, spec.task)
        return {
            "estimator": candidate.name,
            "estimator_params": {"weights": weights},
            "members": [pipeline_params(spec, m) for m in members],
        }
    text = {k: (list(v) if isinstance(v, tuple) else v) for k, v in TEXT_PARAMS.items() if k != "dtype"}
    numeric = ["median imputation", *(["signed_log1p", "standard scaling"] if prep.scale else [])]
    return {
        "estimator": candidate.name,
        "estimator_params": estimator_params(candidate, spec.random_state, spec.task, spec.effective_metric),
        "text": {
            **text,
            "max_features": prep.text_max_features,
            "weights": "counts" if prep.text_counts else "tf-idf",
            "empty_indicator": True,
        },
        "categorical": {"encoder": "one_hot", "handle_unknown": "ignore"},
        "numeric": numeric,
        "date": {
            "parts": {f.name: ", ".join(f.date_parts) for f in spec.features if f.kind == "date"},
            "steps": numeric[:1] + numeric[2:],
        },
        "dense": prep.dense,
    }


# -- records and frames ---------------------------------------------------------------------------


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


def answers(pipeline: Pipeline, task: str, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The native pipeline's answers, keyed as in a parity batch: classification ``labels`` and
    ``probabilities``; regression ``values``; anomaly ``scores`` (higher = more anomalous, i.e. the
    negated ``decision_function``, as the exported graph computes)."""
    if task == "classification":
        proba = np.asarray(pipeline.predict_proba(frame), dtype=np.float64)
        return {"labels": np.asarray(pipeline.classes_)[np.argmax(proba, axis=1)], "probabilities": proba}
    if task == "anomaly":
        return {"scores": -np.asarray(pipeline.decision_function(frame), dtype=np.float64).reshape(-1)}
    return {"values": np.asarray(pipeline.predict(frame), dtype=np.float64).reshape(-1)}
