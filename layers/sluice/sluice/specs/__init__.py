"""Dataset and model specs: plain data, validated at load, round-trip to dict/YAML.

Built-in specs live as YAML next to this file; a user adds a spec by adding a YAML file
(in the repo, or uploaded to S3 next to the data: see ``resolve_dataset_spec``) without changing code.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from sluice.errors import SpecError, UnknownDatasetError
from sluice.specs.base import ColumnType, FeatureKind, Spec, field_error
from sluice.specs.model import (
    DEFAULT_CANDIDATES,
    DEFAULT_METRIC,
    METRICS,
    AnomalySpec,
    EstimatorSpec,
    FeatureSpec,
    FilterSpec,
    ForecastSignSpec,
    ForecastSpec,
    GateSpec,
    ModelSpec,
    MonitoringSpec,
    SearchSpec,
    SplitSpec,
    Task,
    greater_is_better,
)

__all__ = [
    "DEFAULT_CANDIDATES",
    "DEFAULT_METRIC",
    "METRICS",
    "AnomalySpec",
    "ColumnSpec",
    "ColumnType",
    "DatasetSpec",
    "EstimatorSpec",
    "FeatureKind",
    "FeatureSpec",
    "FilterSpec",
    "ForecastSignSpec",
    "ForecastSpec",
    "FormatSpec",
    "GateSpec",
    "ModelSpec",
    "MonitoringSpec",
    "RuleSpec",
    "SearchSpec",
    "SignSpec",
    "SplitSpec",
    "Task",
    "greater_is_better",
]


class RuleSpec(Spec):
    """Validation rules on a typed value; a failing row is quarantined with ``<column>:<rule>``."""

    min: float | None = Field(None, description="numbers below fail: below_min (float/int columns)")
    max: float | None = Field(None, description="numbers above fail: above_max (float/int columns)")
    allowed: list[str] | None = Field(
        None, description="values outside the list fail: not_allowed (string/text columns)"
    )
    regex: str | None = Field(
        None, description="strings that do not fully match fail: regex (string/text columns)"
    )
    unique: bool = Field(False, description="a value seen before in the file fails: duplicate")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            import re

            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"regex {v!r} does not compile: {exc}") from exc
        return v


class ColumnSpec(Spec):
    name: str
    type: ColumnType = "string"
    required: bool = Field(False, description="the column must be present in the file's header")
    nullable: bool = Field(True, description="a row may leave the value empty")
    aliases: list[str] = Field(default_factory=list, description="header names seen in real files")
    formats: list[str] = Field(
        default_factory=list, description="strptime formats tried for datetimes (detected when empty)"
    )
    position: int | None = Field(
        None, ge=0, description="0-based column position, used when the file has no header"
    )
    rules: RuleSpec = Field(default_factory=RuleSpec)

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not v.isidentifier():
            raise ValueError(f"column name {v!r} must be a lowercase identifier")
        return v


class FormatSpec(Spec):
    """Overrides for what ingest otherwise detects (and reports in quality.json ``format``)."""

    encoding: str | None = Field(None, description="e.g. utf-8, utf-8-sig, cp1252, latin-1")
    delimiter: str | None = Field(None, description="',', ';', '\\t', '|' or 'whitespace'")
    header: bool | None = Field(None, description="false: columns are matched by ``position``")
    decimal: Literal[".", ","] | None = None
    thousands: str | None = Field(None, description="thousands separator, e.g. ',', '.', ' ' or ''")
    dayfirst: bool | None = Field(None, description="force day-first (True) or month-first (False) dates")
    compression: Literal["gzip", "none"] | None = None


class SignSpec(Spec):
    """Signs carried by another column: rows whose ``column`` is in ``negative`` get ``-abs(amount)``."""

    amount: str = Field(description="the numeric column whose sign is set")
    column: str = Field(description="the column carrying debit/credit (or income/expense)")
    negative: list[str] = Field(description="values meaning a debit / outflow (matched case-insensitively)")


class DatasetSpec(Spec):
    name: str
    description: str = ""
    columns: list[ColumnSpec]
    format: FormatSpec = Field(default_factory=FormatSpec)
    sign: SignSpec | None = None
    max_quarantine_share: float = Field(0.2, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _unique(self) -> DatasetSpec:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate column name(s): {', '.join(dupes)}")
        if self.sign is not None:
            for field in ("amount", "column"):
                if getattr(self.sign, field) not in names:
                    raise ValueError(
                        f"sign.{field}: {getattr(self.sign, field)!r} is not a column of the spec"
                    )
        if self.format.header is False:
            unplaced = [c.name for c in self.columns if c.position is None]
            if unplaced:
                raise ValueError(
                    f"format.header is false, so every column needs a position: {', '.join(unplaced)}"
                )
        return self

    @model_validator(mode="after")
    def _rules_fit_types(self) -> DatasetSpec:
        """min/max need numbers; allowed/regex need strings. The message names the field."""
        for i, col in enumerate(self.columns):
            rules, where = col.rules, f"columns.{i}.rules"
            for field in ("min", "max"):
                if getattr(rules, field) is not None and col.type not in ("float", "int"):
                    raise field_error(
                        f"{where}.{field}: {field} applies to float and int columns only; "
                        f"column {col.name!r} is {col.type}"
                    )
            for field in ("allowed", "regex"):
                if getattr(rules, field) is not None and col.type not in ("string", "text"):
                    raise field_error(
                        f"{where}.{field}: {field} applies to string and text columns only; "
                        f"column {col.name!r} is {col.type}"
                    )
            if rules.min is not None and rules.max is not None and rules.min > rules.max:
                raise field_error(
                    f"{where}.min: min ({rules.min:g}) is greater than max ({rules.max:g}) "
                    f"for column {col.name!r}"
                )
            if rules.allowed is not None and not rules.allowed:
                raise field_error(f"{where}.allowed: list at least one value for column {col.name!r}")
        return self

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


def _validate(cls: type[Spec], data: Any, source: str) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise SpecError(f"invalid {cls.__name__} in {source}: {problems}") from exc


def parse_dataset_spec(data: Any, source: str = "<dict>") -> DatasetSpec:
    return _validate(DatasetSpec, data, source)


def parse_model_spec(data: Any, source: str = "<dict>") -> ModelSpec:
    return _validate(ModelSpec, data, source)


def load_spec_file(path: str | Path) -> DatasetSpec | ModelSpec:
    """Load a user's spec file; a model spec has a ``target``, a dataset spec has ``columns``."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping")
    if "columns" in data:
        return parse_dataset_spec(data, str(path))
    return parse_model_spec(data, str(path))


