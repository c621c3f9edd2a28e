"""Report numbers (training.diagnostics) and the HTML page (training.report) on real data.

Small scikit-learn models are trained here on the real files (wine quality, shuttle, CDNOW revenue);
every diagnostic is checked against an independent computation, and every rendered page is parsed to
prove it is well-formed, self-contained, escaped and carries the numbers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from html.parser import HTMLParser
from importlib import metadata as importlib_metadata
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sluice.profile import profile_frame
from sluice.report import render_report
from tests.events import DATA
from training.diagnostics import (
    anomaly_diagnostics,
    classification_diagnostics,
    forecast_diagnostics,
    permutation_importance_by_feature,
    regression_diagnostics,
)

WINE = DATA / "tabular" / "winequality-red.csv"
CHURN = DATA / "churn" / "telco_customer_churn_ibm.csv"
SHUTTLE = DATA / "anomaly" / "shuttle_anomaly.csv.gz"
CDNOW = DATA / "timeseries" / "cdnow_daily_revenue_DERIVED.csv"
HOSTILE = '<b>&"x'
HOSTILE_ESCAPED = "&lt;b&gt;&amp;&quot;x"
VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "source"}


# ------------------------------------------------------------------------------------------ fixtures


@dataclass
class Fitted:
    """A model fitted on the training split and its holdout predictions."""

    model: Any
    x_test: pd.DataFrame
    y_test: np.ndarray
    pred: np.ndarray
    proba: np.ndarray | None
    features: list[str]


@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    df = pd.read_csv(WINE, sep=";")
    df["noise"] = np.random.default_rng(42).normal(size=len(df))  # a feature that means nothing
    return df


def _fit(model: Any, df: pd.DataFrame, y: np.ndarray, classify: bool) -> Fitted:
    features = [c for c in df.columns if c != "quality"]
    stratify = y if classify else None
    x_train, x_test, y_train, y_test = train_test_split(
        df[features], y, test_size=0.25, random_state=0, stratify=stratify
    )
    model.fit(x_train, y_train)
    proba = model.predict_proba(x_test) if classify else None
    return Fitted(model, x_test.reset_index(drop=True), y_test, model.predict(x_test), proba, features)


@pytest.fixture(scope="module")
def binary(wine) -> Fitted:
    """Good wine (quality >= 6) against the rest; the good class has a hostile label."""
    y = np.where(wine["quality"] >= 6, HOSTILE, "low")
    return _fit(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), wine, y, True)


@pytest.fixture(scope="module")
def multiclass(wine) -> Fitted:
    """Quality grades 3..8 as classes."""
    y = wine["quality"].to_numpy()
    return _fit(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), wine, y, True)


@pytest.fixture(scope="module")
def regression(wine) -> Fitted:
    y = wine["quality"].to_numpy(dtype=float)
    return _fit(make_pipeline(StandardScaler(), Ridge()), wine, y, False)


@pytest.fixture(scope="module")
def shuttle() -> tuple[IsolationForest, pd.DataFrame, np.ndarray]:
    df = pd.read_csv(SHUTTLE).sample(n=8000, random_state=0).reset_index(drop=True)
    x, labels = df.drop(columns="anomaly"), df["anomaly"].to_numpy()
    model = IsolationForest(n_estimators=60, random_state=0).fit(x.iloc[:4000])
    return model, x.iloc[4000:].reset_index(drop=True), labels[4000:]


@pytest.fixture(scope="module")
def revenue() -> pd.DataFrame:
    return pd.read_csv(CDNOW, parse_dates=["date"])


# ----------------------------------------------------------------------------- classification


def test_confusion_matrix_and_per_class_match_the_predictions(binary):
    d = classification_diagnostics(binary.y_test, binary.pred, binary.proba, binary.model.classes_)
    cm = np.array(d["confusion_matrix"]["matrix"])
    n = len(binary.y_test)
    assert d["confusion_matrix"]["labels"] == [str(c) for c in binary.model.classes_]
    assert cm.sum() == n
    assert np.trace(cm) == round(accuracy_score(binary.y_test, binary.pred) * n)
    # rows are the actual classes
    assert cm.sum(axis=1).tolist() == [int(np.sum(binary.y_test == c)) for c in binary.model.classes_]
    f1 = f1_score(binary.y_test, binary.pred, average=None, labels=binary.model.classes_)
    assert [c["f1"] for c in d["per_class"]] == pytest.approx(f1.tolist())
    assert sum(c["support"] for c in d["per_class"]) == n


def test_binary_calibration_is_the_positive_class_reliability_curve(binary):
    d = classification_diagnostics(binary.y_test, binary.pred, binary.proba, binary.model.classes_)
    cal = d["calibration"]
    positive = binary.model.classes_[1]
    observed, predicted = calibration_curve(binary.y_test == positive, binary.proba[:, 1], n_bins=10)
    assert cal["kind"] == "positive_class"
    assert sum(b["count"] for b in cal["bins"]) == len(binary.y_test)
    assert [b["observed"] for b in cal["bins"]] == pytest.approx(observed.tolist())
    assert [b["mean_predicted"] for b in cal["bins"]] == pytest.approx(predicted.tolist())
    assert all(b["count"] > 0 and b["lower"] <= b["mean_predicted"] <= b["upper"] for b in cal["bins"])


def test_multiclass_calibration_is_top_class_confidence_against_accuracy(multiclass):
    m = multiclass
    d = classification_diagnostics(m.y_test, m.pred, m.proba, m.model.classes_)
    cal = d["calibration"]
    correct = sum(round(b["observed"] * b["count"]) for b in cal["bins"])
    assert cal["kind"] == "top_class"
    assert sum(b["count"] for b in cal["bins"]) == len(m.y_test)
    assert correct == int(np.sum(m.pred == m.y_test))  # LogisticRegression predicts the top class
    confidence = sum(b["mean_predicted"] * b["count"] for b in cal["bins"]) / len(m.y_test)
    assert confidence == pytest.approx(float(m.proba.max(axis=1).mean()))
    assert d["confusion_matrix"]["labels"] == ["3", "4", "5", "6", "7", "8"]


def test_classes_beyond_the_cap_are_merged_into_other(multiclass):
    m = multiclass
    d = classification_diagnostics(m.y_test, m.pred, m.proba, m.model.classes_, max_classes=3)
    cm = np.array(d["confusion_matrix"]["matrix"])
    top3 = pd.Series(m.y_test).value_counts().index[:3]
    assert d["confusion_matrix"]["labels"] == [str(c) for c in sorted(top3)] + ["(other)"]
    assert cm.shape == (4, 4) and cm.sum() == len(m.y_test)
    assert [c["label"] for c in d["per_class"]] == [str(c) for c in sorted(top3)]


def test_classification_rejects_probabilities_of_the_wrong_shape(binary):
    with pytest.raises(ValueError, match="proba"):
        classification_diagnostics(binary.y_test, binary.pred, binary.proba[:, :1], binary.model.classes_)


# --------------------------------------------------------------------------------- regression


def test_regression_points_are_a_seeded_sample_and_the_histogram_counts_every_residual(regression):
    r = regression
    d = regression_diagnostics(r.y_test, r.pred, max_points=100, seed=3)["residuals"]
    pairs = set(zip(r.y_test.tolist(), r.pred.tolist(), strict=True))
    assert d["n"] == len(r.y_test)
    assert len(d["actual"]) == len(d["predicted"]) == 100
    assert set(zip(d["actual"], d["predicted"], strict=True)) <= pairs
    counts, _ = np.histogram(r.y_test - r.pred, bins=d["histogram"]["edges"])
    assert d["histogram"]["counts"] == counts.tolist()
    assert sum(d["histogram"]["counts"]) == len(r.y_test)
    assert regression_diagnostics(r.y_test, r.pred, max_points=100, seed=3)["residuals"] == d
    assert (
        regression_diagnostics(r.y_test, r.pred, max_points=100, seed=4)["residuals"]["actual"] != d["actual"]
    )
    assert len(regression_diagnostics(r.y_test, r.pred)["residuals"]["actual"]) == len(r.y_test)  # 400 < 500


def test_regression_rejects_missing_predictions(regression):
    pred = regression.pred.copy()
    pred[0] = np.nan
    with pytest.raises(ValueError, match="y_pred"):
        regression_diagnostics(regression.y_test, pred)


# ------------------------------------------------------------------------------------ anomaly


def test_anomaly_histogram_splits_by_label_and_flag_rate_matches_predict(shuttle):
    model, x, labels = shuttle
    scores, threshold = -model.score_samples(x), -model.offset_  # higher = more anomalous
    d = anomaly_diagnostics(scores, threshold, labels)["scores"]
    hist = d["histogram"]
    assert d["flag_rate"] == pytest.approx(float(np.mean(model.predict(x) == -1)))
    assert sum(hist["counts_anomaly"]) == int(labels.sum())
    assert sum(hist["counts_normal"]) == int((labels == 0).sum())
    assert hist["edges"][0] <= threshold <= hist["edges"][-1]
    # on real shuttle data the labelled anomalies score higher than the normal rows
    centres = np.diff(hist["edges"]) / 2 + np.array(hist["edges"][:-1])
    assert np.average(centres, weights=hist["counts_anomaly"]) > np.average(
        centres, weights=hist["counts_normal"]
    )
    unlabelled = anomaly_diagnostics(scores, threshold)["scores"]["histogram"]
    assert set(unlabelled) == {"edges", "counts"} and sum(unlabelled["counts"]) == len(x)


def test_anomaly_labels_must_be_zero_one(shuttle):
    model, x, labels = shuttle
    with pytest.raises(ValueError, match="labels"):
        anomaly_diagnostics(-model.score_samples(x), -model.offset_, np.where(labels == 1, -1, 1))


# ----------------------------------------------------------------------------------- forecast


def _seasonal_naive(revenue: pd.DataFrame, horizon: int = 28) -> dict[str, Any]:
    """Last week's value as the forecast, with the 90 % quantile of past weekly errors as interval."""
    history, holdout = revenue.iloc[:-horizon], revenue.iloc[-horizon:]
    values = revenue["revenue"].to_numpy()
    predicted = values[-horizon - 7 : -7]
    width = np.quantile(np.abs(np.diff(history["revenue"].to_numpy(), n=1)[6:]), 0.9)
    return {
        "history": history,
        "holdout": holdout,
        "predicted": predicted,
        "lower": predicted - width,
        "upper": predicted + width,
    }


