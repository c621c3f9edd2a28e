"""Fixtures for the serving unit tests: a tiny ONNX graph that follows the model contract, an
in-memory registry with the interface ModelStore uses, and an in-process HTTP client.

No network and no moto here; the handler tests (tests/handlers/test_api.py) cover the real
registry on moto with a model trained by the training library.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sluice.errors import ArtifactIntegrityError, ModelNotFoundError
from sluice.features import onnx_input_names
from sluice.registry import ModelVersion

FEATURES = [
    {"name": "description", "kind": "text"},
    {"name": "payment_method", "kind": "categorical"},
    {"name": "amount", "kind": "numeric"},
    {"name": "date", "kind": "date"},
]
CLASSES = ["expense", "income"]


class _F:
    def __init__(self, name: str, kind: str):
        self.name, self.kind = name, kind


def contract_onnx(classes: list[str] = CLASSES, features: list[dict[str, str]] = FEATURES) -> bytes:
    """probabilities = softmax(amount * [-1, 1, 0, ...]); label = classes[argmax]. Other inputs unused.

    So amount < 0 -> classes[0], amount > 0 -> classes[1], as the contract's outputs say.
    """
    inputs = []
    for name in onnx_input_names([_F(**f) for f in features]):
        kind = next((f["kind"] for f in features if name == f["name"]), "date")
        elem = TensorProto.STRING if kind in ("text", "categorical") else TensorProto.FLOAT
        inputs.append(helper.make_tensor_value_info(name, elem, [None, 1]))
    c = len(classes)
    weights = np.zeros((1, c), dtype=np.float32)
    weights[0, 0], weights[0, 1] = -1.0, 1.0
    nodes = [
        helper.make_node("MatMul", ["amount", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["index"], axis=1, keepdims=0),
        helper.make_node(
            "LabelEncoder",
            ["index"],
            ["label"],
            domain="ai.onnx.ml",
            keys_int64s=list(range(c)),
            values_strings=classes,
            default_string="",
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "contract",
        inputs,
        [
            helper.make_tensor_value_info("label", TensorProto.STRING, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, c]),
        ],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [1, c], weights.flatten().tolist())],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def metadata_for(model: str, version: int, sha: str, classes: list[str] = CLASSES) -> dict[str, Any]:
    return {
        "model": model,
        "version": version,
        "status": "champion",
        "onnx_sha256": sha,
        "metrics": {"accuracy": 0.9, "macro_f1": 0.8},
        "feature_schema": {
            "features": FEATURES,
            "target": "type",
            "task": "classification",
            "classes": classes,
            "label_output": "label",
            "probabilities_output": "probabilities",
        },
    }


@dataclass
class FakeRegistry:
    """In-memory stand-in for sluice.registry.Registry (the methods ModelStore calls)."""

    artifacts: dict[tuple[str, int], bytes] = field(default_factory=dict)
    meta: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    versions_: dict[tuple[str, int], ModelVersion] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    challengers: dict[str, int] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail_alias_reads: bool = False

    def add(
        self, model: str, onnx_bytes: bytes, *, champion: bool = True, classes: list[str] = CLASSES
    ) -> int:
        version = 1 + max((v for (m, v) in self.versions_ if m == model), default=0)
        sha = hashlib.sha256(onnx_bytes).hexdigest()
        self.artifacts[(model, version)] = onnx_bytes
        self.meta[(model, version)] = metadata_for(model, version, sha, classes)
        self.versions_[(model, version)] = ModelVersion(
            model=model,
            version=version,
            status="champion",
            onnx_key=f"models/{model}/v{version}/model.onnx",
            onnx_sha256=sha,
            metadata_key=f"models/{model}/v{version}/metadata.json",
            created_at="2026-01-01T00:00:00+00:00",
            metrics={"accuracy": 0.9, "macro_f1": 0.8},
        )
        if champion:
            self.aliases[model] = version
        return version

    def get_alias(self, model: str, alias: str = "champion") -> int | None:
        self.calls.append(f"get_alias:{model}" + ("" if alias == "champion" else f":{alias}"))
        if self.fail_alias_reads:
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
        return (self.aliases if alias == "champion" else self.challengers).get(model)

    def versions(self, model: str) -> list[ModelVersion]:
        self.calls.append(f"versions:{model}")
        return [mv for (m, _), mv in sorted(self.versions_.items()) if m == model]

    def get_version(self, model: str, version: int) -> ModelVersion:
        self.calls.append(f"get_version:{model}:{version}")
        if (model, version) not in self.versions_:
            raise ModelNotFoundError(f"model {model!r} has no version {version}")
        return self.versions_[(model, version)]

    def metadata(self, mv: ModelVersion) -> dict[str, Any]:
        return self.meta[(mv.model, mv.version)]

    def load_onnx(self, mv: ModelVersion) -> bytes:
        self.calls.append(f"load_onnx:{mv.model}:{mv.version}")
        body = self.artifacts[(mv.model, mv.version)]
        if hashlib.sha256(body).hexdigest() != mv.onnx_sha256:
            raise ArtifactIntegrityError(f"{mv.model} v{mv.version}: sha256 mismatch")
        return body

    def models(self) -> list[dict[str, Any]]:
        self.calls.append("models")
        names = sorted({m for (m, _) in self.versions_})
        return [
            {
                "name": n,
                "latest_version": max(v for (m, v) in self.versions_ if m == n),
                "aliases": {"champion": self.aliases[n]} if n in self.aliases else {},
            }
            for n in names
        ]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def onnx_bytes() -> bytes:
    return contract_onnx()


@pytest.fixture
def registry(onnx_bytes: bytes) -> FakeRegistry:
    reg = FakeRegistry()
    reg.add("transaction-type", onnx_bytes)
    return reg


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def request(app: Any, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request through httpx's ASGI transport, on a private event loop (leaves the
    thread's current loop alone, which Mangum's handler uses)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, url, **kwargs)

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(send())
    finally:
        loop.close()