def _builtin(kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in resources.files("sluice.specs").joinpath(kind).iterdir():
        if entry.name.endswith(".yaml"):
            out[entry.name[: -len(".yaml")]] = yaml.safe_load(entry.read_text())
    return out


def dataset_names() -> list[str]:
    return sorted(_builtin("datasets"))


def load_dataset_spec(name: str) -> DatasetSpec:
    specs = _builtin("datasets")
    if name not in specs:
        raise UnknownDatasetError(f"no dataset spec named {name!r}; known: {', '.join(sorted(specs))}")
    return parse_dataset_spec(specs[name], f"datasets/{name}.yaml")


#: Names of a dataset spec uploaded next to the data, under ``raw/<dataset>/``, in order of precedence.
SPEC_FILENAMES = ("dataset.yaml", "dataset.yml", "dataset.json")


def is_spec_key(key: str) -> bool:
    """True for ``raw/<dataset>/dataset.yaml`` (or .yml/.json): a spec upload, not data to ingest."""
    parts = key.split("/")
    return len(parts) == 3 and parts[0] == "raw" and bool(parts[1]) and parts[2] in SPEC_FILENAMES


def _parse_uploaded_spec(body: bytes, filename: str, dataset: str, source: str) -> DatasetSpec:
    import json

    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"invalid DatasetSpec in {source}: (root): not UTF-8 text: {exc}") from exc
    try:
        data = json.loads(text) if filename.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if filename.endswith(".json") else "YAML"
        raise SpecError(f"invalid DatasetSpec in {source}: (root): not valid {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"invalid DatasetSpec in {source}: (root): a spec must be a mapping")
    data = {**data}
    data.setdefault("name", dataset)
    if data["name"] != dataset:
        raise SpecError(
            f"invalid DatasetSpec in {source}: name: {data['name']!r} differs from the dataset folder "
            f"{dataset!r} (raw/{dataset}/)"
        )
    return parse_dataset_spec(data, source)


def resolve_dataset_spec(bucket: str, key: str) -> tuple[DatasetSpec, str]:
    """The dataset spec for an uploaded ``raw/<dataset>/<file>``, and where it came from.

    A spec uploaded next to the data (``s3://<bucket>/raw/<dataset>/dataset.yaml``, else ``.yml``,
    else ``.json``) wins over the built-in spec of that name; the source is then that S3 URL, else
    ``builtin:<dataset>``. An invalid uploaded spec raises SpecError naming the field (no silent
    fallback); no uploaded spec and no built-in one raises UnknownDatasetError listing the known ones.
    An uploaded spec may omit ``name`` (it defaults to the folder); a different name is an error.
    """
    from botocore.exceptions import ClientError

    from sluice.errors import SourceObjectError
    from sluice.storage import get_object

    dataset = dataset_for_key(key)
    for filename in SPEC_FILENAMES:
        spec_key = f"raw/{dataset}/{filename}"
        try:
            obj = get_object(bucket, spec_key)
        except SourceObjectError as exc:
            cause = exc.__cause__
            code = cause.response.get("Error", {}).get("Code", "") if isinstance(cause, ClientError) else ""
            if code in ("NoSuchKey", "404", "NotFound"):
                continue
            raise
        source = f"s3://{bucket}/{spec_key}"
        return _parse_uploaded_spec(obj.body, filename, dataset, source), source
    known = dataset_names()
    if dataset not in known:
        raise UnknownDatasetError(
            f"no dataset spec for {dataset!r}: no built-in spec of that name and none uploaded at "
            f"s3://{bucket}/raw/{dataset}/dataset.yaml; known: {', '.join(known)}"
        )
    return load_dataset_spec(dataset), f"builtin:{dataset}"


def load_model_spec(name: str) -> ModelSpec:
    specs = _builtin("models")
    if name not in specs:
        raise SpecError(f"no model spec named {name!r}; known: {', '.join(sorted(specs))}")
    return parse_model_spec(specs[name], f"models/{name}.yaml")


def model_specs_for(dataset: str) -> list[ModelSpec]:
    return [
        parse_model_spec(data, f"models/{name}.yaml")
        for name, data in sorted(_builtin("models").items())
        if data.get("dataset") == dataset
    ]


def dataset_for_key(key: str) -> str:
    """``raw/<dataset>/<file>`` -> ``<dataset>``."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != "raw" or not parts[1]:
        raise UnknownDatasetError(f"object key {key!r} is not of the form raw/<dataset>/<file>")
    return parts[1]