def forecast_of(revenue: pd.DataFrame) -> dict[str, Any]:
    f = _seasonal_naive(revenue)
    return forecast_diagnostics(
        f["history"]["date"],
        f["history"]["revenue"],
        f["holdout"]["date"],
        f["holdout"]["revenue"],
        f["predicted"],
        f["lower"],
        f["upper"],
    )


def test_forecast_keeps_the_recent_history_and_the_holdout(revenue):
    d = forecast_of(revenue)["forecast"]
    history, holdout = d["history"], d["holdout"]
    assert len(history["dates"]) == len(history["values"]) == 180
    assert history["dates"][-1] == "1998-06-02" and holdout["dates"][0] == "1998-06-03"
    assert holdout["dates"][-1] == "1998-06-30" and len(holdout["dates"]) == 28
    assert history["values"] == revenue["revenue"].iloc[-208:-28].tolist()
    assert holdout["actual"] == revenue["revenue"].iloc[-28:].tolist()
    assert all(
        lo <= p <= hi
        for lo, p, hi in zip(holdout["lower"], holdout["predicted"], holdout["upper"], strict=True)
    )
    no_band = forecast_diagnostics(
        revenue["date"][:10],
        revenue["revenue"][:10],
        revenue["date"][10:12],
        [1.0, 2.0],
        [1.0, 2.0],
        None,
        None,
    )
    assert set(no_band["forecast"]["holdout"]) == {"dates", "actual", "predicted"}


