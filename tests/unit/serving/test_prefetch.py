"""Prefetch: champions opened in a background thread during init, taken by the store once, never
trusted beyond what the store itself checks (alias, schema, integrity errors and their reports)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sluice.errors import ArtifactIntegrityError
from sluice.serving.cache import ArtifactCache
from sluice.serving.errors import ModelUnavailableError
from sluice.serving.models import ModelStore
from sluice.serving.prefetch import Prefetch
from sluice.settings import get_settings
from tests.unit.serving.conftest import FakeClock, FakeRegistry, contract_onnx
from tests.unit.serving.test_models import NAME, RECORD, Errors, make_store


def prefetched(registry: FakeRegistry, *names: str) -> Prefetch:
    prefetch = Prefetch(names, registry).start()  # type: ignore[arg-type]
    prefetch.join(timeout=30)
    return prefetch


def test_the_champion_opened_by_the_thread_is_the_one_served_and_opened_once(
    registry: FakeRegistry, clock: FakeClock
) -> None:
    prefetch = prefetched(registry, NAME)
    opened = prefetch._opened[NAME].result(0)
    store = make_store(registry, clock)
    store.adopt(prefetch)

    assert store.warm([NAME]) == {NAME: 1}
    model = store.get(NAME)
    assert opened is not None and model.session is opened.session
    assert registry.calls.count(f"load_onnx:{NAME}:1") == 1
    assert model.predict([RECORD])[0]["label"] == "income"  # checked and served as any load
    assert prefetch.take(NAME, 1, timeout=0) is None  # taken once


@dataclass
class GatedRegistry(FakeRegistry):
    """In the prefetch thread, opening a version waits for ``gate`` (before the download)."""

    gate: threading.Event = field(default_factory=threading.Event)

    def metadata(self, mv: Any) -> dict[str, Any]:
        if threading.current_thread().name == "sluice-prefetch":
            self.gate.wait(30)
        return super().metadata(mv)


def test_a_request_during_the_prefetch_waits_for_it_rather_than_downloading_again(clock: FakeClock) -> None:
    registry = GatedRegistry()
    registry.add(NAME, contract_onnx())
    prefetch = Prefetch([NAME], registry).start()  # type: ignore[arg-type]
    store = ModelStore(refresh_seconds=60, clock=clock, on_load_error=Errors())
    store.adopt(prefetch)
    served: list[Any] = []
    request = threading.Thread(target=lambda: served.append(store.get(NAME)))
    request.start()
    request.join(0.3)
    assert request.is_alive()  # waiting for the prefetch
    assert registry.calls.count(f"load_onnx:{NAME}:1") == 0  # the request downloaded nothing

    registry.gate.set()
    request.join(30)
    assert [m.version for m in served] == [1]
    assert store.registry is registry  # the prefetch's registry (and AWS clients) is the store's
    assert registry.calls.count(f"load_onnx:{NAME}:1") == 1


def test_a_prefetch_of_a_version_that_is_no_longer_champion_is_dropped(
    registry: FakeRegistry, clock: FakeClock
) -> None:
    prefetch = prefetched(registry, NAME)
    registry.add(NAME, contract_onnx())  # v2 becomes champion after the thread opened v1
    store = make_store(registry, clock)
    store.adopt(prefetch)

    assert store.warm([NAME]) == {NAME: 2}
    assert registry.calls.count(f"load_onnx:{NAME}:1") == 1  # the thread's, unused
    assert registry.calls.count(f"load_onnx:{NAME}:2") == 1  # the store's own


def test_a_failed_prefetch_leaves_the_load_and_its_report_to_the_store(clock: FakeClock) -> None:
    registry = FakeRegistry()
    registry.add(NAME, contract_onnx())
    registry.artifacts[(NAME, 1)] = contract_onnx(classes=["a", "b"])  # valid ONNX, other sha
    prefetch = prefetched(registry, NAME)
    with pytest.raises(ArtifactIntegrityError):
        prefetch._opened[NAME].result(0)
    errors = Errors()
    store = make_store(registry, clock, errors)
    store.adopt(prefetch)

    assert store.warm([NAME]) == {}  # logged, not raised: init goes on
    assert errors == [(NAME, 1, ArtifactIntegrityError)]  # reported once, by the store
    with pytest.raises(ModelUnavailableError):
        store.get(NAME)


def test_warm_skips_models_without_a_champion(registry: FakeRegistry, clock: FakeClock) -> None:
    prefetch = prefetched(registry, "no-such-model", NAME)
    store = make_store(registry, clock)
    store.adopt(prefetch)

    assert store.warm(["no-such-model", NAME]) == {NAME: 1}


def test_without_names_no_thread_starts_and_no_aws_client_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_PRELOAD_MODELS", raising=False)
    monkeypatch.setenv("SLUICE_REGISTRY_TABLE", "")  # would be refused if a registry were made
    get_settings.cache_clear()
    try:
        prefetch = Prefetch.from_settings()
    finally:
        get_settings.cache_clear()

    assert prefetch.names == ()
    assert not prefetch._thread.is_alive() and prefetch._thread.ident is None
    assert prefetch.registry is None
    assert prefetch.take(NAME, 1, timeout=0) is None


@pytest.mark.parametrize(
    ("value", "names"),
    [("", []), ("a", ["a"]), (" a , b ,,", ["a", "b"]), ("transaction-category", ["transaction-category"])],
)
def test_preload_models_setting_is_a_comma_separated_list(
    monkeypatch: pytest.MonkeyPatch, value: str, names: list[str]
) -> None:
    monkeypatch.setenv("SLUICE_PRELOAD_MODELS", value)
    get_settings.cache_clear()
    try:
        assert get_settings().preload_model_names == names
    finally:
        get_settings.cache_clear()


def test_what_the_prefetch_downloaded_is_kept_on_disk_after_it_is_handed_over(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    cache = ArtifactCache(tmp_path, 64 * 1024 * 1024)
    prefetch = Prefetch([NAME], registry, cache).start()  # type: ignore[arg-type]
    prefetch.join(timeout=30)

    sha = registry.versions_[(NAME, 1)].onnx_sha256
    assert cache.get(sha) == registry.artifacts[(NAME, 1)]
    again = Prefetch([NAME], registry, cache).start()  # type: ignore[arg-type]
    again.join(timeout=30)
    assert again.take(NAME, 1, timeout=0) is not None
    assert registry.calls.count(f"load_onnx:{NAME}:1") == 1  # the second one read the disk
