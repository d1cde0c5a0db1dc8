"""``python -m bench.batch_variants``: what else onnxruntime could do for ``/predict_batch``,
measured against XGBoost native on the bench model, interleaved (``bench.batch.compare``);
prints JSON. A study, not part of ``./run bench``: bench/README.md, "Batches".

Every contender scores the same batches in turn; all must agree with XGBoost within 1e-5.
The graphs other than the served one are built here from the imported artifact's trees (the
same nodes, thresholds and leaf weights), never served:

- ``regressor``: the trees as a one-target ``TreeEnsembleRegressor`` (the margin) and a
  ``Sigmoid``: onnxruntime keeps one float per row instead of a vector of class scores.
- ``padded``: ``regressor`` with every leaf above its tree's deepest level pushed down a
  chain of always-true splits (``x < FLT_MAX``, the false side a copy of the leaf): every
  walk of a tree takes the same number of steps (the loop's exit branch always predicted).
- ``c_*``: not onnxruntime: the same trees in a kernel of our own in C (bench/tree_kernel.py),
  as nodes with child indices, and as complete trees (a step is arithmetic, not a load).

``--walk`` instead times the one-thread session on the first 1, 30 and 300 trees: what a
call and its outputs cost against what the tree walk costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.batch import Score, batches, compare
from bench.models import load
from bench.tree_kernel import CompleteKernel, Kernel, compile_kernel, complete, ensemble
from bentogate.data import read_csv
from bentogate.modelimport import load_artifact

FLT_MAX = float(np.finfo(np.float32).max)


def _options(threads: int, *, spin: bool = False) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return options


def _attributes(model: Any) -> dict[str, Any]:
    from onnx import helper

    (node,) = model.graph.node
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _first_trees(model: Any, trees: int) -> Any:
    """The classifier graph ``model`` keeping only its first ``trees`` trees."""
    import onnx
    from onnx import helper

    attrs = _attributes(model)
    nodes = [i for i, t in enumerate(attrs["nodes_treeids"]) if t < trees]
    leaves = [i for i, t in enumerate(attrs["class_treeids"]) if t < trees]
    kept = {
        name: [value[i] for i in nodes]
        if name.startswith("nodes_")
        else [value[i] for i in leaves]
        if name.startswith("class_")
        else value
        for name, value in attrs.items()
    }
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    del cut.graph.node[0].attribute[:]
    cut.graph.node[0].attribute.extend(helper.make_attribute(n, v) for n, v in kept.items())
    return cut


def regressor(model: Any, *, pad: bool = False) -> bytes:
    """The binary classifier graph ``model`` as a one-target regressor + ``Sigmoid`` (output
    ``probability``, ``[N, 1]``); ``pad``: every tree's walks made equally long."""
    import onnx
    from onnx import TensorProto, helper

    attrs = _attributes(model)
    nodes = {name: list(value) for name, value in attrs.items() if name.startswith("nodes_")}
    targets = {
        "target_treeids": list(attrs["class_treeids"]),
        "target_nodeids": list(attrs["class_nodeids"]),
        "target_weights": list(attrs["class_weights"]),
    }
    if pad:
        nodes, targets = _padded(attrs)
    ensemble: dict[str, Any] = {
        **nodes,
        **targets,
        "target_ids": [0] * len(targets["target_nodeids"]),
        "base_values": attrs["base_values"],
        "n_targets": 1,
        "aggregate_function": "SUM",
        "post_transform": "NONE",  # onnxruntime applies no LOGISTIC to one target
    }
    tree_node = helper.make_node(
        "TreeEnsembleRegressor", ["features"], ["margin"], domain="ai.onnx.ml", **ensemble
    )
    graph = helper.make_graph(
        [tree_node, helper.make_node("Sigmoid", ["margin"], ["probability"])],
        "fraud",
        list(model.graph.input),
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [None, 1])],
    )
    opsets = [helper.make_opsetid("", 15), helper.make_opsetid("ai.onnx.ml", 1)]
    made = helper.make_model(graph, opset_imports=opsets)
    made.ir_version = model.ir_version
    onnx.checker.check_model(made)
    return bytes(made.SerializeToString())


