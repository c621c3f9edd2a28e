"""Keys, throttle and quota as the app enforces them locally (API Gateway's rules, same answers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI

from sluice.serving.access import AccessPolicy
from sluice.serving.app import create_app
from sluice.serving.models import ModelStore
from tests.unit.serving.conftest import FakeClock, FakeRegistry, request

KEY = {"x-api-key": "key-one"}
OTHER = {"x-api-key": "key-two"}


class FakeDay:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 23, 59, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def policy(clock: FakeClock, **limits: float) -> AccessPolicy:
    return AccessPolicy(["key-one", "key-two"], clock=clock, **limits)  # type: ignore[arg-type]


def throttled_app(registry: FakeRegistry, clock: FakeClock, access: AccessPolicy) -> FastAPI:
    return create_app(
        store=ModelStore(registry, refresh_seconds=60, clock=clock), root_path="", access=access
    )


def test_burst_then_the_steady_rate_then_429_with_retry_after(
    registry: FakeRegistry, clock: FakeClock
) -> None:
    app = throttled_app(registry, clock, policy(clock, rate=2, burst=3))

    statuses = [request(app, "GET", "/v1/models", headers=KEY).status_code for _ in range(3)]
    refused = request(app, "GET", "/v1/models", headers=KEY)

    assert statuses == [200, 200, 200]
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    body = refused.json()
    assert (
        body["error"]["code"] == "too_many_requests" and body["request_id"] == refused.headers["x-request-id"]
    )
    assert "2 requests/s" in body["error"]["message"]
    clock.advance(0.5)  # one token back at 2/s
    assert request(app, "GET", "/v1/models", headers=KEY).status_code == 200
    assert request(app, "GET", "/v1/models", headers=KEY).status_code == 429


def test_each_key_has_its_own_bucket_and_public_routes_are_never_throttled(
    registry: FakeRegistry, clock: FakeClock
) -> None:
    app = throttled_app(registry, clock, policy(clock, rate=1, burst=1))

    assert request(app, "GET", "/v1/models", headers=KEY).status_code == 200
    assert request(app, "GET", "/v1/models", headers=KEY).status_code == 429
    assert request(app, "GET", "/v1/models", headers=OTHER).status_code == 200
    assert all(request(app, "GET", "/health").status_code == 200 for _ in range(5))


def test_refused_keys_do_not_spend_tokens(registry: FakeRegistry, clock: FakeClock) -> None:
    app = throttled_app(registry, clock, policy(clock, rate=1, burst=1))

    assert request(app, "GET", "/v1/models", headers={"x-api-key": "wrong"}).status_code == 403
    assert request(app, "GET", "/v1/models").status_code == 401
    assert request(app, "GET", "/v1/models", headers=KEY).status_code == 200


def test_daily_quota_answers_429_until_midnight_utc(clock: FakeClock) -> None:
    day = FakeDay()
    access = AccessPolicy(["key-one"], quota_per_day=2, clock=clock, today=day)

    assert access.check(b"key-one") is None and access.check(b"key-one") is None
    refusal = access.check(b"key-one")
    assert refusal is not None and refusal.status == 429 and refusal.code == "quota_exceeded"
    assert refusal.retry_after == 30  # seconds to 00:00 UTC
    day.now += timedelta(seconds=31)  # a new day
    assert access.check(b"key-one") is None


def test_a_throttled_request_does_not_use_quota(clock: FakeClock) -> None:
    access = AccessPolicy(["key-one"], rate=1, burst=1, quota_per_day=2, clock=clock, today=FakeDay())

    assert access.check(b"key-one") is None
    assert access.check(b"key-one").code == "too_many_requests"  # type: ignore[union-attr]
    clock.advance(1)
    assert access.check(b"key-one") is None
    clock.advance(1)
    assert access.check(b"key-one").code == "quota_exceeded"  # type: ignore[union-attr]


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_retry_after_is_the_wait_for_the_next_token(clock: FakeClock, rate: float) -> None:
    access = policy(clock, rate=rate, burst=1)
    assert access.check(b"key-one") is None

    refusal = access.check(b"key-one")

    assert refusal is not None and refusal.retry_after == round(1 / rate)


def test_without_keys_nothing_is_enforced(clock: FakeClock) -> None:
    access = AccessPolicy([], rate=1, burst=1, quota_per_day=1, clock=clock)

    assert not access.enforced
    assert all(access.check(None) is None for _ in range(10))
