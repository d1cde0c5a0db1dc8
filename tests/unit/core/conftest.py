"""Fixtures shared by the core unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bentogate.data import make_transactions, train_xgboost, write_csv


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small XGBoost model file and its training data as CSV (what `register` takes)."""
    root = tmp_path_factory.mktemp("cli")
    data = make_transactions(1500, seed=2)
    model = root / "m.json"
    train_xgboost(data, n_estimators=5, max_depth=2).save_model(str(model))  # type: ignore[attr-defined]
    return model, write_csv(data, root / "data.csv")
