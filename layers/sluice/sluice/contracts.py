"""Typed payloads between the state machine's states: a state's output is the next one's input.

Every model round-trips through JSON (``model_dump(mode="json")``) because Step Functions
carries them as JSON documents (256 KB at most, so payloads hold keys, never data).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from sluice.errors import SourceObjectError
from sluice.kinds import FeatureKind, Task


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def to_event(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class SourceObject(Payload):
    bucket: str
    key: str
    version_id: str | None = None
    sha256: str = ""
    size: int = 0


class IngestRequest(Payload):
    """What to ingest: from an EventBridge ``Object Created`` event or given directly."""

    bucket: str
    key: str
    version_id: str | None = None
    dataset: str | None = Field(None, description="overrides the dataset taken from raw/<dataset>/")
    models: list[str] | None = Field(None, description="train only these model specs (retraining)")
    trigger: dict[str, Any] | None = Field(None, description="why this run started, when not an upload")

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> IngestRequest:
        if event.get("detail-type") == "Object Created" or event.get("source") == "aws.s3":
            detail = event.get("detail") or {}
            try:
                return cls(
                    bucket=detail["bucket"]["name"],
                    key=detail["object"]["key"],
                    version_id=detail["object"].get("version-id"),
                )
            except (KeyError, TypeError) as exc:
                raise SourceObjectError(f"S3 event without bucket/object detail: missing {exc}") from exc
        if "bucket" not in event or "key" not in event:
            raise SourceObjectError(
                "ingest input needs an S3 'Object Created' event or {bucket, key[, version_id]}"
            )
        return cls.model_validate(event)


class IngestResult(Payload):
    dataset: str
    run_id: str
    source: SourceObject
    curated_prefix: str
    data_key: str
    schema_key: str
    quality_key: str
    quarantine_key: str
    rows_read: int
    rows_clean: int
    rows_quarantined: int
    models: list[str] = Field(default_factory=list, description="model specs to train on this data")
    trigger: dict[str, Any] = Field(
        default_factory=lambda: {"kind": "upload"}, description="why the run started (lineage)"
    )


class TrainRequest(Payload):
    model: str
    ingest: IngestResult


class Feature(Payload):
    name: str
    kind: FeatureKind


class Interval(Payload):
    """A prediction interval as offsets added to the prediction: ``lower[i] <= 0 <= upper[i]``.

    Regression has one pair; a forecast has one pair per horizon step (``i`` = days ahead - 1)."""

    level: float = Field(description="nominal coverage, e.g. 0.9")
    lower: list[float]
    upper: list[float]


class ForecastInfo(Payload):
    """What serving needs to forecast by recursion: the series' tail and how features are made
    (``sluice.forecasting`` builds the feature row of each next day from it)."""

    horizon: int
    max_horizon: int = 90
    lags: list[int]
    season: int
    aggregate: str = "sum"
    history_dates: list[str] = Field(description="ISO dates of the series' last days, oldest first")
    history_values: list[float]


class FeatureSchema(Payload):
    """What a caller sends (raw fields) and how it becomes the ONNX graph's inputs and outputs.

    Outputs by task: classification ``label`` (strings) and ``probabilities`` ([n, n_classes], in
    ``classes`` order); regression and forecast ``value`` ([n, 1]); anomaly ``score`` ([n, 1],
    higher = more anomalous; a row is flagged when ``score >= threshold``).
    """

    features: list[Feature]
    target: str | None = None
    task: Task = "classification"
    classes: list[str] = Field(default_factory=list)
    positive_label: str | None = None
    label_output: str = "label"
    probabilities_output: str = "probabilities"
    value_output: str = "value"
    score_output: str = "score"
    threshold: float | None = None
    interval: Interval | None = None
    forecast: ForecastInfo | None = None
    reference: dict[str, Any] | None = Field(
        None, description="a typical record (medians, most frequent values): the baseline of /explain"
    )


class ParityReport(Payload):
    """ONNX vs native answers over a parity document: classification compares labels and
    probabilities, the other tasks the relative difference of values or scores."""

    rows: int
    passed: bool
    label_agreement: float | None = None
    max_abs_prob_diff: float | None = None
    max_rel_diff: float | None = None


class CandidateReport(Payload):
    """One candidate of the search: ``selected`` (the model), ``ok`` (evaluated, not the best) or
    ``dropped`` (failed, over the time budget, or not tried), with the reason."""

    name: str
    status: Literal["selected", "ok", "dropped"]
    cv: dict[str, float] = Field(default_factory=dict, description="mean of each metric over the folds")
    fit_s: float = 0.0
    reason: str | None = None


class ChampionComparison(Payload):
    """The candidate and the current champion scored by the Evaluate step on the candidate's holdout
    batch with the same code (``sluice.metrics``). ``version`` None: nothing was compared (``note``)."""

    version: int | None = None
    metric: str | None = None
    candidate: float | None = None
    champion: float | None = None
    rows: int = 0
    note: str = ""


@pydantic_dataclass(frozen=True)
class GateCheck:
    """One gate of the spec on a candidate: passed or not, and why, in words."""

    gate: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "passed": self.passed, "detail": self.detail}


class Evaluation(Payload):
    """The Evaluate step's decision: every gate of the spec (parity, baseline, minimum, champion) and
    the champion version they were decided against; ``accepted`` when all passed. Register records
    it and moves the aliases; it decides again only if the champion moved in between."""

    accepted: bool
    gates: list[GateCheck]
    champion_version: int | None = None

    @property
    def reasons(self) -> list[str]:
        return [f"{g.gate}: {g.detail}" for g in self.gates if not g.passed]


class TrainResult(Payload):
    """A trained candidate, staged. ``metrics``: ``{"cv": {...}, "holdout": {...}, "baseline": {...}}``
    with scikit-learn's metric names (the baseline scored on the same holdout)."""

    model: str
    run_id: str
    artifact_key: str = Field(description="staging location of model.onnx, copied on registration")
    onnx_sha256: str
    metrics: dict[str, dict[str, float]]
    candidates: list[CandidateReport] = Field(default_factory=list)
    parity: ParityReport | None = Field(None, description="set by the Evaluate step; None until then")
    parity_key: str | None = Field(None, description="native predictions the Evaluate step replays")
    champion: ChampionComparison | None = Field(None, description="set by the Evaluate step")
    evaluation: Evaluation | None = Field(None, description="set by the Evaluate step: the gates' verdict")
    params: dict[str, Any] = Field(default_factory=dict)
    feature_schema: FeatureSchema
    rows_train: int
    rows_holdout: int
    timings: dict[str, float] = Field(default_factory=dict)
    library_versions: dict[str, str] = Field(default_factory=dict)
    code_version: str = ""
    spec: dict[str, Any] = Field(default_factory=dict)
    spec_sha256: str = ""
    diagnostics: dict[str, Any] = Field(default_factory=dict)
    ingest: IngestResult

    @property
    def task(self) -> Task:
        return self.feature_schema.task


class RegisterResult(Payload):
    """One model's outcome: its new version, champion or rejected (with the reasons), and a one-line
    ``summary`` for people (the pipeline's notification lists them)."""

    model: str
    version: int
    status: Literal["champion", "challenger", "rejected"]
    reasons: list[str] = Field(default_factory=list)
    previous_champion: int | None = None
    metric: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="holdout metrics")
    summary: str = ""
