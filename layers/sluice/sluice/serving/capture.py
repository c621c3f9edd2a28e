"""Inference capture: a sample of predictions, kept for drift monitoring and for ground-truth feedback.

A request is captured when the hash of its request id falls under the model's capture rate (so a
retried request is captured or not consistently). Its records pass through the model's privacy
rules first: fields listed in ``drop`` are removed and fields in ``hash`` replaced by a keyed hash
(HMAC-SHA256 with the stack's salt, so equal values stay equal for drift statistics but cannot be
looked up from a dictionary without the salt). What is kept goes two ways:

* **S3, batched** (``captures/<model>/v<version>/date=YYYY-MM-DD/<time>-<id>.jsonl.gz``): one JSON line
  per request (inputs, outputs, request id, version, latency), written when ``max_rows`` requests are
  buffered or the oldest is ``max_age_s`` old; what the monitor reads. Batching keeps S3 requests
  (and their cost) to one per batch instead of one per prediction; Kinesis Data Firehose would do the
  same buffering as a managed service, but it adds a stream per stack, a delivery role and a
  minimum charge, and moto cannot run its delivery, so the sandbox could not show it. A batch still
  buffered when the execution environment is reclaimed is lost: a monitoring sample tolerates it.
* **The predictions table, per request** (``pk = request id``, expiring after ``ttl_days``): what
  ``POST /v1/feedback`` joins the true value with. One small write per *captured* request.

Nothing here may fail a prediction: every error is logged, counted (``CaptureErrors``) and dropped.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CAPTURE_PREFIX = "captures"
MAX_INDEXED_PREDICTIONS = 1000  # one request holds at most 1000 records


def capture_prefix(model: str, version: int | None = None) -> str:
    base = f"{CAPTURE_PREFIX}/{model}/"
    return base if version is None else f"{base}v{version}/"


@dataclass(frozen=True)
class CapturePolicy:
    """How much of a model's traffic is captured and which fields never leave the request."""

    rate: float = 0.0
    drop: frozenset[str] = frozenset()
    hash: frozenset[str] = frozenset()

    @classmethod
    def from_spec(cls, monitoring: Mapping[str, Any] | None, default_rate: float) -> CapturePolicy:
        """From a model spec's ``monitoring`` section (``capture_rate``, ``drop``, ``hash``)."""
        monitoring = monitoring or {}
        rate = monitoring.get("capture_rate")
        return cls(
            rate=float(default_rate if rate is None else rate),
            drop=frozenset(monitoring.get("drop") or ()),
            hash=frozenset(monitoring.get("hash") or ()),
        )


