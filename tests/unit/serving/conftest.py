"""``serving/`` lives at the project root beside service.py and is not installed: a Bento
carries it, and ``bentoml serve`` puts the Bento's source directory first on sys.path. The
tests do the same with the project directory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bentogate.data import make_transactions, train_xgboost
from bentogate.modelimport import Artifact, import_xgboost

PROJECT_DIR = str(Path(__file__).resolve().parents[3])
if PROJECT_DIR not in sys.path:
    sys.path.insert(0, PROJECT_DIR)


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """A small real model (10 trees, the fraud schema's 220 features), imported to ONNX."""
    data = make_transactions(2000, seed=5)
    path = tmp_path_factory.mktemp("m") / "m.json"
    train_xgboost(data, n_estimators=10, max_depth=3).save_model(str(path))  # type: ignore[attr-defined]
    return import_xgboost(path, data, tmp_path_factory.mktemp("artifacts"))
