"""ONNX converters Sluice registers with skl2onnx (imported by ``training.export``).

- ``SignedLog1p``: sign(x) * log(1 + |x|).
- XGBoost: onnxmltools' converter for ``StringLabelXGBClassifier`` and ``XGBRegressor``.
- ``SubsampledOneClassSVM``: skl2onnx's OneClassSVM converter (the subclass only changes ``fit``).
- ``IsolationForest``: one ``TreeEnsembleRegressor`` whose leaves hold each tree's path length,
  summed over the trees, then scikit-learn's ``2 ** (-depth / (n_trees * c(max_samples)))``.
  skl2onnx's own converter builds ~40 nodes per tree: for 100 trees it took 3-5 s to convert (75 s for
  200: its identity-removal pass is quadratic) and ~1.2 ms per row in onnxruntime.
- ``SoftVotingClassifier`` / ``AveragingRegressor``: a parser that converts each member pipeline
  (features and estimator) on the graph's inputs, then one node set averaging their probabilities
  (label: skl2onnx's argmax -> class name) or values with the ensemble's weights.
- HistGradientBoosting: skl2onnx 1.20 passes a leaf's missing-value flag as the Python bool
  ``False``, which onnx's protobuf refuses in an ints attribute ("Expected an int, got a boolean"):
  every HistGradientBoosting export failed. The flag is passed on as an int.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto
from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
from skl2onnx import update_registered_converter
from skl2onnx._parse import _parse_sklearn
from skl2onnx.common import tree_ensemble
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from skl2onnx.common.shape_calculator import (
    calculate_linear_classifier_output_shapes,
    calculate_linear_regressor_output_shapes,
)
from skl2onnx.common.utils_classifier import _finalize_converter_classes
from skl2onnx.operator_converters.support_vector_machines import convert_sklearn_svm_regressor
from skl2onnx.shape_calculators.isolation_forest import calculate_isolation_forest_output_shapes
from skl2onnx.shape_calculators.scaler import calculate_sklearn_scaler_output_shapes
from skl2onnx.shape_calculators.support_vector_machines import calculate_sklearn_svm_output_shapes
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length
from xgboost import XGBRegressor

from training.estimators import (
    AveragingRegressor,
    SoftVotingClassifier,
    StringLabelXGBClassifier,
    SubsampledOneClassSVM,
)
from training.pipeline import SignedLog1p


def _node(scope: Any, container: Any, op: str, inputs: list[str], **attrs: Any) -> str:
    """Add one node with a fresh output name; returns that name."""
    out = scope.get_unique_variable_name(op.lower())
    domain = attrs.pop("op_domain", "")
    container.add_node(op, inputs, [out], name=scope.get_unique_operator_name(op), op_domain=domain, **attrs)
    return out


def _const(scope: Any, container: Any, name: str, value: float) -> str:
    full = scope.get_unique_variable_name(name)
    container.add_initializer(full, TensorProto.FLOAT, [], [float(value)])
    return full


def _convert_signed_log1p(scope: Any, operator: Any, container: Any) -> None:
    x = operator.inputs[0].full_name
    one = _const(scope, container, "one", 1.0)
    log = _node(
        scope, container, "Log", [_node(scope, container, "Add", [_node(scope, container, "Abs", [x]), one])]
    )
    sign = _node(scope, container, "Sign", [x])
    container.add_node(
        "Mul", [sign, log], [operator.outputs[0].full_name], name=scope.get_unique_operator_name("Mul")
    )


def _forest_attributes(forest: IsolationForest, n_features: int) -> dict[str, Any]:
    """Every tree of the forest as one TreeEnsembleRegressor: a leaf's weight is the path length
    scikit-learn adds for a row ending there (depth + c(samples in the leaf) - 1)."""
    remap = forest._max_features != n_features  # scikit-learn applies trees to X[:, features] then
    columns: dict[str, list[Any]] = {
        k: [] for k in ("tree", "node", "feature", "mode", "value", "left", "right")
    }
    targets: dict[str, list[Any]] = {"tree": [], "node": [], "weight": []}
    for t, (estimator, features) in enumerate(
        zip(forest.estimators_, forest.estimators_features_, strict=True)
    ):
        tree = estimator.tree_
        leaf = tree.children_left == -1
        feature = np.where(leaf, 0, tree.feature)
        if remap:
            feature = np.where(leaf, 0, np.asarray(features)[np.maximum(tree.feature, 0)])
        ids = np.arange(tree.node_count)
        columns["tree"] += [t] * tree.node_count
        columns["node"] += ids.tolist()
        columns["feature"] += feature.astype(int).tolist()
        columns["mode"] += ["LEAF" if lf else "BRANCH_LEQ" for lf in leaf]
        columns["value"] += np.where(leaf, 0.0, tree.threshold).tolist()
        columns["left"] += np.where(leaf, 0, tree.children_left).astype(int).tolist()
        columns["right"] += np.where(leaf, 0, tree.children_right).astype(int).tolist()
        weights = forest._decision_path_lengths[t] + forest._average_path_length_per_tree[t] - 1.0
        targets["tree"] += [t] * int(leaf.sum())
        targets["node"] += ids[leaf].tolist()
        targets["weight"] += weights[leaf].astype(float).tolist()
    return {
        "n_targets": 1,
        "aggregate_function": "SUM",
        "post_transform": "NONE",
        "nodes_treeids": columns["tree"],
        "nodes_nodeids": columns["node"],
        "nodes_featureids": columns["feature"],
        "nodes_modes": columns["mode"],
        "nodes_values": columns["value"],
        "nodes_truenodeids": columns["left"],
        "nodes_falsenodeids": columns["right"],
        "nodes_missing_value_tracks_true": [0] * len(columns["node"]),
        "nodes_hitrates": [1.0] * len(columns["node"]),
        "target_treeids": targets["tree"],
        "target_nodeids": targets["node"],
        "target_ids": [0] * len(targets["node"]),
        "target_weights": targets["weight"],
    }


def _convert_isolation_forest(scope: Any, operator: Any, container: Any) -> None:
    """Outputs as skl2onnx's parser declares them: ``label`` (1 inlier, -1 outlier, int64) and
    ``scores`` = ``decision_function`` = -2 ** (-depth / denominator) - offset_."""
    forest = operator.raw_operator
    x = operator.inputs[0].full_name
    n_features = operator.inputs[0].type.shape[1]
    depth = _node(
        scope,
        container,
        "TreeEnsembleRegressor",
        [x],
        op_domain="ai.onnx.ml",
        **_forest_attributes(forest, n_features),
    )
    denominator = len(forest.estimators_) * float(_average_path_length([forest._max_samples])[0])
    scale = _const(scope, container, "scale", -1.0 / denominator if denominator else 0.0)
    two = _const(scope, container, "two", 2.0)
    scores = _node(scope, container, "Pow", [two, _node(scope, container, "Mul", [depth, scale])])
    offset = _const(scope, container, "offset", -float(forest.offset_))
    decision = operator.outputs[1].full_name
    minus = _node(scope, container, "Neg", [scores])
    container.add_node("Add", [minus, offset], [decision], name=scope.get_unique_operator_name("Add"))
    zero = _const(scope, container, "zero", 0.0)
    inlier = _node(
        scope,
        container,
        "Cast",
        [_node(scope, container, "GreaterOrEqual", [decision, zero])],
        to=TensorProto.INT64,
    )
    # 1 for inliers, -1 for outliers: 2 * inlier - 1
    two_i = scope.get_unique_variable_name("two_i")
    one_i = scope.get_unique_variable_name("one_i")
    container.add_initializer(two_i, TensorProto.INT64, [], [2])
    container.add_initializer(one_i, TensorProto.INT64, [], [1])
    container.add_node(
        "Sub",
        [_node(scope, container, "Mul", [inlier, two_i]), one_i],
        [operator.outputs[0].full_name],
        name=scope.get_unique_operator_name("Sub"),
    )


def _parse_ensemble(scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None) -> list[Any]:
    """Each member pipeline converted on the graph's inputs; the ensemble's operator takes their
    probabilities (a classifier member's second output) or values, and declares its own outputs."""
    classifier = isinstance(model, SoftVotingClassifier)
    answers = []
    for member in model.members_:
        outputs = _parse_sklearn(scope, member, inputs, custom_parsers=custom_parsers)
        answers.append(outputs[1] if classifier else outputs[0])
    alias = "SluiceSoftVoting" if classifier else "SluiceAveraging"
    operator = scope.declare_local_operator(alias, model)
    operator.inputs = answers
    if classifier:
        operator.outputs.append(scope.declare_local_variable("label", StringTensorType([None])))
        n = len(model.classes_)
        operator.outputs.append(scope.declare_local_variable("probabilities", FloatTensorType([None, n])))
    else:
        operator.outputs.append(scope.declare_local_variable("value", FloatTensorType([None, 1])))
    return operator.outputs


def _weighted_sum(scope: Any, operator: Any, container: Any, out: str) -> None:
    weights = operator.raw_operator.weights_
    terms = [
        _node(scope, container, "Mul", [answer.full_name, _const(scope, container, "weight", w)])
        for answer, w in zip(operator.inputs, weights, strict=True)
    ]
    container.add_node("Sum", terms, [out], name=scope.get_unique_operator_name("Sum"))


def _convert_soft_voting(scope: Any, operator: Any, container: Any) -> None:
    probabilities = operator.outputs[1].full_name
    _weighted_sum(scope, operator, container, probabilities)
    argmax = _node(scope, container, "ArgMax", [probabilities], axis=1)
    _finalize_converter_classes(
        scope,
        argmax,
        operator.outputs[0].full_name,
        container,
        np.asarray(operator.raw_operator.classes_),
        TensorProto.FLOAT,
    )


def _convert_averaging(scope: Any, operator: Any, container: Any) -> None:
    _weighted_sum(scope, operator, container, operator.outputs[0].full_name)


def _declared_shapes(operator: Any) -> None:
    """The ensemble parser declares its outputs' types and shapes."""


def _missing_flag_as_int(add_node: Any) -> Any:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(kwargs["nodes_missing_value_tracks_true"])
        return add_node(*args, **kwargs)

    wrapped.sluice_wrapped = True  # type: ignore[attr-defined]
    return wrapped


def register() -> None:
    """Register every converter (idempotent)."""
    update_registered_converter(
        SignedLog1p, "SluiceSignedLog1p", calculate_sklearn_scaler_output_shapes, _convert_signed_log1p
    )
    update_registered_converter(
        StringLabelXGBClassifier,
        "SluiceXGBClassifier",
        calculate_linear_classifier_output_shapes,
        convert_xgboost,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(
        XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost
    )
    # The alias must stay "SklearnOneClassSVM": skl2onnx's shape calculator keys on it.
    update_registered_converter(
        SubsampledOneClassSVM,
        "SklearnOneClassSVM",
        calculate_sklearn_svm_output_shapes,
        convert_sklearn_svm_regressor,
    )
    update_registered_converter(
        IsolationForest,
        "SklearnIsolationForest",
        calculate_isolation_forest_output_shapes,
        _convert_isolation_forest,
        options={"score_samples": [False]},  # skl2onnx's parser asks; the third output is not offered
    )
    # The ensemble's probabilities are a plain tensor: export asks for zipmap False, the only choice.
    update_registered_converter(
        SoftVotingClassifier,
        "SluiceSoftVoting",
        _declared_shapes,
        _convert_soft_voting,
        parser=_parse_ensemble,
        options={"zipmap": [False]},
    )
    update_registered_converter(
        AveragingRegressor, "SluiceAveraging", _declared_shapes, _convert_averaging, parser=_parse_ensemble
    )
    if not getattr(tree_ensemble.add_node, "sluice_wrapped", False):
        tree_ensemble.add_node = _missing_flag_as_int(tree_ensemble.add_node)