def _padded(attrs: dict[str, Any]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    weight = dict(
        zip(zip(attrs["class_treeids"], attrs["class_nodeids"], strict=True),
            attrs["class_weights"], strict=True)
    )  # fmt: skip
    index: dict[int, dict[int, int]] = {}
    for i, (t, n) in enumerate(zip(attrs["nodes_treeids"], attrs["nodes_nodeids"], strict=True)):
        index.setdefault(t, {})[n] = i
    columns = ("treeids", "nodeids", "featureids", "modes", "values", "truenodeids",
               "falsenodeids", "missing_value_tracks_true")  # fmt: skip
    nodes: dict[str, list[Any]] = {f"nodes_{c}": [] for c in columns}
    targets: dict[str, list[Any]] = {
        "target_treeids": [],
        "target_nodeids": [],
        "target_weights": [],
    }

    def node(*values: Any) -> None:
        for column, value in zip(columns, (*values, 0), strict=True):
            nodes[f"nodes_{column}"].append(value)

    def leaf(tree: int, node_id: int, w: float) -> None:
        node(tree, node_id, 0, "LEAF", 0.0, 0, 0)
        for key, value in zip(targets, (tree, node_id, w), strict=True):
            targets[key].append(value)

    for tree, ids in sorted(index.items()):
        depth, order = {0: 0}, [0]
        for n in order:
            i = ids[n]
            if attrs["nodes_modes"][i] != b"LEAF":
                for child in (attrs["nodes_truenodeids"][i], attrs["nodes_falsenodeids"][i]):
                    depth[child] = depth[n] + 1
                    order.append(child)
        deepest, next_id = max(depth.values()), max(ids) + 1
        for n, i in sorted(ids.items()):
            if attrs["nodes_modes"][i] != b"LEAF":
                node(tree, n, attrs["nodes_featureids"][i], "BRANCH_LT", attrs["nodes_values"][i],
                     attrs["nodes_truenodeids"][i], attrs["nodes_falsenodeids"][i])  # fmt: skip
                continue
            current = n
            for _ in range(deepest - depth[n]):
                node(tree, current, 0, "BRANCH_LT", FLT_MAX, next_id, next_id + 1)
                leaf(tree, next_id + 1, weight[(tree, n)])
                current, next_id = next_id, next_id + 2
            leaf(tree, current, weight[(tree, n)])
    return nodes, targets


def _session_score(model: bytes, threads: int, *, spin: bool = False) -> Score:
    import onnxruntime as ort

    session = ort.InferenceSession(
        model, _options(threads, spin=spin), providers=["CPUExecutionProvider"]
    )
    output = session.get_outputs()[0 if len(session.get_outputs()) == 1 else 1].name
    column = 0 if output == "probability" else 1
    return lambda rows: session.run([output], {"features": rows})[0][:, column]


def halves(first: Score, second: Score) -> Score:
    """``first`` on the first half of a batch and ``second`` on the other, from two Python
    threads (onnxruntime and ctypes let go of the GIL while they score)."""
    pool = ThreadPoolExecutor(1)

    def score(rows: np.ndarray) -> np.ndarray:
        half = len(rows) // 2
        other = pool.submit(second, rows[half:])
        return np.concatenate([first(rows[:half]), other.result()])

    return score


def contenders(models_dir: Path) -> dict[str, Score]:
    """The served batch path (``bentogate``), the variants, XGBoost default and one thread."""
    import onnx
    import xgboost as xgb

    from serving.scorer import Scorer

    models = load(models_dir)
    artifact = load_artifact(models.onnx.parent)
    served = Scorer(artifact.directory, name="fraud", version="1", expected_sha256=artifact.sha256)
    classifier = artifact.onnx_path.read_bytes()
    graph = onnx.load(str(artifact.onnx_path))
    one_target, padded = regressor(graph), regressor(graph, pad=True)
    trees, kernel = ensemble(_attributes(graph)), compile_kernel()
    native, single = xgb.Booster(model_file=str(models.v1)), xgb.Booster(model_file=str(models.v1))
    single.set_param({"nthread": 1})
    return {
        "bentogate": served.score_rows,
        "classifier_1_thread": _session_score(classifier, 1),
        "classifier_2_threads_spinning": _session_score(classifier, 2, spin=True),
        "regressor_1_thread": _session_score(one_target, 1),
        "regressor_2_threads": _session_score(one_target, 2),
        "regressor_2_threads_spinning": _session_score(one_target, 2, spin=True),
        "padded_2_threads": _session_score(padded, 2),
        "regressor_halves_2_python_threads": halves(
            _session_score(one_target, 1), _session_score(one_target, 1)
        ),
        "c_nodes_1_thread": Kernel(trees, kernel),
        "c_complete_trees_1_thread": (whole := CompleteKernel(complete(trees), kernel)),
        "c_complete_trees_halves_2_python_threads": halves(whole, whole),  # reentrant
        "xgboost": lambda rows: native.inplace_predict(rows, validate_features=False),
        "xgboost_1_thread": lambda rows: single.inplace_predict(rows, validate_features=False),
    }


def walk(models_dir: Path, rounds: int) -> dict[str, Any]:
    """µs per call of the one-thread session with the first 1, 30 and 300 trees (classifier
    and regressor form) at 1,024 rows and at one row, interleaved."""
    import onnx

    models = load(models_dir)
    graph = onnx.load(str(load_artifact(models.onnx.parent).onnx_path))
    scores: dict[str, Score] = {}
    for trees in (1, 30, 300):
        cut = _first_trees(graph, trees)
        scores[f"classifier_{trees}_trees"] = _session_score(cut.SerializeToString(), 1)
        scores[f"regressor_{trees}_trees"] = _session_score(regressor(cut), 1)
    rows = np.asarray(read_csv(models.holdout).features, dtype=np.float32)
    shapes = {"1024": batches(rows, 1024), "1": [rows[i : i + 1].copy() for i in range(0, 2400, 7)]}
    medians: dict[str, dict[str, list[float]]] = {s: {n: [] for n in scores} for s in shapes}
    calls = 0
    for round_number in range(rounds):
        names = list(scores) if round_number % 2 == 0 else list(scores)[::-1]
        for name in names:
            for shape, taken in shapes.items():
                times = []
                for _ in range(12 if shape == "1024" else 300):
                    started = time.perf_counter_ns()
                    scores[name](taken[calls % len(taken)])
                    times.append((time.perf_counter_ns() - started) / 1000)
                    calls += 1
                medians[shape][name].append(statistics.median(times))
    return {
        f"us_at_{shape}_rows": {n: round(statistics.median(v), 2) for n, v in by_name.items()}
        for shape, by_name in medians.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=Path, required=True, help="what bench.models trained")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--walk", action="store_true", help="the walk against the call")
    args = parser.parse_args(argv)
    if args.walk:
        json.dump(walk(args.models, args.rounds), sys.stdout, indent=1)
        return 0
    scores = contenders(args.models)
    rows = np.asarray(read_csv(load(args.models).holdout).features, dtype=np.float32)
    out: dict[str, Any] = {}
    for size in (64, 1024):
        result = compare(scores, rows, size, args.rounds)
        xgboost = result["us"]["xgboost"]["median"]
        out[str(size)] = {
            name: {"us": round(s["median"], 1), "vs_xgboost": round(s["median"] / xgboost, 2)}
            for name, s in result["us"].items()
        }
    json.dump(out, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
