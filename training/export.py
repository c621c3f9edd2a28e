"""The whole fitted pipeline -> one ONNX graph (preprocessing included).

Inputs: one per ``sluice.features.onnx_input_names`` (strings ``[None, 1]`` string tensors, numbers
and date parts ``[None, 1]`` float tensors; missing numbers arrive as NaN and are imputed in the graph).
Outputs, by task (``FeatureSchema``):

- classification: ``label`` (the class, a string) and ``probabilities`` (``[None, n_classes]``,
  columns in ``FeatureSchema.classes`` order);
- regression: ``value`` (``[None, 1]``);
- anomaly: ``score`` (``[None, 1]``, higher = more anomalous): the detector's ``decision_function``
  negated inside the graph. skl2onnx's own detector outputs (a label whose convention differs from
  scikit-learn's, and the decision function) are pruned.

The converters Sluice adds (XGBoost, IsolationForest, ...) are registered by ``training.converters``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import onnx
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.base import is_classifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline

from sluice.contracts import Feature, FeatureSchema
from sluice.features import date_input_names
from sluice.specs import FeatureSpec, ModelSpec
from training import converters
from training.pipeline import TOKEN_PATTERN

LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
VALUE_OUTPUT = "value"
SCORE_OUTPUT = "score"
# onnxruntime's StringNormalizer needs a locale; en_US.UTF-8 is missing here and on minimal Lambda
# images, "C" exists everywhere (the tokenizer only keeps ASCII, so lowercasing agrees).
TEXT_LOCALE = "C"
# onnxmltools writes XGBoost trees for ai.onnx.ml 3; skl2onnx would otherwise pick a newer version.
TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}


converters.register()


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


def feature_schema(spec: ModelSpec, classes: Iterable[str] = (), **fields: Any) -> FeatureSchema:
    """The schema serving reads; ``fields`` adds the task's extras (threshold, interval)."""
    return FeatureSchema(
        features=[Feature(name=f.name, kind=f.kind) for f in spec.features],
        target=spec.target,
        task=spec.task,
        classes=[str(c) for c in classes],
        positive_label=spec.positive_label,
        label_output=LABEL_OUTPUT,
        probabilities_output=PROBABILITIES_OUTPUT,
        value_output=VALUE_OUTPUT,
        score_output=SCORE_OUTPUT,
        **fields,
    )


def _parts(estimator: Any) -> Iterable[Any]:
    """``estimator`` and everything inside it: pipeline steps, column transformers, ensemble members."""
    yield estimator
    if isinstance(estimator, Pipeline):
        inner = [step for _, step in estimator.steps]
    else:
        inner = [t for _, t, _ in getattr(estimator, "transformers_", [])]
        inner += list(getattr(estimator, "members_", []))
    for part in inner:
        yield from _parts(part)


def _options(pipeline: Pipeline, task: str) -> dict[int, dict[str, Any]]:
    """Every vectorizer's tokenizer and locale; plain probability tensors (no ZipMap) from every
    classifier that ends a pipeline (the model's, and an ensemble member's)."""
    options: dict[int, dict[str, Any]] = {}
    for part in _parts(pipeline):
        if isinstance(part, TfidfVectorizer):
            options[id(part)] = {"tokenexp": TOKEN_PATTERN, "locale": TEXT_LOCALE}
        elif isinstance(part, Pipeline) and is_classifier(part.steps[-1][1]):
            options[id(part.steps[-1][1])] = {"zipmap": False}
    return options


def _final_types(pipeline: Pipeline, task: str) -> list[tuple[str, Any]] | None:
    if task == "classification":
        n = len(pipeline.classes_)
        return [(LABEL_OUTPUT, StringTensorType([None])), (PROBABILITIES_OUTPUT, FloatTensorType([None, n]))]
    if task == "regression":
        return [(VALUE_OUTPUT, FloatTensorType([None, 1]))]
    return None  # anomaly: skl2onnx's (label, scores), rewritten by _anomaly_score


def _prune(graph: onnx.GraphProto) -> None:
    """Drop the nodes and initializers no graph output depends on."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    initializers = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def _anomaly_score(model: onnx.ModelProto) -> None:
    """Outputs (label, decision_function) -> ``score`` = -decision_function: higher = more anomalous."""
    graph = model.graph
    decision = graph.output[1].name
    graph.node.append(onnx.helper.make_node("Neg", [decision], [SCORE_OUTPUT], name="SluiceAnomalyScore"))
    del graph.output[:]
    graph.output.append(onnx.helper.make_tensor_value_info(SCORE_OUTPUT, onnx.TensorProto.FLOAT, [None, 1]))
    _prune(graph)


_CLASS_WEIGHTS = ("class_nodeids", "class_treeids", "class_ids", "class_weights")


def _sparse_tree_weights(graph: onnx.GraphProto) -> None:
    """Drop the zero leaf weights of multiclass tree ensembles.

    skl2onnx writes every class's weight in every leaf; a forest of deep trees over many classes has
    mostly pure leaves, so nearly all are zero (household categories, 27 classes: 97%; a 100-tree
    extra-trees graph shrank from 51 to 8.5 MB). The operator adds the weights listed for the leaf
    reached, so a zero that is not listed changes nothing. Binary ensembles are left alone:
    onnxruntime decides how to read their weights from which class ids appear."""
    for node in graph.node:
        if node.op_type != "TreeEnsembleClassifier":
            continue
        attrs = {a.name: a for a in node.attribute}
        labels = attrs.get("classlabels_strings") or attrs.get("classlabels_int64s")
        n_classes = len(labels.strings) if labels.strings else len(labels.ints)
        if n_classes <= 2 or not all(name in attrs for name in _CLASS_WEIGHTS):
            continue
        keep = [i for i, w in enumerate(attrs["class_weights"].floats) if w != 0.0]
        for name in _CLASS_WEIGHTS:
            values = attrs[name].floats if name == "class_weights" else attrs[name].ints
            kept = [values[i] for i in keep]
            del values[:]
            values.extend(kept)


def export_onnx(
    pipeline: Pipeline,
    spec: ModelSpec,
    schema: FeatureSchema | None = None,
    *,
    metadata: dict[str, str] | None = None,
) -> bytes:
    """Serialise the fitted pipeline with the task's outputs; the schema travels in the metadata.

    ``model_optim=False``: skl2onnx's identity-removal pass is quadratic in the node count (75 s on
    skl2onnx's own 200-tree IsolationForest graph); onnxruntime removes identities when it loads."""
    task = spec.task
    model = convert_sklearn(
        pipeline,
        name=spec.name,
        initial_types=initial_types(spec.features),
        options=_options(pipeline, task),
        final_types=_final_types(pipeline, task),
        target_opset=TARGET_OPSET,
        model_optim=False,
    )
    if task == "anomaly":
        _anomaly_score(model)
    _sparse_tree_weights(model.graph)
    # skl2onnx collects opset imports in a set: sort them so that equal models give equal bytes
    # (and equal sha256) in every process.
    imports = sorted(model.opset_import, key=lambda o: o.domain)
    del model.opset_import[:]
    model.opset_import.extend(imports)
    if schema is None:
        schema = feature_schema(spec, getattr(pipeline, "classes_", ()))
    props = {
        "sluice.model": spec.name,
        "sluice.feature_schema": json.dumps(schema.to_event(), sort_keys=True),
        **(metadata or {}),
    }
    onnx.helper.set_model_props(model, props)
    estimator = type(pipeline.steps[-1][1]).__name__
    model.doc_string = f"Sluice model {spec.name}: whole pipeline (preprocessing + {estimator})"
    return model.SerializeToString()
