"""Slower copies with the same scores: chain trees add work, never a different answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.slowcopy import (
    ROOT_PARENT,
    SPLIT_AT,
    ChainCost,
    add_chains,
    append_trees,
    chain_tree,
    chains_for,
    class_tree,
)
from bentogate.data import Dataset, make_transactions, train_xgboost
from bentogate.modelimport import import_xgboost


@pytest.fixture(scope="module")
def data() -> Dataset:
    return make_transactions(1500, seed=3)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory, data: Dataset) -> Path:
    booster: Any = train_xgboost(data, n_estimators=8, max_depth=3)
    path = tmp_path_factory.mktemp("slowcopy") / "model.json"
    booster.save_model(str(path))
    return path


def _booster(path: Path) -> Any:
    import xgboost as xgb

    return xgb.Booster(model_file=str(path))


def _rows(data: Dataset) -> np.ndarray:
    rows = np.array(data.features[:300], dtype=np.float32)
    rows[1, :5] = np.nan  # missing values take the default (left) branch: still a leaf of 0
    rows[2] = -np.finfo(np.float32).max
    rows[3] = np.finfo(np.float32).max
    return rows


def test_a_chain_tree_walks_every_internal_node_to_a_zero_leaf() -> None:
    tree = chain_tree(7, depth=4, n_features=6, start=5)
    assert tree["id"] == 7
    assert tree["tree_param"]["num_nodes"] == "9"
    assert tree["left_children"] == [1, 2, 3, 8, -1, -1, -1, -1, -1]
    assert tree["right_children"] == [4, 5, 6, 7, -1, -1, -1, -1, -1]
    assert tree["parents"] == [ROOT_PARENT, 0, 1, 2, 0, 1, 2, 3, 3]
    assert tree["split_indices"][:4] == [5, 0, 1, 2]
    assert tree["split_conditions"][:4] == [SPLIT_AT] * 4
    assert tree["split_conditions"][4:] == [0.0] * 5 and tree["base_weights"] == [0.0] * 9
    lengths = {k: len(v) for k, v in tree.items() if isinstance(v, list) and v}
    assert set(lengths.values()) == {9}


def test_chains_leave_every_prediction_unchanged(
    tmp_path: Path, model_file: Path, data: Dataset
) -> None:
    copy = add_chains(model_file, tmp_path / "copy.json", 5, depth=16)
    original, chained = _booster(model_file), _booster(copy)
    rows = _rows(data)
    np.testing.assert_array_equal(chained.inplace_predict(rows), original.inplace_predict(rows))
    assert chained.num_boosted_rounds() == original.num_boosted_rounds() + 5


def test_add_chains_updates_the_tree_bookkeeping(tmp_path: Path, model_file: Path) -> None:
    copy = add_chains(model_file, tmp_path / "copy.json", 3, depth=2)
    model = json.loads(copy.read_text())["learner"]["gradient_booster"]["model"]
    assert model["gbtree_model_param"]["num_trees"] == "11"
    assert len(model["trees"]) == 11 and model["tree_info"][-3:] == [0, 0, 0]
    assert model["iteration_indptr"][-4:] == [8, 9, 10, 11]
    assert [tree["id"] for tree in model["trees"]] == list(range(11))


def test_a_chained_copy_passes_the_import_parity_check(
    tmp_path: Path, model_file: Path, data: Dataset
) -> None:
    copy = add_chains(model_file, tmp_path / "copy.json", 4, depth=8)
    artifact = import_xgboost(copy, data, tmp_path / "artifacts")
    original = import_xgboost(model_file, data, tmp_path / "artifacts")
    assert artifact.sha256 != original.sha256
    np.testing.assert_allclose(artifact.reference_scores, original.reference_scores, atol=0)


def test_zero_chains_copy_the_model(tmp_path: Path, model_file: Path, data: Dataset) -> None:
    copy = add_chains(model_file, tmp_path / "copy.json", 0)
    rows = _rows(data)
    original, same = _booster(model_file), _booster(copy)
    np.testing.assert_array_equal(same.inplace_predict(rows), original.inplace_predict(rows))


def test_add_chains_refuses_what_it_cannot_do(tmp_path: Path, model_file: Path) -> None:
    with pytest.raises(ValueError, match="count"):
        add_chains(model_file, tmp_path / "copy.json", -1)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"learner": {}}))
    with pytest.raises(ValueError, match="not an XGBoost gbtree"):
        add_chains(other, tmp_path / "copy.json", 1)
    with pytest.raises(ValueError, match="depth"):
        chain_tree(0, depth=0, n_features=3, start=0)


def test_chains_for_a_factor_interpolate_between_measured_points() -> None:
    # Each chain costs more in a bigger copy (caches): 0.3 µs each at 1000, 0.5 at 4000.
    cost = ChainCost(depth=128, base_us=40.0, points=((1000, 300.0), (4000, 2000.0)))
    assert chains_for(1.0, 600.0, cost) == 0
    assert chains_for(1.25, 600.0, cost) == 500  # 150 µs: on the way to the first point
    assert chains_for(1.5, 600.0, cost) == 1000
    assert chains_for(2.0, 1000.0, cost) == 1000 + round(3000 * 700 / 1700)
    assert chains_for(2.0, 3000.0, cost) == 6000  # beyond the last: at its 0.5 µs each


def test_a_noisy_calibration_never_makes_fewer_chains_add_more() -> None:
    cost = ChainCost(depth=128, base_us=40.0, points=((250, 80.0), (1000, 70.0), (2000, 600.0)))
    assert cost.chains_for(40.0) == 125
    assert cost.chains_for(80.0) == 250
    assert cost.chains_for(340.0) == 250 + 1750 // 2  # between 250 and 2000: 1000 left out
    with pytest.raises(ValueError, match="no measured point"):
        ChainCost(depth=128, base_us=40.0, points=((250, -1.0),)).chains_for(10.0)


def test_a_class_tree_changes_only_the_rows_of_its_class(
    model_file: Path, data: Dataset, tmp_path: Path
) -> None:
    """What shadow scoring must catch: the same scores on every row but one class's, so the
    import parity on reference rows (outside the class) still passes."""
    rows = np.array(data.features[:300], dtype=np.float32)
    at = float(rows[:, 4].max()) + 1.0  # no reference row reaches it
    copy = append_trees(
        model_file, tmp_path / "class.json", lambda first, n: [class_tree(first, n, 4, at, 6.0)]
    )
    import_xgboost(copy, data, tmp_path / "artifacts")  # parity holds on the reference rows
    original, changed = _booster(model_file), _booster(copy)
    assert np.array_equal(original.inplace_predict(rows), changed.inplace_predict(rows))
    in_class = rows[:20].copy()
    in_class[:, 4] = at + 10  # well inside the class (float32 rounding at the boundary)
    before, after = original.inplace_predict(in_class), changed.inplace_predict(in_class)
    assert (after > before + 0.3).all()
