"""Property-based fuzzing of the API with Hypothesis: whatever a caller sends, the answer is never a
5xx, and it is either a prediction in the documented shape or an error in the one error shape.

The model is the contract graph of conftest.py behind the real app (routing, access, fast path,
validation, onnxruntime); the cases are arbitrary JSON documents, records with fields of every JSON
type (NaN and infinities included, as Python's json writes them), raw bytes, and model names.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.serving.access import AccessPolicy
from sluice.serving.app import create_app
from sluice.serving.models import ModelStore
from sluice.serving.schemas import PredictResponse
from tests.unit.serving.conftest import FakeClock, FakeRegistry, contract_onnx, request

NAME = "transaction-type"
CASES = 400  # per property; the run's total is printed in the closing note of the change
FIELDS = ["description", "payment_method", "amount", "date", "records", "extra"]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50)
    | st.sampled_from(["2024-01-31", "2024-13-45", "31/01/2024", "", " ", "NaN", "1e309", "\x00"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
records = st.fixed_dictionaries({}, optional={name: json_values for name in FIELDS[:4]})
bodies = (
    json_values
    | records
    | st.lists(records, max_size=5)
    | st.fixed_dictionaries({"records": st.lists(records | json_values, max_size=5)})
)


def app_with_model() -> FastAPI:
    registry = FakeRegistry()
    registry.add(NAME, contract_onnx())
    store = ModelStore(registry, refresh_seconds=60, clock=FakeClock())
    return create_app(store=store, root_path="", access=AccessPolicy())


APP = app_with_model()


def check(resp: Any) -> None:
    assert resp.status_code < 500, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    if resp.status_code == 200:
        PredictResponse.model_validate(body)
        assert body["model"] == NAME and body["predictions"]
    else:
        assert set(body) == {"error", "request_id"}
        assert set(body["error"]) == {"code", "message", "details"} and body["error"]["message"]
        for detail in body["error"]["details"]:
            assert set(detail) == {"field", "rule", "message"}


@settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
def test_any_json_body_gets_a_prediction_or_a_4xx_in_the_error_shape(body: Any) -> None:
    raw = json.dumps(body, allow_nan=True)  # NaN / Infinity as Python writes them: not JSON, but sent
    check(
        request(
            APP,
            "POST",
            f"/v1/models/{NAME}/predict",
            content=raw,
            headers={"content-type": "application/json"},
        )
    )


@settings(max_examples=CASES // 2, deadline=None)
@given(raw=st.binary(max_size=200))
def test_any_bytes_body_is_refused_in_the_error_shape(raw: bytes) -> None:
    check(request(APP, "POST", f"/v1/models/{NAME}/predict", content=raw))


@settings(max_examples=CASES // 2, deadline=None)
@given(name=st.text(min_size=1, max_size=80))
def test_any_model_name_is_answered_without_a_5xx(name: str) -> None:
    quoted = quote(name, safe="")  # percent-encoded, as a client sends any name
    for method, path in (("GET", f"/v1/models/{quoted}"), ("POST", f"/v1/models/{quoted}/predict")):
        resp = request(APP, method, path, json={"amount": 1})
        assert resp.status_code < 500, resp.text
        if resp.status_code == 307:  # a name of "/"s decodes to a trailing slash: redirected, as documented
            continue
        assert resp.status_code in (200, 404, 405, 422) and resp.headers["content-type"] == "application/json"


def test_valid_records_always_predict() -> None:
    record = {"description": "salary", "payment_method": "Bank", "amount": 5.5, "date": "2024-01-31"}
    resp = request(APP, "POST", f"/v1/models/{NAME}/predict", json={"records": [record] * 3})
    check(resp)
    assert resp.status_code == 200 and len(resp.json()["predictions"]) == 3
