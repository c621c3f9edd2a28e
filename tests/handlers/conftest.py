"""Fixtures of the handler tests. A test module names its function in ``FUNCTION`` ("ingest", ...)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.handlers.support import BUCKET, Storage, load_app, moto_storage, stage_curated


def _function(request: pytest.FixtureRequest) -> str:
    function = getattr(request.module, "FUNCTION", None)
    assert function, f"{request.module.__name__} must name its function: FUNCTION = '<name>'"
    return function


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Storage]:
    """moto with the data bucket and the registry table, the function's environment set."""
    with moto_storage(monkeypatch, _function(request)) as storage:
        yield storage


@pytest.fixture
def s3(aws: Storage) -> Any:
    return aws.s3


@pytest.fixture
def handler(aws: Storage, request: pytest.FixtureRequest) -> Any:
    """functions/<FUNCTION>/app.py's handler, loaded after the environment is set (Powertools reads it)."""
    return load_app(_function(request)).handler


@dataclass(frozen=True)
class TrainedSample:
    """What training left in staging for one events/train/<name> sample (``result`` names the keys)."""

    result: Any  # sluice.contracts.TrainResult
    onnx: bytes
    parity: bytes

    def stage(self, s3: Any) -> None:
        """Put the staged model and parity document where the result says they are."""
        s3.put_object(Bucket=BUCKET, Key=self.result.artifact_key, Body=self.onnx)
        s3.put_object(Bucket=BUCKET, Key=self.result.parity_key, Body=self.parity)


@pytest.fixture(scope="session")
def trained_samples() -> dict[str, TrainedSample]:
    """Every train sample event trained once by the real code under a throwaway moto.

    Training is deterministic on one machine, but BLAS kernels differ between CPUs, so the ONNX bytes
    (and sha256) may differ from the ones the committed verify/register events record: tests use
    these bytes and this result's sha256."""
    from sluice.contracts import TrainRequest
    from tests.events import event_files, load_event
    from training.train import run_training

    out = {}
    with pytest.MonkeyPatch.context() as mp, moto_storage(mp, "train") as storage:
        for path in event_files("train"):
            event = load_event(path)
            stage_curated(storage.s3, event)
            result = run_training(TrainRequest.model_validate(event))
            get = storage.s3.get_object
            out[path.name] = TrainedSample(
                result,
                get(Bucket=BUCKET, Key=result.artifact_key)["Body"].read(),
                get(Bucket=BUCKET, Key=result.parity_key)["Body"].read(),
            )
    return out
