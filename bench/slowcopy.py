"""Slower copies of a model with the same scores: zero-valued "chain" trees appended to an
XGBoost JSON model.

A chain tree of depth D is a path of D internal nodes, each splitting on some feature at
3.0e38: every finite input (and a missing one, ``default_left``) goes left all the way
down to a leaf worth 0.0. Appended to a binary:logistic booster it adds 0 to every
margin, so XGBoost, its ONNX export and the parity check see the same scores, while
onnxruntime walks D more nodes per chain and row. That makes a candidate whose server
time is a chosen factor of the original's and whose answers are identical: what the
release gate's regression check has to tell apart from the original.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.models import serving_session
from bentogate.data import Dataset
from bentogate.modelimport import import_xgboost

DEPTH = 128
SPLIT_AT = 3.0e38  # above every finite float32 feature value of the data
ROOT_PARENT = 2147483647  # XGBoost's "no parent" (int32 max)


def chain_tree(tree_id: int, depth: int, n_features: int, start: int) -> dict[str, Any]:
    """One chain tree in XGBoost's JSON layout: ``2 * depth + 1`` nodes, internal nodes
    ``0..depth-1`` (node i splits on feature ``(start + i) % n_features``; its left child is
    i+1, the last one's is leaf ``2 * depth``; its right child is leaf ``depth + i``), every
    leaf 0.0. Raises ValueError for depth < 1 or no features."""
    if depth < 1 or n_features < 1:
        raise ValueError(f"a chain needs depth >= 1 and features (got {depth}, {n_features})")
    nodes = 2 * depth + 1
    left, right = [-1] * nodes, [-1] * nodes
    parents, conditions, features = [ROOT_PARENT] * nodes, [0.0] * nodes, [0] * nodes
    for i in range(depth):
        left[i] = i + 1 if i < depth - 1 else 2 * depth
        right[i] = depth + i
        conditions[i] = SPLIT_AT
        features[i] = (start + i) % n_features
        if i > 0:
            parents[i] = i - 1
        parents[depth + i] = i
    parents[2 * depth] = depth - 1
    return {
        "base_weights": [0.0] * nodes,
        "categories": [],
        "categories_nodes": [],
        "categories_segments": [],
        "categories_sizes": [],
        "default_left": [1] * nodes,
        "id": tree_id,
        "left_children": left,
        "loss_changes": [0.0] * nodes,
        "parents": parents,
        "right_children": right,
        "split_conditions": conditions,
        "split_indices": features,
        "split_type": [0] * nodes,
        "sum_hessian": [1.0] * nodes,
        "tree_param": {
            "num_deleted": "0",
            "num_feature": str(n_features),
            "num_nodes": str(nodes),
            "size_leaf_vector": "1",
        },
    }


def add_chains(src: Path, dst: Path, count: int, depth: int = DEPTH) -> Path:
    """Write ``src`` (an XGBoost JSON model) to ``dst`` with ``count`` chain trees of
    ``depth`` appended (one boosting round each); returns ``dst``.

    Raises ValueError for a negative count or a model that is not a gbtree JSON model.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return append_trees(
        src,
        dst,
        lambda first, n_features: [
            chain_tree(first + index, depth, n_features, start=index * depth)
            for index in range(count)
        ],
    )


def append_trees(src: Path, dst: Path, make: Callable[[int, int], list[dict[str, Any]]]) -> Path:
    """Write ``src`` (an XGBoost JSON model) to ``dst`` with the trees ``make(first id,
    number of features)`` returns appended, one boosting round each; returns ``dst``.

    Raises ValueError for a model that is not a gbtree JSON model (KeyError inside is
    turned into it).
    """
    document = json.loads(src.read_text())
    try:
        learner = document["learner"]
        model = learner["gradient_booster"]["model"]
        n_features = int(learner["learner_model_param"]["num_feature"])
        trees, info, indptr = model["trees"], model["tree_info"], model["iteration_indptr"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{src}: not an XGBoost gbtree JSON model ({exc!r})") from exc
    for tree in make(len(trees), n_features):
        trees.append(tree)
        info.append(0)
        indptr.append(indptr[-1] + 1)
    model["gbtree_model_param"]["num_trees"] = str(len(trees))
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(document))
    return dst


def class_tree(
    tree_id: int, n_features: int, feature: int, at: float, margin: float
) -> dict[str, Any]:
    """A one-split tree that adds ``margin`` to the margin of rows whose ``feature`` is at
    least ``at`` and 0 to every other row (and to a missing value): a model that scores one
    class of inputs differently and every other row exactly as before."""
    tree = chain_tree(tree_id, 1, n_features, start=feature)
    tree["split_conditions"][0] = at
    tree["split_conditions"][1] = tree["base_weights"][1] = margin  # node 1: the right leaf
    return tree


@dataclass(frozen=True)
class ChainCost:
    """What chains of ``depth`` add to one one-row prediction in onnxruntime, configured
    like the service's Scorer (1 intra-op and 1 inter-op thread, sequential): the
    original's time per prediction (``base_us``, median of rounds) and, per measured copy,
    (chains, µs added). Not linear: a copy of thousands of chains no longer fits the CPU's
    caches and each chain costs more (once measured on the 2-core VM: 0.37 µs at 200
    chains of depth 128, 0.59 µs at 3,300), so a copy is sized from the points around it."""

    depth: int
    base_us: float
    points: tuple[tuple[int, float], ...]

    def chains_for(self, added_us: float) -> int:
        """The chains that add ``added_us`` per prediction: interpolated between the
        measured points (and 0 chains: 0 µs), beyond the last at its µs per chain. Raises
        ValueError when no point added time (chains that cost nothing cannot slow a copy)."""
        if added_us <= 0:
            return 0
        counts, added = [0], [0.0]
        for chains, us in sorted(self.points):
            if us > added[-1]:  # more chains that measured no slower: noise, left out
                counts.append(chains)
                added.append(us)
        if len(counts) == 1:
            raise ValueError(f"no measured point adds any time: {self.points}")
        if added_us <= added[-1]:
            return round(float(np.interp(added_us, added, counts)))
        return round(added_us * counts[-1] / added[-1])

    def to_dict(self) -> dict[str, Any]:
        return {"depth": self.depth, "base_us": self.base_us,
                "points": [{"chains": c, "added_us": a, "per_chain_us": a / c}
                           for c, a in self.points]}  # fmt: skip


def one_row_us(session: Any, rows: np.ndarray, calls: int) -> float:
    """Mean µs of ``calls`` sequential one-row ``session.run`` calls over ``rows`` (cycled)."""
    singles = [np.ascontiguousarray(rows[i : i + 1], dtype=np.float32) for i in range(len(rows))]
    started = time.perf_counter()
    for i in range(calls):
        session.run(["probabilities"], {"features": singles[i % len(singles)]})
    return (time.perf_counter() - started) / calls * 1e6


def _timed_rounds(
    sessions: list[Any], rows: np.ndarray, rounds: int, round_s: float
) -> list[float]:
    """Median µs per one-row prediction of each session over ``rounds`` interleaved rounds
    of about ``round_s`` seconds each (drift hits all alike)."""
    calls = [max(20, int(round_s * 1e6 / one_row_us(s, rows, 20))) for s in sessions]  # warm
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(rounds):
        for kind, session in enumerate(sessions):
            times[kind].append(one_row_us(session, rows, calls[kind]))
    return [statistics.median(t) for t in times]


def chain_cost_us(
    model_file: Path,
    reference: Dataset,
    *,
    depth: int = DEPTH,
    counts: tuple[int, ...] = (250, 1000, 2000, 4000),
    rounds: int = 5,
    round_s: float = 0.25,
) -> ChainCost:
    """Measure what ``counts`` chain trees of ``depth`` add to one one-row prediction.

    The original and one copy per count are imported as bentogate registers them (ONNX
    export + parity), then timed in interleaved rounds over ``reference``'s first rows.
    Raises ModelImportError if an import fails, ValueError for a count < 1.
    """
    if not counts or min(counts) < 1:
        raise ValueError(f"counts must be >= 1, got {counts}")
    rows = np.asarray(reference.features[:64], dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="bentogate-chains-") as temp:
        work = Path(temp)
        files = [model_file] + [
            add_chains(model_file, work / f"chained-{n}.json", n, depth) for n in counts
        ]
        sessions = [
            serving_session(import_xgboost(path, reference, work / "artifacts").onnx_path)
            for path in files
        ]
        base, *chained = _timed_rounds(sessions, rows, rounds, round_s)
    points = tuple((n, us - base) for n, us in zip(counts, chained, strict=True))
    return ChainCost(depth, base, points)


def chains_for(factor: float, live_server_us: float, cost: ChainCost) -> int:
    """How many chains make a copy's server time ``factor`` x live's ``live_server_us``:
    those that add ``(factor - 1) * live_server_us`` per prediction (at least 0)."""
    return cost.chains_for((factor - 1.0) * live_server_us)