def test_forecast_rejects_mismatched_lengths(revenue):
    with pytest.raises(ValueError, match="lengths differ"):
        forecast_diagnostics(
            revenue["date"], revenue["revenue"], ["1998-07-01"], [1.0, 2.0], [1.0], None, None
        )


# -------------------------------------------------------------------------------- importance


def test_permutation_importance_ranks_alcohol_above_noise(binary):
    b = binary
    before = b.x_test.copy()
    importance = permutation_importance_by_feature(
        b.model.predict, b.x_test, b.y_test, accuracy_score, {f: [f] for f in b.features}, repeats=3
    )
    by_name = {i["feature"]: i for i in importance}
    assert [i["importance"] for i in importance] == sorted(
        (i["importance"] for i in importance), reverse=True
    )
    assert set(by_name) == set(b.features)
    assert by_name["alcohol"]["importance"] > by_name["noise"]["importance"] + 0.03
    assert [i["feature"] for i in importance].index("alcohol") < 3
    pd.testing.assert_frame_equal(b.x_test, before)  # the frame is left as it was
    again = permutation_importance_by_feature(
        b.model.predict, b.x_test, b.y_test, accuracy_score, {f: [f] for f in b.features}, repeats=3
    )
    assert again == importance  # seeded


def test_a_feature_s_columns_are_permuted_together(wine):
    frame = wine[["alcohol"]].assign(alcohol_copy=wine["alcohol"])
    same_row = lambda f: (f["alcohol"] == f["alcohol_copy"]).to_numpy()  # noqa: E731
    y = np.ones(len(frame), dtype=bool)
    together = permutation_importance_by_feature(
        same_row, frame, y, accuracy_score, {"alcohol": ["alcohol", "alcohol_copy"]}, max_rows=500
    )
    apart = permutation_importance_by_feature(
        same_row, frame, y, accuracy_score, {"alcohol": ["alcohol"], "copy": ["alcohol_copy"]}, max_rows=500
    )
    assert together == [{"feature": "alcohol", "importance": 0.0, "std": 0.0}]
    assert all(i["importance"] > 0.5 for i in apart)  # alcohol has ~65 distinct values
    with pytest.raises(ValueError, match=r"'date'.*date__month"):
        permutation_importance_by_feature(same_row, frame, y, accuracy_score, {"date": ["date__month"]})


