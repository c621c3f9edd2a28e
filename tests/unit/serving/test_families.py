"""Every model family behind the real app, with models trained here on the shared data sets:
regression (wine quality), anomaly (shuttle sensors), forecast (CDNOW daily revenue, by the training
library's forecast family), plus /explain and the convenience routes of the seed use cases.

The API answers must be what the models themselves compute: scikit-learn for the regression and the
detector (within float32 rounding), onnxruntime's own recursion for the forecast.
"""

from __future__ import annotations

import gzip
import io
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from fastapi import FastAPI
from onnx import helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sluice.contracts import Feature, FeatureSchema, Interval
from sluice.serving.access import AccessPolicy
from sluice.serving.app import create_app
from sluice.serving.models import ModelStore
from tests.events import DATA
from tests.unit.serving.conftest import FakeClock, FakeRegistry, request

WINE = DATA / "tabular" / "winequality-red.csv"
SHUTTLE = DATA / "anomaly" / "shuttle_anomaly.csv.gz"
CDNOW = DATA / "timeseries" / "cdnow_daily_revenue_DERIVED.csv"


def _numeric_onnx(
    pipeline: Pipeline, columns: list[str], outputs: list[tuple[str, Any]] | None = None
) -> onnx.ModelProto:
    types = [(c, FloatTensorType([None, 1])) for c in columns]
    return convert_sklearn(
        pipeline, initial_types=types, final_types=outputs, target_opset={"": 17, "ai.onnx.ml": 3}
    )


def _register(registry: FakeRegistry, name: str, model: bytes, schema: FeatureSchema) -> int:
    version = registry.add(name, model)
    registry.meta[(name, version)]["feature_schema"] = schema.to_event()
    return version


@pytest.fixture(scope="module")
def wine() -> dict[str, Any]:
    df = pd.read_csv(WINE, sep=";")
    df.columns = [c.replace(" ", "_").lower() for c in df.columns]
    features = [c for c in df.columns if c != "quality"]
    x = df[features].astype("float32")
    pipe = Pipeline(
        [("cols", ColumnTransformer([("num", StandardScaler(), features)])), ("model", Ridge(alpha=1.0))]
    )
    pipe.fit(x, df["quality"])
    graph = _numeric_onnx(pipe, features, [("value", FloatTensorType([None, 1]))])
    schema = FeatureSchema(
        features=[Feature(name=f, kind="numeric") for f in features],
        target="quality",
        task="regression",
        interval=Interval(level=0.9, lower=[-0.8], upper=[0.9]),
        reference={f: float(x[f].median()) for f in features},
    )
    return {"df": x, "pipe": pipe, "onnx": graph.SerializeToString(), "schema": schema, "features": features}


@pytest.fixture(scope="module")
def shuttle() -> dict[str, Any]:
    df = pd.read_csv(io.BytesIO(gzip.decompress(SHUTTLE.read_bytes()))).sample(n=4000, random_state=3)
    features = [f"f{i}" for i in range(1, 10)]
    x = df[features].astype("float32")
    pipe = Pipeline(
        [
            ("cols", ColumnTransformer([("num", "passthrough", features)])),
            ("model", IsolationForest(n_estimators=50, random_state=0)),
        ]
    )
    pipe.fit(x)
    graph = _numeric_onnx(pipe, features)
    # IsolationForest's ONNX 'scores' is decision_function (higher = normal): the score is its negation.
    scores = next(o.name for o in graph.graph.output if o.name != "label")
    graph.graph.node.append(helper.make_node("Neg", [scores], ["score"]))
    graph.graph.output.append(helper.make_tensor_value_info("score", onnx.TensorProto.FLOAT, [None, 1]))
    native = -pipe.decision_function(x)
    threshold = float(np.quantile(native, 0.93))
    schema = FeatureSchema(
        features=[Feature(name=f, kind="numeric") for f in features],
        task="anomaly",
        threshold=threshold,
        reference={f: float(x[f].median()) for f in features},
    )
    return {
        "df": x,
        "native": native,
        "onnx": graph.SerializeToString(),
        "schema": schema,
        "threshold": threshold,
    }


@pytest.fixture(scope="module")
def revenue() -> Any:
    from sluice.ingest import ingest_bytes
    from sluice.specs import load_dataset_spec, load_model_spec
    from training.forecast import train_forecast

    df = ingest_bytes(CDNOW.read_bytes(), load_dataset_spec("daily-revenue")).clean
    return train_forecast(load_model_spec("revenue-forecast"), df, verify=False)


@pytest.fixture(scope="module")
def app(wine: dict[str, Any], shuttle: dict[str, Any], revenue: Any) -> FastAPI:
    registry = FakeRegistry()
    for name in ("wine-quality", "transaction-amount"):
        _register(registry, name, wine["onnx"], wine["schema"])
    for name in ("shuttle-anomaly", "transaction-anomaly"):
        _register(registry, name, shuttle["onnx"], shuttle["schema"])
    for name in ("revenue-forecast", "cashflow-forecast"):
        _register(registry, name, revenue.onnx, revenue.feature_schema)
    return create_app(
        store=ModelStore(registry, refresh_seconds=60, clock=FakeClock()), root_path="", access=AccessPolicy()
    )


def _records(df: pd.DataFrame, n: int) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in row.items()} for _, row in df.head(n).iterrows()]


