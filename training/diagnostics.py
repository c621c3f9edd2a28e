"""The numbers behind a model version's report: computed once from holdout predictions, stored in
``metadata.json`` under ``diagnostics`` and drawn by ``training.report``.

Pure, deterministic functions (numpy, pandas, scikit-learn). Their results are JSON-friendly (plain
``int``, ``float``, ``str`` and lists) and small: lists are capped so that a report stays a few
hundred kilobytes whatever the holdout size or the number of classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

CALIBRATION_BINS = 10
RESIDUAL_BINS = 20
SCORE_BINS = 30
MAX_CLASSES = 30
OTHER_LABEL = "(other)"


def _floats(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-D float array; raises a ValueError naming ``name`` on NaN or infinity."""
    array = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: {int(np.sum(~np.isfinite(array)))} values are NaN or infinite")
    return array


ArrayLike = Sequence[Any] | np.ndarray | pd.Series


def _same_length(**arrays: ArrayLike) -> int:
    """The common length of ``arrays``; a ValueError naming them when lengths differ or are 0."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"lengths differ: {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError(f"no rows in {', '.join(lengths)}")
    return n


def _histogram(values: np.ndarray, bins: int, lo: float, hi: float) -> tuple[list[float], np.ndarray]:
    """Edges and counts of ``bins`` equal-width bins on [lo, hi] (widened when lo == hi)."""
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    return [float(e) for e in edges], np.histogram(values, bins=edges)[0]


# ---------------------------------------------------------------------------------- classification


def _label_order(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[Any]) -> list[Any]:
    """The model's classes, then any label seen only in the holdout (sorted by its text)."""
    known = list(classes)
    seen = set(known)
    extra = {v for v in (*y_true.tolist(), *y_pred.tolist()) if v not in seen}
    return known + sorted(extra, key=str)


def _capped_labels(y_true: np.ndarray, labels: list[Any], max_classes: int) -> list[Any]:
    """At most ``max_classes`` labels: the most frequent true labels (ties: model order)."""
    if len(labels) <= max_classes:
        return labels
    support = pd.Series(y_true).value_counts()
    rank = sorted(range(len(labels)), key=lambda i: (-int(support.get(labels[i], 0)), i))
    keep = set(rank[:max_classes])
    return [label for i, label in enumerate(labels) if i in keep]


def _other_name(names: list[str]) -> str:
    other = OTHER_LABEL
    while other in names:
        other = f"({other})"
    return other


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: list[Any], shown: list[Any]) -> dict:
    """The confusion matrix (rows: actual, columns: predicted); labels beyond ``shown`` are merged
    into one ``(other)`` row and column, so the matrix always sums to the holdout size."""
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    names = [str(label) for label in shown]
    if len(shown) < len(labels):
        index = [labels.index(label) for label in shown]
        rest = [i for i in range(len(labels)) if i not in set(index)]
        groups = [[i] for i in index] + [rest]
        matrix = np.array([[matrix[np.ix_(r, c)].sum() for c in groups] for r in groups])
        names.append(_other_name(names))
    return {"labels": names, "matrix": matrix.astype(int).tolist()}


