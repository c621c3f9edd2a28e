"""Holdout metrics in numpy alone, for the Verify step (the serving layer has no scikit-learn).

The same names and definitions as training's scikit-learn metrics (``training.metrics``); the unit
tests hold the two to the same values. Verify scores the candidate and the champion with these
functions on the same holdout rows, so the champion gate compares like with like.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sluice.contracts import FeatureSchema


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0)


def _counts(y: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, ...]:
    labels = np.unique(np.concatenate([y, pred]))
    tp = np.array([np.sum((y == c) & (pred == c)) for c in labels], dtype=np.float64)
    support = np.array([np.sum(y == c) for c in labels], dtype=np.float64)
    predicted = np.array([np.sum(pred == c) for c in labels], dtype=np.float64)
    return tp, support, predicted


def roc_auc(truth: Any, score: Any) -> float:
    """Area under the ROC curve of a binary truth: the Mann-Whitney statistic with tied ranks."""
    truth, score = np.asarray(truth, dtype=bool), np.asarray(score, dtype=np.float64)
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    # average rank over runs of equal scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(score)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    n_pos, n_neg = truth.sum(), (~truth).sum()
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(truth: Any, score: Any) -> float:
    """Sum over score thresholds of (recall step) x precision, as scikit-learn defines it."""
    truth, score = np.asarray(truth, dtype=bool), np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    truth, score = truth[order], score[order]
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # last row of each distinct score
    tps = np.cumsum(truth)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _both(truth: np.ndarray) -> bool:
    return bool(truth.any() and not truth.all())


def classification_metrics(
    y_true: Sequence[Any], proba: Any, classes: Sequence[str], positive_label: str | None = None
) -> dict[str, float]:
    """accuracy, balanced_accuracy, f1_macro, f1_weighted, log_loss, roc_auc (+ binary f1, AP)."""
    y = np.asarray([str(v) for v in y_true])
    proba = np.asarray(proba, dtype=np.float64)
    classes = [str(c) for c in classes]
    pred = np.asarray(classes)[np.argmax(proba, axis=1)]
    tp, support, predicted = _counts(y, pred)
    f1 = _f1(tp, predicted - tp, support - tp)
    present = support > 0
    out = {
        "accuracy": float(np.mean(y == pred)),
        "balanced_accuracy": float(np.mean(tp[present] / support[present])),
        "f1_macro": float(f1.mean()),
        "f1_weighted": float(np.sum(f1 * support) / support.sum()),
    }
    labels = sorted(set(classes) | set(y.tolist()))
    full = np.zeros((len(y), len(labels)))
    full[:, [labels.index(c) for c in classes]] = proba
    eps = np.finfo(np.float64).eps
    picked = np.clip(full, eps, 1 - eps)[np.arange(len(y)), [labels.index(v) for v in y]]
    out["log_loss"] = float(-np.mean(np.log(picked)))
    if len(classes) == 2:
        positive = positive_label if positive_label is not None else classes[1]
        truth, score = y == positive, proba[:, classes.index(positive)]
        if _both(truth):
            out["roc_auc"] = roc_auc(truth, score)
            out["average_precision"] = average_precision(truth, score)
        out["f1"] = _binary_f1(*_binary(truth, pred == positive))
    else:
        aucs = [roc_auc(y == c, proba[:, j]) for j, c in enumerate(classes) if _both(y == c)]
        if aucs:
            out["roc_auc"] = float(np.mean(aucs))
    return out


def _binary(truth: np.ndarray, flags: np.ndarray) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives)"""
    return int(np.sum(truth & flags)), int(np.sum(~truth & flags)), int(np.sum(truth & ~flags))


def _binary_f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64).reshape(-1)
    err = y - p
    ss_res, ss_tot = float(np.sum(err**2)), float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    mse = float(np.mean(err**2))
    return {
        "r2": r2 if len(y) > 1 else 0.0,
        "mean_absolute_error": float(np.mean(np.abs(err))),
        "median_absolute_error": float(np.median(np.abs(err))),
        "mean_squared_error": mse,
        "root_mean_squared_error": float(np.sqrt(mse)),
    }


def anomaly_metrics(
    scores: Sequence[float], threshold: float, labels: Sequence[int] | None = None
) -> dict[str, float]:
    """flag_rate; with 0/1 labels also average_precision, roc_auc, precision, recall, f1."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    flags = s >= threshold
    out = {"flag_rate": float(flags.mean())}
    if labels is None:
        return out
    truth = np.asarray(labels).astype(bool)
    if _both(truth):
        out["average_precision"] = average_precision(truth, s)
        out["roc_auc"] = roc_auc(truth, s)
    tp, fp, fn = _binary(truth, flags)
    out["precision"] = tp / (tp + fp) if tp + fp else 0.0
    out["recall"] = tp / (tp + fn) if tp + fn else 0.0
    out["f1"] = _binary_f1(tp, fp, fn)
    return out


def score(schema: FeatureSchema, targets: Sequence[Any], answers: Mapping[str, Any]) -> dict[str, float]:
    """Every metric of the schema's task from a graph's answers (``sluice.parity.predict``)."""
    if schema.task == "classification":
        return classification_metrics(
            targets, answers["probabilities"], schema.classes, schema.positive_label
        )
    if schema.task == "anomaly":
        if schema.threshold is None:
            raise ValueError("an anomaly schema needs its threshold to be scored")
        return anomaly_metrics(answers["scores"], schema.threshold, targets)
    return regression_metrics(targets, answers["values"])
