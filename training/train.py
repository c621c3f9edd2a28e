"""Train one model spec on curated data: fit, evaluate, export to ONNX, prove parity.

``train_model`` is pure (a spec and a DataFrame in, a ``TrainedModel`` out); ``run_training``
adds S3: it reads the curated data of a ``TrainRequest``, stages ``model.onnx`` and returns the
``TrainResult`` the register state consumes.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

import sluice
from sluice.contracts import FeatureSchema, ParityReport, TrainRequest, TrainResult
from sluice.curated import read_curated
from sluice.errors import SpecError, TrainingError
from sluice.parity import require_parity, verify_document
from sluice.settings import get_settings
from sluice.specs import ModelSpec, load_model_spec
from sluice.storage import put_bytes, put_json, sha256_hex
from training.export import export_onnx, feature_schema
from training.metrics import classification_metrics, majority_baseline, majority_class
from training.parity import native_document
from training.pipeline import build_pipeline, feature_frame, pipeline_params, prepare_data

BLAS_THREADS = 1
LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "pandas", "scipy")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "sluice": sluice.__version__}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass
class TrainedModel:
    """A fitted pipeline, its ONNX export and the evidence that both agree."""

    spec: ModelSpec
    pipeline: Pipeline
    onnx: bytes
    classes: list[str]
    feature_schema: FeatureSchema
    metrics: dict[str, float]
    baseline: dict[str, float]
    parity: ParityReport | None  # None until verified (the pipeline's Verify step does it)
    parity_document: dict[str, Any]
    params: dict[str, Any]
    rows_train: int
    rows_holdout: int
    timings: dict[str, float] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)

    @property
    def onnx_sha256(self) -> str:
        return sha256_hex(self.onnx)


def _split(spec: ModelSpec, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index = np.arange(len(y))
    n_classes = len(set(y))
    n_holdout = max(int(np.ceil(spec.holdout_fraction * len(y))), n_classes)
    if n_holdout >= len(y) - n_classes:
        raise TrainingError(
            f"{spec.name}: {len(y)} rows are too few for a stratified holdout over {n_classes} classes"
        )
    train_idx, holdout_idx = train_test_split(
        index, test_size=n_holdout, stratify=y, random_state=spec.random_state
    )
    return np.sort(train_idx), np.sort(holdout_idx)


def train_model(spec: ModelSpec, df: pd.DataFrame, *, verify: bool = True) -> TrainedModel:
    """Fit ``spec`` on ``df`` (curated columns), evaluate on a stratified holdout, export, check parity.

    Raises TrainingError when the data cannot support a model and ParityError when the ONNX export
    does not reproduce the native pipeline's predictions. With ``verify=False`` the parity document
    (native answers) is made but not replayed through onnxruntime: the train Lambda has no
    onnxruntime, and the pipeline's Verify step replays it with the serving runtime.

    BLAS runs single-threaded: measured on the household file, lbfgs took 0.5 s with one thread and
    4-20 s with the default threads on a busy 2-vCPU machine (a Lambda has 2 at 3 GB), and the fitted
    coefficients (hence the ONNX bytes and their sha256) depended on the thread count.
    """
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        return _train_model(spec, df, verify)


def _train_model(spec: ModelSpec, df: pd.DataFrame, verify: bool) -> TrainedModel:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = prepare_data(spec, df)
    train_idx, holdout_idx = _split(spec, data.y)
    train_records = [data.records[i] for i in train_idx]
    holdout_records = [data.records[i] for i in holdout_idx]
    y_train, y_holdout = data.y[train_idx], data.y[holdout_idx]
    x_train = feature_frame(train_records, spec.features)
    x_holdout = feature_frame(holdout_records, spec.features)
    timings["prepare_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    pipeline = build_pipeline(spec)
    pipeline.fit(x_train, y_train)
    timings["fit_s"] = time.perf_counter() - t1

    predicted = pipeline.predict(x_holdout)
    metrics = classification_metrics(y_holdout, predicted)
    baseline = majority_baseline(y_train, y_holdout)

    t2 = time.perf_counter()
    onnx_bytes = export_onnx(pipeline, spec)
    timings["export_s"] = time.perf_counter() - t2

    classes = [str(c) for c in pipeline.classes_]
    schema = feature_schema(spec, classes)
    t3 = time.perf_counter()
    document = native_document(pipeline, holdout_records, spec.features, schema)
    parity = require_parity(verify_document(onnx_bytes, document), spec.name) if verify else None
    timings["parity_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0

    params = {
        **pipeline_params(spec),
        "merged_classes": data.merged_classes,
        "dropped_rows": data.dropped_rows,
        "majority_class": str(majority_class(y_train)),
        "onnx_size_bytes": len(onnx_bytes),
        "n_features": int(pipeline.steps[0][1].transform(x_holdout[:1]).shape[1]),
    }
    return TrainedModel(
        spec=spec,
        pipeline=pipeline,
        onnx=onnx_bytes,
        classes=classes,
        feature_schema=schema,
        metrics=metrics,
        baseline=baseline,
        parity=parity,
        parity_document=document,
        params=params,
        rows_train=len(train_idx),
        rows_holdout=len(holdout_idx),
        timings={k: round(v, 4) for k, v in timings.items()},
        library_versions=library_versions(),
    )


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
        baseline=trained.baseline,
        parity=None,
        parity_key=parity_key,
        params=trained.params,
        feature_schema=trained.feature_schema,
        rows_train=trained.rows_train,
        rows_holdout=trained.rows_holdout,
        timings={
            "read_s": round(read_s, 4),
            **trained.timings,
            "write_s": round(write_s, 4),
        },
        library_versions=trained.library_versions,
        spec=spec.to_dict(),
        ingest=request.ingest,
    )
