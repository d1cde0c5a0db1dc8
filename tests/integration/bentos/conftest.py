"""Bentos built once per session on host A (its own BENTOGATE_HOME): small real models.

Builds are files only; the tests start (and stop) the servers they need themselves.

    fraud:1        10 trees, 220 features, 1 MiB body limit, batches of at most 64 rows
    fraud:2        another version of the same model (deeper trees)
    chargeback:1   a different model: 8 features, 4 KiB body limit, batches of at most 16
    fraud:3        fraud:1's ONNX model with a canary record it does not score (tampered copy)
    fraud:4        fraud:2's model, whose model.onnx in the store is changed after the build
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bento_support import Built

from bentogate.bentos import base_image
from bentogate.bentos.build import VersionSpec, build_bento, model_path
from bentogate.context import PROJECT_DIR  # the Bento source a wheel ships
from bentogate.data import Dataset, make_transactions, train_xgboost
from bentogate.modelimport import Artifact, import_xgboost, load_artifact
from bentogate.settings import Settings


def _artifact(data: Dataset, directory: Path, *, trees: int, depth: int) -> Artifact:
    model_file = directory / f"{trees}x{depth}-{len(data.feature_names)}.json"
    booster = train_xgboost(data, n_estimators=trees, max_depth=depth)
    booster.save_model(str(model_file))  # type: ignore[attr-defined]
    return import_xgboost(model_file, data, directory / "artifacts")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    directory = tmp_path_factory.mktemp("models")
    data = make_transactions(1500, seed=11)
    narrow = Dataset(data.features[:, :8], data.labels, data.feature_names[:8])
    return {
        "fraud-v1": _artifact(data, directory, trees=10, depth=2),
        "fraud-v2": _artifact(data, directory, trees=10, depth=4),
        "chargeback-v1": _artifact(narrow, directory, trees=10, depth=2),
    }


@pytest.fixture(scope="session")
def host_a(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Host A's settings: state under its own home, BentoML store at ``bentoml_home``."""
    return Settings(home=tmp_path_factory.mktemp("host-a"))


def _build(
    settings: Settings,
    tag: str,
    artifact: Artifact,
    *,
    max_body_bytes: int = 1_048_576,
    max_batch_rows: int = 64,
) -> Built:
    model, version = tag.split(":")
    spec = VersionSpec(
        model=model,
        version=version,
        sha256=artifact.sha256,
        artifact_dir=artifact.directory,
        labels={"model": model, "version": version, "sha256": artifact.sha256},
    )
    built = build_bento(
        PROJECT_DIR,
        settings.bentoml_home,
        spec,
        args={"max_body_bytes": max_body_bytes, "max_batch_rows": max_batch_rows},
        base_image=base_image(settings.container),
    )
    return Built(built, settings.bentoml_home, artifact)


@pytest.fixture(scope="session")
def fraud_v1(host_a: Settings, artifacts: dict[str, Artifact]) -> Built:
    return _build(host_a, "fraud:1", artifacts["fraud-v1"])


@pytest.fixture(scope="session")
def fraud_v2(host_a: Settings, artifacts: dict[str, Artifact]) -> Built:
    return _build(host_a, "fraud:2", artifacts["fraud-v2"])


@pytest.fixture(scope="session")
def chargeback_v1(host_a: Settings, artifacts: dict[str, Artifact]) -> Built:
    return _build(
        host_a, "chargeback:1", artifacts["chargeback-v1"], max_body_bytes=4096, max_batch_rows=16
    )


@pytest.fixture(scope="session")
def broken_canary(
    host_a: Settings, artifacts: dict[str, Artifact], tmp_path_factory: pytest.TempPathFactory
) -> Built:
    """fraud:3: fraud:1's unchanged ONNX model (so it builds) with a canary record it does
    not score: meta.json claims another canary score (a copy; the original is untouched)."""
    original = artifacts["fraud-v1"]
    copy = tmp_path_factory.mktemp("broken") / original.sha256
    shutil.copytree(original.directory, copy)
    meta = json.loads((copy / "meta.json").read_text())
    meta["reference_scores"][0] += 0.01
    meta["canary_served_score"] += 0.01
    (copy / "meta.json").write_text(json.dumps(meta))
    return _build(host_a, "fraud:3", load_artifact(copy))


@pytest.fixture(scope="session")
def tampered_model(host_a: Settings, artifacts: dict[str, Artifact]) -> Built:
    """fraud:4, whose model.onnx in the Bento's model store is changed after the build."""
    built = _build(host_a, "fraud:4", artifacts["fraud-v2"])
    stored = model_path(built.home, built.tag) / "model.onnx"
    stored.write_bytes(stored.read_bytes() + b"\0")
    return built
