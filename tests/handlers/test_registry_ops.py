"""Registry operations a person runs (promote, rollback) under moto: aliases move, versions never change."""

from __future__ import annotations

import pytest

from sluice.errors import ModelNotFoundError, PromotionRefusedError
from sluice.registry import Registry
from tests.handlers.support import BUCKET, TABLE

FUNCTION = "register"  # the registry's environment (table and bucket)
MODEL = "transaction-category"


@pytest.fixture
def registry(aws) -> Registry:
    registry = Registry(TABLE, BUCKET)
    for status in ("champion", "champion", "rejected"):
        mv = registry.register(MODEL, f"onnx bytes {status}".encode(), {"metrics": {"accuracy": 0.5}}, status)
        if status == "champion":
            current = registry.get_alias(MODEL)
            registry.set_alias(MODEL, "champion", mv.version, expected=current, reason="gates")
    return registry


def test_rollback_goes_to_the_previous_champion_and_promote_back(registry):
    assert registry.get_alias(MODEL) == 2
    assert registry.rollback(MODEL, reason="bad live metric") == (2, 1)
    assert registry.get_alias(MODEL) == 1
    assert registry.promote(MODEL, 2, reason="fixed") == 1
    assert registry.get_alias(MODEL) == 2
    moves = [(a["from"], a["to"], a["reason"]) for a in registry.audit(MODEL)]
    assert moves == [(None, 1, "gates"), (1, 2, "gates"), (2, 1, "bad live metric"), (1, 2, "fixed")]
    assert [v.status for v in registry.versions(MODEL)] == ["champion", "champion", "rejected"]


def test_a_rejected_version_is_never_promoted(registry):
    with pytest.raises(PromotionRefusedError, match="rejected by the gates"):
        registry.promote(MODEL, 3, reason="by hand")
    assert registry.get_alias(MODEL) == 2


def test_rollback_needs_an_earlier_champion(registry):
    registry.rollback(MODEL, reason="once")
    with pytest.raises(PromotionRefusedError, match="no earlier champion"):
        registry.rollback(MODEL, reason="twice")  # v1 was the first champion
    with pytest.raises(ModelNotFoundError):
        registry.rollback("no-such-model", reason="x")
