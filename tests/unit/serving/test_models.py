"""ModelStore: lazy loading, refresh interval, atomic swap, integrity failures, predictions."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from sluice.errors import ArtifactIntegrityError, ModelNotFoundError
from sluice.serving.cache import ArtifactCache
from sluice.serving.errors import IncompatibleModelError, ModelUnavailableError
from sluice.serving.models import ModelStore
from sluice.serving.observability import record_model_load_error
from sluice.serving.prefetch import session_options
from tests.unit.serving.conftest import CLASSES, FakeClock, FakeRegistry, contract_onnx

NAME = "transaction-type"
RECORD = {"description": "salary", "payment_method": "Bank", "amount": 5.0, "date": datetime(2024, 1, 31)}


class Errors(list):
    def __call__(self, model: str, version: int, error: BaseException) -> None:
        self.append((model, version, type(error)))


def make_store(
    registry: FakeRegistry,
    clock: FakeClock,
    errors: Errors | None = None,
    cache: ArtifactCache | None = None,
) -> ModelStore:
    """A store on ``registry``; without ``cache``, every load downloads (no artifacts on disk)."""
    return ModelStore(
        registry,  # type: ignore[arg-type]
        refresh_seconds=60,
        clock=clock,
        on_load_error=errors if errors is not None else Errors(),
        cache=cache if cache is not None else ArtifactCache.disabled(),
    )


def test_nothing_is_read_until_a_model_is_needed(registry: FakeRegistry, clock: FakeClock) -> None:
    store = make_store(registry, clock)

    assert registry.calls == []
    assert store.get_cached(NAME) is None
    assert registry.calls == []


def test_champion_predicts_label_and_probabilities(registry: FakeRegistry, clock: FakeClock) -> None:
    model = make_store(registry, clock).get(NAME)

    out = model.predict([RECORD, {**RECORD, "amount": -5.0}])

    assert (model.name, model.version) == (NAME, 1)
    assert [p["label"] for p in out] == ["income", "expense"]
    for p in out:
        assert list(p["probabilities"]) == CLASSES
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert out[0]["probabilities"]["income"] > 0.99


def test_alias_is_read_at_most_once_per_interval(registry: FakeRegistry, clock: FakeClock) -> None:
    store = make_store(registry, clock)
    store.get(NAME)
    store.get(NAME)
    clock.advance(59)
    assert store.get_cached(NAME) is not None
    assert registry.calls.count(f"get_alias:{NAME}") == 1

    clock.advance(1)
    assert store.get_cached(NAME) is None
    assert store.get(NAME).version == 1

    assert registry.calls.count(f"get_alias:{NAME}") == 2
    assert registry.calls.count(f"load_onnx:{NAME}:1") == 1  # same champion: not reloaded


def test_new_champion_is_swapped_in_after_the_interval(registry: FakeRegistry, clock: FakeClock) -> None:
    store = make_store(registry, clock)
    before = store.get(NAME)
    registry.add(NAME, contract_onnx(classes=["out", "in"]))

    assert store.get(NAME) is before  # still within the interval
    clock.advance(60)
    after = store.get(NAME)

    assert after.version == 2
    assert after.predict([RECORD])[0]["label"] == "in"
    assert store.loaded() == {NAME: 2}


def test_rollback_reuses_the_previous_session(registry: FakeRegistry, clock: FakeClock) -> None:
    store = make_store(registry, clock)
    first = store.get(NAME)
    registry.add(NAME, contract_onnx())
    clock.advance(60)
    store.get(NAME)
    registry.aliases[NAME] = 1  # alias moved back
    clock.advance(60)

    assert store.get(NAME) is first
    assert registry.calls.count(f"load_onnx:{NAME}:1") == 1


def test_tampered_new_version_keeps_the_previous_one(registry: FakeRegistry, clock: FakeClock) -> None:
    errors = Errors()
    store = make_store(registry, clock, errors)
    store.get(NAME)
    registry.add(NAME, contract_onnx())
    registry.artifacts[(NAME, 2)] = b"not the registered bytes"
    clock.advance(60)

    assert store.get(NAME).version == 1
    assert errors == [(NAME, 2, ArtifactIntegrityError)]

    store.get(NAME)  # no retry within the interval
    assert registry.calls.count(f"load_onnx:{NAME}:2") == 1
    clock.advance(60)
    store.get(NAME)  # retried on the next one
    assert registry.calls.count(f"load_onnx:{NAME}:2") == 2
    assert len(errors) == 2


def test_tampered_only_version_is_unavailable(clock: FakeClock) -> None:
    registry = FakeRegistry()
    registry.add(NAME, contract_onnx())
    registry.artifacts[(NAME, 1)] = contract_onnx(classes=["a", "b"])  # valid ONNX, other sha
    errors = Errors()
    store = make_store(registry, clock, errors)

    with pytest.raises(ModelUnavailableError):
        store.get(NAME)
    with pytest.raises(ModelUnavailableError):
        store.get_cached(NAME)  # remembered: no download per request
    assert registry.calls.count(f"load_onnx:{NAME}:1") == 1
    assert errors == [(NAME, 1, ArtifactIntegrityError)]


def test_graph_not_matching_its_schema_is_refused(clock: FakeClock) -> None:
    registry = FakeRegistry()
    registry.add(NAME, contract_onnx(), classes=["a", "b", "c"])  # graph has 2 probability columns
    registry.add("two", contract_onnx(features=[{"name": "amount", "kind": "numeric"}]))  # lacks inputs
    errors = Errors()
    store = make_store(registry, clock, errors)

    for name in (NAME, "two"):
        with pytest.raises(ModelUnavailableError):
            store.get(name)
    assert errors == [(NAME, 1, IncompatibleModelError), ("two", 1, IncompatibleModelError)]


def test_unknown_model_is_remembered_for_the_interval(registry: FakeRegistry, clock: FakeClock) -> None:
    store = make_store(registry, clock)

    for _ in range(3):
        with pytest.raises(ModelNotFoundError):
            store.get("nope")

    assert registry.calls.count("get_alias:nope") == 1


@pytest.mark.parametrize("name", ["", "a/b", "../x", "x" * 200, "white space", "-lead"])
def test_impossible_names_never_reach_the_registry(
    registry: FakeRegistry, clock: FakeClock, name: str
) -> None:
    with pytest.raises(ModelNotFoundError):
        make_store(registry, clock).get(name)

    assert registry.calls == []


def test_unreadable_registry_keeps_serving(registry: FakeRegistry, clock: FakeClock) -> None:
    store = make_store(registry, clock)
    store.get(NAME)
    registry.fail_alias_reads = True
    clock.advance(60)

    assert store.get(NAME).version == 1
    with pytest.raises(ModelUnavailableError):
        store.get("other-model")


def test_list_models_reports_champion_and_metrics(registry: FakeRegistry, clock: FakeClock) -> None:
    registry.add(NAME, contract_onnx(), champion=False)
    registry.add("no-champion", contract_onnx(), champion=False)
    store = make_store(registry, clock)

    listing = store.list_models()
    store.list_models()

    assert listing == [
        {"name": "no-champion", "champion_version": None, "latest_version": 1, "metrics": {}},
        {
            "name": NAME,
            "champion_version": 1,
            "latest_version": 2,
            "metrics": {"accuracy": 0.9, "macro_f1": 0.8},
        },
    ]
    assert registry.calls.count("models") == 1  # cached for the interval


def test_clear_forgets_models(registry: FakeRegistry, clock: FakeClock) -> None:
    store = make_store(registry, clock)
    store.get(NAME)
    store.clear()

    assert store.loaded() == {}
    assert store.get_cached(NAME) is None


def test_sessions_are_tuned_for_lambda() -> None:
    opts = session_options()

    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
    assert opts.enable_cpu_mem_arena is False
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_load_error_metric_is_emf_with_model_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    record_model_load_error(NAME, 3, ArtifactIntegrityError("sha"))

    [doc] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [directive] = doc["_aws"]["CloudWatchMetrics"]
    assert [m["Name"] for m in directive["Metrics"]] == ["ModelLoadErrors"]
    assert {"model", "version"} <= set(directive["Dimensions"][0])
    assert directive["Namespace"] == "Sluice-test"
    assert (doc["model"], doc["version"], doc["ModelLoadErrors"]) == (NAME, "3", [1.0])


# -- challenger ----------------------------------------------------------------------------------


def test_a_challenger_serves_its_share_of_callers_always_the_same_ones(
    registry: FakeRegistry, clock: FakeClock, onnx_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.settings import get_settings

    monkeypatch.setenv("SLUICE_CHALLENGER_SHARE", "0.25")
    get_settings.cache_clear()
    registry.challengers[NAME] = registry.add(NAME, onnx_bytes, champion=False)
    store = make_store(registry, clock)
    callers = [f"caller-{i}" for i in range(2000)]

    first = {c: store.route(NAME, c) for c in callers}
    second = {c: store.route(NAME, c) for c in callers}

    assert {c: (m.version, a) for c, (m, a) in first.items()} == {
        c: (m.version, a) for c, (m, a) in second.items()
    }
    share = sum(a == "challenger" for _, a in first.values()) / len(callers)
    assert 0.22 < share < 0.28
    assert {(m.version, a) for m, a in first.values()} == {(1, "champion"), (2, "challenger")}


def test_without_a_challenger_or_when_it_fails_to_load_the_champion_serves_everybody(
    registry: FakeRegistry, clock: FakeClock, onnx_bytes: bytes
) -> None:
    store = make_store(registry, clock)
    assert {store.route(NAME, f"c{i}")[1] for i in range(200)} == {"champion"}

    registry.challengers[NAME] = registry.add(NAME, b"not an onnx graph", champion=False)
    clock.advance(60)

    routed = [store.route(NAME, f"c{i}") for i in range(200)]
    assert {(m.version, a) for m, a in routed} == {(1, "champion")}


def test_the_challenger_keeps_its_share_when_a_new_champion_fails_or_the_registry_is_unreadable(
    registry: FakeRegistry, clock: FakeClock, onnx_bytes: bytes
) -> None:
    registry.challengers[NAME] = registry.add(NAME, onnx_bytes, champion=False)  # v2
    store = make_store(registry, clock)
    callers = [f"c{i}" for i in range(400)]
    routed = {c: store.route(NAME, c)[0].version for c in callers}
    assert set(routed.values()) == {1, 2}

    registry.add(NAME, b"not an onnx graph")  # v3, made champion, cannot load
    clock.advance(60)
    assert {c: store.route(NAME, c)[0].version for c in callers} == routed

    registry.fail_alias_reads = True
    clock.advance(60)
    assert {c: store.route(NAME, c)[0].version for c in callers} == routed
