"""The monitor: for every served model, drift of its recent captures, its live metric, and retraining.

Run on an EventBridge schedule (the monitor function) or on demand (``sluice monitor``). For each
model with a champion:

1. **Drift.** The captures of the last ``window_hours`` (``sluice.serving.capture``) are flattened to
   one row per predicted record and compared (``sluice.monitoring.drift.compare``) with the profile
   of the data the champion was trained on (the ``profile.json`` of its ingest run, named in its
   lineage), over the model's features with their dataset column types (that run's ``schema.json``).
   The report goes to ``monitoring/<model>/<time>/drift.json`` and ``drift.html``, its summary to
   ``monitoring/<model>/latest.json``; PSI per feature, the drifted-feature count and
   ``DriftAlerts`` are published as metrics.
2. **Live metric.** The champion's feedback counters (``sluice.serving.feedback``) give its live
   accuracy or mean absolute error; with at least ``min_feedback`` answers it is compared with the
   spec's ``gates.min_metric`` (``LiveMetricBelowGate`` when it falls short).
3. **Retraining.** Drift, a live metric below its gate, or the age of the champion (when
   ``retrain_every_days`` is set) starts the training pipeline again on the champion's source
   object, at most once per model per ``min_retrain_interval_hours`` (a conditional write on a
   ``RETRAIN#<model>`` item of the registry table), with the reason in the execution's input.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from sluice.monitoring.drift import DriftThresholds, compare
from sluice.monitoring.drift_report import render_drift_report
from sluice.registry import Registry
from sluice.serving.capture import read_captures
from sluice.serving.feedback import FeedbackStore
from sluice.storage import get_json, put_bytes, put_json

MONITORING_PREFIX = "monitoring"
LIVE_METRICS = {"accuracy": ("accuracy", True), "mean_absolute_error": ("mean_absolute_error", False)}


@dataclass(frozen=True)
class MonitorSettings:
    window_hours: float = 24.0
    min_feedback: int = 30
    min_retrain_interval_hours: float = 24.0
    retrain_every_days: float | None = None
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)


@dataclass
class Outcome:
    model: str
    version: int
    summary: dict[str, Any] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict)
    retraining: dict[str, Any] = field(default_factory=dict)
    canary: dict[str, Any] = field(default_factory=dict)
    report_key: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, {})}


def captured_frame(rows: list[dict[str, Any]], features: list[str]) -> tuple[Any, list[Any]]:
    """One row per predicted record (a request may hold many): the features, and the outputs."""
    import pandas as pd

    records, outputs = [], []
    for row in rows:
        for record, output in zip(row.get("inputs", []), row.get("outputs", []), strict=False):
            records.append({name: record.get(name) for name in features if name in record})
            outputs.append(output)
    return pd.DataFrame.from_records(records, columns=features) if records else pd.DataFrame(
        columns=features
    ), outputs


def _prediction_values(outputs: list[Any]) -> list[Any] | None:
    if not outputs:
        return None
    first = outputs[0]
    for key in ("label", "value", "score"):
        if isinstance(first, dict) and key in first:
            return [o.get(key) for o in outputs]
    return None


class Monitor:
    def __init__(
        self,
        registry: Registry,
        *,
        predictions_table: str,
        state_machine_arn: str = "",
        settings: MonitorSettings | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        publish: Callable[[str, int, dict[str, float], dict[str, str] | None], None] | None = None,
    ):
        self.registry = registry
        self.bucket = registry.bucket
        self.feedback = FeedbackStore(predictions_table) if predictions_table else None
        self.state_machine_arn = state_machine_arn
        self.settings = settings or MonitorSettings()
        self._now = now
        self._publish = publish or (lambda model, version, values, dims: None)

    def run(self, models: list[str] | None = None, since: datetime | None = None) -> list[Outcome]:
        outcomes = []
        for item in self.registry.models():
            champion = item["aliases"].get("champion")
            if champion is None or (models is not None and item["name"] not in models):
                continue
            try:
                outcomes.append(self.monitor_model(item["name"], champion, since))
            except Exception as exc:  # one model's problem must not hide the others
                outcomes.append(Outcome(item["name"], champion, error=f"{type(exc).__name__}: {exc}"))
        drifted = sum(1 for o in outcomes if o.summary.get("drift_detected"))
        below = sum(1 for o in outcomes if o.live.get("below_gate"))
        self._publish("", 0, {"DriftAlerts": float(drifted), "LiveMetricBelowGate": float(below)}, None)
        return outcomes

    def monitor_model(self, model: str, version: int, since: datetime | None = None) -> Outcome:
        meta = self.registry.metadata(self.registry.get_version(model, version))
        outcome = Outcome(model, version)
        self._drift(meta, outcome, since or self._now() - timedelta(hours=self.settings.window_hours))
        self._live(meta, outcome)
        self.canary(meta, outcome)
        self._retrain(meta, outcome)
        return outcome

    # -- 1. drift -------------------------------------------------------------------------------

    def _drift(self, meta: Mapping[str, Any], outcome: Outcome, since: datetime) -> None:
        ingest = meta.get("ingest") or {}
        profile = get_json(self.bucket, ingest["curated_prefix"].rstrip("/") + "/profile.json")
        schema = get_json(self.bucket, ingest["schema_key"])
        types = {c["name"]: c["type"] for c in schema["columns"]}
        features = [f["name"] for f in meta["feature_schema"]["features"]]
        rows = [
            r
            for r in read_captures(self.bucket, outcome.model, since=since)
            if r.get("version") == outcome.version
        ]
        frame, outputs = captured_frame(rows, features)
        reference = meta.get("prediction_reference")
        values = _prediction_values(outputs) if reference else None
        overrides = ((meta.get("spec") or {}).get("monitoring") or {}).get("drift") or {}
        thresholds = self.settings.thresholds.model_copy(update=overrides)  # the spec's own, if any
        report = compare(
            profile,
            frame,
            {name: types.get(name, "string") for name in features},
            thresholds,
            reference_predictions=reference if values is not None else None,
            current_predictions=values,
            context={
                "model": outcome.model,
                "version": outcome.version,
                "since": since.isoformat(timespec="seconds"),
                "captured_requests": len(rows),
                "reference": ingest.get("curated_prefix"),
                "generated_at": self._now().isoformat(timespec="seconds"),
            },
        )
        stamp = self._now().strftime("%Y%m%dT%H%M%SZ")
        prefix = f"{MONITORING_PREFIX}/{outcome.model}/{stamp}"
        put_json(self.bucket, f"{prefix}/drift.json", report)
        title = f"Drift report: {outcome.model} v{outcome.version}"
        put_bytes(
            self.bucket, f"{prefix}/drift.html", render_drift_report(report, title).encode(), "text/html"
        )
        outcome.summary = report["summary"]
        outcome.report_key = f"{prefix}/drift.json"
        put_json(self.bucket, f"{MONITORING_PREFIX}/{outcome.model}/latest.json", outcome.to_dict())
        self._publish(
            outcome.model,
            outcome.version,
            {
                "DriftDetected": 1.0 if report["summary"]["drift_detected"] else 0.0,
                "DriftedFeatures": float(len(report["summary"]["drifted_features"])),
                "CapturedRows": float(report["summary"]["rows"]),
            },
            None,
        )
        for feature in report["features"]:
            if feature.get("psi") is not None:
                self._publish(
                    outcome.model,
                    outcome.version,
                    {"FeaturePsi": feature["psi"]},
                    {"feature": feature["name"]},
                )

    # -- 2. live metric -------------------------------------------------------------------------

    def _live(self, meta: Mapping[str, Any], outcome: Outcome) -> None:
        if self.feedback is None:
            return
        stats = self.feedback.live_stats(outcome.model, outcome.version)
        outcome.live = dict(stats)
        metric = meta.get("metric") or (meta.get("spec") or {}).get("metric")
        minimum = ((meta.get("spec") or {}).get("gates") or {}).get("min_metric")
        if metric in ("macro_f1", "f1_macro", "balanced_accuracy"):
            metric = "accuracy"  # the live counters measure accuracy for classifiers
        live_name, higher_is_better = LIVE_METRICS.get(metric, (None, True))
        if live_name is None or minimum is None or stats.get("n", 0) < self.settings.min_feedback:
            return
        value = stats.get(live_name)
        if value is None:
            return
        below = value < minimum if higher_is_better else value > minimum
        outcome.live.update({"metric": live_name, "gate": minimum, "below_gate": below})

    # -- canary: challenger against champion, and rollback of a promoted champion that fails ------

    def canary(self, meta: Mapping[str, Any], outcome: Outcome) -> None:
        """Decide the challenger on live feedback; roll back a champion promoted this way that fails.

        With ``min_feedback`` answers for both, the challenger becomes champion when its live
        accuracy (or MAE) is not worse than the champion's beyond the spec's champion tolerance, and
        is retired otherwise. A champion that came from such a promotion and whose live metric then
        misses its gate is rolled back to the version it replaced."""
        if self.feedback is None:
            return
        model, champion = outcome.model, outcome.version
        tolerance = ((meta.get("spec") or {}).get("gates") or {}).get("champion_tolerance") or 0.0
        decision: dict[str, Any] = {}
        challenger = self.registry.get_alias(model, "challenger")
        if challenger is not None and challenger != champion:
            decision = self._judge_challenger(model, champion, challenger, float(tolerance))
        if outcome.live.get("below_gate"):
            moves = [a for a in self.registry.audit(model) if a["alias"] == "champion"]
            last = moves[-1] if moves else None
            if last and last["to"] == champion and last["from"] and "canary" in last["reason"]:
                self.registry.rollback(
                    model,
                    to=last["from"],
                    reason=f"canary rollback: live {outcome.live['metric']} of v{champion} misses its gate",
                )
                decision["rollback"] = {"from": champion, "to": last["from"]}
        if decision:
            outcome.canary = decision

    def _judge_challenger(
        self, model: str, champion: int, challenger: int, tolerance: float
    ) -> dict[str, Any]:
        assert self.feedback is not None
        theirs = self.feedback.live_stats(model, challenger)
        ours = self.feedback.live_stats(model, champion)
        need = self.settings.min_feedback
        decision: dict[str, Any] = {
            "challenger": challenger,
            "challenger_live": theirs,
            "champion_live": ours,
        }
        metric = (
            "accuracy"
            if "accuracy" in theirs
            else "mean_absolute_error"
            if "mean_absolute_error" in theirs
            else None
        )
        if metric is None or theirs.get("n", 0) < need or ours.get("n", 0) < need or metric not in ours:
            decision["decision"] = f"waiting for {need} feedback answers on both versions"
            return decision
        if metric == "accuracy":
            not_worse = theirs[metric] >= ours[metric] - tolerance
        else:
            not_worse = theirs[metric] <= ours[metric] + tolerance
        detail = f"live {metric} v{challenger} {theirs[metric]:.4f} vs v{champion} {ours[metric]:.4f}"
        if not_worse:
            self.registry.promote(model, challenger, reason=f"canary promotion: {detail}")
            self.registry.clear_alias(model, "challenger", expected=challenger, reason=f"promoted: {detail}")
            decision["decision"] = "promoted"
        else:
            self.registry.clear_alias(model, "challenger", expected=challenger, reason=f"retired: {detail}")
            decision["decision"] = "retired"
        decision["detail"] = detail
        return decision

    # -- 3. retraining --------------------------------------------------------------------------

    def _reasons(self, meta: Mapping[str, Any], outcome: Outcome) -> list[str]:
        reasons = []
        if outcome.summary.get("drift_detected"):
            reasons.append("drift: " + ", ".join(outcome.summary.get("drifted_features") or ["predictions"]))
        if outcome.live.get("below_gate"):
            reasons.append(
                f"live {outcome.live['metric']} {outcome.live[outcome.live['metric']]:.4f} "
                f"misses the gate {outcome.live['gate']}"
            )
        every = self.settings.retrain_every_days
        created = meta.get("registered_at")
        if every and created:
            age = self._now() - datetime.fromisoformat(created)
            if age >= timedelta(days=every):
                reasons.append(f"schedule: the champion is {age.days} days old (retrain every {every:g})")
        return reasons

    def _retrain(self, meta: Mapping[str, Any], outcome: Outcome) -> None:
        reasons = self._reasons(meta, outcome)
        if not reasons:
            outcome.retraining = {"started": False, "reason": "no trigger"}
            return
        if not self.state_machine_arn:
            outcome.retraining = {
                "started": False,
                "reason": "; ".join(reasons),
                "skipped": "no state machine",
            }
            return
        if not self._claim(outcome.model):
            outcome.retraining = {
                "started": False,
                "reason": "; ".join(reasons),
                "skipped": f"retrained less than {self.settings.min_retrain_interval_hours:g} h ago",
            }
            return
        source = meta["source"]
        trigger = {"kind": "monitor", "reasons": reasons, "champion_version": outcome.version}
        payload = {
            "bucket": source["bucket"],
            "key": source["key"],
            "version_id": source.get("version_id"),
            "models": [outcome.model],
            "trigger": trigger,
        }
        from sluice.aws import client

        name = f"retrain-{outcome.model}-{self._now():%Y%m%dT%H%M%S}"[:80]
        resp = client("stepfunctions").start_execution(
            stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(payload, default=str)
        )
        outcome.retraining = {
            "started": True,
            "reason": "; ".join(reasons),
            "execution_arn": resp["executionArn"],
            "execution_name": name,
        }

    def _claim(self, model: str) -> bool:
        """Take the model's retraining slot unless it was taken within the interval."""
        from sluice.aws import client

        now = self._now().timestamp()
        cutoff = now - self.settings.min_retrain_interval_hours * 3600
        try:
            client("dynamodb").put_item(
                TableName=self.registry.table,
                Item={
                    "pk": {"S": f"RETRAIN#{model}"},
                    "sk": {"S": "LATEST"},
                    "started_at": {"N": repr(now)},
                },
                ConditionExpression="attribute_not_exists(pk) OR started_at < :cutoff",
                ExpressionAttributeValues={":cutoff": {"N": repr(cutoff)}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True
