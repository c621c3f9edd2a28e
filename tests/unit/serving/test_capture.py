"""Capture sampling and privacy rules (the S3 and table writes are tested with the api handler)."""

from __future__ import annotations

import hashlib
import hmac

from sluice.serving.capture import CapturePolicy, sampled, scrub


def test_sampling_is_deterministic_per_request_id_and_close_to_the_rate() -> None:
    ids = [f"req-{i}" for i in range(20_000)]

    first = [sampled(i, 0.1) for i in ids]

    assert first == [sampled(i, 0.1) for i in ids]  # a retried request id gets the same answer
    assert 0.09 < sum(first) / len(ids) < 0.11
    assert not any(sampled(i, 0.0) for i in ids[:100]) and all(sampled(i, 1.0) for i in ids[:100])


def test_dropped_fields_disappear_and_hashed_ones_are_keyed_hashes() -> None:
    policy = CapturePolicy(rate=1.0, drop=frozenset({"customer_id"}), hash=frozenset({"description"}))
    records = [
        {"customer_id": "7590-VHVEG", "description": "Rent flat 4B", "amount": 12.5},
        {"customer_id": "5575-GNVDE", "description": "Rent flat 4B", "amount": None},
    ]

    out = scrub(records, policy, b"salt-1")

    expected = "hmac:" + hmac.new(b"salt-1", b"Rent flat 4B", hashlib.sha256).hexdigest()[:32]
    assert out == [{"description": expected, "amount": 12.5}, {"description": expected, "amount": None}]
    assert scrub(records, policy, b"salt-2")[0]["description"] != expected  # the salt keys the hash
    assert records[0]["customer_id"] == "7590-VHVEG"  # the request's own records are untouched


def test_policy_from_a_specs_monitoring_section_or_the_default_rate() -> None:
    assert CapturePolicy.from_spec(None, 0.25) == CapturePolicy(rate=0.25)
    policy = CapturePolicy.from_spec({"capture_rate": 0.0, "drop": ["a"], "hash": ["b"]}, 0.25)
    assert policy == CapturePolicy(rate=0.0, drop=frozenset({"a"}), hash=frozenset({"b"}))
