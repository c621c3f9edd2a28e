"""Holdout metrics and the majority-class baseline every candidate must beat."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sklearn.metrics import accuracy_score, f1_score


def classification_metrics(y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, float]:
    """accuracy and macro-F1 (over the classes seen in either truth or prediction)."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def majority_class(y_train: Sequence[Any]) -> Any:
    """The most frequent training class (ties: the smallest label, for determinism)."""
    counts = Counter(y_train)
    top = max(counts.values())
    return min(c for c, n in counts.items() if n == top)


def majority_baseline(y_train: Sequence[Any], y_holdout: Sequence[Any]) -> dict[str, float]:
    """Metrics of always predicting the training set's majority class on the holdout."""
    label = majority_class(y_train)
    return classification_metrics(y_holdout, [label] * len(y_holdout))
