"""The benchmark's model: the real household file through the real pipeline functions, under moto.

``build`` must run inside ``mock_aws()`` with ``bench.child.base_env()`` applied. It uploads the
household CSV to ``raw/transactions/``, then runs what the state machine runs: ``ingest`` ->
``run_training`` -> ``verify_candidate`` -> ``register_candidate`` (champion v1). The native
scikit-learn pipeline (what a "pickle in a Lambda" would serve) comes from ``train_model`` on the
same curated data; training is deterministic (single-threaded BLAS, fixed seed), which is checked:
the pipeline's own ONNX export must have the registered sha256.

``snapshot`` writes what the fresh interpreters of ``bench.child`` need into a directory.
"""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.child import API_APP, BUCKET, MODEL, REGION, ROOT, TABLE, LambdaContext, create_storage

SOURCE = ROOT.parent / "shared" / "data" / "transactions" / "daily_household_transactions.csv"
EVENT = ROOT / "events" / "api" / "predict_category.json"
RAW_KEY = "raw/transactions/daily_household_transactions.csv"


@dataclass
class Fixture:
    api: ModuleType  # functions/api/app.py, loaded as Lambda would (its app and store)
    event: dict[str, Any]  # events/api/predict_category.json: one household row
    record: dict[str, Any]  # that row as the API validates it
    served: Any  # sluice.serving.models.ServedModel: the champion the API loaded
    feed: dict[str, Any]  # sluice.features.build_feed of the row
    frame: Any  # training.pipeline.feature_frame of the row (the native pipeline's input)
    pipeline: Any  # the fitted scikit-learn Pipeline
    onnx: bytes
    version: int
    facts: dict[str, Any] = field(default_factory=dict)


def load_api() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sluice_bench_api_app", API_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build() -> Fixture:
    import boto3

    from sluice.aws import reset_clients
    from sluice.contracts import IngestRequest, TrainRequest
    from sluice.curated import read_curated
    from sluice.features import build_feed
    from sluice.ingest import ingest
    from sluice.registration import register_candidate
    from sluice.registry import Registry
    from sluice.settings import get_settings
    from sluice.specs import load_model_spec
    from sluice.storage import get_object
    from sluice.verification import verify_candidate
    from training import run_training, train_model
    from training.pipeline import feature_frame

    get_settings.cache_clear()
    reset_clients()
    session = boto3.session.Session(region_name=REGION)
    create_storage(session)
    session.client("s3").put_object(Bucket=BUCKET, Key=RAW_KEY, Body=SOURCE.read_bytes())

    timings: dict[str, float] = {}
    t = time.perf_counter()
    ingested = ingest(IngestRequest(bucket=BUCKET, key=RAW_KEY))
    timings["ingest_s"] = time.perf_counter() - t
    t = time.perf_counter()
    result = run_training(TrainRequest(model=MODEL, ingest=ingested))
    timings["run_training_s"] = time.perf_counter() - t
    t = time.perf_counter()
    verified = verify_candidate(result)
    timings["verify_s"] = time.perf_counter() - t
    registered = register_candidate(verified, Registry(TABLE, BUCKET))
    if registered.status != "champion":
        raise RuntimeError(f"the benchmark model was not made champion: {registered.reasons}")
    onnx = get_object(BUCKET, result.artifact_key).body

    t = time.perf_counter()
    df = read_curated(BUCKET, ingested.data_key, ingested.schema_key)
    trained = train_model(load_model_spec(MODEL), df, verify=False)
    timings["train_model_s"] = time.perf_counter() - t
    if trained.onnx_sha256 != result.onnx_sha256:
        raise RuntimeError("train_model did not reproduce the registered model (ONNX sha256 differs)")

    api = load_api()
    event = json.loads(EVENT.read_text())
    t = time.perf_counter()
    response = api.handler(event, LambdaContext())
    timings["first_request_s"] = time.perf_counter() - t  # alias read + model load, in-process moto
    if response["statusCode"] != 200:
        raise RuntimeError(f"the API answered {response['statusCode']}: {response['body']}")
    served = api.app.state.store.get_cached(MODEL)
    features = served.schema.features
    [record] = served.validator.validate(json.loads(event["body"]))
    return Fixture(
        api=api,
        event=event,
        record=record,
        served=served,
        feed=build_feed([record], features),
        frame=feature_frame([record], features),
        pipeline=trained.pipeline,
        onnx=onnx,
        version=registered.version,
        facts={
            "rows_clean": ingested.rows_clean,
            "rows_train": result.rows_train,
            "rows_holdout": result.rows_holdout,
            "classes": len(served.schema.classes),
            "n_features": result.params.get("n_features"),
            "metrics": result.metrics,
            "onnx_sha256": result.onnx_sha256,
            "pipeline_timings_s": {k: round(v, 3) for k, v in timings.items()},
        },
    )


def _column(values: Any) -> dict[str, Any]:
    dtype = str(values.dtype)
    return {"dtype": "object" if dtype == "object" else dtype, "values": values.reshape(-1).tolist()}


def snapshot(fx: Fixture, directory: Path) -> dict[str, int]:
    """Registry items and objects, model files, event and inputs for ``bench.child``; file sizes."""
    import boto3
    import joblib

    session = boto3.session.Session(region_name=REGION)
    items: list[dict[str, Any]] = []
    for page in session.client("dynamodb").get_paginator("scan").paginate(TableName=TABLE):
        items.extend(page["Items"])
    s3 = session.client("s3")
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"models/{MODEL}/"):
        for obj in page.get("Contents", []):
            name = f"object-{len(objects)}.bin"
            (directory / name).write_bytes(s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read())
            objects.append({"key": obj["Key"], "file": name})
    (directory / "registry.json").write_text(json.dumps({"items": items, "objects": objects}))
    (directory / "event.json").write_text(json.dumps(fx.event))
    (directory / "model.onnx").write_bytes(fx.onnx)
    joblib.dump(fx.pipeline, directory / "pipeline.joblib")
    schema = fx.served.schema
    inputs = {
        "feed": {name: _column(arr) for name, arr in fx.feed.items()},
        "frame": {name: _column(fx.frame[name].to_numpy()) for name in fx.frame.columns},
        "outputs": [schema.label_output, schema.probabilities_output],
    }
    (directory / "inputs.json").write_text(json.dumps(inputs))
    return {
        "onnx_bytes": len(fx.onnx),
        "pickle_bytes": (directory / "pipeline.joblib").stat().st_size,
    }
