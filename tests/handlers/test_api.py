"""The api Lambda handler (FastAPI + Mangum) under moto, driven by the sample events in events/api/.

The model is real: the sample CSV is ingested and trained by the training library, and each test
registers the resulting candidate through ``register_candidate`` into a fresh moto registry.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import httpx
import onnxruntime as ort
import pytest

from sluice.contracts import IngestRequest, TrainRequest, TrainResult
from sluice.deployment import load_cases, run_hook
from sluice.features import build_feed
from sluice.ingest import ingest
from sluice.registration import register_candidate
from sluice.registry import Registry, model_prefix
from sluice.serving.models import ServedModel
from sluice.settings import get_settings
from sluice.storage import get_object
from sluice.verification import verify_candidate
from sluice_cli.main import main as sluice
from tests.events import DATA, EVENTS, event_files, load_event
from tests.handlers.support import BUCKET, TABLE, load_app, moto_storage, set_handler_env
from tests.lambda_context import lambda_context
from training import run_training

FUNCTION = "api"
MODEL = "transaction-category"
API_KEY = "local-test-key"
SOURCE = DATA / "transactions" / "daily_household_transactions.csv"
CASES = {c.name: c for c in load_cases(EVENTS / "api")}  # events/api/expected.yaml
# functions/api/app.py silences this Powertools warning (health checks publish no application
# metric on purpose); pytest resets warning filters per test, so the tests say it again.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@dataclass(frozen=True)
class Candidate:
    result: TrainResult
    onnx: bytes


@pytest.fixture(scope="module")
def candidates() -> list[Candidate]:
    """Two trained candidates (every 5th row of the household file, two offsets): ingested and
    trained once by the real code under a throwaway moto; tests re-stage their ONNX bytes."""
    lines = SOURCE.read_bytes().splitlines(keepends=True)
    out = []
    with pytest.MonkeyPatch.context() as mp, moto_storage(mp, FUNCTION) as storage:
        for offset in (1, 3):
            key = f"raw/transactions/household-sample-{offset}.csv"
            body = b"".join([lines[0], *lines[offset::5]])
            storage.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            result = verify_candidate(
                run_training(TrainRequest(model=MODEL, ingest=ingest(IngestRequest(bucket=BUCKET, key=key))))
            )
            out.append(Candidate(result, get_object(BUCKET, result.artifact_key).body))
    assert out[0].result.onnx_sha256 != out[1].result.onnx_sha256
    return out


@pytest.fixture(scope="module")
def api() -> ModuleType:
    """functions/api/app.py, loaded once (its app and model store live for the process, as on Lambda)."""
    with pytest.MonkeyPatch.context() as mp:
        set_handler_env(mp, FUNCTION)
        module = load_app(FUNCTION)
    return module


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, api: ModuleType) -> Iterator[None]:
    """Overrides conftest.py's: the api's own settings, and a fresh execution environment (model
    store) for every test."""
    with moto_storage(
        monkeypatch, FUNCTION, SLUICE_ALIAS_REFRESH_SECONDS="60", SLUICE_LOCAL_API_KEYS=API_KEY
    ):
        api.app.state.store.clear()
        yield
    api.app.state.store.clear()


def register(candidate: Candidate) -> int:
    """Stage the candidate's ONNX where training put it and register it as the real pipeline does,
    with the champion gate off: these tests promote every candidate they register."""
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=BUCKET, Key=candidate.result.artifact_key, Body=candidate.onnx
    )
    spec = candidate.result.spec
    result = candidate.result.model_copy(
        update={"spec": {**spec, "gates": {**spec["gates"], "champion_tolerance": None}}}
    )
    registered = register_candidate(result, Registry(TABLE, BUCKET))
    assert registered.status == "champion", registered.reasons
    return registered.version


def invoke(api: ModuleType, event: dict[str, Any] | str) -> tuple[int, dict[str, Any], dict[str, str]]:
    if isinstance(event, str):
        event = load_event(f"api/{event}.json")
    response = api.handler(event, lambda_context("sluice-dev-ApiFunction"))
    assert response["headers"]["content-type"] == "application/json"
    return response["statusCode"], json.loads(response["body"]), response["headers"]


def emf(out: str, metric: str) -> list[dict[str, Any]]:
    """The EMF documents in ``out`` that carry ``metric``. Read from each ``{"_aws"`` rather than line
    by line: threads printing at once may write one document before another's newline."""
    decoder, docs, start = json.JSONDecoder(), [], out.find('{"_aws"')
    while start >= 0:
        doc, end = decoder.raw_decode(out, start)
        docs.append(doc)
        start = out.find('{"_aws"', end)
    return [d for d in docs if metric in d]


def predict_event(body: Any = None, key: str | None = API_KEY) -> dict[str, Any]:
    event = load_event("api/predict_category.json")
    if body is not None:
        event["body"] = json.dumps(body)
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("x-api-key")
        if key is not None:
            headers["x-api-key"] = key if headers is event["headers"] else [key]
    return event


def shorten_refresh(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setenv("SLUICE_ALIAS_REFRESH_SECONDS", str(seconds))
    get_settings.cache_clear()


# -- every sample event -----------------------------------------------------------------------


def test_every_sample_event_is_covered() -> None:
    assert {p.stem for p in event_files("api")} == set(CASES)


@pytest.mark.parametrize("path", event_files("api"), ids=lambda p: p.stem)
def test_sample_event(aws: None, api: ModuleType, candidates: list[Candidate], path: Path) -> None:
    register(candidates[0])
    event = load_event(path)
    case = CASES[path.stem]

    status, body, headers = invoke(api, event)

    assert status == case.status, body
    assert headers["x-request-id"] == event["requestContext"]["requestId"]
    if case.code is not None:
        assert set(body) == {"error", "request_id"}
        assert body["request_id"] == event["requestContext"]["requestId"]
        assert body["error"]["code"] == case.code
        assert body["error"]["message"]
        if case.field is not None:
            assert case.field in [d["field"] for d in body["error"]["details"]]
            assert case.field in body["error"]["message"]


# -- the PreTraffic hook: the same samples replayed against a build ------------------------------


class Verdicts:
    """An in-memory ``HookReporter``: what CodeDeploy would have been told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool]] = []

    def report(self, deployment_id: str, execution_id: str, succeeded: bool) -> None:
        self.calls.append((deployment_id, execution_id, succeeded))


HOOK_EVENT = load_event("pretraffic/lifecycle_hook.json")


def hook(api: ModuleType) -> tuple[Any, Verdicts]:
    verdicts = Verdicts()
    report = run_hook(
        HOOK_EVENT,
        lambda event: api.handler(event, lambda_context("sluice-dev-ApiFunction")),
        list(CASES.values()),
        verdicts,
    )
    return report, verdicts


def test_pre_traffic_hook_passes_a_good_build(
    aws: None, api: ModuleType, candidates: list[Candidate]
) -> None:
    register(candidates[0])

    report, verdicts = hook(api)

    assert report.ok, report.failures
    assert sorted(report.passed) == sorted(CASES)
    assert verdicts.calls == [(HOOK_EVENT["DeploymentId"], HOOK_EVENT["LifecycleEventHookExecutionId"], True)]


def test_pre_traffic_hook_passes_a_build_on_a_stack_without_models(aws: None, api: ModuleType) -> None:
    report, verdicts = hook(api)  # nothing registered yet: model samples must answer 404

    assert report.ok, report.failures
    assert verdicts.calls[0][2] is True


def test_pre_traffic_hook_fails_a_build_that_answers_500(
    aws: None, api: ModuleType, candidates: list[Candidate], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.serving.models import ServedModel

    register(candidates[0])

    def broken(self: ServedModel, records: Any) -> Any:
        raise RuntimeError("a regression in the new build")

    monkeypatch.setattr(ServedModel, "predict", broken)
    report, verdicts = hook(api)

    assert not report.ok
    assert verdicts.calls[0][2] is False
    assert any(f.startswith("predict_category: status 500, expected 200") for f in report.failures)


def test_pre_traffic_hook_fails_a_build_that_stops_validating(
    aws: None, api: ModuleType, candidates: list[Candidate], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.serving.schemas import RecordValidator

    register(candidates[0])
    monkeypatch.setattr(RecordValidator, "validate", lambda self, body: [{}])  # accepts anything
    report, verdicts = hook(api)

    assert not report.ok and verdicts.calls[0][2] is False
    assert any(f.startswith("predict_missing_field: status") for f in report.failures)


def test_prediction(
    aws: None, api: ModuleType, candidates: list[Candidate], capsys: pytest.CaptureFixture
) -> None:
    version = register(candidates[0])
    classes = candidates[0].result.feature_schema.classes
    event = load_event("api/predict_batch.json")

    status, body, _ = invoke(api, event)

    assert status == 200
    assert (body["model"], body["version"]) == (MODEL, version)
    assert body["request_id"] == event["requestContext"]["requestId"]
    assert len(body["predictions"]) == len(json.loads(event["body"])["records"])
    for prediction in body["predictions"]:
        assert prediction["label"] in classes
        assert list(prediction["probabilities"]) == classes
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert prediction["label"] == max(prediction["probabilities"], key=prediction["probabilities"].get)
    [doc] = emf(capsys.readouterr().out, "Predictions")
    assert (doc["model"], doc["version"], doc["Predictions"]) == (MODEL, str(version), [3.0])
    assert doc["Latency"][0] > 0
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "Sluice-test"
    assert {"model", "version"} <= set(directive["Dimensions"][0])


def test_init_loads_the_champions_of_preload_models(
    aws: None, monkeypatch: pytest.MonkeyPatch, candidates: list[Candidate], caplog: pytest.LogCaptureFixture
) -> None:
    version = register(candidates[0])
    monkeypatch.setenv("SLUICE_PRELOAD_MODELS", f"{MODEL},transaction-amount")  # the second has none
    get_settings.cache_clear()
    s3 = boto3.client("s3", region_name="us-east-1")
    onnx_key = Registry(TABLE, BUCKET).get_version(MODEL, version).onnx_key

    module = load_app(FUNCTION)  # a new execution environment's init

    store = module.app.state.store
    assert store.loaded() == {MODEL: version}
    [skipped] = [r for r in caplog.records if r.getMessage() == "model not loaded at init"]
    assert skipped.model == "transaction-amount"  # no champion: logged, init goes on
    s3.delete_object(Bucket=BUCKET, Key=onnx_key)  # the first request needs no download
    status, body, _ = invoke(module, "predict_batch")
    assert (status, body["version"]) == (200, version)


def test_failed_requests_are_counted_by_model_and_version_once_the_version_is_known(
    aws: None,
    api: ModuleType,
    candidates: list[Candidate],
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    version = register(candidates[0])
    assert invoke(api, "predict_missing_field")[0] == 422
    assert invoke(api, "predict_unknown_model")[0] == 404  # a made-up name is no metric dimension
    monkeypatch.setattr(ServedModel, "predict", _raise_runtime_error)
    assert invoke(api, "predict_category")[0] == 500

    out = capsys.readouterr().out
    [invalid] = emf(out, "InvalidRequests")
    [failed] = emf(out, "PredictionErrors")
    for doc in (invalid, failed):
        assert (doc["model"], doc["version"]) == (MODEL, str(version))
        assert {"model", "version"} <= set(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0])
    assert emf(out, "Predictions") == []


def _raise_runtime_error(*args: Any) -> Any:
    raise RuntimeError("onnxruntime failed")


def test_list_models(aws: None, api: ModuleType, candidates: list[Candidate]) -> None:
    register(candidates[0])

    status, body, _ = invoke(api, "list_models")

    assert status == 200
    [model] = body["models"]
    assert (model["name"], model["champion_version"], model["latest_version"]) == (MODEL, 1, 1)
    assert model["metrics"] == pytest.approx(candidates[0].result.metrics["holdout"])


# -- health -----------------------------------------------------------------------------------


def test_health_calls_no_aws_and_publishes_no_metrics(
    monkeypatch: pytest.MonkeyPatch, api: ModuleType, capsys: pytest.CaptureFixture
) -> None:
    set_handler_env(monkeypatch, FUNCTION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: any AWS call fails
    api.app.state.store.clear()

    status, body, _ = invoke(api, "health")

    assert (status, body["status"]) == (200, "ok")
    assert api.app.state.store.loaded() == {}
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    # Only the once-per-environment ColdStart metric may appear (if this is the first invocation).
    assert all(set(d) & {"Predictions", "Latency", "ModelLoadErrors"} == set() for d in docs)
    assert all("ColdStart" in d for d in docs)


# -- auth (SLUICE_LOCAL_API_KEYS is set here; on AWS API Gateway checks keys) -------------------


def test_missing_api_key_is_401(aws: None, api: ModuleType) -> None:
    status, body, _ = invoke(api, predict_event(key=None))

    assert (status, body["error"]["code"]) == (401, "unauthorized")


def test_wrong_api_key_is_403(aws: None, api: ModuleType, capsys: pytest.CaptureFixture) -> None:
    status, body, _ = invoke(api, predict_event(key="not-the-key-42"))

    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert "not-the-key-42" not in capsys.readouterr().out


# -- integrity and hot swap -------------------------------------------------------------------


def tamper(version: int) -> None:
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=BUCKET, Key=f"{model_prefix(MODEL, version)}/model.onnx", Body=b"not the registered model"
    )


def test_tampered_artifact_is_not_served(
    aws: None, api: ModuleType, candidates: list[Candidate], capsys: pytest.CaptureFixture
) -> None:
    register(candidates[0])
    tamper(1)

    status, body, _ = invoke(api, "predict_category")

    assert (status, body["error"]["code"]) == (503, "model_unavailable")
    [doc] = emf(capsys.readouterr().out, "ModelLoadErrors")
    assert (doc["model"], doc["version"]) == (MODEL, "1")


def test_tampered_new_champion_keeps_the_previous_one(
    aws: None,
    api: ModuleType,
    candidates: list[Candidate],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    shorten_refresh(monkeypatch, 0.2)
    register(candidates[0])
    assert invoke(api, "predict_category")[1]["version"] == 1
    register(candidates[1])
    tamper(2)
    time.sleep(0.25)

    status, body, _ = invoke(api, "predict_category")

    assert (status, body["version"]) == (200, 1)
    [doc] = emf(capsys.readouterr().out, "ModelLoadErrors")
    assert (doc["model"], doc["version"]) == (MODEL, "2")


def test_new_champion_is_picked_up_after_the_refresh_interval(
    aws: None, api: ModuleType, candidates: list[Candidate], monkeypatch: pytest.MonkeyPatch
) -> None:
    shorten_refresh(monkeypatch, 3.0)  # long enough for register() to finish inside it on a busy machine
    register(candidates[0])
    assert invoke(api, "predict_category")[1]["version"] == 1
    register(candidates[1])

    assert invoke(api, "predict_category")[1]["version"] == 1  # within the interval
    time.sleep(3.05)
    status, body, _ = invoke(api, "predict_category")

    assert (status, body["version"]) == (200, 2)
    assert body["predictions"][0]["label"] in candidates[1].result.feature_schema.classes
    assert invoke(api, "list_models")[1]["models"][0]["champion_version"] == 2


# -- hot swap under load: callers never fail while the champion alias moves ------------------------

SWAP_REFRESH = 0.05  # seconds between alias reads: each move is picked up while requests are in flight
SLOW = 2.0  # seconds: no request may take this long, whatever the store is loading meanwhile
BATCH = load_event("api/predict_batch.json")
RECORDS = json.loads(BATCH["body"])["records"]


@dataclass(frozen=True)
class Answer:
    caller: str  # "lambda": the handler with an API Gateway event; "http": the ASGI app
    started: float  # time.monotonic(), the store's clock
    ended: float
    status: int
    body: dict[str, Any]


class Load:
    """Callers predicting RECORDS without pause until the block ends, each in its own thread: some
    invoke the Lambda handler with API Gateway events, one posts to the ASGI app through httpx (the
    FastAPI route of /v1/predict/category rather than the fast path)."""

    def __init__(self, api: ModuleType, lambdas: int = 3, http: int = 1) -> None:
        self.api = api
        self.answers: list[Answer] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._invoke, args=(i,)) for i in range(lambdas)]
        self._threads += [threading.Thread(target=lambda: asyncio.run(self._post())) for _ in range(http)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        assert not any(t.is_alive() for t in self._threads), "a caller is still waiting for an answer"

    def _invoke(self, caller: int) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # Mangum runs the app on this thread's event loop
        event, context = json.loads(json.dumps(BATCH)), lambda_context("sluice-dev-ApiFunction")
        try:
            for n in itertools.count():
                if self._stop.is_set():
                    break
                event["requestContext"]["requestId"] = f"load-{caller}-{n}"
                started = time.monotonic()
                response = self.api.handler(event, context)
                body = json.loads(response["body"])
                self.answers.append(Answer("lambda", started, time.monotonic(), response["statusCode"], body))
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            loop.close()

    async def _post(self) -> None:
        transport = httpx.ASGITransport(app=self.api.app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                while not self._stop.is_set():
                    started = time.monotonic()
                    r = await client.post(
                        "/v1/predict/category", json={"records": RECORDS}, headers={"x-api-key": API_KEY}
                    )
                    self.answers.append(Answer("http", started, time.monotonic(), r.status_code, r.json()))
        except BaseException as exc:
            self.errors.append(exc)

    def wait_for(self, version: int, since: float, timeout: float = 10.0) -> None:
        """Until a request started after ``since`` is answered by ``version``; fails at once if a
        caller failed, and after ``timeout`` seconds if ``version`` is not served."""
        deadline = time.monotonic() + timeout
        while True:
            answers = list(self.answers)
            assert not self.errors, self.errors
            failed = next((a for a in answers if a.status != 200), None)
            assert failed is None, (failed.caller, failed.status, failed.body)
            if any(a.started >= since and a.body["version"] == version for a in answers):
                return
            assert time.monotonic() < deadline, f"v{version} not served {timeout} s after {since}"
            time.sleep(0.01)


def move(*action: str) -> tuple[float, float]:
    """`sluice models promote|rollback` on the test registry; when the command started and returned."""
    started = time.monotonic()
    assert sluice(["models", "--table", TABLE, "--bucket", BUCKET, *action, "--reason", "swap test"]) == 0
    return started, time.monotonic()


def onnx_answers(candidate: Candidate) -> list[dict[str, Any]]:
    """What the candidate's own graph answers for RECORDS: onnxruntime on its bytes, no model store."""
    schema = candidate.result.feature_schema
    session = ort.InferenceSession(candidate.onnx, providers=["CPUExecutionProvider"])
    outputs = [schema.label_output, schema.probabilities_output]
    labels, probabilities = session.run(outputs, build_feed(RECORDS, schema.features))
    return [
        {"label": str(label), "probabilities": dict(zip(schema.classes, map(float, row), strict=True))}
        for label, row in zip(labels.reshape(-1), probabilities, strict=True)
    ]


def champions(moves: list[tuple[float, float, int]], since: float, until: float) -> set[int]:
    """The versions the alias may have named at some instant of [since, until]; a move may take
    effect anywhere between its command's start and return (``moves``: started, returned, to)."""
    ends = [returned for _, returned, _ in moves[1:]] + [float("inf")]
    return {
        version
        for (started, _, version), end in zip(moves, ends, strict=True)
        if started <= until and end >= since
    }


def check_answers(load: Load, expected: dict[int, list[dict[str, Any]]]) -> None:
    """No failed or slow request, and each answer is wholly the version it names: labels and
    probabilities those of that version's own graph."""
    assert not load.errors, load.errors
    assert {a.caller for a in load.answers} == {"lambda", "http"}
    failed = [(a.caller, a.status, a.body) for a in load.answers if a.status != 200]
    assert not failed, f"{len(failed)} of {len(load.answers)} requests failed, first: {failed[0]}"
    slowest = max(a.ended - a.started for a in load.answers)
    assert slowest < SLOW, f"a request took {slowest:.2f} s"
    for a in load.answers:
        assert (a.body["model"], a.body["alias"]) == (MODEL, "champion")
        predictions = a.body["predictions"]
        want = expected[a.body["version"]]
        assert [p["label"] for p in predictions] == [w["label"] for w in want], a.body
        for p, w in zip(predictions, want, strict=True):
            assert p["probabilities"] == pytest.approx(w["probabilities"], abs=2e-6), a.body


@pytest.fixture
def two_champions(
    aws: None, candidates: list[Candidate], monkeypatch: pytest.MonkeyPatch
) -> dict[int, list[dict[str, Any]]]:
    """v1 and v2 registered (v2 was champion, then rolled back: v1 serves first), the alias re-read
    every SWAP_REFRESH; each version's expected answers, which differ, so that an answer mixing two
    versions cannot pass for either."""
    shorten_refresh(monkeypatch, SWAP_REFRESH)
    assert (register(candidates[0]), register(candidates[1])) == (1, 2)
    move("rollback", MODEL)
    expected = {1: onnx_answers(candidates[0]), 2: onnx_answers(candidates[1])}
    assert expected[1] != expected[2]
    return expected


def test_champion_moves_under_load_never_fail_a_request(
    two_champions: dict[int, list[dict[str, Any]]], api: ModuleType
) -> None:
    moves = [(float("-inf"), float("-inf"), 1)]

    with Load(api) as load:
        load.wait_for(1, since=0.0)
        for _ in range(3):
            for action, version in ((("promote", MODEL, "2"), 2), (("rollback", MODEL), 1)):
                started, returned = move(*action)
                moves.append((started, returned, version))
                # picked up by the running store, without a restart; no fixed sleeps
                load.wait_for(version, since=returned)
        time.sleep(2 * SWAP_REFRESH)

    check_answers(load, two_champions)
    for a in load.answers:
        # the store re-reads the alias at most SWAP_REFRESH before a request: never an older version
        allowed = champions(moves, a.started - SWAP_REFRESH, a.ended)
        assert a.body["version"] in allowed, (a.body["version"], allowed, a.started)
    assert len(load.answers) >= 50
    assert [a["to"] for a in Registry(TABLE, BUCKET).audit(MODEL)][-6:] == [2, 1] * 3
    assert api.app.state.store.loaded() == {MODEL: 1}


def test_corrupt_new_champion_under_load_keeps_the_old_one_serving(
    two_champions: dict[int, list[dict[str, Any]]], api: ModuleType, capsys: pytest.CaptureFixture
) -> None:
    s3, key = boto3.client("s3", region_name="us-east-1"), f"{model_prefix(MODEL, 2)}/model.onnx"
    good = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    middle = len(good) // 2
    s3.put_object(Bucket=BUCKET, Key=key, Body=good[:middle] + bytes([good[middle] ^ 1]) + good[middle + 1 :])
    capsys.readouterr()

    with Load(api) as load:
        load.wait_for(1, since=0.0)
        _, promoted = move("promote", MODEL, "2")
        time.sleep(10 * SWAP_REFRESH)  # each alias read in this time tries v2 again, and refuses it
        repaired = time.monotonic()
        s3.put_object(Bucket=BUCKET, Key=key, Body=good)
        load.wait_for(2, since=repaired)  # retried on the next alias read, no restart
        time.sleep(2 * SWAP_REFRESH)

    check_answers(load, two_champions)
    assert {a.body["version"] for a in load.answers if a.ended < repaired} == {1}
    assert any(a.started > promoted for a in load.answers if a.ended < repaired)
    errors = emf(capsys.readouterr().out, "ModelLoadErrors")
    assert len(errors) >= 2, "ModelLoadErrors not published on each refused load"
    assert {(d["model"], d["version"], d["ModelLoadErrors"][0]) for d in errors} == {(MODEL, "2", 1.0)}


# -- capture and feedback ---------------------------------------------------------------------------


@pytest.fixture
def capturing(aws: None, api: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Every request captured, batches of 2 written to S3; the app's sink and store rebuilt."""
    monkeypatch.setenv("SLUICE_CAPTURE_RATE", "1")
    monkeypatch.setenv("SLUICE_CAPTURE_MAX_ROWS", "2")
    monkeypatch.setenv("SLUICE_CAPTURE_SALT", "test-salt")
    get_settings.cache_clear()
    for name in ("capture_sink", "feedback_store"):
        if hasattr(api.app.state, name):
            delattr(api.app.state, name)
    yield api.app.state
    for name in ("capture_sink", "feedback_store"):
        if hasattr(api.app.state, name):
            delattr(api.app.state, name)


def captured_objects() -> list[dict[str, Any]]:
    import gzip

    s3 = boto3.client("s3", region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="captures/").get("Contents", [])]
    rows = []
    for key in keys:
        body = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        rows += [json.loads(line) | {"key": key} for line in body.splitlines()]
    return rows


def feedback(api: ModuleType, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    event = predict_event(body)
    event["path"] = "/v1/feedback"
    status, out, _ = invoke(api, event)
    return status, out


def test_captured_requests_are_batched_to_s3_and_indexed_for_feedback(
    capturing: Any, api: ModuleType, candidates: list[Candidate]
) -> None:
    version = register(candidates[0])
    ids = []
    for i in range(3):
        event = predict_event()
        event["requestContext"]["requestId"] = f"req-capture-{i}"
        status, body, _ = invoke(api, event)
        assert status == 200
        ids.append(body["request_id"])

    rows = captured_objects()  # two requests make a batch; the third waits in the buffer
    assert [r["request_id"] for r in rows] == ids[:2]
    assert rows[0]["key"].startswith(f"captures/{MODEL}/v{version}/date=")
    sample = load_event("api/predict_category.json")
    assert rows[0]["inputs"][0]["description"] == json.loads(sample["body"])["description"]
    assert rows[0]["outputs"][0]["label"] and rows[0]["latency_ms"] > 0
    assert capturing.capture_sink.flush() == 1
    assert sorted(r["request_id"] for r in captured_objects()) == ids  # two objects, either order
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName="sluice-dev-predictions", Key={"pk": {"S": ids[2]}}
    )["Item"]
    assert item["model"]["S"] == MODEL and int(item["version"]["N"]) == version


def test_feedback_scores_the_captured_prediction_once(
    capturing: Any, api: ModuleType, candidates: list[Candidate], capsys: pytest.CaptureFixture
) -> None:
    version = register(candidates[0])
    _, body, _ = invoke(api, predict_event())
    request_id, label = body["request_id"], body["predictions"][0]["label"]
    capsys.readouterr()

    status, first = feedback(api, {"request_id": request_id, "actual": label})
    again_status, again = feedback(api, {"request_id": request_id, "actual": label})
    other_status, other = feedback(api, {"request_id": request_id, "actual": label + "-not"})

    assert status == 200 and first["correct"] is True and first["duplicate"] is False
    assert (first["model"], first["version"], first["predicted"]) == (MODEL, version, label)
    assert again_status == 200 and again["duplicate"] is True
    assert other_status == 409 and other["error"]["code"] == "conflict"
    docs = emf(capsys.readouterr().out, "LiveCorrect")
    assert len(docs) == 1 and docs[0]["LiveCorrect"] == [1.0] and docs[0]["version"] == str(version)
    from sluice.serving.feedback import FeedbackStore

    assert FeedbackStore("sluice-dev-predictions").live_stats(MODEL, version) == {"n": 1, "accuracy": 1.0}


def test_feedback_for_unknown_requests_and_bad_fields_is_a_named_4xx(
    capturing: Any, api: ModuleType, candidates: list[Candidate]
) -> None:
    register(candidates[0])
    _, body, _ = invoke(api, predict_event())

    unknown, out = feedback(api, {"request_id": "never-seen", "actual": "Food"})
    bad_index, idx = feedback(api, {"request_id": body["request_id"], "index": 3, "actual": "Food"})
    missing, miss = feedback(api, {"request_id": body["request_id"]})

    assert unknown == 404 and out["error"]["code"] == "not_found"
    assert bad_index == 422 and idx["error"]["details"][0]["field"] == "index"
    assert missing == 422 and miss["error"]["details"][0]["field"] == "actual"


def test_a_capture_that_cannot_be_written_never_fails_the_prediction(
    capturing: Any, api: ModuleType, candidates: list[Candidate], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    register(candidates[0])
    monkeypatch.setenv("SLUICE_PREDICTIONS_TABLE", "no-such-table")
    get_settings.cache_clear()
    capsys.readouterr()

    status, body, _ = invoke(api, predict_event())

    assert status == 200 and body["predictions"]
    assert emf(capsys.readouterr().out, "CaptureErrors")