def sampled(request_id: str, rate: float) -> bool:
    """Deterministic sampling: the same request id is always in or always out."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") < rate * 2**64


def scrub(records: Iterable[Mapping[str, Any]], policy: CapturePolicy, salt: bytes) -> list[dict[str, Any]]:
    out = []
    for record in records:
        kept: dict[str, Any] = {}
        for name, value in record.items():
            if name in policy.drop:
                continue
            if name in policy.hash and value is not None:
                mac = hmac.new(salt, str(value).encode(), hashlib.sha256).hexdigest()[:32]
                value = f"hmac:{mac}"
            kept[name] = value
        out.append(kept)
    return out


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


@dataclass
class _Batch:
    started: float
    lines: list[bytes] = field(default_factory=list)


class CaptureSink:
    """Buffers captured requests per (model, version) and writes them out; never raises."""

    def __init__(
        self,
        bucket: str,
        table: str,
        *,
        salt: bytes,
        max_rows: int = 500,
        max_age_s: float = 60.0,
        ttl_days: int = 30,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[str, BaseException], None] | None = None,
    ):
        self.bucket = bucket
        self.table = table
        self.salt = salt
        self.max_rows = max(1, int(max_rows))
        self.max_age_s = float(max_age_s)
        self.ttl_days = int(ttl_days)
        self._clock = clock
        self._on_error = on_error
        self._lock = threading.Lock()
        self._batches: dict[tuple[str, int], _Batch] = {}
        self.written_objects: list[str] = []

    def capture(
        self,
        *,
        model: str,
        version: int,
        request_id: str,
        records: Sequence[Mapping[str, Any]],
        predictions: Sequence[Mapping[str, Any]],
        policy: CapturePolicy,
        latency_ms: float,
    ) -> bool:
        """Capture one request if it is sampled; True when it was."""
        if not sampled(request_id, policy.rate):
            return False
        try:
            now = datetime.now(UTC)
            line = {
                "request_id": request_id,
                "model": model,
                "version": version,
                "captured_at": now.isoformat(timespec="milliseconds"),
                "latency_ms": round(latency_ms, 3),
                "inputs": scrub(records, policy, self.salt),
                "outputs": list(predictions),
            }
            self._index(line, now)
            encoded = json.dumps(line, separators=(",", ":"), default=_json_default).encode() + b"\n"
            due = None
            with self._lock:
                batch = self._batches.setdefault((model, version), _Batch(self._clock()))
                batch.lines.append(encoded)
                if len(batch.lines) >= self.max_rows or self._clock() - batch.started >= self.max_age_s:
                    due = self._batches.pop((model, version))
            if due is not None:
                self._write(model, version, due)
        except Exception as exc:  # a capture problem never fails the prediction
            self._error("capture", exc)
        return True

    def flush(self) -> int:
        """Write every buffered batch now (end of a test, shutdown of a local server)."""
        with self._lock:
            batches, self._batches = self._batches, {}
        for (model, version), batch in batches.items():
            self._write(model, version, batch)
        return len(batches)

    def _index(self, line: dict[str, Any], now: datetime) -> None:
        from sluice.aws import client

        outputs = json.dumps(line["outputs"][:MAX_INDEXED_PREDICTIONS], separators=(",", ":"), default=str)
        client("dynamodb").put_item(
            TableName=self.table,
            Item={
                "pk": {"S": line["request_id"]},
                "model": {"S": line["model"]},
                "version": {"N": str(line["version"])},
                "captured_at": {"S": line["captured_at"]},
                "predictions": {"S": outputs},
                "expires_at": {"N": str(int(now.timestamp()) + self.ttl_days * 86400)},
            },
        )

    def _write(self, model: str, version: int, batch: _Batch) -> None:
        from sluice.storage import put_bytes

        now = datetime.now(UTC)
        key = (
            f"{capture_prefix(model, version)}date={now:%Y-%m-%d}/"
            f"{now:%H%M%S}-{uuid.uuid4().hex[:12]}.jsonl.gz"
        )
        try:
            put_bytes(self.bucket, key, gzip.compress(b"".join(batch.lines)), "application/gzip")
            self.written_objects.append(key)
        except Exception as exc:
            self._error("capture_write", exc)

    def _error(self, stage: str, exc: BaseException) -> None:
        if self._on_error is not None:
            with contextlib.suppress(Exception):  # the error reporter must not fail either
                self._on_error(stage, exc)


def read_captures(bucket: str, model: str, *, since: datetime | None = None) -> list[dict[str, Any]]:
    """Every captured request of ``model`` (all versions) written since ``since`` (all when None)."""
    from sluice.aws import client
    from sluice.storage import get_object

    s3 = client("s3")
    rows: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=capture_prefix(model)):
        for obj in page.get("Contents", []):
            if since is not None and obj["LastModified"] < since:
                continue
            body = gzip.decompress(get_object(bucket, obj["Key"]).body)
            rows.extend(json.loads(line) for line in body.splitlines() if line.strip())
    return rows


def capture_sink(app: Any) -> CaptureSink | None:
    """The app's sink, built on first use from the settings; None when capture is not configured
    (no predictions table or bucket: the app then captures nothing)."""
    state = app.state
    if not hasattr(state, "capture_sink"):
        from sluice.serving.observability import record_capture_error
        from sluice.settings import get_settings

        settings = get_settings()
        state.capture_sink = (
            CaptureSink(
                settings.data_bucket,
                settings.predictions_table,
                salt=settings.capture_salt.encode(),
                max_rows=settings.capture_max_rows,
                max_age_s=settings.capture_max_age_seconds,
                on_error=record_capture_error,
            )
            if settings.predictions_table and settings.data_bucket
            else None
        )
    return state.capture_sink
