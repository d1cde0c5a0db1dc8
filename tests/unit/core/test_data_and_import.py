"""Synthetic data, XGBoost → ONNX import and parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bentogate.data import (
    FEATURE_NAMES,
    Dataset,
    make_transactions,
    read_csv,
    train_xgboost,
    write_csv,
)
from bentogate.errors import ModelImportError
from bentogate.modelimport import (
    PARITY_TOLERANCE,
    check_parity,
    import_xgboost,
    load_artifact,
    onnx_scores,
    quality,
    sha256_file,
)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return make_transactions(4000, seed=3)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory, data: Dataset) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.json"
    train_xgboost(data, n_estimators=30, max_depth=3).save_model(str(path))  # type: ignore[attr-defined]
    return path


def test_transactions_are_deterministic_named_and_rare(data: Dataset) -> None:
    again = make_transactions(4000, seed=3)
    assert np.array_equal(data.features, again.features)
    assert len(FEATURE_NAMES) >= 200 and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert 0.01 <= make_transactions(20000).fraud_rate <= 0.05
    assert not np.array_equal(make_transactions(100, seed=4).features, data.features[:100])


def test_csv_round_trip(tmp_path: Path, data: Dataset) -> None:
    small = Dataset(data.features[:20], data.labels[:20])
    back = read_csv(write_csv(small, tmp_path / "d.csv"))
    assert back.feature_names == small.feature_names
    assert np.array_equal(back.features, small.features) and np.array_equal(
        back.labels, small.labels
    )


def test_import_stores_a_content_addressed_artifact_with_parity(
    tmp_path: Path, model_file: Path, data: Dataset
) -> None:
    artifact = import_xgboost(model_file, data, tmp_path / "artifacts")
    assert artifact.directory.name == artifact.sha256 == sha256_file(artifact.onnx_path)
    assert artifact.feature_names == FEATURE_NAMES
    assert artifact.parity_max_abs_diff <= PARITY_TOLERANCE
    served = onnx_scores(artifact.onnx_path, artifact.reference_rows)
    assert np.max(np.abs(served - artifact.reference_scores)) <= PARITY_TOLERANCE
    assert artifact.canary_served_score == pytest.approx(float(np.float32(served[0])))
    assert load_artifact(artifact.directory).sha256 == artifact.sha256
    assert check_parity(artifact)["passed"] is True
    figures = quality(artifact, data)
    assert 0.5 < figures["auc"] <= 1.0


def test_import_refuses_a_file_that_is_not_a_model(tmp_path: Path, data: Dataset) -> None:
    bogus = tmp_path / "m.json"
    bogus.write_text('{"not": "a model"}')
    with pytest.raises(ModelImportError, match="not a readable XGBoost model"):
        import_xgboost(bogus, data, tmp_path / "a")
    with pytest.raises(ModelImportError, match=r"\.json or \.ubj"):
        import_xgboost(tmp_path / "m.pkl", data, tmp_path / "a")


def test_import_refuses_reference_data_with_other_columns(
    tmp_path: Path, model_file: Path, data: Dataset
) -> None:
    renamed = Dataset(data.features, data.labels, ("other", *data.feature_names[1:]))
    with pytest.raises(ModelImportError, match="missing: amount"):
        import_xgboost(model_file, renamed, tmp_path / "a")


def test_parity_failure_is_detected(tmp_path: Path, model_file: Path, data: Dataset) -> None:
    artifact = import_xgboost(model_file, data, tmp_path / "artifacts")
    other = tmp_path / "other.json"
    train_xgboost(data, n_estimators=5, max_depth=2).save_model(str(other))  # type: ignore[attr-defined]
    artifact.source_path.write_bytes(other.read_bytes())  # the ONNX no longer matches its source
    result = check_parity(artifact)
    assert result["passed"] is False and result["max_abs_diff"] > PARITY_TOLERANCE
