"""A tree-ensemble kernel in C, built from an ONNX ``TreeEnsembleClassifier``'s own nodes: a
study for ``python -m bench.batch_variants`` of what another kernel than onnxruntime's would
give ``/predict_batch`` (bench/README.md, "Batches"). Never served.

The layout is the one fast tree predictors use (XGBoost's, Treelite's, QuickScorer's idea in
its simplest form): every tree's walks padded to the tree's depth, a leaf being a node whose
both children are itself, so a walk is a fixed number of branch-free steps
(``next = x[feature] < threshold ? left : right``, a conditional move); a block of rows walks
each tree together, so the steps of different rows overlap in the CPU. The margin is summed
in double, tree by tree, then the logistic. Compiled by the machine's C compiler at study
time (``cc -O3``, no ``-march``: what a Bento built here and shipped elsewhere could run);
scored through ctypes, which lets go of the GIL, so halves of a batch can run on two Python
threads (``bench.batch_variants.halves``).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SOURCE = r"""
#include <math.h>
#include <stdint.h>

typedef struct { float threshold; int32_t feature; int32_t left; int32_t right; } node_t;

/* rows walked together; 8, 32, 64 and 128 were 1-11 % slower at 1,024 rows */
#define BLOCK 16

/* A block's rows (at most BLOCK from r0) and their margins at the base; returns how many. */
static inline int32_t block_start(const float *x, int32_t r0, int32_t rows, int32_t features,
                                  double base, double *acc, const float **row) {
    int32_t n = rows - r0 < BLOCK ? rows - r0 : BLOCK;
    for (int32_t i = 0; i < n; i++) {
        acc[i] = base;
        row[i] = x + (int64_t)(r0 + i) * features;
    }
    return n;
}

/* The block's probabilities: the logistic of each margin. */
static inline void block_end(const double *acc, int32_t n, double *out) {
    for (int32_t i = 0; i < n; i++) out[i] = 1.0 / (1.0 + exp(-acc[i]));
}

void score(const node_t *nodes, const int32_t *roots, const int32_t *depths, int32_t trees,
           const float *values, const float *x, int32_t rows, int32_t features, double base,
           double *out) {
    for (int32_t r0 = 0; r0 < rows; r0 += BLOCK) {
        double acc[BLOCK];
        int32_t at[BLOCK];
        const float *row[BLOCK];
        int32_t n = block_start(x, r0, rows, features, base, acc, row);
        for (int32_t t = 0; t < trees; t++) {
            for (int32_t i = 0; i < n; i++) at[i] = roots[t];
            for (int32_t d = 0; d < depths[t]; d++) {
                for (int32_t i = 0; i < n; i++) {
                    const node_t *nd = nodes + at[i];
                    at[i] = row[i][nd->feature] < nd->threshold ? nd->left : nd->right;
                }
            }
            for (int32_t i = 0; i < n; i++) acc[i] += values[at[i]];
        }
        block_end(acc, n, out + r0);
    }
}

/* Every tree made complete to depth D (a leaf above it repeated below a split that always
   goes left): node k's children are 2k+1 and 2k+2, so a step is arithmetic, not a load. */
