"""sluice.monitoring.drift on real files: a reference part through the real ingest, captures from the rest."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy.stats import ks_2samp

from sluice.monitoring import DriftThresholds, compare, prediction_reference, psi
from tests.unit.monitoring.conftest import CHURN, HOUSEHOLD, split

DEFAULTS = DriftThresholds()


def by_name(report: dict) -> dict[str, dict]:
    return {f["name"]: f for f in report["features"]}


def replace_share(values: pd.Series, share: float, new: object, seed: int = 1) -> tuple[pd.Series, int]:
    """``values`` with ``new`` in a random ``share`` of its rows, and how many rows that is."""
    out = values.copy()
    rows = out.sample(frac=share, random_state=seed).index
    out.loc[rows] = new
    return out, len(rows)


def assert_no_drift(report: dict) -> None:
    s = report["summary"]
    assert s["drift_detected"] is False and s["severity"] == "none" and s["drifted_features"] == []
    assert s["max_psi"] < DEFAULTS.psi_warn
    for f in report["features"]:
        assert f["present"] and f["reasons"] == [], f["name"]


# -- (a) the held-out part of the same file: no false alarm ----------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_held_out_household_rows_do_not_drift(seed):
    s = split(HOUSEHOLD, "transactions", seed)
    report = compare(s.profile, s.captures(), s.columns)
    assert_no_drift(report)
    assert report["summary"]["rows"] == len(s.held_out) > DEFAULTS.min_rows
    f = by_name(report)
    assert f["date"]["psi"] is None and f["date"]["test"] is None  # dates: missing values only
    assert {f[c]["test"] for c in ("amount", "description")} == {"ks"}
    assert {f[c]["test"] for c in ("category", "subcategory", "payment_method", "type")} == {"chi2"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_churn_rows_do_not_drift(seed):
    s = split(CHURN, "churn", seed, exclude=("customer_id", "churn"))
    report = compare(s.profile, s.captures(), s.columns)
    assert_no_drift(report)
    assert len(report["features"]) == 19


def test_a_small_sample_does_not_drift_though_its_psi_is_noisier(household):
    """PSI of 250 rows is biased upwards (22 buckets); the test keeps that from being called drift."""
    small = household.captures().sample(n=250, random_state=3)
    report = compare(household.profile, small, household.columns)
    assert report["summary"]["drift_detected"] is False
    noisy = [f for f in report["features"] if f["psi"] is not None and f["psi"] >= DEFAULTS.psi_warn]
    assert noisy and all(f["p_value"] > DEFAULTS.p_value for f in noisy)


def test_psi_is_the_one_of_the_shared_bins(household):
    """The current histogram is built on the reference edges, with the below/above tails."""
    report = compare(household.profile, household.captures(), household.columns)
    hist = household.profile["columns"]["amount"]["histogram"]
    edges = np.asarray(hist["edges"])
    amounts = household.held_out["amount"].to_numpy()
    inside = amounts[(amounts >= edges[0]) & (amounts <= edges[-1])]
    current = [(amounts < edges[0]).sum(), *np.histogram(inside, edges)[0], (amounts > edges[-1]).sum()]
    reference = [hist["below"], *hist["counts"], hist["above"]]
    assert by_name(report)["amount"]["psi"] == pytest.approx(psi(reference, current))


# -- (b) amounts x3 ----------------------------------------------------------------------------------------


def test_scaled_amounts_alert_and_nothing_else(household):
    captures = household.captures()
    captures["amount"] = captures["amount"] * 3
    report = compare(household.profile, captures, household.columns)
    amount = by_name(report)["amount"]
    assert amount["psi"] > DEFAULTS.psi_alert
    assert amount["test"] == "ks" and amount["p_value"] < 1e-20
    assert amount["severity"] == "alert" and amount["drifted"]
    assert amount["reasons"][0].startswith("distribution shift: PSI")
    s = report["summary"]
    assert s["drifted_features"] == ["amount"] and s["drift_detected"] and s["severity"] == "alert"
    assert s["max_psi"] == amount["psi"]
    assert len(amount["bins"]["labels"]) == 22 and sum(amount["bins"]["current"]) == pytest.approx(1)


@pytest.mark.parametrize("factor", [1, 3])
def test_ks_statistic_is_a_lower_bound_of_the_exact_one(household, factor):
    """The profile keeps no raw sample: D is measured where the reference CDF is known, never above
    the exact two-sample statistic; with x3 most of the exact gap is still found."""
    captures = household.captures()
    captures["amount"] = captures["amount"] * factor
    measured = by_name(compare(household.profile, captures, household.columns))["amount"]["statistic"]
    exact = ks_2samp(household.reference["amount"], captures["amount"].astype(float)).statistic
    assert measured <= exact + 1e-9
    if factor == 3:
        assert measured > 0.75 * exact


# -- (c) a never-seen category ----------------------------------------------------------------------------


def test_new_payment_method_in_churn_is_reported_with_its_count(churn):
    captures = churn.captures()
    captures["payment_method"], n = replace_share(captures["payment_method"], 0.3, "Crypto wallet")
    report = compare(churn.profile, captures, churn.columns)
    f = by_name(report)["payment_method"]
    assert f["new_categories"] == [{"value": "Crypto wallet", "count": n}]
    assert f["new_categories_exact"] is True  # the reference lists all of its 4 values
    assert f["new_category_rate"] == pytest.approx(n / len(captures))
    assert f["psi"] > DEFAULTS.psi_alert and f["test"] == "chi2" and f["p_value"] < 1e-20
    assert f["severity"] == "alert"
    assert any("never seen in training: 30.0%" in r for r in f["reasons"])
    assert report["summary"]["drifted_features"] == ["payment_method"]


def test_new_household_category_beyond_the_listed_top(household):
    """The reference lists its top 20 of ~50 categories: unlisted values are counted beyond the
    reference's own unlisted share, and the never-seen one comes first."""
    captures = household.captures()
    captures["category"], n = replace_share(captures["category"], 0.3, "Crypto")
    report = compare(household.profile, captures, household.columns)
    f = by_name(report)["category"]
    ref = household.profile["columns"]["category"]
    assert f["new_categories"][0] == {"value": "Crypto", "count": n}
    assert f["new_categories_exact"] is False
    unlisted = sum(c["count"] for c in f["new_categories"]) / len(captures)
    assert unlisted <= f["new_category_rate"] + ref["other"] / ref["count"] + 1e-9
    assert f["new_category_rate"] > 0.25 and f["psi"] > DEFAULTS.psi_alert and f["severity"] == "alert"
    assert report["summary"]["drifted_features"] == ["category"]


