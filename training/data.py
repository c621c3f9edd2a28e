"""Curated rows -> what a task trains on: filtered rows, feature records, the target, the holdout split.

Every refusal is a TrainingError raised before any fitting, naming the model and the cause: missing
columns, a target that is all null, a single class, fewer usable rows than ``spec.min_rows``.
Missing numbers and dates are kept (the graph imputes them); rows without a target are dropped and
counted, and so are rows without a time when the split is by time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from sluice.errors import TrainingError
from sluice.specs import ModelSpec
from training.pipeline import to_records


@dataclass(frozen=True)
class PreparedData:
    """Rows fit for training: features as records (the shape serving receives), target, times.

    ``y``: class names (classification), floats (regression), 0/1 labels or None (anomaly).
    ``times``: the split column as datetime64 when the split is by time, else None."""

    records: list[dict[str, Any]]
    y: np.ndarray | None
    times: np.ndarray | None = None
    merged_classes: list[str] = field(default_factory=list)
    dropped_rows: dict[str, int] = field(default_factory=dict)
    filtered_rows: int = 0


def _check_columns(spec: ModelSpec, df: pd.DataFrame) -> None:
    missing = [c for c in spec.input_columns if c not in df.columns]
    if missing:
        raise TrainingError(f"{spec.name}: column(s) missing from the curated data: {', '.join(missing)}")


def apply_filters(spec: ModelSpec, df: pd.DataFrame) -> pd.DataFrame:
    """``spec.where``: keep rows whose column is (not) in the listed values (compared as text)."""
    keep = pd.Series(True, index=df.index)
    for rule in spec.where:
        values = df[rule.column].astype("string").str.strip()
        if rule.in_ is not None:
            keep &= values.isin(rule.in_).fillna(False)
        else:
            keep &= ~values.isin(rule.not_in or []).fillna(False)
    return df.loc[keep.to_numpy()]


def _classes(spec: ModelSpec, df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, list[str], dict[str, int]]:
    target = df[spec.target].astype("string").str.strip()
    keep = (target.notna() & (target != "")).to_numpy()
    if not keep.any():
        raise TrainingError(f"{spec.name}: target {spec.target!r} is empty in every row")
    dropped = {"missing_target": int((~keep).sum())}
    df, y = df.loc[keep], target[keep].astype(str).to_numpy(dtype=object)
    counts = pd.Series(y).value_counts()
    rare = sorted(str(c) for c in counts[counts < spec.min_class_rows].index if c != spec.rare_label)
    if rare:
        y = np.where(np.isin(y, rare), spec.rare_label, y).astype(object)
    # A stratified split needs 2 rows per class; a merged bucket that is still smaller is dropped.
    counts = pd.Series(y).value_counts()
    tiny = list(counts[counts < 2].index)
    if tiny:
        mask = ~np.isin(y, tiny)
        dropped["tiny_class"] = int((~mask).sum())
        df, y = df.loc[mask], y[mask]
    classes = sorted(set(y))
    if len(classes) < 2:
        raise TrainingError(f"{spec.name}: need at least 2 classes of {spec.target!r}, found {classes}")
    if spec.positive_label is not None and spec.positive_label not in classes:
        raise TrainingError(
            f"{spec.name}: positive_label {spec.positive_label!r} is not a class of {spec.target!r} "
            f"(classes: {', '.join(classes)})"
        )
    return df, y, rare, dropped


def _numbers(spec: ModelSpec, df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    values = pd.to_numeric(df[spec.target], errors="coerce").astype("float64")
    keep = (values.notna() & np.isfinite(values.fillna(0.0))).to_numpy()
    if not keep.any():
        raise TrainingError(f"{spec.name}: target {spec.target!r} has no numeric value in any row")
    return df.loc[keep], values[keep].to_numpy(), {"missing_target": int((~keep).sum())}


def _labels(spec: ModelSpec, df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray | None, dict[str, int]]:
    anomaly = spec.anomaly
    if anomaly is None or anomaly.label is None:
        return df, None, {}
    raw = df[anomaly.label].astype("string").str.strip()
    keep = (raw.notna() & (raw != "")).to_numpy()
    if not keep.any():
        raise TrainingError(f"{spec.name}: anomaly.label {anomaly.label!r} is empty in every row")
    y = (raw[keep] == anomaly.positive).to_numpy(dtype=np.int64)
    if y.min() == y.max():
        raise TrainingError(
            f"{spec.name}: anomaly.label {anomaly.label!r} needs both normal rows and rows equal to "
            f"{anomaly.positive!r} to evaluate the detector"
        )
    return df.loc[keep], y, {"missing_label": int((~keep).sum())}


def prepare_data(spec: ModelSpec, df: pd.DataFrame) -> PreparedData:
    """Filter (``where``), drop rows without target (or time), merge rare classes, check row counts."""
    _check_columns(spec, df)
    before = len(df)
    df = apply_filters(spec, df)
    filtered = before - len(df)
    dropped: dict[str, int] = {}
    merged: list[str] = []
    y: np.ndarray | None
    if spec.split.time_column:
        times = pd.to_datetime(df[spec.split.time_column], errors="coerce")
        keep = times.notna().to_numpy()
        dropped["missing_time"] = int((~keep).sum())
        df = df.loc[keep]
    if spec.task == "classification":
        df, y, merged, more = _classes(spec, df)
    elif spec.task == "regression":
        df, y, more = _numbers(spec, df)
    elif spec.task == "anomaly":
        df, y, more = _labels(spec, df)
    else:
        raise TrainingError(f"{spec.name}: task {spec.task!r} is not trained by this module")
    dropped.update(more)
    if len(df) < spec.min_rows:
        raise TrainingError(
            f"{spec.name}: only {len(df)} usable rows (after filters and dropping rows without a "
            f"target); min_rows is {spec.min_rows}"
        )
    times = None
    if spec.split.time_column:
        times = pd.to_datetime(df[spec.split.time_column]).to_numpy(dtype="datetime64[ns]")
    return PreparedData(
        records=to_records(df, spec.features),
        y=y,
        times=times,
        merged_classes=merged,
        dropped_rows=dropped,
        filtered_rows=filtered,
    )


def holdout_split(spec: ModelSpec, data: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """(train, holdout) row indices. By time: the holdout is the latest rows and the train part is
    returned in time order (for time-ordered CV). Else stratified on the class (or anomaly label)."""
    n = len(data.records)
    n_holdout = max(int(np.ceil(spec.split.holdout_fraction * n)), 1)
    if data.times is not None:
        order = np.argsort(data.times, kind="stable")
        return order[: n - n_holdout], np.sort(order[n - n_holdout :])
    index = np.arange(n)
    stratify = data.y if spec.task in ("classification", "anomaly") and data.y is not None else None
    if stratify is not None:
        n_classes = len(set(stratify.tolist()))
        n_holdout = max(n_holdout, n_classes)
        if n_holdout >= n - n_classes:
            raise TrainingError(
                f"{spec.name}: {n} rows are too few for a stratified holdout over {n_classes} classes"
            )
    train_idx, holdout_idx = train_test_split(
        index, test_size=n_holdout, stratify=stratify, random_state=spec.random_state
    )
    return np.sort(train_idx), np.sort(holdout_idx)
