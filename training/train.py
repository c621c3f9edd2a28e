"""Train one model spec on curated data: search the candidates, refit the best, export, prove parity.

``train_model`` is pure (a spec and a DataFrame in, a ``TrainedModel`` out); ``run_training`` adds
S3: it reads the curated data of a ``TrainRequest``, stages ``model.onnx`` and the parity document
and returns the ``TrainResult`` the Verify and Register states consume.

The flow for classification, regression and anomaly: prepare rows (``training.data``), split off the
holdout (latest rows when the split is by time), cross-validate every candidate on the train part
(``training.search``), then in ranking order refit a candidate on the whole train part and export it;
the first that exports (and, with ``verify``, passes parity) is the model. Forecast specs are trained
by ``training.forecast`` (imported lazily: it is optional).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

import sluice
from sluice.contracts import CandidateReport, FeatureSchema, Interval, ParityReport, TrainRequest, TrainResult
from sluice.curated import read_curated
from sluice.errors import ParityError, SpecError, TrainingError
from sluice.parity import require_parity, verify_document
from sluice.settings import get_settings
from sluice.specs import ModelSpec, load_model_spec
from sluice.storage import put_bytes, put_json, sha256_hex
from training.data import holdout_split, prepare_data
from training.estimators import make_estimator
from training.export import export_onnx, feature_schema
from training.metrics import (
    anomaly_baseline,
    anomaly_metrics,
    classification_baseline,
    classification_metrics,
    majority_class,
    regression_baseline,
    regression_metrics,
)
from training.parity import native_document
from training.pipeline import answers, build_pipeline, feature_count, feature_frame, pipeline_params
from training.search import CandidateOutcome, anomaly_threshold, ranked, search

BLAS_THREADS = 1
LIBRARIES = (
    "scikit-learn",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "xgboost-cpu",
    "onnxmltools",
    "numpy",
    "pandas",
    "scipy",
)
#: coverage of the regression prediction interval
INTERVAL_LEVEL = 0.9


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "sluice": sluice.__version__}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def spec_sha256(spec: ModelSpec) -> str:
    """sha256 of the canonical spec JSON (every field, sorted keys, no whitespace)."""
    canonical = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class TrainedModel:
    """A fitted model, its ONNX export and the evidence: metrics, candidates, parity document.

    ``metrics``: ``{"cv": {...}, "holdout": {...}, "baseline": {...}}``. ``pipeline`` is the fitted
    scikit-learn pipeline (None for a forecast, which keeps its own model)."""

    spec: ModelSpec
    pipeline: Pipeline | None
    onnx: bytes
    feature_schema: FeatureSchema
    metrics: dict[str, dict[str, float]]
    candidates: list[CandidateReport]
    parity: ParityReport | None  # None until verified (the pipeline's Verify step does it)
    parity_document: dict[str, Any]
    params: dict[str, Any]
    rows_train: int
    rows_holdout: int
    timings: dict[str, float] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def onnx_sha256(self) -> str:
        return sha256_hex(self.onnx)

    @property
    def classes(self) -> list[str]:
        return self.feature_schema.classes

    @property
    def spec_sha256(self) -> str:
        return spec_sha256(self.spec)


def train_model(spec: ModelSpec, df: pd.DataFrame, *, verify: bool = True) -> TrainedModel:
    """Train ``spec`` on ``df`` (curated columns): search, refit, evaluate on the holdout, export.

    Raises TrainingError when the data cannot support a model (before any fitting) or when no
    candidate could be exported. With ``verify=False`` the parity document (native answers) is made
    but not replayed through onnxruntime: the train Lambda has no onnxruntime, and the pipeline's
    Verify step replays it with the serving runtime. With ``verify=True`` a candidate whose export
    disagrees is dropped like one that fails to export (ParityError when none is left).

    BLAS runs single-threaded: measured on the household file, lbfgs took 0.5 s with one thread and
    4-20 s with the default threads on a busy 2-vCPU machine (a Lambda has 2 at 3 GB), and the fitted
    coefficients (hence the ONNX bytes and their sha256) depended on the thread count.
    """
    if spec.task == "forecast":
        return _train_forecast(spec, df, verify)
    with threadpool_limits(limits=BLAS_THREADS):
        return _Trainer(spec, df, verify).run()


def _train_forecast(spec: ModelSpec, df: pd.DataFrame, verify: bool) -> TrainedModel:
    try:
        from training.forecast import train_forecast
    except ImportError as exc:
        raise TrainingError(f"{spec.name}: forecast family not available ({exc})") from exc
    t = train_forecast(spec, df, verify=verify)
    parity = None
    if verify:
        parity = require_parity(verify_document(t.onnx, t.parity_document), spec.name)
    return TrainedModel(
        spec=spec,
        pipeline=None,
        onnx=t.onnx,
        feature_schema=t.feature_schema,
        metrics=t.metrics,
        candidates=[CandidateReport.model_validate(c) for c in t.candidates],
        parity=parity,
        parity_document=t.parity_document,
        params=t.params,
        rows_train=t.rows_train,
        rows_holdout=t.rows_holdout,
        timings=t.timings,
        library_versions=library_versions(),
        diagnostics=getattr(t, "diagnostics", {}) or {},
    )


def conformal_interval(residuals: np.ndarray, level: float = INTERVAL_LEVEL) -> Interval:
    """Split-conformal offsets from out-of-fold residuals (truth - prediction): the prediction plus
    ``lower``/``upper`` covers ``level`` of new rows (finite-sample corrected quantiles)."""
    r = np.sort(np.asarray(residuals, dtype=np.float64))
    n, alpha = len(r), 1.0 - level
    hi = min(n - 1, int(np.ceil((n + 1) * (1 - alpha / 2))) - 1)
    lo = max(0, int(np.floor((n + 1) * (alpha / 2))) - 1)
    return Interval(level=level, lower=[min(0.0, float(r[lo]))], upper=[max(0.0, float(r[hi]))])


@dataclass
class _Export:
    """A candidate refit on the whole train part and exported."""

    outcome: CandidateOutcome
    pipeline: Pipeline
    onnx: bytes
    schema: FeatureSchema
    document: dict[str, Any]
    parity: ParityReport | None
    fit_s: float
    export_s: float


class _Trainer:
    """One training run: the state shared by the steps of ``train_model``."""

    def __init__(self, spec: ModelSpec, df: pd.DataFrame, verify: bool):
        self.spec, self.df, self.verify = spec, df, verify
        self.timings: dict[str, float] = {}
        self.t0 = time.perf_counter()

    def _lap(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[name] = round(now - since, 4)
        return now

    def run(self) -> TrainedModel:
        spec = self.spec
        for candidate in spec.candidate_specs:  # unknown names and parameters: SpecError up front
            make_estimator(candidate, spec.random_state, spec.task, spec.effective_metric)
        data = prepare_data(spec, self.df)
        train_idx, holdout_idx = holdout_split(spec, data)
        self.data = data
        self.train_records = [data.records[i] for i in train_idx]
        self.holdout_records = [data.records[i] for i in holdout_idx]
        self.y_train = None if data.y is None else data.y[train_idx]
        self.y_holdout = None if data.y is None else data.y[holdout_idx]
        self.x_train = feature_frame(self.train_records, spec.features)
        self.x_holdout = feature_frame(self.holdout_records, spec.features)
        t = self._lap("prepare_s", self.t0)

        if spec.effective_metric is None:  # unlabelled anomaly: no metric to compare candidates by
            outcomes = [CandidateOutcome(c) for c in spec.candidate_specs]
        else:
            outcomes = search(spec, self.x_train, self.y_train)
        t = self._lap("search_s", t)
        chosen = self._first_exportable(ranked(spec, outcomes), outcomes)
        self._lap("refit_export_s", t)
        return self._result(chosen, outcomes)

    # -- refit and export ---------------------------------------------------------------------

    def _first_exportable(self, order: list[CandidateOutcome], outcomes: list[CandidateOutcome]) -> _Export:
        """Refit and export candidates in ranking order; the first that succeeds is the model."""
        errors: list[Exception] = []
        for outcome in order:
            try:
                return self._refit_export(outcome)
            except Exception as exc:  # a failed export leaves the next best candidate
                outcome.reason = f"export failed: {type(exc).__name__}: {exc}"[:300]
                errors.append(exc)
        reasons = "; ".join(f"{o.candidate.name}: {o.reason}" for o in outcomes if o.reason)
        if errors and all(isinstance(e, ParityError) for e in errors):
            raise ParityError(f"{self.spec.name}: no candidate exported with parity ({reasons})")
        raise TrainingError(f"{self.spec.name}: no candidate could be trained and exported ({reasons})")

    def _refit_export(self, outcome: CandidateOutcome) -> _Export:
        spec = self.spec
        t = time.perf_counter()
        pipeline = build_pipeline(spec, outcome.candidate)
        pipeline.fit(self.x_train, self.y_train)
        fit_s = time.perf_counter() - t
        extras: dict[str, Any] = {}
        if spec.task == "anomaly":
            extras["threshold"] = anomaly_threshold(
                answers(pipeline, "anomaly", self.x_train)["scores"], spec
            )
        elif spec.task == "regression":
            residuals = outcome.residuals
            if residuals is None:  # no CV ran: the training residuals (optimistic, but an interval)
                residuals = self.y_train - answers(pipeline, "regression", self.x_train)["values"]
            extras["interval"] = conformal_interval(residuals)
        classes = [str(c) for c in pipeline.classes_] if spec.task == "classification" else []
        schema = feature_schema(spec, classes, reference=reference_record(self.train_records, spec), **extras)
        t = time.perf_counter()
        onnx_bytes = export_onnx(pipeline, spec, schema)
        export_s = time.perf_counter() - t
        targets = None if self.y_holdout is None else self.y_holdout.tolist()
        scale = float(np.std(self.y_train)) if spec.task == "regression" else 1.0
        document = native_document(
            pipeline, schema, self.holdout_records, targets, seed=spec.random_state, scale=scale
        )
        parity = None
        if self.verify:
            parity = require_parity(verify_document(onnx_bytes, document), spec.name)
        return _Export(
            outcome, pipeline, onnx_bytes, schema, document, parity, round(fit_s, 4), round(export_s, 4)
        )

    # -- evaluation ---------------------------------------------------------------------------

    def _holdout_metrics(
        self, native: dict[str, np.ndarray], schema: FeatureSchema
    ) -> dict[str, dict[str, float]]:
        spec = self.spec
        if spec.task == "classification":
            holdout = classification_metrics(
                self.y_holdout, native["probabilities"], schema.classes, spec.positive_label
            )
            baseline = classification_baseline(
                self.y_train, self.y_holdout, schema.classes, spec.positive_label
            )
        elif spec.task == "regression":
            holdout = regression_metrics(self.y_holdout, native["values"])
            baseline = regression_baseline(self.y_train, self.y_holdout)
        else:
            labels = None if self.y_holdout is None else self.y_holdout
            holdout = anomaly_metrics(native["scores"], schema.threshold, labels)
            baseline = anomaly_baseline(labels, spec.anomaly.contamination if spec.anomaly else 0.05)
        return {"holdout": holdout, "baseline": baseline}

    def _candidates(
        self, chosen: CandidateOutcome, outcomes: list[CandidateOutcome]
    ) -> list[CandidateReport]:
        unlabelled = self.spec.effective_metric is None
        reports = []
        for o in outcomes:
            if o is chosen:
                status, reason = "selected", None
            elif o.ok and unlabelled:
                status = "dropped"
                reason = (
                    "not tried: without a label there is no metric; the first candidate that exports is kept"
                )
            elif o.ok:
                status, reason = "ok", None
            else:
                status, reason = "dropped", o.reason
            reports.append(
                CandidateReport(name=o.candidate.name, status=status, cv=o.cv, fit_s=o.fit_s, reason=reason)
            )
        return reports

    def _result(self, chosen: _Export, outcomes: list[CandidateOutcome]) -> TrainedModel:
        spec, data = self.spec, self.data
        pipeline, schema, outcome = chosen.pipeline, chosen.schema, chosen.outcome
        t = time.perf_counter()
        native = answers(pipeline, spec.task, self.x_holdout)  # the holdout's answers, once
        metrics = {"cv": outcome.cv, **self._holdout_metrics(native, schema)}
        diagnostics = self._diagnostics(pipeline, native, schema)
        self._lap("evaluate_s", t)
        self.timings["fit_s"] = chosen.fit_s
        self.timings["export_s"] = chosen.export_s
        self.timings["total_s"] = round(time.perf_counter() - self.t0, 4)
        params = {
            **pipeline_params(spec, outcome.candidate),
            "task": spec.task,
            "metric": spec.effective_metric,
            "split": "time" if spec.split.time_column else "random",
            "merged_classes": data.merged_classes,
            "dropped_rows": data.dropped_rows,
            "filtered_rows": data.filtered_rows,
            "onnx_size_bytes": len(chosen.onnx),
            "n_features": feature_count(pipeline, self.x_holdout),
        }
        if spec.task == "classification":
            params["majority_class"] = str(majority_class(self.y_train))
        return TrainedModel(
            spec=spec,
            pipeline=pipeline,
            onnx=chosen.onnx,
            feature_schema=schema,
            metrics=metrics,
            candidates=self._candidates(outcome, outcomes),
            parity=chosen.parity,
            parity_document=chosen.document,
            params=params,
            rows_train=len(self.train_records),
            rows_holdout=len(self.holdout_records),
            timings=dict(self.timings),
            library_versions=library_versions(),
            diagnostics=diagnostics,
        )

    def _diagnostics(
        self, pipeline: Pipeline, native: dict[str, np.ndarray], schema: FeatureSchema
    ) -> dict[str, Any]:
        """The report's numbers (training.diagnostics): confusion matrix and calibration, residuals or
        score histogram on the holdout, and permutation importance per raw feature."""
        from training import diagnostics as diag

        spec = self.spec
        out: dict[str, Any] = {}
        try:
            if spec.task == "classification":
                out |= diag.classification_diagnostics(
                    self.y_holdout, native["labels"], native["probabilities"], schema.classes
                )
            elif spec.task == "regression":
                out |= diag.regression_diagnostics(self.y_holdout, native["values"], seed=spec.random_state)
            else:
                labels = None
                if self.y_holdout is not None:
                    labels = (np.asarray(self.y_holdout).astype(str) == str(spec.anomaly.positive)).astype(
                        int
                    )
                out |= diag.anomaly_diagnostics(native["scores"], float(schema.threshold or 0.0), labels)
            if spec.task != "anomaly" or self.y_holdout is not None:
                out["feature_importance"] = self._importance(pipeline)
        except Exception as exc:  # the report is evidence, not a gate: a failure is recorded, not raised
            out["error"] = f"{type(exc).__name__}: {exc}"[:300]
        return out

    def _importance(self, pipeline: Pipeline) -> list[dict[str, Any]]:
        from sklearn.metrics import accuracy_score, average_precision_score, r2_score

        from sluice.features import date_input_names
        from training import diagnostics as diag

        spec = self.spec
        groups = {f.name: (date_input_names(f.name) if f.kind == "date" else [f.name]) for f in spec.features}
        if spec.task == "classification":
            y, predict, score = self.y_holdout, pipeline.predict, accuracy_score
        elif spec.task == "regression":
            y, predict, score = self.y_holdout, pipeline.predict, r2_score
        else:
            positive = str(spec.anomaly.positive) if spec.anomaly else "1"
            y = (np.asarray(self.y_holdout).astype(str) == positive).astype(int)

            def predict(frame: pd.DataFrame) -> np.ndarray:
                return -pipeline.decision_function(frame)

            score = average_precision_score
        return diag.permutation_importance_by_feature(
            predict, self.x_holdout, np.asarray(y), score, groups, seed=spec.random_state
        )


def reference_record(records: list[dict[str, Any]], spec: ModelSpec) -> dict[str, Any]:
    """A typical record of the training rows (the baseline /explain compares with): the median of
    numbers and dates, the most frequent category, and empty text."""
    out: dict[str, Any] = {}
    for f in spec.features:
        values = [r.get(f.name) for r in records if r.get(f.name) not in (None, "")]
        if f.kind == "text" or not values:
            out[f.name] = "" if f.kind in ("text", "categorical") else None
        elif f.kind == "categorical":
            counts = Counter(str(v) for v in values)
            out[f.name] = min(counts, key=lambda v: (-counts[v], v))  # most frequent; ties: the smallest
        elif f.kind == "numeric":
            out[f.name] = float(np.median(np.asarray(values, dtype=np.float64)))
        else:  # date: the median instant, ISO
            stamps = sorted(pd.Timestamp(v) for v in values)
            out[f.name] = stamps[len(stamps) // 2].isoformat()
    return {k: v for k, v in out.items() if v is not None}


def staging_key(model: str, run_id: str, name: str = "model.onnx") -> str:
    return f"staging/{model}/{run_id}/{name}"


def run_training(request: TrainRequest) -> TrainResult:
    """Read the curated data of ``request.ingest``, train ``request.model``, stage the ONNX file."""
    settings = get_settings()
    settings.require("data_bucket")
    spec = load_model_spec(request.model)
    if spec.dataset != request.ingest.dataset:
        raise SpecError(
            f"model {spec.name!r} trains on dataset {spec.dataset!r}, not {request.ingest.dataset!r}"
        )
    t0 = time.perf_counter()
    df = read_curated(settings.data_bucket, request.ingest.data_key, request.ingest.schema_key)
    read_s = time.perf_counter() - t0

    trained = train_model(spec, df, verify=False)

    t1 = time.perf_counter()
    key = staging_key(spec.name, request.ingest.run_id)
    parity_key = staging_key(spec.name, request.ingest.run_id, "parity.json")
    put_bytes(settings.data_bucket, key, trained.onnx)
    put_json(settings.data_bucket, parity_key, trained.parity_document)
    write_s = time.perf_counter() - t1
    return TrainResult(
        model=spec.name,
        run_id=request.ingest.run_id,
        artifact_key=key,
        onnx_sha256=trained.onnx_sha256,
        metrics=trained.metrics,
        candidates=trained.candidates,
        parity=None,
        parity_key=parity_key,
        params=trained.params,
        feature_schema=trained.feature_schema,
        rows_train=trained.rows_train,
        rows_holdout=trained.rows_holdout,
        timings={"read_s": round(read_s, 4), **trained.timings, "write_s": round(write_s, 4)},
        library_versions=trained.library_versions,
        code_version=sluice.__version__,
        spec=spec.to_dict(),
        spec_sha256=trained.spec_sha256,
        diagnostics=trained.diagnostics,
        ingest=request.ingest,
    )
