"""Model specs: the built-in ones load and name estimators training knows; validation names the field."""

from __future__ import annotations

import pytest

from sluice.errors import SpecError
from sluice.features import DATE_PARTS
from sluice.specs import (
    DEFAULT_CANDIDATES,
    METRICS,
    dataset_names,
    greater_is_better,
    load_model_spec,
    model_specs_for,
    parse_model_spec,
)
from training.estimators import ESTIMATORS

BUILTIN = [
    "cashflow-forecast",
    "churn",
    "revenue-forecast",
    "shuttle-anomaly",
    "transaction-amount",
    "transaction-anomaly",
    "transaction-category",
    "wine-quality",
]
MINIMAL = {
    "name": "m",
    "dataset": "transactions",
    "target": "category",
    "features": [{"name": "description", "kind": "text"}],
}


def estimators_of(task: str) -> dict:
    return ESTIMATORS["regression" if task == "forecast" else task]


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_specs_load_and_name_known_estimators(name):
    spec = load_model_spec(name)
    assert spec.name == name and spec.dataset in dataset_names()
    assert spec.candidate_specs
    assert {c.name for c in spec.candidate_specs} <= set(estimators_of(spec.task))
    assert parse_model_spec(spec.to_dict()) == spec  # lineage round trip


@pytest.mark.parametrize("task", sorted(DEFAULT_CANDIDATES))
def test_default_candidates_are_registered_estimators(task):
    assert set(DEFAULT_CANDIDATES[task]) <= set(estimators_of(task))


def test_every_transactions_spec_trains_on_an_upload_of_that_dataset():
    names = [m.name for m in model_specs_for("transactions")]
    assert names == ["cashflow-forecast", "transaction-amount", "transaction-anomaly", "transaction-category"]


def test_effective_metric_and_direction():
    assert parse_model_spec(MINIMAL).effective_metric == "f1_macro"
    assert load_model_spec("transaction-anomaly").effective_metric is None  # no label: no metric
    assert load_model_spec("shuttle-anomaly").effective_metric == "average_precision"
    assert greater_is_better("r2") and not greater_is_better("mean_absolute_error")
    assert all(isinstance(better, bool) for better, _ in METRICS.values())


def test_input_columns_include_target_label_filters_and_time():
    spec = parse_model_spec(
        {**MINIMAL, "where": [{"column": "type", "in": ["Expense"]}], "split": {"time_column": "date"}}
    )
    assert spec.input_columns == ["description", "category", "type", "date"]
    assert load_model_spec("shuttle-anomaly").input_columns[-1] == "anomaly"


def test_legacy_fields_still_load():
    spec = parse_model_spec(
        {
            **MINIMAL,
            "estimator": {"name": "logistic_regression"},
            "holdout_fraction": 0.3,
            "metric": "macro_f1",
        }
    )
    assert [c.name for c in spec.candidates] == ["logistic_regression"]
    assert spec.split.holdout_fraction == 0.3 and spec.metric == "f1_macro"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metric": "r2"}, "metric: 'r2' does not apply to a classification model"),
        ({"metric": "nope"}, "unknown metric 'nope'"),
        ({"target": None}, "target: a classification model needs a target column"),
        ({"features": []}, "features: at least one feature is required"),
        ({"where": [{"column": "type"}]}, "where: give exactly one of 'in' or 'not_in'"),
        ({"split": {"cv_folds": 1}}, "split.cv_folds"),
        ({"task": "anomaly", "target": None, "metric": "roc_auc"}, "an anomaly metric needs anomaly.label"),
        (
            {"features": [{"name": "description", "kind": "text", "parts": ["day"]}]},
            "features.parts: only for a date feature, not text",
        ),
        ({"features": [{"name": "d", "kind": "date", "parts": ["day", "day"]}]}, "distinct calendar parts"),
        ({"features": [{"name": "date", "kind": "date", "parts": ["week"]}]}, "features.0.parts"),
    ],
)
def test_invalid_specs_name_the_field(changes, message):
    with pytest.raises(SpecError, match=message):
        parse_model_spec({**MINIMAL, **changes})


def test_monitoring_section_sets_capture_canary_and_drift_thresholds_naming_bad_fields() -> None:
    from sluice.errors import SpecError
    from sluice.specs import load_model_spec, parse_model_spec

    data = load_model_spec("churn").to_dict()
    data["monitoring"] = {
        "capture_rate": 0.2,
        "hash": ["customer_id"],
        "canary": True,
        "drift": {"psi_alert": 0.3},
    }
    spec = parse_model_spec(data)
    assert (spec.monitoring.capture_rate, spec.monitoring.canary) == (0.2, True)
    assert spec.monitoring.drift == {"psi_alert": 0.3} and spec.monitoring.hash == ["customer_id"]
    data["monitoring"] = {"drift": {"psi_alrt": 0.3}}
    with pytest.raises(SpecError, match=r"monitoring\.drift: .*psi_alrt"):
        parse_model_spec(data)
    data["monitoring"] = {"capture_rate": 1.5}
    with pytest.raises(SpecError, match=r"monitoring\.capture_rate"):
        parse_model_spec(data)


def test_date_parts_pick_calendar_parts_in_a_fixed_order_and_are_dumped_only_when_set():
    date = {"name": "date", "kind": "date"}
    due = {**date, "name": "due", "parts": ["hour", "day"]}
    spec = parse_model_spec({**MINIMAL, "features": [date, due]})
    every, chosen = spec.features
    assert every.date_parts == list(DATE_PARTS) and chosen.date_parts == ["day", "hour"]
    # unset parts stay out of the canonical JSON: specs without them keep their sha256
    assert every.model_dump() == date and spec.to_dict()["features"][1]["parts"] == ["hour", "day"]
    assert parse_model_spec(spec.to_dict()) == spec
