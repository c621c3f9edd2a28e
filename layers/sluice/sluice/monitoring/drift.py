"""Data drift: the captured inputs (and outputs) of a model against the profile of its training data.

``compare`` takes the training run's ``profile.json`` (``sluice.profile``) and the captured requests
as a DataFrame of the model's raw feature fields, profiles the captures with the reference's bin
edges, and returns a JSON-ready report: per feature the PSI, a two-sample test, missing-value,
out-of-range and new-category rates, and a severity with its reasons.

How each statistic is computed, and why:

- **PSI** over the reference's buckets: for numeric (and text lengths) the profile's histogram bins
  plus its ``below`` and ``above`` tails; for categoricals the reference's listed (top) values plus
  one bucket for every other value, so a never-seen category lands in that last bucket. Empty buckets
  are floored at ``PSI_EPSILON`` (each term ``(q - p) ln(q / p)`` stays finite and non-negative).
- **KS** (numeric): the profile keeps no raw sample, only the histogram, min, max and seven
  quantiles, so the exact two-sample statistic cannot be computed. The statistic used is the largest
  CDF gap at every point where the reference CDF is known: the bin edges (both CDFs exact from the
  shared histogram), the stored quantiles (ties bracketed: the gap there is at least
  ``F_cur(x-) - q`` and ``q - F_cur(x)``, up to the quantiles' interpolation, under 1/n_ref, or their
  sampling error beyond the profile's ``sample_size`` rows) and min/max. It is a lower bound of the
  exact statistic, so the test is conservative: no more false alarms than the exact test, less power
  (the quantiles matter: on skewed amounts x3, the edges alone give D 0.06, p 0.05; with them 0.24,
  the exact D being 0.28). The
  p-value is ``scipy.stats.kstwo.sf(D, round(n_ref n_cur / (n_ref + n_cur)))``, what
  ``scipy.stats.ks_2samp(method="asymp")`` uses.
- **chi-square** (categorical): ``scipy.stats.chi2_contingency`` on the 2 x k table of the PSI buckets.

A distribution shift is reported only when the test is significant (``p < p_value``: more than
sampling noise) **and** PSI reaches ``psi_warn`` (large enough to matter): with few rows PSI alone is
biased upwards (about ``(k - 1)(1/n_ref + 1/n_cur)`` for k buckets: ~0.12 at 200 rows and 22 buckets),
and with many rows a test alone flags differences too small to matter. Rates (missing values, out of
range, new categories) warn at their threshold and alert at ``rate_alert_factor`` times it; a column
absent from the captures alerts. Below ``min_rows`` captured rows, everything is measured and nothing
is flagged. Datetime columns are checked for missing values only: live requests carry dates later
than the training data by nature.

scipy is imported on first use (the ML layer has it); pandas too.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sluice.profile import KINDS, profile_frame

if TYPE_CHECKING:
    import pandas as pd

REPORT_VERSION = 1
PSI_EPSILON = 1e-4
NEW_CATEGORIES_SHOWN = 5
MAX_TRACKED = 10_000  # distinct categories counted exactly in the captures
PREDICTION = "prediction"
Severity = Literal["none", "warn", "alert"]
_RANK: dict[str, int] = {"none": 0, "warn": 1, "alert": 2}


class DriftThresholds(BaseModel):
    """When a difference between training data and captured requests is reported (JSON-friendly)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    psi_warn: float = Field(0.1, gt=0, description="PSI from which a significant shift warns")
    psi_alert: float = Field(0.25, gt=0, description="PSI from which a significant shift alerts")
    p_value: float = Field(0.01, gt=0, lt=1, description="significance level of the KS / chi-square test")
    min_rows: int = Field(200, ge=1, description="fewer captured rows: insufficient data, nothing flagged")
    missing_rate_delta: float = Field(0.1, gt=0, le=1, description="change of the missing-value share")
    out_of_range_rate: float = Field(
        0.05, gt=0, le=1, description="share outside the training min..max, or extra share in the tails"
    )
    new_category_rate: float = Field(0.05, gt=0, le=1, description="share of values unseen in training")
    rate_alert_factor: float = Field(2.0, ge=1, description="a rate alerts at this multiple of its threshold")

    @model_validator(mode="after")
    def _ordered(self) -> DriftThresholds:
        if self.psi_warn > self.psi_alert:
            raise ValueError(f"psi_warn ({self.psi_warn}) must not exceed psi_alert ({self.psi_alert})")
        return self