# ------------------------------------------------------------------------------------- report


class PageParser(HTMLParser):
    """Checks nesting (every element closed in order) and gathers tags, attributes, text and headings."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.headings: list[str] = []
        self.in_head: list[str] = []
        self.errors: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs
        if self.stack[-1:] == ["head"]:
            self.in_head.append(tag)
        if tag not in VOID:
            self.stack.append(tag)
        self._in_h2 = tag == "h2"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()
        self._in_h2 = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_h2:
            self.headings.append(data)


def parse(page: str) -> PageParser:
    """The parsed page, asserted well-formed and self-contained."""
    assert page.startswith("<!DOCTYPE html>")
    parser = PageParser()
    parser.feed(page)
    parser.close()
    assert not parser.errors and not parser.stack, (parser.errors, parser.stack)
    for tag in ("html", "head", "body"):
        assert parser.tags.count(tag) == 1, tag
    assert parser.in_head.count("title") == 1
    assert "script" not in parser.tags and "img" not in parser.tags and "link" not in parser.tags
    assert not [name for name, _ in parser.attrs if name.startswith("on") or name in ("src", "href")]
    lowered = page.lower()
    for forbidden in ("<script", "http://", "https://", "url(", "@import", "javascript:"):
        assert forbidden not in lowered, forbidden
    assert len(page.encode()) < 300_000
    return parser


def base_metadata(task: str, metric: str, holdout: dict[str, float], baseline: dict[str, float]) -> dict:
    """The parts of a version's metadata that every task shares, with real provenance."""
    return {
        "model": f"wine {HOSTILE}",
        "version": 3,
        "task": task,
        "status": "candidate",
        "reasons": [f"beats the baseline on {metric}"],
        "metric": metric,
        "metrics": {"cv": dict(holdout), "holdout": holdout, "baseline": baseline},
        "gates": [
            {"gate": "beats_baseline", "passed": True, "detail": f"{metric} above the baseline"},
            {"gate": "min_rows", "passed": False, "detail": "fewer than 5000 rows < 5000"},
        ],
        "candidates": [
            {"name": "logreg", "status": "selected", "cv": dict(holdout), "fit_s": 0.05, "reason": None},
            {"name": "forest", "status": "dropped", "cv": {}, "fit_s": 1.2, "reason": "timeout > 60 s"},
        ],
        "params": {"C": 1.0, "max_iter": 1000},
        "rows": {"train": 1199, "holdout": 400},
        "source": {
            "bucket": "sluice-data",
            "key": "raw/wine/winequality-red.csv",
            "version_id": "null",
            "sha256": hashlib.sha256(WINE.read_bytes()).hexdigest(),
        },
        "created_at": "2025-01-02T03:04:05+00:00",
        "onnx_sha256": hashlib.sha256(b"model").hexdigest(),
        "library_versions": {name: importlib_metadata.version(name) for name in ("numpy", "scikit-learn")},
    }


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """Where one rendered page per task is written (to look at by hand; the tests open none)."""
    return tmp_path_factory.mktemp("reports")


