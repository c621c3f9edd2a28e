"""The base of every spec: frozen, no unknown fields, dict/YAML round trip."""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from sluice.kinds import FeatureKind

__all__ = ["ColumnType", "FeatureKind", "Spec", "field_error"]

ColumnType = Literal["string", "text", "float", "int", "datetime"]


def field_error(message: str) -> PydanticCustomError:
    """A validation error whose message starts with the field path (no "Value error, " prefix)."""
    return PydanticCustomError("spec_field", "{message}", {"message": message})


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        """Every field, defaults included: what lineage records."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)

    def to_yaml(self) -> str:
        """For people: fields left at their defaults are omitted (parsing restores them)."""
        data = self.model_dump(mode="json", exclude_none=True, exclude_defaults=True, by_alias=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
