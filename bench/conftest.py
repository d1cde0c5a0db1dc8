"""Fixtures of the in-process benchmarks (``pytest bench/``; CI's ``pytest`` runs tests/ only).

The models come from ``--bench-models DIR`` (what ``python -m bench`` trained) or are
trained once per session (about 20 s). BentoML's store is a temporary ``BENTOML_HOME``,
set before anything imports bentoml.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson
import pytest

from bench.asgi import PROJECT_DIR, AsgiDriver, load_service, store_model
from bench.models import ModelFiles, load, serving_session, sklearn_pickle, train
from bentogate.modelimport import Artifact, load_artifact

MODEL_TAG = "fraud:1"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench-models", default=None, help="models trained by python -m bench")
    parser.addoption(
        "--bench-project-dir", default=None, help="benchmark this tree's service.py instead"
    )


def pytest_configure(config: pytest.Config) -> None:
    if "bentoml" in sys.modules:
        raise pytest.UsageError("bentoml was imported before the benchmarks' BENTOML_HOME")
    home = tempfile.mkdtemp(prefix="bench-bentoml-")
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))
    os.environ["BENTOML_HOME"] = home
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"


@pytest.fixture(scope="session")
def models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    given = request.config.getoption("--bench-models")
    if given:
        return load(Path(given))
    return train(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def rows(models: ModelFiles) -> np.ndarray:
    return np.ascontiguousarray(models.rows, dtype=np.float32)


@pytest.fixture(scope="session")
def artifact(models: ModelFiles) -> Artifact:
    return load_artifact(models.onnx.parent)


@pytest.fixture(scope="session")
def onnx_session(models: ModelFiles) -> Any:
    return serving_session(models.onnx)


@pytest.fixture(scope="session")
def booster(models: ModelFiles) -> Any:
    import xgboost as xgb

    model = xgb.Booster(model_file=str(models.v1))
    model.set_param({"nthread": 1})
    return model


@pytest.fixture(scope="session")
def pickled(models: ModelFiles, tmp_path_factory: pytest.TempPathFactory) -> Any:
    import joblib

    path = sklearn_pickle(models.v1, tmp_path_factory.mktemp("pickle") / "model.joblib")
    return joblib.load(path)


@pytest.fixture(scope="session")
def service(request: pytest.FixtureRequest, artifact: Artifact) -> ModuleType:
    store_model(MODEL_TAG, artifact.directory, artifact.sha256)
    given = request.config.getoption("--bench-project-dir")
    return load_service(MODEL_TAG, project_dir=Path(given) if given else PROJECT_DIR)


@pytest.fixture(scope="session")
def scorer(service: ModuleType, artifact: Artifact) -> Any:
    return service.Scorer(
        artifact.directory, name="fraud", version="1", expected_sha256=artifact.sha256
    )


@pytest.fixture(scope="session")
def body(rows: np.ndarray) -> bytes:
    return orjson.dumps({"features": rows[0].astype(float).tolist()})


@pytest.fixture(scope="session")
def asgi(service: ModuleType, body: bytes) -> Iterator[AsgiDriver]:
    driver = AsgiDriver(service, body)
    driver.start()
    try:
        yield driver
    finally:
        driver.close()
