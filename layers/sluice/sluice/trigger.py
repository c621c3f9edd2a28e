"""Start the training pipeline for one uploaded object version, at most once.

EventBridge delivers S3 ``Object Created`` events at least once, and cannot name the execution it
starts. The trigger function sits between the rule and the state machine: it names the execution
after the object version (bucket, key, version id), so a duplicated or replayed event asks Step
Functions for an execution name that already exists, and nothing new starts.

Step Functions answers a repeated name in one of two ways: ``ExecutionAlreadyExists`` (the first
execution finished, or its input differs), or, for the same name and the same input while the first
is still running, the existing execution's ARN and start date. Both mean "not new".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, datetime
from typing import Any

from sluice.contracts import IngestRequest, Payload
from sluice.errors import ConfigurationError

# Step Functions: 1-80 characters; we keep to the set every consumer of the name accepts
# (CloudWatch Logs, X-Ray, ARNs): letters, digits, '-' and '_'.
MAX_NAME_LENGTH = 80
DIGEST_LENGTH = 20  # hex characters of sha256: 80 bits
NAME_CHARS = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_SUFFIXES = (".csv.gz", ".csv")
STATE_MACHINE_ARN_ENV = "SLUICE_STATE_MACHINE_ARN"


class TriggerResult(Payload):
    """What the trigger did with one event; ``execution_name`` is what lineage shows."""

    started: bool
    execution_name: str | None = None
    execution_arn: str | None = None
    reason: str = ""
    bucket: str = ""
    key: str = ""
    version_id: str | None = None


def raw_csv_parts(key: str) -> tuple[str, str] | None:
    """``raw/<dataset>/[...]/<file>.csv[.gz]`` -> (dataset, file stem); None for any other key."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != "raw" or not parts[1]:
        return None
    filename = parts[-1]
    for suffix in _SUFFIXES:
        if filename.lower().endswith(suffix) and len(filename) > len(suffix):
            return parts[1], filename[: -len(suffix)]
    return None


def _sanitize(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-_")


def object_identity(bucket: str, key: str, version_id: str | None, etag: str | None = None) -> str:
    """Unambiguous identity of one object version (the etag stands in for an unversioned object)."""
    if version_id in (None, "", "null"):
        version = f"etag:{(etag or '').strip(chr(34))}"
    else:
        version = f"version:{version_id}"
    return json.dumps([bucket, key, version], ensure_ascii=False, separators=(",", ":"))


def execution_name(bucket: str, key: str, version_id: str | None, etag: str | None = None) -> str:
    """Deterministic Step Functions execution name for one object version.

    ``<dataset>-<file stem>`` made safe (``[A-Za-z0-9_-]``) and cut to fit, then ``-`` and the first
    20 hex characters of the sha256 of (bucket, key, version id): readable in the console, unique
    per object version, at most 80 characters. ``version_id`` None or "null" (unversioned bucket)
    falls back to the object's etag, so a new content still gets a new name.
    """
    digest = hashlib.sha256(object_identity(bucket, key, version_id, etag).encode()).hexdigest()
    digest = digest[:DIGEST_LENGTH]
    parts = raw_csv_parts(key)
    readable = f"{parts[0]}-{parts[1]}" if parts else key.rsplit("/", 1)[-1]
    room = MAX_NAME_LENGTH - DIGEST_LENGTH - 1
    prefix = _sanitize(_sanitize(readable)[:room]) or "s3"
    name = f"{prefix}-{digest}"
    assert NAME_CHARS.match(name), name
    return name


def _etag(event: dict[str, Any]) -> str | None:
    obj = (event.get("detail") or {}).get("object") or {}
    return obj.get("etag") or obj.get("eTag") or event.get("etag")


def state_machine_arn_from_env() -> str:
    arn = os.environ.get(STATE_MACHINE_ARN_ENV, "")
    if not arn:
        raise ConfigurationError(f"missing environment variable(s): {STATE_MACHINE_ARN_ENV}")
    return arn


def start_pipeline(event: dict[str, Any], state_machine_arn: str, sfn: Any = None) -> TriggerResult:
    """Start the state machine for the object version in ``event`` unless it was started before.

    The execution's input is the event itself (the Ingest step reads it). Raises SourceObjectError
    for an event that names no S3 object; a key outside ``raw/<dataset>/<file>.csv[.gz]`` is
    answered with ``started: false``.
    """
    request = IngestRequest.from_event(event)
    base = {"bucket": request.bucket, "key": request.key, "version_id": request.version_id}
    if raw_csv_parts(request.key) is None:
        return TriggerResult(started=False, reason="not a raw/<dataset>/<file>.csv[.gz] key", **base)
    name = execution_name(request.bucket, request.key, request.version_id, _etag(event))
    if sfn is None:
        from sluice.aws import client

        sfn = client("stepfunctions")
    # Step Functions reports startDate in milliseconds: compare at that precision.
    now = datetime.now(UTC)
    called_at = now.replace(microsecond=now.microsecond // 1000 * 1000)
    try:
        resp = sfn.start_execution(
            stateMachineArn=state_machine_arn,
            name=name,
            input=json.dumps(event, default=str, separators=(",", ":")),
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        return TriggerResult(
            started=False,
            execution_name=name,
            execution_arn=_execution_arn(state_machine_arn, name),
            reason="duplicate event",
            **base,
        )
    started_at = resp.get("startDate")
    if isinstance(started_at, datetime) and started_at.tzinfo is None:
        started_at = started_at.replace(tzinfo=UTC)
    # Same name and same input while the first execution runs: Step Functions returns that one.
    if isinstance(started_at, datetime) and started_at < called_at:
        return TriggerResult(
            started=False,
            execution_name=name,
            execution_arn=resp["executionArn"],
            reason="duplicate event",
            **base,
        )
    return TriggerResult(
        started=True, execution_name=name, execution_arn=resp["executionArn"], reason="started", **base
    )


def _execution_arn(state_machine_arn: str, name: str) -> str:
    """arn:...:stateMachine:<sm> -> arn:...:execution:<sm>:<name> (the ARN Step Functions gives it)."""
    head, sep, machine = state_machine_arn.partition(":stateMachine:")
    if not sep:
        return ""
    return f"{head}:execution:{machine.split(':', 1)[0]}:{name}"
