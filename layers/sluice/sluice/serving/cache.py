"""Verified ONNX artifacts kept on local disk (Lambda's /tmp), named by their sha256.

The memory of the api function holds the versions it serves (champion, challenger, the previous
champion for a rollback); this cache holds the ones it served before, so that moving an alias back
to an older version, or retrying a load, does not download it again. It is content-addressed: a
file is named by the sha256 the registry holds for the version, written only after the download
matched it, and read back only if its bytes still hash to that name. A damaged or altered file is
deleted and the version downloaded again: the cache can never serve bytes the registry did not
register.

It is bounded (``SLUICE_MODEL_CACHE_MB``, 256 by default: Lambda's /tmp is 512 MB unless the
function asks for more): after each write, the least recently used files go until the rest fit.
A disk error never fails a load: the cache is skipped and the error logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

_SHA256 = re.compile(r"[0-9a-f]{64}")
SUFFIX = ".onnx"


def _warn(message: str, **extra: object) -> None:
    # Imported here: this module is imported before the web framework and Powertools (prefetch).
    from sluice.serving.observability import logger

    logger.warning(message, extra=extra)


class ArtifactCache:
    """``directory`` None (or ``max_bytes`` 0): no cache (``get`` finds nothing, ``put`` keeps nothing)."""

    def __init__(self, directory: Path | None, max_bytes: int):
        self.directory = directory if max_bytes > 0 else None
        self.max_bytes = max_bytes

    @classmethod
    def disabled(cls) -> ArtifactCache:
        return cls(None, 0)

    @classmethod
    def from_settings(cls) -> ArtifactCache:
        """``SLUICE_MODEL_CACHE_DIR`` (default: ``sluice-models`` in the system's temporary
        directory, /tmp on Lambda) and ``SLUICE_MODEL_CACHE_MB``."""
        from sluice.settings import get_settings

        settings = get_settings()
        directory = Path(settings.model_cache_dir or Path(tempfile.gettempdir()) / "sluice-models")
        return cls(directory, int(settings.model_cache_mb * 1024 * 1024))

    def path(self, sha256: str) -> Path | None:
        if self.directory is None or not _SHA256.fullmatch(sha256):
            return None
        return self.directory / f"{sha256}{SUFFIX}"

    def get(self, sha256: str) -> bytes | None:
        """The cached bytes of ``sha256`` if they still hash to it, else None (a damaged file is
        deleted)."""
        path = self.path(sha256)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            _warn("model cache unreadable", error=str(exc))
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            _warn("model cache file does not match its sha256; deleted", file=path.name)
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # most recently used
        return data

    def put(self, sha256: str, data: bytes) -> None:
        """Keep ``data`` (whose sha256 the caller verified) under its name, then trim the cache."""
        path = self.path(sha256)
        if path is None or len(data) > self.max_bytes:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)  # whole or not at all
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self._trim(keep=path)
        except OSError as exc:
            _warn("model cache not written", error=str(exc))

    def files(self) -> list[Path]:
        """The cached artifacts, least recently used first."""
        if self.directory is None or not self.directory.is_dir():
            return []
        entries = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            try:
                entries.append((path.stat().st_mtime_ns, path))
            except FileNotFoundError:
                continue
        return [path for _, path in sorted(entries)]

    def _trim(self, keep: Path) -> None:
        files = self.files()
        sizes = {p: p.stat().st_size for p in files}
        total = sum(sizes.values())
        for path in files:
            if total <= self.max_bytes:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= sizes[path]
