"""The S3 step: stream an uploaded object through ingest and publish ``curated/<dataset>/<run_id>/``.

The object is read as a stream (boto3 ``StreamingBody``, gunzipped on the fly when compressed) and
hashed while it is read; typed chunks go to files under the Lambda's ``/tmp``
(``tempfile.gettempdir()``), which are uploaded at the end (``upload_file``: multipart for large
files). quality.json is uploaded last, so its presence means the run is complete.

**Idempotency.** The run id is derived from the object version (``run_id_for``): the same version
ingested twice (a replayed event, a retried state) finds ``quality.json`` of its run already there
and returns the IngestResult it records, rewriting nothing (a run whose gate failed raises the same
QualityGateError again). For a versioned object the match is checked on the version id and ETag
before the body is read; for an unversioned one the run id depends on the content's sha256, known
once the body has been read. The models to train are those the specs name now.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import ClientError

from sluice.aws import client
from sluice.contracts import IngestRequest, IngestResult, SourceObject
from sluice.errors import QualityGateError, SourceObjectError
from sluice.ingest.outcome import UNPUBLISHED
from sluice.settings import get_settings
from sluice.specs import DatasetSpec, model_specs_for, resolve_dataset_spec

_CONTENT_TYPES = {
    "data.npz": "application/octet-stream",
    "quarantine.csv": "text/csv",
    "schema.json": "application/json",
    "profile.json": "application/json",
    "quality.json": "application/json",
}


def run_id_for(bucket: str, key: str, version_id: str | None, sha256: str) -> str:
    """Deterministic: the same object version (or, unversioned, the same content) -> the same run id."""
    identity = f"{bucket}\n{key}\n{version_id or 'sha256:' + sha256}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _spec_for(request: IngestRequest) -> tuple[DatasetSpec, str]:
    key = request.key
    if request.dataset:
        key = f"raw/{request.dataset}/{PurePosixPath(request.key).name or 'input.csv'}"
    return resolve_dataset_spec(request.bucket, key)


def _existing(
    bucket: str, prefix: str, matches: dict[str, Any], etag: str | None = None
) -> dict[str, Any] | None:
    """The quality.json of a finished run for the same object, or None."""
    import json

    try:
        body = client("s3").get_object(Bucket=bucket, Key=prefix + "quality.json")["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    report = json.loads(body)
    source = report.get("source") or {}
    if any(source.get(k) != v for k, v in matches.items()):
        return None
    if etag and report.get("source_etag") not in (None, etag):
        return None
    return report


def _result_from(report: dict[str, Any]) -> IngestResult:
    gate = report.get("gate") or {}
    outputs = report["outputs"]
    if not gate.get("passed", False):
        raise QualityGateError(
            f"{gate.get('problem')} (report: s3://{outputs['bucket']}/{outputs['quality.json']}; "
            "this object version was already ingested)"
        )
    prefix = outputs["quality.json"].removesuffix("quality.json")
    return IngestResult(
        dataset=report["dataset"],
        run_id=report["run_id"],
        source=SourceObject.model_validate(report["source"]),
        curated_prefix=prefix,
        data_key=outputs["data.npz"],
        schema_key=outputs["schema.json"],
        quality_key=outputs["quality.json"],
        quarantine_key=outputs["quarantine.csv"],
        rows_read=report["rows_read"],
        rows_clean=report["rows_clean"],
        rows_quarantined=report["rows_quarantined"],
        models=[m.name for m in model_specs_for(report["dataset"])],
    )


def ingest(request: IngestRequest) -> IngestResult:
    """``_ingest``, then what the request adds: the models to train (a retraining names its model)
    and why the run started (the monitor's reasons), both carried to the registry's lineage."""
    result = _ingest(request)
    update: dict[str, Any] = {}
    if request.models is not None:
        update["models"] = [m for m in result.models if m in request.models]
    if request.trigger:
        update["trigger"] = request.trigger
    return result.model_copy(update=update) if update else result


def _ingest(request: IngestRequest) -> IngestResult:
    """Stream the uploaded object through ingest, write ``curated/<dataset>/<run_id>/`` and return the
    result (see the module docstring for idempotency).

    quality.json and quarantine.csv are written even when the quality gate fails (then data.npz,
    schema.json and profile.json are not, and QualityGateError is raised), so a rejected upload can
    be diagnosed.
    """
    from sluice.ingest.engine import ingest_stream, unpublish
    from sluice.ingest.source import HashingReader

    settings = get_settings()
    settings.require("data_bucket")
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    spec, spec_source = _spec_for(request)
    dataset = spec.name
    out = settings.data_bucket
    s3 = client("s3")

    kwargs: dict[str, Any] = {"Bucket": request.bucket, "Key": request.key}
    if request.version_id and request.version_id != "null":
        kwargs["VersionId"] = request.version_id
    try:
        resp = s3.get_object(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise SourceObjectError(f"cannot read s3://{request.bucket}/{request.key}: {code or exc}") from exc
    version_id = resp.get("VersionId") or request.version_id
    version_id = version_id if version_id not in (None, "", "null") else None
    etag = resp.get("ETag")

    if version_id:
        run_id = run_id_for(request.bucket, request.key, version_id, "")
        report = _existing(out, f"curated/{dataset}/{run_id}/", {"version_id": version_id}, etag)
        if report is not None:
            resp["Body"].close()
            return _result_from(report)

    body = HashingReader(resp["Body"])
    with tempfile.TemporaryDirectory(prefix="sluice-ingest-", dir=tempfile.gettempdir()) as tmp:
        t1 = time.perf_counter()
        try:
            outcome = ingest_stream(body, spec, gate=False, out_dir=Path(tmp))
            body.drain()
            sha = body.hexdigest()
        finally:
            body.close()
        t2 = time.perf_counter()
        if not version_id:
            run_id = run_id_for(request.bucket, request.key, None, sha)
            report = _existing(out, f"curated/{dataset}/{run_id}/", {"sha256": sha, "key": request.key})
            if report is not None:
                return _result_from(report)
        source = SourceObject(
            bucket=request.bucket, key=request.key, version_id=version_id, sha256=sha, size=body.size
        )
        prefix = f"curated/{dataset}/{run_id}/"
        keys = {name: prefix + name for name in _CONTENT_TYPES}
        problem = outcome.quality["gate"]["problem"]
        if problem is not None:
            unpublish(outcome)
        for name in ("data.npz", "schema.json", "profile.json", "quarantine.csv"):
            path = Path(tmp) / name
            if path.exists():
                s3.upload_file(str(path), out, keys[name], ExtraArgs={"ContentType": _CONTENT_TYPES[name]})
        t3 = time.perf_counter()
        report = {
            **outcome.quality,
            "run_id": run_id,
            "source": source.to_event(),
            "source_etag": etag,
            "spec_source": spec_source,
            "outputs": {"bucket": out, **keys},
            "started_at": started.isoformat(),
            "timings": {
                "read_s": round(t1 - t0 + body.read_s, 4),
                "ingest_s": round(t2 - t1 - body.read_s, 4),
                "write_s": round(t3 - t2, 4),
            },
        }
        if problem is not None:
            for name in UNPUBLISHED:
                report["outputs"].pop(name)
        from sluice.storage import put_json

        put_json(out, keys["quality.json"], report)
    if problem is not None:
        raise QualityGateError(f"{problem} (report: s3://{out}/{keys['quality.json']})")
    return _result_from(report)
