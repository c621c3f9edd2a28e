"""RecordValidator: the per-model request checks built from a registered feature schema."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from sluice.contracts import Feature
from sluice.serving.errors import ApiError
from sluice.serving.schemas import MAX_ERROR_DETAILS, MAX_RECORDS, MAX_STRING_LENGTH, RecordValidator

FEATURES = [
    Feature(name="description", kind="text"),
    Feature(name="payment_method", kind="categorical"),
    Feature(name="amount", kind="numeric"),
    Feature(name="date", kind="date"),
]
GOOD = {
    "description": "Idli medu Vada",
    "payment_method": "Cash",
    "amount": 60,
    "date": "2018-09-20T12:03:00",
}


@pytest.fixture(scope="module")
def validator() -> RecordValidator:
    return RecordValidator(FEATURES)


def refused(validator: RecordValidator, body: Any) -> list[dict[str, str]]:
    with pytest.raises(ApiError) as info:
        validator.validate(body)
    assert info.value.status == 422
    assert info.value.code == "validation_error"
    return info.value.details


def test_single_record_is_typed_for_the_feed(validator: RecordValidator) -> None:
    [record] = validator.validate({**GOOD, "id": 7, "category": "Food"})

    assert record == {
        "description": "Idli medu Vada",
        "payment_method": "Cash",
        "amount": 60.0,
        "date": datetime(2018, 9, 20, 12, 3),
    }  # unused fields dropped, int accepted as a number, date parsed


def test_batch_keeps_order(validator: RecordValidator) -> None:
    records = validator.validate({"records": [GOOD, {**GOOD, "amount": -1.5, "date": "2018-09-17"}]})

    assert [r["amount"] for r in records] == [60.0, -1.5]
    assert records[1]["date"] == datetime(2018, 9, 17)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("amount", True, "float_type"),
        ("amount", "60", "float_type"),
        ("amount", None, "float_type"),
        ("amount", float("nan"), "finite_number"),
        ("amount", float("inf"), "finite_number"),
        ("amount", -float("inf"), "finite_number"),
        ("amount", 1e39, "less_than_equal"),
        ("description", 42, "string_type"),
        ("description", None, "string_type"),
        ("description", "x" * (MAX_STRING_LENGTH + 1), "string_too_long"),
        ("payment_method", ["Cash"], "string_type"),
        ("date", "yesterday", "iso_datetime"),
        ("date", 1537445045, "string_type"),
        ("date", "2018-02-30", "iso_datetime"),
    ],
)
def test_wrong_values_name_field_and_rule(
    validator: RecordValidator, field: str, value: Any, rule: str
) -> None:
    details = refused(validator, {**GOOD, field: value})

    assert [(d["field"], d["rule"]) for d in details] == [(field, rule)]
    assert details[0]["message"]


def test_nan_and_infinity_literals_in_json_are_validation_errors(validator: RecordValidator) -> None:
    body = json.loads(
        '{"records": [{"description": "a", "payment_method": "b", "amount": NaN, "date": "2020-01-01"},'
        ' {"description": "a", "payment_method": "b", "amount": Infinity, "date": "2020-01-01"}]}'
    )

    details = refused(validator, body)

    assert [(d["field"], d["rule"]) for d in details] == [
        ("records[0].amount", "finite_number"),
        ("records[1].amount", "finite_number"),
    ]


def test_missing_fields_are_named(validator: RecordValidator) -> None:
    details = refused(validator, {"records": [GOOD, {"description": "no amount", "payment_method": "Cash"}]})

    assert [(d["field"], d["rule"]) for d in details] == [
        ("records[1].amount", "missing"),
        ("records[1].date", "missing"),
    ]


def test_dates_accept_iso_dates_datetimes_and_zulu(validator: RecordValidator) -> None:
    values = [
        "2018-09-20",
        "2018-09-20T12:03",
        "2018-09-20 12:03:00",
        "2018-09-20T12:03:00Z",
        "2018-09-20T12:03+05:30",
    ]
    records = validator.validate({"records": [{**GOOD, "date": v} for v in values]})

    assert [r["date"].hour for r in records] == [0, 12, 12, 12, 12]


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ([GOOD], "body", "object_type"),
        ("text", "body", "object_type"),
        (None, "body", "object_type"),
        ({"records": GOOD}, "records", "list_type"),
        ({"records": []}, "records", "too_short"),
        ({"records": [GOOD] * (MAX_RECORDS + 1)}, "records", "too_long"),
        ({"records": [GOOD, "not an object"]}, "records[1]", "dict_type"),
    ],
)
def test_body_shape(validator: RecordValidator, body: Any, field: str, rule: str) -> None:
    details = refused(validator, body)

    assert (details[0]["field"], details[0]["rule"]) == (field, rule)


def test_max_records_is_accepted(validator: RecordValidator) -> None:
    assert len(validator.validate({"records": [GOOD] * MAX_RECORDS})) == MAX_RECORDS


def test_error_details_are_capped(validator: RecordValidator) -> None:
    with pytest.raises(ApiError) as info:
        validator.validate({"records": [{}] * 100})

    assert len(info.value.details) == MAX_ERROR_DETAILS
    assert "more errors" in info.value.message


def test_a_feature_called_records_is_a_field_not_a_batch() -> None:
    validator = RecordValidator([Feature(name="records", kind="numeric")])

    assert validator.validate({"records": 3}) == [{"records": 3.0}]


def test_unknown_kind_is_refused() -> None:
    class Odd:
        name, kind = "x", "image"

    with pytest.raises(ValueError, match="image"):
        RecordValidator([Odd()])


def test_json_schema_lists_required_fields(validator: RecordValidator) -> None:
    schema = validator.json_schema()

    assert schema["required"] == ["description", "payment_method", "amount", "date"]
    assert schema["properties"]["amount"] == {"type": "number"}
