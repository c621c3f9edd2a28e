"""Champion models held in memory by the API, loaded from the registry and run by onnxruntime.

``ModelStore`` resolves a model name to its ``champion`` version, lazily: nothing is read from
AWS until the first request that needs a model (``/health`` never does), except for the models
``warm`` loads during the api function's init (``SLUICE_PRELOAD_MODELS``, opened meanwhile by a
``sluice.serving.prefetch.Prefetch``). A loaded version is kept per (model, version) and the
alias is re-read at most every ``alias_refresh_seconds``; a new champion is loaded beside the old
one and swapped in with one assignment, so requests never see a half-loaded model. When a new
version cannot be downloaded, verified (sha256) or loaded, the store keeps serving the version it
has, logs the error and counts ``ModelLoadErrors``; it tries again after the next refresh
interval. Versions dropped from memory stay on local disk (``sluice.serving.cache``), so that a
rollback to one of them needs no download. Unknown names are remembered for the same interval so
that they do not cost a registry read per request.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import onnxruntime as ort
from botocore.exceptions import BotoCoreError, ClientError

from sluice.contracts import FeatureSchema
from sluice.errors import ModelNotFoundError
from sluice.features import build_feed, onnx_input_names
from sluice.registry import CHALLENGER, CHAMPION, Registry
from sluice.serving.cache import ArtifactCache
from sluice.serving.capture import CapturePolicy
from sluice.serving.errors import IncompatibleModelError, ModelUnavailableError
from sluice.serving.observability import logger, record_model_load_error, traced
from sluice.serving.prefetch import OpenedVersion, Prefetch, open_version
from sluice.serving.schemas import RecordValidator
from sluice.settings import get_settings

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_ENTRIES = 1024  # remembered names (unknown ones are dropped first)
PROBABILITY_DIGITS = 6
_WARM_UP_VALUES: dict[str, Any] = {
    "text": "",
    "categorical": "",
    "numeric": 0.0,
    "date": datetime(2000, 1, 1),
}


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version: its schema, its validator and its onnxruntime session."""

    name: str
    version: int
    schema: FeatureSchema
    session: ort.InferenceSession
    metrics: dict[str, float] = field(default_factory=dict)
    capture: CapturePolicy = field(default_factory=CapturePolicy)
    challenger_share: float = 0.0  # when this version is the challenger: the share of callers it serves
    validator: RecordValidator = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "validator", RecordValidator(self.schema.features))

    @property
    def task(self) -> str:
        return self.schema.task

    def _outputs(self) -> list[str]:
        """The graph outputs this task reads, in the order ``_run`` returns them."""
        schema = self.schema
        if schema.task == "classification":
            return [schema.label_output, schema.probabilities_output]
        if schema.task == "anomaly":
            return [schema.score_output]
        return [schema.value_output]  # regression, forecast

    def check(self) -> None:
        """Refuse a graph that does not take the schema's inputs or give its task's outputs."""
        schema, where = self.schema, f"{self.name} v{self.version}"
        if schema.task == "classification" and not schema.classes:
            raise IncompatibleModelError(f"{where}: feature schema lists no classes")
        if schema.task == "anomaly" and schema.threshold is None:
            raise IncompatibleModelError(f"{where}: an anomaly model needs its threshold")
        if schema.task == "forecast" and schema.forecast is None:
            raise IncompatibleModelError(f"{where}: a forecast model needs its series history")
        expected = set(onnx_input_names(schema.features))
        actual = {i.name for i in self.session.get_inputs()}
        if expected != actual:
            raise IncompatibleModelError(
                f"{where}: graph inputs {sorted(actual)} != schema inputs {sorted(expected)}"
            )
        missing = set(self._outputs()) - {o.name for o in self.session.get_outputs()}
        if missing:
            raise IncompatibleModelError(f"{where}: graph lacks output(s) {sorted(missing)}")
        # One synthetic record: proves the graph runs here and allocates before the first caller.
        outputs = self._run([{f.name: _WARM_UP_VALUES[f.kind] for f in schema.features}])
        width = len(schema.classes) if schema.task == "classification" else 1
        shape = np.asarray(outputs[-1]).reshape(1, -1).shape
        if shape != (1, width):
            raise IncompatibleModelError(f"{where}: output of shape {shape}, expected (1, {width})")

    def _run(self, records: Sequence[Mapping[str, Any]]) -> list[np.ndarray]:
        return self.session.run(self._outputs(), build_feed(records, self.schema.features))

    def predict(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Validated records -> one answer per record, in input order:

        classification ``{"label", "probabilities": {class: p}}``; regression ``{"value",
        "interval": {"level", "lower", "upper"}}``; anomaly ``{"score", "flag", "threshold"}``."""
        outputs = self._run(records)
        return self.answers(outputs)

    def answers(self, outputs: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        schema = self.schema
        if schema.task == "classification":
            labels, probabilities = outputs
            rows = np.asarray(probabilities, dtype=np.float64).round(PROBABILITY_DIGITS).tolist()
            return [
                {"label": str(label), "probabilities": dict(zip(schema.classes, row, strict=True))}
                for label, row in zip(np.asarray(labels).reshape(-1).tolist(), rows, strict=True)
            ]
        values = np.asarray(outputs[0], dtype=np.float64).reshape(-1)
        if schema.task == "anomaly":
            threshold = float(schema.threshold or 0.0)
            return [
                {"score": round(v, PROBABILITY_DIGITS), "flag": bool(v >= threshold), "threshold": threshold}
                for v in values.tolist()
            ]
        interval = schema.interval
        out = []
        for v in values.tolist():
            answer: dict[str, Any] = {"value": v}
            if interval is not None and interval.lower:
                answer["interval"] = {
                    "level": interval.level,
                    "lower": v + interval.lower[0],
                    "upper": v + interval.upper[0],
                }
            out.append(answer)
        return out

    def forecast(self, days: int) -> list[dict[str, Any]]:
        """``days`` daily values after the training series by recursion, each with its interval."""
        from sluice.forecasting import interval_offsets, recursive_forecast

        info = self.schema.forecast
        if info is None:
            raise IncompatibleModelError(f"{self.name} v{self.version} is not a forecast model")
        output = self.schema.value_output

        def predict(feed: Mapping[str, np.ndarray]) -> np.ndarray:
            return self.session.run([output], dict(feed))[0]

        dates, values = recursive_forecast(predict, info, days)
        series = [{"date": d, "value": v} for d, v in zip(dates, values, strict=True)]
        interval = self.schema.interval
        if interval is not None and interval.lower:
            lower, upper = interval_offsets(interval.lower, interval.upper, days)
            for point, lo, hi in zip(series, lower, upper, strict=True):
                point["lower"], point["upper"] = point["value"] + lo, point["value"] + hi
        return series

    def explain(self, record: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, Any]:
        """Per-feature contributions by occlusion, from the served graph alone: the record, then the
        record with each feature in turn set to its baseline value, in one onnxruntime call.

        A feature's contribution is how much the explained output (the predicted class's
        probability, the value, or the anomaly score) drops when that feature takes its baseline
        value; ``baseline_output`` is the output with every feature at its baseline."""
        features = self.schema.features
        rows = [dict(record), dict(baseline)]
        for f in features:
            rows.append({**record, f.name: baseline[f.name]})
        outputs = self._run(rows)
        answers = self.answers(outputs)
        if self.task == "classification":
            label = answers[0]["label"]
            column = self.schema.classes.index(label)
            scores = np.asarray(outputs[1], dtype=np.float64)[:, column]
            explained = f"probability of {label!r}"
        else:
            scores = np.asarray(outputs[0], dtype=np.float64).reshape(-1)
            explained = "score" if self.task == "anomaly" else "value"
        contributions = [
            {
                "feature": f.name,
                "value": record.get(f.name),
                "baseline": baseline[f.name],
                "contribution": float(scores[0] - scores[2 + i]),
            }
            for i, f in enumerate(features)
        ]
        contributions.sort(key=lambda c: -abs(c["contribution"]))
        return {
            "prediction": answers[0],
            "explained_output": explained,
            "output": float(scores[0]),
            "baseline_output": float(scores[1]),
            "contributions": contributions,
        }


@traced
def load_model(
    registry: Registry,
    name: str,
    version: int,
    capture_rate: float | None = None,
    opened: OpenedVersion | None = None,
    cache: ArtifactCache | None = None,
) -> ServedModel:
    """Download (or read from ``cache``), verify and open one registered version (or take
    ``opened``, the same version already opened by a ``Prefetch``), then check it against its
    schema; raises if any step fails.

    ``capture_rate``: the share of requests captured when the model's spec sets none (default: the
    settings' ``SLUICE_CAPTURE_RATE``)."""
    own = opened is None or opened.version.version != version or opened.version.model != name
    if own or opened is None:
        opened = open_version(registry, name, version, cache)
    mv, meta, session = opened.version, opened.metadata, opened.session
    schema = FeatureSchema.model_validate(meta["feature_schema"])
    monitoring = (meta.get("spec") or {}).get("monitoring") or {}
    share = monitoring.get("challenger_share")
    capture = CapturePolicy.from_spec(
        monitoring,
        default_rate=get_settings().capture_rate if capture_rate is None else capture_rate,
    )
    model = ServedModel(
        name=name,
        version=version,
        schema=schema,
        session=session,
        metrics=dict(mv.metrics),
        capture=capture,
        challenger_share=float(get_settings().challenger_share if share is None else share),
    )
    model.check()
    if own:  # a prefetched version is kept by its prefetch
        opened.keep(cache)
    return model


