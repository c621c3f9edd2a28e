"""Model registry: DynamoDB for versions and aliases, S3 for artifacts.

Table layout (one table, ``pk``/``sk`` strings):

==========================  =============================  ======================================
pk                          sk                             item
==========================  =============================  ======================================
``MODEL#<name>``            ``META``                       ``latest_version`` counter
``MODEL#<name>``            ``VERSION#<0000000001>``       immutable version (status, sha256, keys)
``MODEL#<name>``            ``ALIAS#<champion>``           current version of an alias
``MODEL#<name>``            ``AUDIT#<iso time>#<id>``      one record per alias move
==========================  =============================  ======================================

Versions are numbered from 1 by an atomic counter, written once (``attribute_not_exists``) and
never changed. Aliases move only by a conditional write on the version they are expected to hold,
so two pipelines finishing together cannot overwrite each other's move.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from sluice.aws import client
from sluice.errors import (
    AliasConflictError,
    ArtifactIntegrityError,
    ModelNotFoundError,
    PromotionRefusedError,
)
from sluice.storage import get_object, put_bytes, put_json, sha256_hex

CHAMPION, CHALLENGER = "champion", "challenger"
ALIASES = (CHAMPION, CHALLENGER)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def model_prefix(model: str, version: int) -> str:
    return f"models/{model}/v{version}"


def summary_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The flat metrics a version item carries: the holdout ones of ``{"cv", "holdout", "baseline"}``
    (or an older flat dict as it is)."""
    if isinstance(metrics.get("holdout"), dict):
        metrics = metrics["holdout"]
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: int
    status: str
    onnx_key: str
    onnx_sha256: str
    metadata_key: str
    created_at: str
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ModelVersion:
        return cls(
            model=item["model"]["S"],
            version=int(item["version"]["N"]),
            status=item["status"]["S"],
            onnx_key=item["onnx_key"]["S"],
            onnx_sha256=item["onnx_sha256"]["S"],
            metadata_key=item["metadata_key"]["S"],
            created_at=item["created_at"]["S"],
            metrics=json.loads(item.get("metrics", {}).get("S", "{}")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "status": self.status,
            "onnx_key": self.onnx_key,
            "onnx_sha256": self.onnx_sha256,
            "metadata_key": self.metadata_key,
            "created_at": self.created_at,
            "metrics": self.metrics,
        }


class Registry:
    def __init__(self, table: str, bucket: str):
        self.table = table
        self.bucket = bucket
        self._ddb = client("dynamodb")

    # -- versions -----------------------------------------------------------------------------

    def _next_version(self, model: str) -> int:
        resp = self._ddb.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"MODEL#{model}"}, "sk": {"S": "META"}},
            UpdateExpression="ADD latest_version :one SET model = :m",
            ExpressionAttributeValues={":one": {"N": "1"}, ":m": {"S": model}},
            ReturnValues="UPDATED_NEW",
        )
        return int(resp["Attributes"]["latest_version"]["N"])

    def register(self, model: str, onnx: bytes, metadata: dict[str, Any], status: str) -> ModelVersion:
        """Write a new immutable version: artifacts to S3 first, then the registry item."""
        version = self._next_version(model)
        prefix = model_prefix(model, version)
        sha = sha256_hex(onnx)
        created = _now()
        metadata = {
            **metadata,
            "model": model,
            "version": version,
            "status": status,
            "onnx_sha256": sha,
            "registered_at": created,
        }
        put_bytes(self.bucket, f"{prefix}/model.onnx", onnx)
        put_json(self.bucket, f"{prefix}/metadata.json", metadata)
        mv = ModelVersion(
            model=model,
            version=version,
            status=status,
            onnx_key=f"{prefix}/model.onnx",
            onnx_sha256=sha,
            metadata_key=f"{prefix}/metadata.json",
            created_at=created,
            metrics=summary_metrics(metadata.get("metrics", {})),
        )
        self._ddb.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": f"MODEL#{model}"},
                "sk": {"S": f"VERSION#{version:010d}"},
                "model": {"S": model},
                "version": {"N": str(version)},
                "status": {"S": status},
                "onnx_key": {"S": mv.onnx_key},
                "onnx_sha256": {"S": sha},
                "metadata_key": {"S": mv.metadata_key},
                "created_at": {"S": created},
                "metrics": {"S": json.dumps(mv.metrics, sort_keys=True)},
            },
            ConditionExpression="attribute_not_exists(sk)",
        )
        return mv

    def get_version(self, model: str, version: int) -> ModelVersion:
        resp = self._ddb.get_item(
            TableName=self.table,
            Key={"pk": {"S": f"MODEL#{model}"}, "sk": {"S": f"VERSION#{version:010d}"}},
            ConsistentRead=True,
        )
        if "Item" not in resp:
            raise ModelNotFoundError(f"model {model!r} has no version {version}")
        return ModelVersion.from_item(resp["Item"])

    def versions(self, model: str) -> list[ModelVersion]:
        items = self._query(model, "VERSION#")
        return [ModelVersion.from_item(i) for i in items]

    def metadata(self, mv: ModelVersion) -> dict[str, Any]:
        return json.loads(get_object(self.bucket, mv.metadata_key).body)

    def load_onnx(self, mv: ModelVersion) -> bytes:
        """The version's ONNX bytes, refused unless their sha256 matches the registry's."""
        body = get_object(self.bucket, mv.onnx_key).body
        actual = sha256_hex(body)
        if actual != mv.onnx_sha256:
            raise ArtifactIntegrityError(
                f"{mv.model} v{mv.version}: sha256 {actual} of {mv.onnx_key} != registered {mv.onnx_sha256}"
            )
        return body

    # -- aliases ------------------------------------------------------------------------------

    def get_alias(self, model: str, alias: str = "champion") -> int | None:
        resp = self._ddb.get_item(
            TableName=self.table,
            Key={"pk": {"S": f"MODEL#{model}"}, "sk": {"S": f"ALIAS#{alias}"}},
            ConsistentRead=True,
        )
        item = resp.get("Item")
        return int(item["version"]["N"]) if item else None

    def set_alias(self, model: str, alias: str, version: int, *, expected: int | None, reason: str) -> None:
        """Move ``alias`` to ``version`` if it still points at ``expected`` (None: unset)."""
        if alias not in ALIASES:
            raise ValueError(f"alias must be one of {ALIASES}")
        self.get_version(model, version)  # the target must exist
        if expected is None:
            condition = "attribute_not_exists(version)"
            values: dict[str, Any] = {}
        else:
            condition = "version = :expected"
            values = {":expected": {"N": str(expected)}}
        now = _now()
        try:
            self._ddb.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": f"MODEL#{model}"},
                    "sk": {"S": f"ALIAS#{alias}"},
                    "model": {"S": model},
                    "alias": {"S": alias},
                    "version": {"N": str(version)},
                    "updated_at": {"S": now},
                    "reason": {"S": reason},
                },
                ConditionExpression=condition,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise AliasConflictError(
                    f"{model}:{alias} no longer points at {expected}; not moved to {version}"
                ) from exc
            raise
        self._audit(model, alias, expected, version, reason, now)

    def _audit(
        self, model: str, alias: str, before: int | None, after: int | None, reason: str, now: str
    ) -> None:
        """One audit item per alias move (None: the alias was unset before / is removed after)."""

        def number(v: int | None) -> dict[str, Any]:
            return {"N": str(v)} if v is not None else {"NULL": True}

        self._ddb.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": f"MODEL#{model}"},
                "sk": {"S": f"AUDIT#{now}#{uuid.uuid4().hex[:8]}"},
                "alias": {"S": alias},
                "from_version": number(before),
                "to_version": number(after),
                "reason": {"S": reason},
                "at": {"S": now},
            },
        )

    def clear_alias(self, model: str, alias: str, *, expected: int, reason: str) -> None:
        """Remove ``alias`` if it still points at ``expected`` (a retired challenger), audited."""
        now = _now()
        try:
            self._ddb.delete_item(
                TableName=self.table,
                Key={"pk": {"S": f"MODEL#{model}"}, "sk": {"S": f"ALIAS#{alias}"}},
                ConditionExpression="version = :expected",
                ExpressionAttributeValues={":expected": {"N": str(expected)}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise AliasConflictError(
                    f"{model}:{alias} no longer points at {expected}; not removed"
                ) from exc
            raise
        self._audit(model, alias, expected, None, reason, now)

    def promote(self, model: str, version: int, *, reason: str, alias: str = "champion") -> int | None:
        """Point ``alias`` at ``version`` (never at a rejected one); returns the version it held."""
        mv = self.get_version(model, version)
        if mv.status == "rejected":
            raise PromotionRefusedError(
                f"{model} v{version} was rejected by the gates and cannot become {alias} "
                f"(see models/{model}/v{version}/metadata.json for the reasons)"
            )
        current = self.get_alias(model, alias)
        if current != version:
            self.set_alias(model, alias, version, expected=current, reason=reason)
        return current

    def rollback(self, model: str, *, reason: str, to: int | None = None) -> tuple[int, int]:
        """Move the champion back: to ``to``, or to the newest accepted version older than it.

        Returns (from, to). Rolling back is moving an alias; no version is changed or deleted."""
        current = self.get_alias(model, "champion")
        if current is None:
            raise ModelNotFoundError(f"{model} has no champion to roll back")
        if to is None:
            older = [
                v.version for v in self.versions(model) if v.version < current and v.status != "rejected"
            ]
            if not older:
                raise PromotionRefusedError(
                    f"{model}: champion v{current} has no earlier champion to roll back to"
                )
            to = max(older)
        self.promote(model, to, reason=reason)
        return current, to

    def audit(self, model: str) -> list[dict[str, Any]]:
        out = []
        for item in self._query(model, "AUDIT#"):
            out.append(
                {
                    "alias": item["alias"]["S"],
                    "from": int(item["from_version"]["N"]) if "N" in item["from_version"] else None,
                    "to": int(item["to_version"]["N"]) if "N" in item["to_version"] else None,
                    "reason": item["reason"]["S"],
                    "at": item["at"]["S"],
                }
            )
        return out

    # -- listing ------------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """Every model with its latest version and its aliases."""
        out: dict[str, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "sk = :meta OR begins_with(sk, :alias)",
            "ExpressionAttributeValues": {":meta": {"S": "META"}, ":alias": {"S": "ALIAS#"}},
        }
        while True:
            resp = self._ddb.scan(**kwargs)
            for item in resp.get("Items", []):
                name = item["pk"]["S"].removeprefix("MODEL#")
                entry = out.setdefault(name, {"name": name, "latest_version": None, "aliases": {}})
                if item["sk"]["S"] == "META":
                    entry["latest_version"] = int(item["latest_version"]["N"])
                else:
                    entry["aliases"][item["alias"]["S"]] = int(item["version"]["N"])
            if "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return [out[k] for k in sorted(out)]

    def _query(self, model: str, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
            "ExpressionAttributeValues": {":pk": {"S": f"MODEL#{model}"}, ":p": {"S": prefix}},
            "ConsistentRead": True,
        }
        while True:
            resp = self._ddb.query(**kwargs)
            items.extend(resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return items
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
