"""Small S3 helpers: bytes and JSON in and out, with sha256 where lineage needs it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from sluice.aws import client
from sluice.errors import SourceObjectError


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str
    version_id: str | None
    body: bytes

    @property
    def sha256(self) -> str:
        return sha256_hex(self.body)


def get_object(bucket: str, key: str, version_id: str | None = None) -> S3Object:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id and version_id != "null":
        kwargs["VersionId"] = version_id
    try:
        resp = client("s3").get_object(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise SourceObjectError(f"cannot read s3://{bucket}/{key}: {code or exc}") from exc
    return S3Object(bucket, key, resp.get("VersionId") or version_id, resp["Body"].read())


def put_bytes(
    bucket: str, key: str, body: bytes, content_type: str = "application/octet-stream"
) -> str | None:
    resp = client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return resp.get("VersionId")


def put_json(bucket: str, key: str, payload: Any) -> str | None:
    body = json.dumps(payload, indent=2, sort_keys=True, default=str).encode()
    return put_bytes(bucket, key, body, "application/json")


def get_json(bucket: str, key: str) -> Any:
    return json.loads(get_object(bucket, key).body)