def test_regression_answers_the_native_value_with_its_interval(app: FastAPI, wine: dict[str, Any]) -> None:
    records = _records(wine["df"], 50)

    resp = request(app, "POST", "/v1/models/wine-quality/predict", json={"records": records})

    assert resp.status_code == 200, resp.text
    answers = resp.json()["predictions"]
    native = wine["pipe"].predict(wine["df"].head(50))
    got = np.array([a["value"] for a in answers])
    np.testing.assert_allclose(got, native, rtol=1e-4, atol=1e-4)
    first = answers[0]
    assert first["interval"] == {
        "level": 0.9,
        "lower": pytest.approx(first["value"] - 0.8),
        "upper": pytest.approx(first["value"] + 0.9),
    }


def test_anomaly_answers_score_flag_and_threshold(app: FastAPI, shuttle: dict[str, Any]) -> None:
    records = _records(shuttle["df"], 300)

    resp = request(app, "POST", "/v1/models/shuttle-anomaly/predict", json={"records": records})

    assert resp.status_code == 200, resp.text
    answers = resp.json()["predictions"]
    scores = np.array([a["score"] for a in answers])
    np.testing.assert_allclose(scores, shuttle["native"][:300], rtol=1e-4, atol=1e-4)
    assert [a["flag"] for a in answers] == [bool(s >= shuttle["threshold"]) for s in scores]
    assert 0 < sum(a["flag"] for a in answers) < 300 and {a["threshold"] for a in answers} == {
        shuttle["threshold"]
    }


def test_forecast_follows_the_series_by_onnxruntime_recursion(app: FastAPI, revenue: Any) -> None:
    import onnxruntime as ort

    from sluice.forecasting import recursive_forecast

    info = revenue.feature_schema.forecast
    resp = request(app, "POST", "/v1/models/revenue-forecast/forecast?days=45")

    assert resp.status_code == 200, resp.text
    body = resp.json()
    points = body["forecast"]
    assert body["days"] == 45 and len(points) == 45
    session = ort.InferenceSession(revenue.onnx, providers=["CPUExecutionProvider"])
    dates, values = recursive_forecast(lambda feed: session.run(["value"], dict(feed))[0], info, 45)
    assert [p["date"] for p in points] == dates
    assert dates[0] > info.history_dates[-1]
    np.testing.assert_allclose([p["value"] for p in points], values, rtol=1e-5)
    widths = [p["upper"] - p["lower"] for p in points]
    assert all(w > 0 for w in widths) and widths[-1] > widths[info.horizon - 1]  # widened past the horizon
    default = request(app, "POST", "/v1/models/revenue-forecast/forecast").json()
    assert default["days"] == info.horizon


def test_forecast_and_predict_refuse_the_wrong_model_kind_and_too_many_days(app: FastAPI) -> None:
    too_far = request(app, "POST", "/v1/models/revenue-forecast/forecast?days=91")
    predict = request(app, "POST", "/v1/models/revenue-forecast/predict", json={"x": 1})
    not_forecast = request(app, "POST", "/v1/models/wine-quality/forecast?days=3")

    assert too_far.status_code == 422 and too_far.json()["error"]["details"][0]["field"] == "days"
    assert predict.status_code == 422 and predict.json()["error"]["code"] == "wrong_route"
    assert not_forecast.status_code == 422 and not_forecast.json()["error"]["code"] == "wrong_route"


def test_explain_gives_occlusion_contributions_from_the_served_graph(
    app: FastAPI, wine: dict[str, Any]
) -> None:
    record = _records(wine["df"], 1)[0]
    reference = wine["schema"].reference

    resp = request(app, "POST", "/v1/models/wine-quality/explain", json=record)

    assert resp.status_code == 200, resp.text
    body = resp.json()
    contributions = {c["feature"]: c["contribution"] for c in body["contributions"]}
    assert set(contributions) == set(wine["features"])
    pipe = wine["pipe"]
    frame = pd.DataFrame([record]).astype("float32")
    for feature in ("alcohol", "volatile_acidity"):  # linear model: occlusion is exact arithmetic here
        occluded = frame.assign(**{feature: np.float32(reference[feature])})
        expected = float(pipe.predict(frame)[0] - pipe.predict(occluded)[0])
        assert contributions[feature] == pytest.approx(expected, abs=1e-4)
    ordered = [abs(c["contribution"]) for c in body["contributions"]]
    assert ordered == sorted(ordered, reverse=True)
    assert body["output"] == pytest.approx(body["prediction"]["value"], abs=1e-5)


def test_explain_takes_one_record(app: FastAPI, wine: dict[str, Any]) -> None:
    resp = request(app, "POST", "/v1/models/wine-quality/explain", json={"records": _records(wine["df"], 2)})

    assert resp.status_code == 422 and resp.json()["error"]["details"][0]["field"] == "records"


@pytest.mark.parametrize(
    ("path", "model"),
    [("/v1/predict/amount", "transaction-amount"), ("/v1/predict/anomaly", "transaction-anomaly")],
)
def test_use_case_routes_answer_as_their_model(
    app: FastAPI, wine: dict[str, Any], shuttle: dict[str, Any], path: str, model: str
) -> None:
    df = wine["df"] if model == "transaction-amount" else shuttle["df"]
    records = _records(df, 3)

    short = request(app, "POST", path, json={"records": records}).json()
    full = request(app, "POST", f"/v1/models/{model}/predict", json={"records": records}).json()

    assert short["model"] == model and short["predictions"] == full["predictions"]


def test_cashflow_route_forecasts(app: FastAPI) -> None:
    body = request(app, "POST", "/v1/forecast/cashflow?days=7").json()

    assert body["model"] == "cashflow-forecast" and len(body["forecast"]) == 7
