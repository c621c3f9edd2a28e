"""ArtifactCache: verified ONNX files on local disk, by sha256, bounded; never serves other bytes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from sluice.serving.cache import ArtifactCache
from sluice.serving.errors import ModelUnavailableError
from sluice.settings import get_settings
from tests.unit.serving.conftest import FakeClock, FakeRegistry, contract_onnx
from tests.unit.serving.test_models import NAME, RECORD, make_store

MB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_artifact_is_read_back_under_its_sha256(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, 10 * MB)
    data = contract_onnx()

    assert cache.get(sha(data)) is None
    cache.put(sha(data), data)

    assert cache.get(sha(data)) == data
    assert [p.name for p in cache.files()] == [f"{sha(data)}.onnx"]


def test_a_damaged_file_is_never_returned_and_is_deleted(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, 10 * MB)
    data = contract_onnx()
    cache.put(sha(data), data)
    path = cache.path(sha(data))
    assert path is not None
    path.write_bytes(data[:-1] + b"\x00")  # altered on disk

    assert cache.get(sha(data)) is None
    assert not path.exists()


def test_least_recently_used_files_go_first_and_oversized_ones_are_not_kept(tmp_path: Path) -> None:
    blobs = [bytes([i]) * 400_000 for i in range(3)]
    cache = ArtifactCache(tmp_path, 1_000_000)  # room for two
    for i, blob in enumerate(blobs[:2]):
        cache.put(sha(blob), blob)
        os.utime(tmp_path / f"{sha(blob)}.onnx", (1_000 + i, 1_000 + i))
    assert cache.get(sha(blobs[0])) == blobs[0]  # used again: now the most recent

    cache.put(sha(blobs[2]), blobs[2])

    assert {p.name for p in cache.files()} == {f"{sha(blobs[0])}.onnx", f"{sha(blobs[2])}.onnx"}
    big = b"x" * 1_000_001
    cache.put(sha(big), big)
    assert cache.get(sha(big)) is None


def test_a_disabled_cache_keeps_nothing(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, 0)
    data = contract_onnx()

    cache.put(sha(data), data)

    assert cache.get(sha(data)) is None
    assert list(tmp_path.iterdir()) == []


def test_a_disk_that_cannot_be_written_is_skipped_without_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    cache = ArtifactCache(blocker / "models", 10 * MB)
    data = contract_onnx()

    cache.put(sha(data), data)  # logged, not raised

    assert cache.get(sha(data)) is None
    assert cache.files() == []


def test_only_sha256_names_are_paths() -> None:
    cache = ArtifactCache(Path("/tmp/x"), MB)

    assert cache.path("../../etc/passwd") is None
    assert cache.path("A" * 64) is None


@pytest.mark.parametrize(("mb", "enabled"), [("0", False), ("1", True)])
def test_settings_name_the_directory_and_the_bound(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mb: str, enabled: bool
) -> None:
    monkeypatch.setenv("SLUICE_MODEL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SLUICE_MODEL_CACHE_MB", mb)
    get_settings.cache_clear()

    cache = ArtifactCache.from_settings()

    assert (cache.directory == tmp_path) is enabled
    assert cache.max_bytes == int(mb) * MB


def test_a_rollback_to_a_version_dropped_from_memory_needs_no_download(
    tmp_path: Path, clock: FakeClock
) -> None:
    registry = FakeRegistry()
    registry.add(NAME, contract_onnx())
    store = make_store(registry, clock, cache=ArtifactCache(tmp_path, 10 * MB))
    assert store.get(NAME).version == 1
    for classes in (["out", "in"], ["minus", "plus"]):  # v2 then v3: v1 leaves memory
        registry.add(NAME, contract_onnx(classes=classes), classes=classes)
        clock.advance(60)
        store.get(NAME)
    assert store.loaded() == {NAME: 3}

    registry.aliases[NAME] = 1  # rolled back
    clock.advance(60)
    model = store.get(NAME)

    assert model.version == 1
    assert model.predict([RECORD])[0]["label"] == "income"
    assert registry.calls.count(f"load_onnx:{NAME}:1") == 1  # the first load's; then from disk
    assert len(store.cache.files()) == 3


def test_a_version_that_fails_its_checks_is_not_kept(tmp_path: Path, clock: FakeClock) -> None:
    registry = FakeRegistry()
    registry.add(NAME, contract_onnx(), classes=["a", "b", "c"])  # the graph gives 2 classes, not 3
    cache = ArtifactCache(tmp_path, 10 * MB)
    store = make_store(registry, clock, cache=cache)

    with pytest.raises(ModelUnavailableError):
        store.get(NAME)
    assert cache.files() == []