@dataclass(frozen=True)
class _Entry:
    """What the store knows about one name since ``checked_at`` (immutable: swapped whole)."""

    checked_at: float
    model: ServedModel | None = None
    challenger: ServedModel | None = None  # serves challenger_share of the callers when set
    missing: str | None = None  # ModelNotFoundError message
    unavailable: str | None = None  # ModelUnavailableError message


class ModelStore:
    """Champion models by name, loaded lazily from the registry and refreshed on an interval.

    ``registry``, ``refresh_seconds`` and ``cache`` (verified artifacts on local disk,
    ``sluice.serving.cache``) default to the settings (``SLUICE_REGISTRY_TABLE``,
    ``SLUICE_DATA_BUCKET``, ``SLUICE_ALIAS_REFRESH_SECONDS``, ``SLUICE_MODEL_CACHE_*``), read on
    first use. ``get`` may call AWS; ``get_cached`` never does. Safe to share between threads.
    """

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        refresh_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_load_error: Callable[[str, int, BaseException], None] = record_model_load_error,
        capture_rate: float | None = None,
        cache: ArtifactCache | None = None,
    ):
        self._given_registry = registry
        self._given_cache = cache
        self._cache = cache
        self._registry = registry
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._on_load_error = on_load_error
        self._capture_rate = capture_rate
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._versions: dict[tuple[str, int], ServedModel] = {}
        self._listing: tuple[float, list[dict[str, Any]]] | None = None
        self._prefetch: Prefetch | None = None

    @property
    def registry(self) -> Registry:
        if self._registry is None and self._prefetch is not None:
            self._registry = self._prefetch.registry
        if self._registry is None:
            settings = get_settings()
            settings.require("registry_table", "data_bucket")
            self._registry = Registry(settings.registry_table, settings.data_bucket)
        return self._registry

    @property
    def cache(self) -> ArtifactCache:
        """The artifacts on local disk (``ArtifactCache.from_settings()`` unless one was given)."""
        if self._cache is None:
            self._cache = ArtifactCache.from_settings()
        return self._cache

    @property
    def refresh_seconds(self) -> float:
        if self._refresh_seconds is not None:
            return self._refresh_seconds
        return get_settings().alias_refresh_seconds

    def clear(self) -> None:
        """Forget every model and, unless one was given, the registry (tests, new settings)."""
        with self._lock:
            self._entries = {}
            self._versions = {}
            self._listing = None
            self._registry = self._given_registry
            self._cache = self._given_cache
            self._prefetch = None

    def adopt(self, prefetch: Prefetch) -> None:
        """Use what ``prefetch`` opens (its registry, and each champion it opened if that is the
        version this store loads) instead of opening it again; see ``sluice.serving.prefetch``."""
        self._prefetch = prefetch

    def warm(self, names: Sequence[str]) -> dict[str, int]:
        """Load the champions of ``names`` now (the api function's init), as a first request would;
        a model that has no champion or fails to load is logged and left for the requests to retry.
        Returns the model name -> version served by this process."""
        for name in names:
            try:
                self.get(name)
            except ModelNotFoundError as exc:  # not trained yet, or no champion
                logger.info("model not loaded at init", extra={"model": name, "reason": str(exc)})
            except Exception as exc:  # never fatal here: requests load it again and report the error
                logger.warning("model not loaded at init", extra={"model": name, "reason": str(exc)})
        return self.loaded()

    def _load(self, name: str, version: int) -> ServedModel:
        prefetch = self._prefetch
        opened = None
        if prefetch is not None:
            opened = prefetch.take(name, version, get_settings().preload_timeout_seconds)
        return load_model(self.registry, name, version, self._capture_rate, opened, self.cache)

    def loaded(self) -> dict[str, int]:
        """Model name -> version currently served by this process."""
        return {name: e.model.version for name, e in list(self._entries.items()) if e.model is not None}

    # -- lookups ------------------------------------------------------------------------------

    def get_cached(self, name: str) -> ServedModel | None:
        """The served version if checked within the refresh interval, else None; never calls AWS.

        Raises ModelNotFoundError / ModelUnavailableError if that is what the last check found.
        """
        entry = self._entries.get(name)
        if entry is None or self._clock() - entry.checked_at >= self.refresh_seconds:
            return None
        return _resolve(entry)

    def get(self, name: str) -> ServedModel:
        """The champion of ``name``, re-checking the alias if the refresh interval has passed."""
        if not MODEL_NAME.fullmatch(name):
            raise ModelNotFoundError(f"model {name[:64]!r} not found")
        model = self.get_cached(name)
        if model is not None:
            return model
        with self._lock:
            model = self.get_cached(name)  # another thread may have refreshed it meanwhile
            if model is not None:
                return model
            return _resolve(self._refresh(name))

    def route(self, name: str, caller: str) -> tuple[ServedModel, str]:
        """The version that answers ``caller`` (a stable key: the caller's id or API key) and its
        alias: the challenger for its share of callers, the same callers every time; else the champion."""
        champion = self.get(name)
        entry = self._entries.get(name)
        challenger = entry.challenger if entry is not None else None
        if challenger is not None and in_share(f"{name}:{caller}", challenger.challenger_share):
            return challenger, CHALLENGER
        return champion, CHAMPION

    def history(self, name: str) -> dict[str, Any]:
        """The model's aliases and registered versions, from the registry."""
        registry = self.registry
        versions = [
            {"version": v.version, "status": v.status, "created_at": v.created_at, "metrics": v.metrics}
            for v in registry.versions(name)
        ]
        aliases = {alias: registry.get_alias(name, alias) for alias in (CHAMPION, CHALLENGER)}
        return {"aliases": aliases, "versions": versions}

    def list_models(self) -> list[dict[str, Any]]:
        """Every registered model with its champion version and metrics (cached for the interval)."""
        listing = self._listing
        now = self._clock()
        if listing is not None and now - listing[0] < self.refresh_seconds:
            return listing[1]
        registry = self.registry
        out = []
        for item in registry.models():
            champion = item["aliases"].get(CHAMPION)
            metrics = registry.get_version(item["name"], champion).metrics if champion else {}
            out.append(
                {
                    "name": item["name"],
                    "champion_version": champion,
                    "latest_version": item["latest_version"],
                    "metrics": metrics,
                }
            )
        self._listing = (now, out)
        return out

    # -- refresh (under the lock) -------------------------------------------------------------

    def _refresh(self, name: str) -> _Entry:
        now = self._clock()
        previous = self._entries.get(name)
        current = previous.model if previous is not None else None
        try:
            version = self.registry.get_alias(name, CHAMPION)
        except (BotoCoreError, ClientError) as exc:
            if current is None:
                raise ModelUnavailableError(f"model {name!r}: the registry cannot be read") from exc
            logger.warning(
                "registry unreadable; keeping the served version",
                extra={"model": name, "version": current.version, "error": str(exc)},
            )
            return self._put(name, _Entry(now, model=current, challenger=previous.challenger))

        if version is None:
            if current is not None:
                logger.warning("champion alias gone; model no longer served", extra={"model": name})
            return self._put(
                name, _Entry(now, missing=f"model {name!r} not found or has no champion version")
            )

        challenger = self._challenger(name, version, previous)
        if current is not None and current.version == version:
            return self._put(name, _Entry(now, model=current, challenger=challenger))

        model = self._versions.get((name, version))
        if model is None:
            try:
                model = self._load(name, version)
            except Exception as exc:  # any failure to download/verify/open: keep what we serve
                logger.exception(
                    "model version failed to load",
                    extra={
                        "model": name,
                        "version": version,
                        "error_type": type(exc).__name__,
                        "kept_version": current.version if current else None,
                    },
                )
                self._on_load_error(name, version, exc)
                if current is not None:  # the canary goes on too: only the new champion failed
                    return self._put(name, _Entry(now, model=current, challenger=challenger))
                return self._put(
                    name,
                    _Entry(now, unavailable=f"model {name!r} v{version} cannot be served (failed to load)"),
                )
            self._versions[(name, version)] = model

        logger.info(
            "champion loaded",
            extra={
                "model": name,
                "version": version,
                "previous_version": current.version if current else None,
            },
        )
        keep = {version} | {m.version for m in (current, challenger) if m is not None}
        for key in [k for k in self._versions if k[0] == name and k[1] not in keep]:
            del self._versions[key]
        return self._put(name, _Entry(now, model=model, challenger=challenger))

    def _challenger(self, name: str, champion: int, previous: _Entry | None) -> ServedModel | None:
        """The challenger version, if the registry names one other than the champion; a version that
        fails to load is left out (and counted), the champion serves everybody meanwhile."""
        try:
            version = self.registry.get_alias(name, CHALLENGER)
        except (BotoCoreError, ClientError):
            return previous.challenger if previous is not None else None
        if version is None or version == champion:
            return None
        model = self._versions.get((name, version))
        if model is None:
            try:
                model = self._load(name, version)
            except Exception as exc:
                logger.exception("challenger failed to load", extra={"model": name, "version": version})
                self._on_load_error(name, version, exc)
                return None
            self._versions[(name, version)] = model
        return model

    def _put(self, name: str, entry: _Entry) -> _Entry:
        self._entries[name] = entry  # the atomic swap
        excess = len(self._entries) - MAX_ENTRIES
        if excess > 0:
            for key in [k for k, e in self._entries.items() if e.model is None and k != name][:excess]:
                del self._entries[key]
        return entry


def in_share(key: str, share: float) -> bool:
    """Deterministic: the same key is always in or always out of a ``share`` of the key space."""
    if share <= 0.0:
        return False
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") < min(share, 1.0) * 2**64


def _resolve(entry: _Entry) -> ServedModel:
    if entry.model is not None:
        return entry.model
    if entry.missing is not None:
        raise ModelNotFoundError(entry.missing)
    raise ModelUnavailableError(entry.unavailable or "model cannot be served")