def test_classification_report(binary, wine, examples):
    b = binary
    accuracy = accuracy_score(b.y_test, b.pred)
    baseline = float(np.mean(b.y_test == pd.Series(b.y_test).mode()[0]))
    meta = base_metadata("classification", "accuracy", {"accuracy": accuracy}, {"accuracy": baseline})
    meta["metrics"]["champion"] = {"accuracy": 0.7}
    meta["diagnostics"] = {
        **classification_diagnostics(b.y_test, b.pred, b.proba, b.model.classes_),
        "feature_importance": permutation_importance_by_feature(
            b.model.predict, b.x_test, b.y_test, accuracy_score, {f: [f] for f in b.features}, repeats=2
        ),
    }
    meta["data_profile"] = profile_frame(wine, dict.fromkeys(wine.columns, "float"))
    page = render_report(meta)
    (examples / "classification.html").write_text(page, encoding="utf-8")
    parsed = parse(page)
    text = "".join(parsed.text)
    assert f"{accuracy:.4g}" in text and f"{baseline:.4g}" in text and "0.7" in text
    assert HOSTILE_ESCAPED in page and HOSTILE not in page  # escaped in the HTML...
    assert HOSTILE in text  # ...and reads back as the label
    assert 'wine <b>&"x v3: model report' in text
    assert parsed.headings == [
        "Gates",
        "Metrics",
        "Candidates",
        "Classification diagnostics",
        "Feature importance",
        "Data profile",
        "Lineage",
    ]
    assert parsed.tags.count("svg") >= 2 + len(wine.columns)  # calibration, importance, profile sparklines
    cm = meta["diagnostics"]["confusion_matrix"]["matrix"]
    assert all(f"{n:,}" in text for row in cm for n in row)
    assert "1 of 2 passed" in text and "timeout > 60 s" in text
    assert meta["source"]["sha256"] in text and "alcohol" in text


