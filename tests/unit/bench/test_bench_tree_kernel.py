"""The C tree kernels of the batch study (bench/tree_kernel.py) score as XGBoost does: trees
of uneven depth read from the ONNX graph the import writes, both layouts, a batch that is not
a whole number of blocks, and halves on two threads."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from bench.batch_variants import _attributes, halves
from bench.tree_kernel import CompleteKernel, Kernel, compile_kernel, complete, ensemble
from bentogate.data import make_transactions, train_xgboost
from bentogate.modelimport import _to_onnx

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="no C compiler (cc) on this machine: the study compiles its kernel",
)


def test_both_layouts_score_as_xgboost_on_trees_of_uneven_depth() -> None:
    data = make_transactions(1200, seed=3)
    booster = train_xgboost(data, n_estimators=12, max_depth=5)
    attrs = _attributes(onnx.load_from_string(_to_onnx(booster, data.features.shape[1])))
    trees = ensemble(attrs)
    assert len(set(trees.depths.tolist())) > 1, "the test needs trees of uneven depth"
    whole = complete(trees)
    assert whole.thresholds.shape == (12, 2**whole.depth - 1)
    rows = np.asarray(data.features[:77], dtype=np.float32)  # 4 blocks of 16 and 13 rows
    expected = booster.inplace_predict(rows, validate_features=False)  # type: ignore[attr-defined]
    kernel = compile_kernel()
    for score in (Kernel(trees, kernel), CompleteKernel(whole, kernel)):
        np.testing.assert_allclose(score(rows), expected, atol=1e-6)
    both = CompleteKernel(whole, kernel)
    np.testing.assert_allclose(halves(both, both)(rows), expected, atol=1e-6)


def test_a_graph_it_does_not_cover_is_refused() -> None:
    data = make_transactions(300, seed=4)
    booster = train_xgboost(data, n_estimators=2, max_depth=2)
    attrs = _attributes(onnx.load_from_string(_to_onnx(booster, data.features.shape[1])))
    with pytest.raises(ValueError, match="only BRANCH_LT splits with a LOGISTIC"):
        ensemble({**attrs, "post_transform": b"NONE"})