# -- (d) a missing column, (e) more nulls -----------------------------------------------------------------


def test_a_missing_column_is_a_finding(household):
    captures = household.captures().drop(columns=["payment_method"])
    report = compare(household.profile, captures, household.columns)
    f = by_name(report)["payment_method"]
    assert f["present"] is False and f["severity"] == "alert" and f["psi"] is None
    assert f["reasons"] == ["missing column: absent from the captured requests"]
    assert report["summary"]["drifted_features"] == ["payment_method"]
    assert by_name(report)["amount"]["severity"] == "none"


@pytest.mark.parametrize(("share", "severity"), [(0.15, "warn"), (0.3, "alert")])
def test_more_nulls_is_a_missing_rate_finding(churn, share, severity):
    captures = churn.captures()
    captures["total_charges"], _ = replace_share(captures["total_charges"], share, None)
    report = compare(churn.profile, captures, churn.columns)
    f = by_name(report)["total_charges"]
    ref = churn.profile["columns"]["total_charges"]
    assert f["missing_rate"]["reference"] == pytest.approx(ref["nulls"] / (ref["count"] + ref["nulls"]))
    assert f["missing_rate"]["current"] == pytest.approx(captures["total_charges"].isna().mean())
    assert f["missing_rate"]["current"] - f["missing_rate"]["reference"] == pytest.approx(share, abs=0.01)
    assert f["severity"] == severity and f["reasons"][0].startswith("missing values")
    # the values that remain are the same distribution
    assert f["psi"] < DEFAULTS.psi_warn and f["p_value"] > DEFAULTS.p_value


# -- (f) too few rows -------------------------------------------------------------------------------------


