"""Champion artifacts opened in a background thread while the api function's init imports.

Opening a champion means two registry reads, downloading ``metadata.json`` and the ONNX file,
hashing it (sha256) and creating its onnxruntime session: 0.2 s of session alone for the household
category blend (347,000 tree nodes). The download, the hash and the session creation release the
GIL, and the rest of init is Python importing FastAPI, pydantic and Powertools, so both can run at
once: ``functions/api/app.py`` imports this module (boto3, the registry), starts a ``Prefetch`` of
the models named by ``SLUICE_PRELOAD_MODELS``, and only then imports the web framework.
``ModelStore.adopt`` hands the prefetch to the store, whose ``warm`` loads the champions before
init ends; a version the store loads is taken from the prefetch when it opened that very version,
and opened by the store otherwise.

The prefetch decides nothing: the store still reads the alias, validates the schema, runs its
checks and reports failures. A prefetch that failed, or opened a version that is no longer the
champion, is simply not used (the store opens the right version itself, and logs and counts its
errors as for any load).

This module imports the registry (boto3) and nothing heavier, so that the thread starts early.
onnxruntime is imported by ``functions/api/app.py`` right after the thread starts, while the thread
reads the registry and downloads; by the time the thread needs it, it is there (importing it
before starting the thread measured 0.05 s slower; importing it from the thread while the main
thread imports everything else, slower still: two threads importing at once wait on each other's
module locks and on the GIL).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluice.errors import ArtifactIntegrityError
from sluice.registry import CHAMPION, ModelVersion, Registry
from sluice.serving.cache import ArtifactCache

if TYPE_CHECKING:
    import onnxruntime as ort


def session_options() -> ort.SessionOptions:
    """onnxruntime tuned for Lambda: one (fractional) vCPU, one request at a time, small models.

    One thread and sequential execution (more threads only contend for the same vCPU), no
    spinning (a spinning worker burns billed CPU while idle), and no CPU memory arena: batch sizes
    vary from 1 to 1000 rows and an arena keeps its high-water mark for the life of the
    environment, while these graphs allocate little and gain nothing measurable from it.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_cpu_mem_arena = False
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only
    return opts


@dataclass(frozen=True)
class OpenedVersion:
    """One registered version, downloaded, verified and opened; not yet checked against its schema.

    ``downloaded``: the verified bytes if they came from S3 rather than the local cache; ``keep``
    puts them in the cache, which the caller does once the version is ready to serve."""

    version: ModelVersion
    metadata: dict[str, Any]
    session: ort.InferenceSession
    downloaded: bytes | None = field(default=None, repr=False)

    def keep(self, cache: ArtifactCache | None) -> None:
        if cache is not None and self.downloaded is not None:
            cache.put(self.version.onnx_sha256, self.downloaded)


def open_version(
    registry: Registry, name: str, version: int, cache: ArtifactCache | None = None
) -> OpenedVersion:
    """Read, download (or read from ``cache``), verify (metadata and sha256) and open one registered
    version; raises if a step fails (ModelNotFoundError, ArtifactIntegrityError, botocore and
    onnxruntime errors). Writes nothing to the cache: see ``OpenedVersion.keep``."""
    mv = registry.get_version(name, version)
    meta = registry.metadata(mv)
    if meta.get("onnx_sha256") != mv.onnx_sha256 or meta.get("version") != version:
        raise ArtifactIntegrityError(
            f"{name} v{version}: metadata.json does not describe the registered version"
        )
    onnx = cache.get(mv.onnx_sha256) if cache is not None else None
    downloaded = None
    if onnx is None:
        onnx = downloaded = registry.load_onnx(mv)  # verifies sha256
    import onnxruntime as ort  # imported by now: see the module docstring

    session = ort.InferenceSession(onnx, sess_options=session_options(), providers=["CPUExecutionProvider"])
    return OpenedVersion(version=mv, metadata=meta, session=session, downloaded=downloaded)


class Prefetch:
    """Opens the champion of each of ``names``, in order, in one daemon thread (``start``), through
    ``registry``, which the store then uses too (the function creates its AWS clients once)."""

    def __init__(self, names: Sequence[str], registry: Registry | None, cache: ArtifactCache | None = None):
        self.names = tuple(dict.fromkeys(n for n in names if n)) if registry is not None else ()
        self.registry = registry
        self._cache = cache
        self._opened: dict[str, Future[OpenedVersion | None]] = {n: Future() for n in self.names}
        self._thread = threading.Thread(target=self._run, name="sluice-prefetch", daemon=True)

    @classmethod
    def from_settings(cls) -> Prefetch:
        """The prefetch of ``SLUICE_PRELOAD_MODELS`` on the settings' registry, started (a no-op
        without names: no thread, no AWS call).

        The registry's clients are created here, before the thread starts: creating a botocore
        client stats every service directory botocore ships, and a thread doing hundreds of
        small system calls while another imports waits for the GIL after each one (0.2 s instead
        of 0.02 s, measured)."""
        from sluice.aws import client
        from sluice.settings import get_settings

        settings = get_settings()
        names = settings.preload_model_names
        if not names:
            return cls((), None)
        settings.require("registry_table", "data_bucket")
        registry = Registry(settings.registry_table, settings.data_bucket)
        client("s3")  # the artifacts' client, cached (sluice.aws)
        return cls(names, registry, ArtifactCache.from_settings()).start()

    def start(self) -> Prefetch:
        if self.names:
            self._thread.start()
        return self

    def _run(self) -> None:
        assert self.registry is not None  # names are empty without one
        opened_all = []
        for name, future in list(self._opened.items()):
            try:
                version = self.registry.get_alias(name, CHAMPION)
                opened = None if version is None else open_version(self.registry, name, version, self._cache)
                future.set_result(opened)
            except BaseException as exc:  # the store opens it again, and reports the error itself
                future.set_exception(exc)
                continue
            if opened is not None:
                opened_all.append(opened)
        for opened in opened_all:  # written last: init waits for the sessions, not for the disk
            opened.keep(self._cache)

    def take(self, name: str, version: int, timeout: float) -> OpenedVersion | None:
        """The opened champion of ``name`` if it is ``version``, once: waits for the thread up to
        ``timeout`` seconds; None if ``name`` was not prefetched, its prefetch failed or timed out,
        or the thread found another version."""
        future = self._opened.pop(name, None)
        if future is None:
            return None
        try:
            opened = future.result(timeout)
        except (FutureTimeout, Exception):
            return None
        if opened is None or opened.version.version != version:
            return None
        return opened

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)