# -- statistics -------------------------------------------------------------------------------------


def psi(reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray) -> float:
    """Population stability index of two count (or share) vectors over the same buckets."""
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    if r.shape != c.shape or r.sum() <= 0 or c.sum() <= 0:
        raise ValueError(f"PSI needs two non-empty count vectors of one length, got {r.shape} and {c.shape}")
    p = np.maximum(r / r.sum(), PSI_EPSILON)
    q = np.maximum(c / c.sum(), PSI_EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def _cdf_at_edges(hist: Mapping[str, Any]) -> np.ndarray:
    """Share of values below each bin edge (the last edge inclusive), from a profile histogram."""
    counts = np.asarray(hist["counts"], dtype=np.float64)
    n = hist["below"] + counts.sum() + hist["above"]
    return (hist["below"] + np.concatenate([[0.0], np.cumsum(counts)])) / n


def ks_lower_bound(reference: Mapping[str, Any], current: Mapping[str, Any], values: np.ndarray) -> float:
    """Largest CDF gap where the reference CDF is known (see the module docstring).

    ``reference``/``current``: numeric profile bodies on the same bin edges; ``values``: the current
    non-null values.
    """
    d = float(np.max(np.abs(_cdf_at_edges(reference["histogram"]) - _cdf_at_edges(current["histogram"]))))
    x = np.sort(values)
    n = len(x)
    for q, v in reference.get("quantiles", {}).items():
        if v is None:
            continue
        below = np.searchsorted(x, v, side="left") / n
        upto = np.searchsorted(x, v, side="right") / n
        d = max(d, below - float(q), float(q) - upto)
    if reference.get("min") is not None:
        d = max(d, np.searchsorted(x, reference["min"], side="left") / n)
        d = max(d, 1 - np.searchsorted(x, reference["max"], side="right") / n)
    return float(d)


def ks_p_value(statistic: float, n_reference: int, n_current: int) -> float:
    """Asymptotic two-sample KS p-value, as ``scipy.stats.ks_2samp(method="asymp")`` computes it."""
    from scipy.stats import kstwo

    en = n_reference * n_current / (n_reference + n_current)
    return float(kstwo.sf(statistic, max(1, round(en))))


def chi2_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity of two count vectors (buckets empty on both sides dropped)."""
    from scipy.stats import chi2_contingency

    keep = (reference + current) > 0
    table = np.vstack([reference[keep], current[keep]])
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


# -- the current data, typed and profiled like the reference -----------------------------------------


def _coerce(series: pd.Series, kind: str) -> pd.Series:
    """Captured raw fields -> what ``profile_frame`` takes; unparseable values become nulls."""
    import pandas as pd

    if kind == "numeric":
        numbers = pd.to_numeric(series, errors="coerce").astype("float64")
        return numbers.where(np.isfinite(numbers))
    if kind == "datetime":
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            return series.dt.tz_convert("UTC").dt.tz_localize(None)
        if pd.api.types.is_datetime64_dtype(series.dtype):
            return series
        text = series.astype("string").str.strip()
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        return parsed.dt.tz_localize(None)
    return series.astype("string")


def current_profile(
    current: pd.DataFrame, columns: Mapping[str, str], reference_profile: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The profile of the captured columns on the reference's bin edges, every category listed; and
    per numeric/text column its non-null values (text: lengths) for the KS and range checks.
    Categories are listed up to ``MAX_TRACKED`` distinct values; the rest count as unlisted."""
    import pandas as pd

    present = [name for name in columns if name in current.columns]
    typed = pd.DataFrame(
        {name: _coerce(current[name].reset_index(drop=True), KINDS[columns[name]]) for name in present},
        index=pd.RangeIndex(len(current)),
    )
    profile = profile_frame(
        typed,
        {name: columns[name] for name in present},
        reference=dict(reference_profile),
        top_k=MAX_TRACKED,
        max_tracked=MAX_TRACKED,
    )
    values: dict[str, np.ndarray] = {}
    for name in present:
        kind = KINDS[columns[name]]
        if kind == "numeric":
            values[name] = typed[name].dropna().to_numpy(dtype=np.float64)
        elif kind == "text":
            stripped = typed[name].str.strip()
            values[name] = stripped[stripped.notna() & (stripped != "")].str.len().to_numpy(np.float64)
    return profile, values


# -- one column ---------------------------------------------------------------------------------------


class _Findings:
    """Severity-tagged reasons of one column."""

    def __init__(self, thresholds: DriftThresholds):
        self.t = thresholds
        self.items: list[tuple[str, str]] = []

    def add(self, severity: Severity, reason: str) -> None:
        self.items.append((severity, reason))

    def rate(self, value: float | None, threshold: float, what: str) -> None:
        if value is None or value < threshold:
            return
        alert = value >= threshold * self.t.rate_alert_factor
        self.add("alert" if alert else "warn", f"{what} {value:.1%} (threshold {threshold:.1%})")

    def shift(self, index: float | None, test: str, p: float | None) -> None:
        if index is None or p is None or p >= self.t.p_value or index < self.t.psi_warn:
            return
        severity: Severity = "alert" if index >= self.t.psi_alert else "warn"
        limit = self.t.psi_alert if severity == "alert" else self.t.psi_warn
        self.add(severity, f"distribution shift: PSI {index:.3f} >= {limit:g}, {test} p = {p:.2g}")

    def severity(self) -> Severity:
        return cast(Severity, max((s for s, _ in self.items), key=_RANK.__getitem__, default="none"))


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _missing_rate(body: Mapping[str, Any]) -> float | None:
    return _share(body["nulls"], body["count"] + body["nulls"])


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _numeric_bins(ref: Mapping[str, Any], cur: Mapping[str, Any]) -> tuple[list[str], np.ndarray, np.ndarray]:
    edges = ref["histogram"]["edges"]
    labels = [f"< {_fmt(edges[0])}"]
    labels += [f"{_fmt(a)} .. {_fmt(b)}" for a, b in itertools.pairwise(edges)]
    labels.append(f"> {_fmt(edges[-1])}")

    def counts(h: Mapping[str, Any]) -> np.ndarray:
        return np.asarray([h["below"], *h["counts"], h["above"]], dtype=np.float64)

    return labels, counts(ref["histogram"]), counts(cur["histogram"])


def _numeric(
    ref: Mapping[str, Any], cur: Mapping[str, Any], values: np.ndarray, out: dict[str, Any], f: _Findings
) -> None:
    """PSI, KS and range checks of a numeric body (or a text column's lengths)."""
    if ref["histogram"]["edges"] != cur["histogram"]["edges"]:
        raise ValueError("the current profile was not built on the reference's bin edges")
    labels, r, c = _numeric_bins(ref, cur)
    n_ref, n_cur = int(r.sum()), len(values)
    if not (n_ref and n_cur):
        return
    index = psi(r, c)
    statistic = ks_lower_bound(ref, cur, values)
    p = ks_p_value(statistic, n_ref, n_cur)
    outside = float(np.mean((values < ref["min"]) | (values > ref["max"])))
    tails = max(0.0, c[0] / n_cur - r[0] / n_ref) + max(0.0, c[-1] / n_cur - r[-1] / n_ref)
    out.update(
        psi=index,
        test="ks",
        statistic=statistic,
        p_value=p,
        out_of_range_rate=outside,
        tail_excess=float(tails),
        bins=_bins(labels, r, c),
    )
    f.shift(index, "KS", p)
    f.rate(
        outside,
        f.t.out_of_range_rate,
        f"outside the training range [{_fmt(ref['min'])}, {_fmt(ref['max'])}]:",
    )
    f.rate(float(tails), f.t.out_of_range_rate, "extra share beyond the histogram range:")


def _categorical(ref: Mapping[str, Any], cur: Mapping[str, Any], out: dict[str, Any], f: _Findings) -> None:
    listed = [t["value"] for t in ref["top"]]
    cur_counts = {t["value"]: t["count"] for t in cur["top"]}
    r = np.asarray([*(t["count"] for t in ref["top"]), ref["other"]], dtype=np.float64)
    c = np.asarray([*(cur_counts.get(v, 0) for v in listed), 0], dtype=np.float64)
    c[-1] = cur["count"] - c[:-1].sum()
    n_ref, n_cur = int(r.sum()), int(c.sum())
    known = set(listed)
    new = sorted(((v, n) for v, n in cur_counts.items() if v not in known), key=lambda vn: (-vn[1], vn[0]))
    exact = not ref["other"]
    out.update(
        new_categories=[{"value": v, "count": n} for v, n in new[:NEW_CATEGORIES_SHOWN]],
        new_categories_exact=exact,
        bins=_bins([*listed, "(other values)"], r, c),
    )
    if not (n_ref and n_cur):
        return
    rate = c[-1] / n_cur
    # when the reference lists only its top values, its own unlisted share is expected in the captures
    excess = float(rate if exact else max(0.0, rate - r[-1] / n_ref))
    statistic, p = chi2_test(r, c)
    index = psi(r, c)
    out.update(psi=index, test="chi2", statistic=statistic, p_value=p, new_category_rate=excess)
    f.shift(index, "chi-square", p)
    what = "values never seen in training:" if exact else "values not among the training's top values:"
    f.rate(excess, f.t.new_category_rate, what)


def _bins(labels: list[str], reference: np.ndarray, current: np.ndarray) -> dict[str, Any]:
    def shares(x: np.ndarray) -> list[float]:
        total = x.sum()
        return [float(v / total) if total else 0.0 for v in x]

    return {"labels": labels, "reference": shares(reference), "current": shares(current)}


def _empty_result(name: str, ref: Mapping[str, Any], present: bool) -> dict[str, Any]:
    return {
        "name": name,
        "type": ref["type"],
        "kind": ref["kind"],
        "present": present,
        "psi": None,
        "test": None,
        "statistic": None,
        "p_value": None,
        "missing_rate": {"reference": _missing_rate(ref), "current": None},
        "out_of_range_rate": None,
        "tail_excess": None,
        "new_categories": [],
        "new_categories_exact": None,
        "new_category_rate": None,
        "bins": None,
        "drifted": False,
        "severity": "none",
        "reasons": [],
    }


def compare_column(
    name: str,
    ref: Mapping[str, Any],
    cur: Mapping[str, Any] | None,
    values: np.ndarray | None,
    thresholds: DriftThresholds,
) -> dict[str, Any]:
    """The drift record of one column: ``ref``/``cur`` are its profile entries (``cur`` None: the
    column is absent from the captures), ``values`` its current non-null values (numeric, text)."""
    out = _empty_result(name, ref, cur is not None)
    f = _Findings(thresholds)
    if cur is None:
        f.add("alert", "missing column: absent from the captured requests")
    else:
        out["missing_rate"]["current"] = cur_missing = _missing_rate(cur)
        ref_missing = out["missing_rate"]["reference"] or 0.0
        if cur_missing is not None:
            f.rate(
                abs(cur_missing - ref_missing),
                thresholds.missing_rate_delta,
                f"missing values {cur_missing:.1%} against {ref_missing:.1%} in training: change",
            )
        kind = ref["kind"]
        if kind == "numeric":
            _numeric(ref, cur, values if values is not None else np.empty(0), out, f)
        elif kind == "text":
            _numeric(ref["length"], cur["length"], values if values is not None else np.empty(0), out, f)
        elif kind == "categorical":
            _categorical(ref, cur, out, f)
    out["severity"] = f.severity()
    out["drifted"] = out["severity"] != "none"
    out["reasons"] = [reason for _, reason in sorted(f.items, key=lambda sr: -_RANK[sr[0]])]
    return out


def _quiet(record: dict[str, Any]) -> dict[str, Any]:
    """Insufficient data: keep the measurements, drop the verdict."""
    record.update(drifted=False, severity="none", reasons=[])
    return record


# -- the whole report ---------------------------------------------------------------------------------


def _check_columns(reference_profile: Mapping[str, Any], columns: Mapping[str, str]) -> None:
    ref_columns = reference_profile.get("columns")
    if not isinstance(ref_columns, Mapping):
        raise ValueError("reference_profile has no 'columns': is it a profile.json document?")
    for name, kind in columns.items():
        if kind not in KINDS:
            raise ValueError(f"column {name!r}: unknown type {kind!r} (expected one of {', '.join(KINDS)})")
        if name not in ref_columns:
            raise ValueError(f"column {name!r} is not in the reference profile ({', '.join(ref_columns)})")
        if ref_columns[name]["kind"] != KINDS[kind]:
            raise ValueError(
                f"column {name!r}: type {kind!r} ({KINDS[kind]}) but the reference profile has "
                f"{ref_columns[name]['type']!r} ({ref_columns[name]['kind']})"
            )


def prediction_reference(values: Sequence[Any] | np.ndarray, type: str) -> dict[str, Any]:
    """The reference entry of a model's outputs (e.g. its holdout predictions at training time), in
    the profile's column format: ``type`` "string" for class labels, "float" for regression values or
    anomaly scores. Pass it to ``compare(reference_predictions=...)``."""
    import pandas as pd

    if type not in ("string", "float", "int"):
        raise ValueError(f"prediction type must be string, float or int, not {type!r}")
    frame = pd.DataFrame({PREDICTION: _coerce(pd.Series(list(values)), KINDS[type])})
    return profile_frame(frame, {PREDICTION: type})["columns"][PREDICTION]


def _compare_predictions(
    reference: Mapping[str, Any], current: Sequence[Any] | np.ndarray, thresholds: DriftThresholds
) -> dict[str, Any]:
    import pandas as pd

    if reference.get("kind") not in ("numeric", "categorical"):
        raise ValueError("reference_predictions must be a numeric or categorical profile entry")
    frame = pd.DataFrame({PREDICTION: list(current)})
    ref_profile = {"columns": {PREDICTION: reference}}
    profile, values = current_profile(frame, {PREDICTION: reference["type"]}, ref_profile)
    cur = profile["columns"][PREDICTION]
    return compare_column(PREDICTION, reference, cur, values.get(PREDICTION), thresholds)


def compare(
    reference_profile: Mapping[str, Any],
    current: pd.DataFrame,
    columns: Mapping[str, str],
    thresholds: DriftThresholds | None = None,
    *,
    reference_predictions: Mapping[str, Any] | None = None,
    current_predictions: Sequence[Any] | np.ndarray | None = None,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Compare captured requests with the training data's profile; returns the JSON-ready report.

    ``columns``: feature name -> dataset column type (float, int, string, text, datetime), each in
    the reference profile. ``reference_predictions`` (from ``prediction_reference``) and
    ``current_predictions`` (one output per captured row) add the prediction section.
    ``context`` (model, version, capture window...) is copied into the report as is.
    """
    thresholds = thresholds or DriftThresholds()
    _check_columns(reference_profile, columns)
    if (reference_predictions is None) != (current_predictions is None):
        raise ValueError("give both reference_predictions and current_predictions, or neither")
    rows = len(current)
    insufficient = rows < thresholds.min_rows
    profile, values = current_profile(current, columns, reference_profile)
    ref_columns = reference_profile["columns"]
    features = [
        compare_column(name, ref_columns[name], profile["columns"].get(name), values.get(name), thresholds)
        for name in columns
    ]
    prediction = None
    if reference_predictions is not None and current_predictions is not None:
        prediction = _compare_predictions(reference_predictions, current_predictions, thresholds)
    if insufficient:
        features = [_quiet(f) for f in features]
        prediction = _quiet(prediction) if prediction else None
    drifted = [f["name"] for f in features if f["drifted"]]
    psis = [f["psi"] for f in features if f["psi"] is not None]
    severities = [f["severity"] for f in features] + ([prediction["severity"]] if prediction else [])
    summary = {
        "rows": rows,
        "reference_rows": reference_profile.get("rows"),
        "insufficient_data": insufficient,
        "drift_detected": bool(drifted) or bool(prediction and prediction["drifted"]),
        "severity": max(severities, key=_RANK.__getitem__, default="none"),
        "drifted_features": drifted,
        "prediction_drifted": bool(prediction and prediction["drifted"]),
        "max_psi": max(psis) if psis else None,
    }
    if insufficient:
        summary["note"] = f"insufficient data: {rows} captured rows, at least {thresholds.min_rows} needed"
    return _json_ready(
        {
            "version": REPORT_VERSION,
            "context": dict(context or {}),
            "thresholds": thresholds.model_dump(mode="json"),
            "summary": summary,
            "features": features,
            "prediction": prediction,
        }
    )


def _json_ready(x: Any) -> Any:
    """Plain Python types only; NaN and infinities become None."""
    if isinstance(x, Mapping):
        return {str(k): _json_ready(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_ready(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