def test_fewer_rows_than_min_rows_is_insufficient_data_never_an_alert(household):
    captures = household.captures().sample(n=DEFAULTS.min_rows - 1, random_state=2)
    captures["amount"] = captures["amount"] * 3
    report = compare(household.profile, captures.drop(columns=["currency"]), household.columns)
    s = report["summary"]
    assert s["insufficient_data"] is True and s["drift_detected"] is False and s["severity"] == "none"
    assert s["rows"] == DEFAULTS.min_rows - 1 and "insufficient data" in s["note"]
    f = by_name(report)
    assert all(x["severity"] == "none" and x["reasons"] == [] for x in report["features"])
    assert f["amount"]["psi"] > DEFAULTS.psi_alert  # measured all the same
    assert f["currency"]["present"] is False


# -- (g) predictions --------------------------------------------------------------------------------------


def test_label_distribution_shift(churn):
    reference = prediction_reference(churn.reference["churn"], "string")
    assert reference["kind"] == "categorical" and reference["other"] == 0
    same = compare(
        churn.profile,
        churn.captures(),
        churn.columns,
        reference_predictions=reference,
        current_predictions=churn.held_out["churn"].tolist(),
    )
    assert same["prediction"]["severity"] == "none" and same["prediction"]["psi"] < 0.01
    assert same["summary"]["prediction_drifted"] is False
    labels = churn.held_out["churn"].copy()
    no = labels[labels == "No"]
    labels.loc[no.sample(frac=0.4, random_state=5).index] = "Yes"
    shifted = compare(
        churn.profile,
        churn.captures(),
        churn.columns,
        reference_predictions=reference,
        current_predictions=labels.tolist(),
    )
    p = shifted["prediction"]
    ref_yes = (churn.reference["churn"] == "Yes").mean()
    cur_yes = (labels == "Yes").mean()
    expected = (cur_yes - ref_yes) * np.log(cur_yes / ref_yes) + (ref_yes - cur_yes) * np.log(
        (1 - cur_yes) / (1 - ref_yes)
    )
    assert p["psi"] == pytest.approx(expected) and p["psi"] > DEFAULTS.psi_alert
    assert p["test"] == "chi2" and p["p_value"] < 1e-20 and p["severity"] == "alert"
    s = shifted["summary"]
    assert s["prediction_drifted"] and s["drift_detected"] and s["drifted_features"] == []


def test_score_distribution_shift(churn):
    """Regression values / anomaly scores: numeric bins of the reference predictions."""
    reference = prediction_reference(churn.reference["monthly_charges"].to_numpy(), "float")
    scores = churn.held_out["monthly_charges"]
    kwargs = {"reference_predictions": reference}
    same = compare(churn.profile, churn.captures(), churn.columns, current_predictions=scores, **kwargs)
    moved = compare(churn.profile, churn.captures(), churn.columns, current_predictions=scores + 20, **kwargs)
    assert same["prediction"]["severity"] == "none" and same["prediction"]["psi"] < DEFAULTS.psi_warn
    assert moved["prediction"]["test"] == "ks" and moved["prediction"]["psi"] > DEFAULTS.psi_alert
    assert moved["prediction"]["severity"] == "alert" and moved["prediction"]["out_of_range_rate"] > 0


# -- the report's shape and the caller's mistakes ---------------------------------------------------------


def test_report_is_plain_json(household):
    captures = household.captures()
    captures["amount"] = captures["amount"] * 3
    report = compare(household.profile, captures, household.columns, context={"model": "m", "version": 3})
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert report["thresholds"] == DEFAULTS.model_dump() and report["context"] == {"model": "m", "version": 3}


def test_caller_mistakes_name_the_thing(household):
    captures = household.captures()
    with pytest.raises(ValueError, match="'nope' is not in the reference profile"):
        compare(household.profile, captures, {**household.columns, "nope": "float"})
    with pytest.raises(ValueError, match="'amount': type 'string'"):
        compare(household.profile, captures, {**household.columns, "amount": "string"})
    with pytest.raises(ValueError, match="both reference_predictions and current_predictions"):
        compare(household.profile, captures, household.columns, current_predictions=[1, 2])
    with pytest.raises(ValidationError, match="psi_warn"):
        DriftThresholds(psi_warn=0.3, psi_alert=0.2)


def test_thresholds_change_the_verdict(household):
    captures = household.captures()
    captures["amount"] = captures["amount"] * 3
    lenient = DriftThresholds(psi_warn=0.5, psi_alert=1.0)
    report = compare(household.profile, captures, household.columns, lenient)
    assert by_name(report)["amount"]["severity"] == "none"