def _per_class(y_true: np.ndarray, y_pred: np.ndarray, labels: list[Any], shown: list[Any]) -> list[dict]:
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return [
        {
            "label": str(label),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
        if label in shown
    ]


def reliability_bins(
    predicted: np.ndarray, observed: np.ndarray, n_bins: int = CALIBRATION_BINS
) -> list[dict]:
    """Equal-width probability bins on [0, 1] (as ``sklearn.calibration.calibration_curve``: the
    first bin holds 0, each bin holds its upper edge); empty bins are left out."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], predicted)
    count = np.bincount(ids, minlength=n_bins)
    sum_predicted = np.bincount(ids, weights=predicted, minlength=n_bins)
    sum_observed = np.bincount(ids, weights=observed.astype(np.float64), minlength=n_bins)
    return [
        {
            "lower": float(edges[i]),
            "upper": float(edges[i + 1]),
            "mean_predicted": float(sum_predicted[i] / count[i]),
            "observed": float(sum_observed[i] / count[i]),
            "count": int(count[i]),
        }
        for i in range(n_bins)
        if count[i]
    ]


def _calibration(y_true: np.ndarray, proba: Any, classes: Sequence[Any]) -> dict:
    """Binary: P(positive class) vs the positive rate (positive: ``classes[1]``); multiclass: the
    top-class confidence vs the accuracy of the top class."""
    shape = np.shape(proba)
    if shape != (len(y_true), len(classes)):
        raise ValueError(f"proba: shape {shape}, expected {(len(y_true), len(classes))} (rows, classes)")
    proba = _floats(proba, "proba").reshape(shape)
    if len(classes) == 2:
        predicted, observed = proba[:, 1], y_true == classes[1]
        kind = "positive_class"
    else:
        top = proba.argmax(axis=1)
        predicted = proba[np.arange(len(top)), top]
        observed = np.asarray(classes)[top] == y_true
        kind = "top_class"
    return {"kind": kind, "bins": reliability_bins(np.clip(predicted, 0.0, 1.0), observed)}


def classification_diagnostics(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    proba: Any | None,
    classes: Sequence[Any],
    *,
    max_classes: int = MAX_CLASSES,
) -> dict[str, Any]:
    """Confusion matrix, per-class precision/recall/F1/support and calibration of a classifier.

    ``proba``: the (n, len(classes)) class probabilities, columns in the order of ``classes`` (the
    model's ``classes_``), or None (no calibration). Labels are reported as text. With more than
    ``max_classes`` labels, the most frequent true labels are kept and the rest merged into
    ``(other)`` in the confusion matrix (and left out of ``per_class``).
    """
    y_true_a, y_pred_a = np.asarray(y_true), np.asarray(y_pred)
    _same_length(y_true=y_true_a, y_pred=y_pred_a)
    if len(classes) < 2:
        raise ValueError(f"classes: need at least 2, got {list(classes)}")
    labels = _label_order(y_true_a, y_pred_a, classes)
    shown = _capped_labels(y_true_a, labels, max_classes)
    out: dict[str, Any] = {
        "confusion_matrix": _confusion(y_true_a, y_pred_a, labels, shown),
        "per_class": _per_class(y_true_a, y_pred_a, labels, shown),
    }
    if proba is not None:
        out["calibration"] = _calibration(y_true_a, proba, classes)
    return out


# ---------------------------------------------------------------------------------------- regression


def regression_diagnostics(
    y_true: Sequence[float], y_pred: Sequence[float], *, max_points: int = 500, seed: int = 0
) -> dict[str, Any]:
    """Actual vs predicted (a seeded sample of at most ``max_points`` pairs, in holdout order) and
    the histogram of all residuals (actual - predicted); ``n``: the holdout size."""
    actual = _floats(y_true, "y_true")
    predicted = _floats(y_pred, "y_pred")
    n = _same_length(y_true=actual, y_pred=predicted)
    index = np.arange(n)
    if n > max_points:
        index = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
    residual = actual - predicted
    edges, counts = _histogram(residual, RESIDUAL_BINS, float(residual.min()), float(residual.max()))
    return {
        "residuals": {
            "n": n,
            "actual": [float(v) for v in actual[index]],
            "predicted": [float(v) for v in predicted[index]],
            "histogram": {"edges": edges, "counts": [int(c) for c in counts]},
        }
    }


# ------------------------------------------------------------------------------------------ anomaly


def _anomaly_labels(labels: Any, n: int) -> np.ndarray:
    values = pd.Series(np.asarray(labels).ravel())
    if len(values) != n:
        raise ValueError(f"labels: {len(values)} values for {n} scores")
    allowed = {0, 1}  # True == 1, False == 0
    unknown = set(values.dropna().unique().tolist()) - allowed
    if values.isna().any() or unknown:
        raise ValueError(f"labels: expected 0/1 or booleans (1 = anomaly), got {sorted(unknown, key=str)}")
    return values.to_numpy().astype(bool)


def anomaly_diagnostics(
    scores: Sequence[float], threshold: float, labels: Any | None = None
) -> dict[str, Any]:
    """Histogram of anomaly scores (higher = more anomalous; flagged: score > threshold) on a range
    that includes the threshold, split by the true label when ``labels`` (1/True = anomaly) are given,
    and the share of rows flagged."""
    values = _floats(scores, "scores")
    _same_length(scores=values)
    threshold = float(threshold)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold: {threshold} is not finite")
    lo, hi = min(float(values.min()), threshold), max(float(values.max()), threshold)
    edges, counts = _histogram(values, SCORE_BINS, lo, hi)
    histogram: dict[str, Any] = {"edges": edges}
    if labels is None:
        histogram["counts"] = [int(c) for c in counts]
    else:
        anomaly = _anomaly_labels(labels, len(values))
        histogram["counts_normal"] = [int(c) for c in np.histogram(values[~anomaly], bins=edges)[0]]
        histogram["counts_anomaly"] = [int(c) for c in np.histogram(values[anomaly], bins=edges)[0]]
    return {
        "scores": {
            "threshold": threshold,
            "histogram": histogram,
            "flag_rate": float(np.mean(values > threshold)),
        }
    }


# ----------------------------------------------------------------------------------------- forecast


def _dates(values: Any, name: str) -> list[str]:
    """ISO dates (``YYYY-MM-DD``, or date and time when any value has a time of day)."""
    try:
        stamps = pd.DatetimeIndex(pd.to_datetime(pd.Series(values).to_numpy(), errors="raise"))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: not dates ({exc})") from exc
    if stamps.hasnans:
        raise ValueError(f"{name}: {int(stamps.isna().sum())} missing dates")
    daily = bool((stamps == stamps.normalize()).all())
    return [s.strftime("%Y-%m-%d") if daily else s.isoformat() for s in stamps]


def forecast_diagnostics(
    history_dates: Any,
    history_values: Sequence[float],
    dates: Any,
    actual: Sequence[float],
    predicted: Sequence[float],
    lower: Sequence[float] | None,
    upper: Sequence[float] | None,
    *,
    max_history: int = 180,
) -> dict[str, Any]:
    """The last ``max_history`` points of the training history and the holdout's actual values,
    forecasts and prediction interval (``lower``/``upper`` may be None: no interval)."""
    h_values = _floats(history_values, "history_values")[-max_history:] if max_history else np.empty(0)
    h_dates = _dates(history_dates, "history_dates")[-max_history:] if max_history else []
    if len(h_dates) != len(h_values):
        raise ValueError(f"history: {len(h_dates)} dates for {len(h_values)} values")
    holdout: dict[str, Any] = {
        "dates": _dates(dates, "dates"),
        "actual": [float(v) for v in _floats(actual, "actual")],
        "predicted": [float(v) for v in _floats(predicted, "predicted")],
    }
    for name, band in (("lower", lower), ("upper", upper)):
        if band is not None:
            holdout[name] = [float(v) for v in _floats(band, name)]
    _same_length(**holdout)
    return {
        "forecast": {
            "history": {"dates": h_dates, "values": [float(v) for v in h_values]},
            "holdout": holdout,
        }
    }


# ------------------------------------------------------------------------------- feature importance


def permutation_importance_by_feature(
    predict_fn: Callable[[pd.DataFrame], Any],
    frame: pd.DataFrame,
    y: Sequence[Any],
    score_fn: Callable[[Any, Any], float],
    groups: Mapping[str, Sequence[str]],
    *,
    repeats: int = 3,
    seed: int = 0,
    max_rows: int = 2000,
) -> list[dict[str, Any]]:
    """Permutation importance of raw features: the mean drop of ``score_fn(y, predict_fn(frame))``
    (higher = better) when the rows of a feature's columns are shuffled together (one permutation
    for all the columns in ``groups[feature]``, so that e.g. the parts of a date stay consistent).

    At most ``max_rows`` rows are used (a seeded sample). ``frame`` is not modified. Sorted by
    importance, highest first (ties: by name); ``std``: the standard deviation over ``repeats``.
    """
    y_all = np.asarray(y)
    _same_length(frame=frame, y=y_all)
    for feature, columns in groups.items():
        missing = [c for c in columns if c not in frame.columns]
        if missing or not columns:
            raise ValueError(f"groups[{feature!r}]: columns {missing or list(columns)} not in the frame")
    rng = np.random.default_rng(seed)
    rows = np.arange(len(frame))
    if len(rows) > max_rows:
        rows = np.sort(rng.choice(len(rows), size=max_rows, replace=False))
    data = frame.iloc[rows].reset_index(drop=True)
    target = y_all[rows]
    base = float(score_fn(target, predict_fn(data)))
    out = []
    for feature, columns in groups.items():
        original = {c: data[c] for c in columns}
        drops = []
        for _ in range(repeats):
            order = rng.permutation(len(data))
            for column, values in original.items():  # one Series each: the column keeps its dtype
                data[column] = values.iloc[order].reset_index(drop=True)
            drops.append(base - float(score_fn(target, predict_fn(data))))
        for column, values in original.items():
            data[column] = values
        out.append(
            {"feature": str(feature), "importance": float(np.mean(drops)), "std": float(np.std(drops))}
        )
    return sorted(out, key=lambda d: (-d["importance"], d["feature"]))
