"""Metrics with scikit-learn, per task, and the baselines every candidate must beat.

Names are scikit-learn's (``sluice.specs.METRICS``). The Verify function recomputes the spec's metric
with ``sluice.metrics`` (numpy only, the serving layer has no scikit-learn); the unit tests hold both
implementations to the same values.

- classification: accuracy, balanced_accuracy, f1_macro, f1_weighted, log_loss and roc_auc (binary:
  of ``positive_label``; multiclass: the mean one-vs-rest AUC over the classes present in the truth
  with both outcomes), plus average_precision and f1 of the positive class for a binary task.
- regression: r2, mean_absolute_error, median_absolute_error, mean_squared_error,
  root_mean_squared_error.
- anomaly: flag_rate (share of rows whose score reaches the threshold); with labels also
  average_precision, roc_auc and precision/recall/f1 of the flags.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    median_absolute_error,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
)


def _ovr_auc(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> float | None:
    aucs = []
    for j, c in enumerate(classes):
        positive = y_true == c
        if positive.any() and not positive.all():
            aucs.append(roc_auc_score(positive, proba[:, j]))
    return float(np.mean(aucs)) if aucs else None


def _log_loss(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> float:
    """Truth classes the model never saw get probability 0 (clipped to eps, as scikit-learn does)."""
    labels = sorted(set(classes) | set(y_true.tolist()))
    full = np.zeros((len(y_true), len(labels)))
    for j, c in enumerate(classes):
        full[:, labels.index(c)] = proba[:, j]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # float32 rows sum to 1 within ~1e-7
        return float(log_loss(y_true, full, labels=labels))


def classification_metrics(
    y_true: Sequence[Any], proba: Any, classes: Sequence[str], positive_label: str | None = None
) -> dict[str, float]:
    """Every classification metric from class probabilities (columns in ``classes`` order)."""
    y = np.asarray([str(v) for v in y_true], dtype=object)
    proba = np.asarray(proba, dtype=np.float64)
    classes = [str(c) for c in classes]
    pred = np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # y_pred has classes absent from y_true
        out = {
            "accuracy": float(accuracy_score(y, pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0)),
            "f1_weighted": float(f1_score(y, pred, average="weighted", zero_division=0)),
        }
    out["log_loss"] = _log_loss(y, proba, classes)
    if len(classes) == 2:
        positive = positive_label if positive_label is not None else classes[1]
        truth = y == positive
        if truth.any() and not truth.all():
            score = proba[:, classes.index(positive)]
            out["roc_auc"] = float(roc_auc_score(truth, score))
            out["average_precision"] = float(average_precision_score(truth, score))
        out["f1"] = float(f1_score(truth, pred == positive, zero_division=0))
    else:
        auc = _ovr_auc(y, proba, classes)
        if auc is not None:
            out["roc_auc"] = auc
    return out


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64).reshape(-1)
    mse = float(mean_squared_error(y, p))
    return {
        "r2": float(r2_score(y, p)) if len(y) > 1 else 0.0,
        "mean_absolute_error": float(mean_absolute_error(y, p)),
        "median_absolute_error": float(median_absolute_error(y, p)),
        "mean_squared_error": mse,
        "root_mean_squared_error": float(np.sqrt(mse)),
    }


def anomaly_metrics(
    scores: Sequence[float], threshold: float, labels: Sequence[int] | None = None
) -> dict[str, float]:
    """Scores: higher = more anomalous; a row is flagged when its score reaches ``threshold``."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    flagged = scores >= threshold
    if labels is None:
        return {"flag_rate": float(flagged.mean())}
    truth = np.asarray(labels).astype(bool)
    precision, recall, f1, _ = precision_recall_fscore_support(
        truth, flagged, average="binary", zero_division=0
    )
    ranking = {}
    if truth.any() and not truth.all():
        ranking = {
            "average_precision": float(average_precision_score(truth, scores)),
            "roc_auc": float(roc_auc_score(truth, scores)),
        }
    return {
        "flag_rate": float(flagged.mean()),
        **ranking,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


# -- baselines --------------------------------------------------------------------------------------


def majority_class(y_train: Sequence[Any]) -> Any:
    """The most frequent training class (ties: the smallest label, for determinism)."""
    counts = Counter(y_train)
    top = max(counts.values())
    return min(c for c, n in counts.items() if n == top)


def classification_baseline(
    y_train: Sequence[Any], y_holdout: Sequence[Any], classes: Sequence[str], positive: str | None
) -> dict[str, float]:
    """Always the training class frequencies: the majority class wins every argmax."""
    counts = Counter(str(v) for v in y_train)
    prior = np.array([counts.get(str(c), 0) for c in classes], dtype=np.float64)
    # argmax takes the first of tied maxima: the smallest label, as majority_class does
    proba = np.tile(prior / prior.sum(), (len(y_holdout), 1))
    return classification_metrics(y_holdout, proba, classes, positive)


def regression_baseline(y_train: Sequence[float], y_holdout: Sequence[float]) -> dict[str, float]:
    """The training mean for squared-error metrics and r2, the training median for absolute errors."""
    y_train = np.asarray(y_train, dtype=np.float64)
    n = len(y_holdout)
    by_mean = regression_metrics(y_holdout, np.full(n, y_train.mean()))
    by_median = regression_metrics(y_holdout, np.full(n, np.median(y_train)))
    for name in ("mean_absolute_error", "median_absolute_error"):
        by_mean[name] = by_median[name]
    return by_mean


def anomaly_baseline(labels: Sequence[int] | None, contamination: float) -> dict[str, float]:
    """Random scores flagging ``contamination`` of the rows: AP = precision = the positive rate."""
    out = {"flag_rate": float(contamination)}
    if labels is None:
        return out
    rate = float(np.mean(np.asarray(labels).astype(bool)))
    f1 = 2 * rate * contamination / (rate + contamination) if rate + contamination else 0.0
    out.update(average_precision=rate, roc_auc=0.5, precision=rate, recall=float(contamination), f1=f1)
    return out