def test_regression_report(regression, examples):
    r = regression
    holdout = {
        "r2": r2_score(r.y_test, r.pred),
        "neg_mean_absolute_error": -float(np.mean(np.abs(r.y_test - r.pred))),
    }
    meta = base_metadata("regression", "r2", holdout, {"r2": 0.0, "neg_mean_absolute_error": -0.68})
    meta["diagnostics"] = regression_diagnostics(r.y_test, r.pred)
    page = render_report(meta)
    (examples / "regression.html").write_text(page, encoding="utf-8")
    parsed = parse(page)
    text = "".join(parsed.text)
    assert f"{holdout['r2']:.4g}" in text and f"{holdout['neg_mean_absolute_error']:.4g}" in text
    assert "Residuals" in parsed.headings and "Classification diagnostics" not in parsed.headings
    assert parsed.tags.count("circle") == len(r.y_test)  # every holdout point (400 <= 500)
    assert parsed.tags.count("svg") == 2


def test_anomaly_report(shuttle, examples):
    model, x, labels = shuttle
    scores, threshold = -model.score_samples(x), -model.offset_
    flagged = model.predict(x) == -1
    holdout = {"precision": float(labels[flagged].mean()), "recall": float(flagged[labels == 1].mean())}
    meta = base_metadata("anomaly", "recall", holdout, {"precision": 0.07, "recall": 0.0})
    meta["diagnostics"] = anomaly_diagnostics(scores, threshold, labels)
    meta["data_profile"] = profile_frame(x, dict.fromkeys(x.columns, "int"))
    page = render_report(meta)
    (examples / "anomaly.html").write_text(page, encoding="utf-8")
    parsed = parse(page)
    text = "".join(parsed.text)
    assert f"{100 * flagged.mean():.4g}%" in text
    assert f"threshold {threshold:.4g}" in text
    assert parsed.tags.count("svg") == 2 + len(x.columns)  # normal and anomaly histograms, sparklines


def test_forecast_report(revenue, examples):
    diagnostics = forecast_of(revenue)
    holdout = diagnostics["forecast"]["holdout"]
    mae = float(np.mean(np.abs(np.subtract(holdout["actual"], holdout["predicted"]))))
    meta = base_metadata("forecast", "mase", {"mase": 1.1, "mae": mae}, {"mase": 1.0, "mae": mae})
    meta["diagnostics"] = diagnostics
    meta["data_profile"] = profile_frame(revenue, {"date": "datetime", "revenue": "float"})
    page = render_report(meta)
    (examples / "forecast.html").write_text(page, encoding="utf-8")
    parsed = parse(page)
    text = "".join(parsed.text)
    assert f"{mae:.4g}" in text and "1998-06-30" in text and "18 months" in text
    assert parsed.tags.count("polygon") == 1  # the interval band
    assert parsed.tags.count("polyline") == 3  # history, actual, forecast


def test_absent_sections_are_left_out():
    page = render_report(
        {"model": "m<1>", "version": None, "task": "regression", "metrics": {"holdout": {"r2": 0.5}}}
    )
    parsed = parse(page)
    assert parsed.headings == ["Metrics"]
    assert "svg" not in parsed.tags
    assert "m<1> (unregistered): model report" in "".join(parsed.text)


def test_data_profile_shows_null_rate_and_distinct_counts():
    churn = pd.read_csv(CHURN)
    churn["TotalCharges"] = pd.to_numeric(churn["TotalCharges"], errors="coerce")
    types = {c: "float" if pd.api.types.is_numeric_dtype(churn[c]) else "string" for c in churn.columns}
    meta = {
        "model": "churn",
        "task": "classification",
        "metrics": {},
        "data_profile": profile_frame(churn, types),
    }
    text = "".join(parse(render_report(meta)).text)
    assert f"{100 * churn['TotalCharges'].isna().mean():.4g}%" in text  # 11 blanks of 7043
    assert f"{churn['tenure'].mean():.4g}" in text and f"{len(churn):,} rows" in text
    assert "Month-to-month" in text  # the top values of a categorical column


def test_required_fields_are_named():
    with pytest.raises(ValueError, match="task"):
        render_report({"model": "m", "metrics": {}})