void score_complete(const float *thresholds, const int32_t *features, int32_t depth,
                    int32_t trees, const float *values, const float *x, int32_t rows,
                    int32_t nfeatures, double base, double *out) {
    const int32_t inner = (1 << depth) - 1;
    for (int32_t r0 = 0; r0 < rows; r0 += BLOCK) {
        double acc[BLOCK];
        int32_t at[BLOCK];
        const float *row[BLOCK];
        int32_t n = block_start(x, r0, rows, nfeatures, base, acc, row);
        for (int32_t t = 0; t < trees; t++) {
            const float *th = thresholds + (int64_t)t * inner;
            const int32_t *fe = features + (int64_t)t * inner;
            const float *va = values + (int64_t)t * (inner + 1);
            for (int32_t i = 0; i < n; i++) at[i] = 0;
            for (int32_t d = 0; d < depth; d++) {
                for (int32_t i = 0; i < n; i++) {
                    int32_t k = at[i];
                    at[i] = 2 * k + 1 + !(row[i][fe[k]] < th[k]);
                }
            }
            for (int32_t i = 0; i < n; i++) acc[i] += va[at[i] - inner];
        }
        block_end(acc, n, out + r0);
    }
}
"""

NODE = np.dtype(
    [("threshold", np.float32), ("feature", np.int32), ("left", np.int32), ("right", np.int32)]
)


@dataclass(frozen=True)
class Ensemble:
    """The padded trees: ``nodes`` (a leaf's children are itself), each tree's root and
    depth, each node's leaf value (0 for a split) and the base margin."""

    nodes: np.ndarray
    roots: np.ndarray
    depths: np.ndarray
    values: np.ndarray
    base: float


def ensemble(attrs: dict[str, Any]) -> Ensemble:
    """The trees of a binary ``TreeEnsembleClassifier``'s attributes (``BRANCH_LT`` splits,
    ``LOGISTIC`` on one class's margin, as the converter writes XGBoost's)."""
    if attrs.get("post_transform") != b"LOGISTIC" or set(attrs["nodes_modes"]) - {
        b"BRANCH_LT",
        b"LEAF",
    }:
        raise ValueError("only BRANCH_LT splits with a LOGISTIC post-transform are studied")
    weights: dict[tuple[int, int], float] = {}
    for t, n, w in zip(attrs["class_treeids"], attrs["class_nodeids"], attrs["class_weights"],
                       strict=True):  # fmt: skip
        weights[(t, n)] = weights.get((t, n), 0.0) + w
    index: dict[int, dict[int, int]] = {}
    for i, (t, n) in enumerate(zip(attrs["nodes_treeids"], attrs["nodes_nodeids"], strict=True)):
        index.setdefault(t, {})[n] = i
    nodes: list[tuple[float, int, int, int]] = []
    values: list[float] = []
    roots, depths = [], []
    for tree, ids in sorted(index.items()):
        place = {n: len(nodes) + k for k, n in enumerate(sorted(ids))}
        depth = {0: 0}
        for n in sorted(ids):  # parents come before their children in XGBoost's numbering
            i = ids[n]
            leaf = attrs["nodes_modes"][i] == b"LEAF"
            if leaf:
                nodes.append((0.0, 0, place[n], place[n]))
                values.append(weights.get((tree, n), 0.0))
                continue
            yes, no = attrs["nodes_truenodeids"][i], attrs["nodes_falsenodeids"][i]
            depth[yes] = depth[no] = depth[n] + 1
            nodes.append(
                (attrs["nodes_values"][i], attrs["nodes_featureids"][i], place[yes], place[no])
            )
            values.append(0.0)
        roots.append(place[0])
        depths.append(max(depth.values()))
    base = attrs.get("base_values") or [0.0]
    return Ensemble(
        np.array(nodes, dtype=NODE),
        np.array(roots, dtype=np.int32),
        np.array(depths, dtype=np.int32),
        np.array(values, dtype=np.float32),
        float(base[0]),
    )


def compile_kernel() -> ctypes.CDLL:
    """Compile :data:`SOURCE` with the machine's ``cc`` and load it (the loaded library
    outlives its file, which goes with its temporary directory). Raises RuntimeError without
    a compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc) on this machine")
    with tempfile.TemporaryDirectory(prefix="tree-kernel-") as where:
        src, lib = Path(where) / "kernel.c", Path(where) / "kernel.so"
        src.write_text(SOURCE)
        subprocess.run([cc, "-O3", "-shared", "-fPIC", "-o", str(lib), str(src), "-lm"],
                       check=True)  # fmt: skip
        kernel = ctypes.CDLL(str(lib))
    kernel.score.restype = None
    return kernel


class Kernel:
    """``score(rows)``: the probability of every row of a float32 matrix, from ``trees``."""

    def __init__(self, trees: Ensemble, kernel: ctypes.CDLL) -> None:
        self.trees, self._score = trees, kernel.score

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        out = np.empty(len(rows), dtype=np.float64)
        t = self.trees
        self._score(
            _ptr(t.nodes), _ptr(t.roots), _ptr(t.depths), ctypes.c_int32(len(t.roots)),
            _ptr(t.values), _ptr(rows), ctypes.c_int32(rows.shape[0]),
            ctypes.c_int32(rows.shape[1]), ctypes.c_double(t.base), _ptr(out),
        )  # fmt: skip
        return out


def _ptr(array: np.ndarray) -> Any:
    return array.ctypes.data_as(ctypes.c_void_p)


@dataclass(frozen=True)
class Complete:
    """The trees made complete to ``depth``: per tree ``2**depth - 1`` splits (threshold,
    feature; node k's children 2k+1 and 2k+2) and ``2**depth`` leaf values."""

    thresholds: np.ndarray
    features: np.ndarray
    depth: int
    values: np.ndarray
    base: float


def complete(trees: Ensemble) -> Complete:
    """``trees`` (from :func:`ensemble`) as complete trees of their deepest tree's depth: a
    leaf above it becomes splits at +inf (always the left child) over copies of itself."""
    depth = int(trees.depths.max())
    inner = (1 << depth) - 1
    count = len(trees.roots)
    thresholds = np.full((count, inner), np.inf, dtype=np.float32)
    features = np.zeros((count, inner), dtype=np.int32)
    values = np.zeros((count, inner + 1), dtype=np.float32)
    nodes = trees.nodes
    for t, root in enumerate(trees.roots):
        stack = [(0, int(root))]
        while stack:
            k, n = stack.pop()
            if k >= inner:
                values[t, k - inner] = trees.values[n]  # a leaf (its walk ends here)
                continue
            left, right = int(nodes["left"][n]), int(nodes["right"][n])
            if left != n:  # a split
                thresholds[t, k] = nodes["threshold"][n]
                features[t, k] = nodes["feature"][n]
            stack += [(2 * k + 1, left), (2 * k + 2, right)]  # a leaf: both are itself
    return Complete(thresholds, features, depth, values, trees.base)


class CompleteKernel:
    """``score(rows)`` over :func:`complete` trees (the kernel's ``score_complete``)."""

    def __init__(self, trees: Complete, kernel: ctypes.CDLL) -> None:
        self.trees, self._score = trees, kernel.score_complete
        self._score.restype = None

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        out = np.empty(len(rows), dtype=np.float64)
        t = self.trees
        self._score(
            _ptr(t.thresholds), _ptr(t.features), ctypes.c_int32(t.depth),
            ctypes.c_int32(len(t.thresholds)), _ptr(t.values), _ptr(rows),
            ctypes.c_int32(rows.shape[0]), ctypes.c_int32(rows.shape[1]), ctypes.c_double(t.base),
            _ptr(out),
        )  # fmt: skip
        return out
