"""The whole fitted pipeline -> one ONNX graph (preprocessing included).

Inputs: one per ``sluice.features.onnx_input_names`` (strings ``[None, 1]`` string tensors,
numbers and date parts ``[None, 1]`` float tensors). Outputs: ``label`` (the class, a string)
and ``probabilities`` (``[None, n_classes]`` floats, columns in ``FeatureSchema.classes`` order).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import onnx
from skl2onnx import convert_sklearn, update_registered_converter
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from skl2onnx.shape_calculators.scaler import calculate_sklearn_scaler_output_shapes
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline

from sluice.contracts import Feature, FeatureSchema
from sluice.features import date_input_names
from sluice.specs import FeatureSpec, ModelSpec
from training.pipeline import TOKEN_PATTERN, SignedLog1p

LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
# onnxruntime's StringNormalizer needs a locale; en_US.UTF-8 is missing here and on minimal Lambda
# images, "C" exists everywhere (the tokenizer only keeps ASCII, so lowercasing agrees).
TEXT_LOCALE = "C"


def _convert_signed_log1p(scope: Any, operator: Any, container: Any) -> None:
    """sign(x) * log(1 + |x|), in the graph's float type."""
    x = operator.inputs[0].full_name
    one = scope.get_unique_variable_name("one")
    container.add_initializer(one, onnx.TensorProto.FLOAT, [], [1.0])
    names = {k: scope.get_unique_variable_name(k) for k in ("abs", "plus1", "log", "sign")}
    container.add_node("Abs", [x], [names["abs"]], name=scope.get_unique_operator_name("Abs"))
    container.add_node(
        "Add", [names["abs"], one], [names["plus1"]], name=scope.get_unique_operator_name("Add")
    )
    container.add_node("Log", [names["plus1"]], [names["log"]], name=scope.get_unique_operator_name("Log"))
    container.add_node("Sign", [x], [names["sign"]], name=scope.get_unique_operator_name("Sign"))
    container.add_node(
        "Mul",
        [names["sign"], names["log"]],
        [operator.outputs[0].full_name],
        name=scope.get_unique_operator_name("Mul"),
    )


update_registered_converter(
    SignedLog1p, "SluiceSignedLog1p", calculate_sklearn_scaler_output_shapes, _convert_signed_log1p
)


def initial_types(features: Iterable[FeatureSpec | Feature]) -> list[tuple[str, Any]]:
    types: list[tuple[str, Any]] = []
    for f in features:
        if f.kind in ("text", "categorical"):
            types.append((f.name, StringTensorType([None, 1])))
        elif f.kind == "numeric":
            types.append((f.name, FloatTensorType([None, 1])))
        else:
            types.extend((name, FloatTensorType([None, 1])) for name in date_input_names(f.name))
    return types


def feature_schema(spec: ModelSpec, classes: Iterable[str]) -> FeatureSchema:
    return FeatureSchema(
        features=[Feature(name=f.name, kind=f.kind) for f in spec.features],
        target=spec.target,
        task=spec.task,
        classes=[str(c) for c in classes],
        label_output=LABEL_OUTPUT,
        probabilities_output=PROBABILITIES_OUTPUT,
    )


def _options(pipeline: Pipeline) -> dict[int, dict[str, Any]]:
    options: dict[int, dict[str, Any]] = {}
    preprocessor = pipeline.steps[0][1]
    for _, transformer, _ in getattr(preprocessor, "transformers_", []):
        steps = transformer.steps if isinstance(transformer, Pipeline) else [(None, transformer)]
        for _, step in steps:
            if isinstance(step, TfidfVectorizer):
                options[id(step)] = {"tokenexp": TOKEN_PATTERN, "locale": TEXT_LOCALE}
    options[id(pipeline.steps[-1][1])] = {"zipmap": False}
    return options


def export_onnx(pipeline: Pipeline, spec: ModelSpec, *, metadata: dict[str, str] | None = None) -> bytes:
    """Serialise the fitted pipeline; the graph's outputs are named ``label`` and ``probabilities``."""
    classes = [str(c) for c in pipeline.classes_]
    model = convert_sklearn(
        pipeline,
        name=spec.name,
        initial_types=initial_types(spec.features),
        options=_options(pipeline),
        final_types=[
            (LABEL_OUTPUT, StringTensorType([None])),
            (PROBABILITIES_OUTPUT, FloatTensorType([None, len(classes)])),
        ],
    )
    # skl2onnx collects opset imports in a set: sort them so that equal models give equal bytes
    # (and equal sha256) in every process.
    imports = sorted(model.opset_import, key=lambda o: o.domain)
    del model.opset_import[:]
    model.opset_import.extend(imports)
    schema = feature_schema(spec, classes)
    props = {
        "sluice.model": spec.name,
        "sluice.feature_schema": json.dumps(schema.to_event(), sort_keys=True),
        **(metadata or {}),
    }
    onnx.helper.set_model_props(model, props)
    model.doc_string = f"Sluice model {spec.name}: whole pipeline (preprocessing + {spec.estimator.name})"
    return model.SerializeToString()
