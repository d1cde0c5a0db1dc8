"""Model import: an XGBoost model file becomes a governed ONNX artifact.

An artifact is a content-addressed directory ``<artifacts>/<sha256 of model.onnx>/`` holding
``model.onnx`` (what is served), the original XGBoost file (what parity is checked against)
and ``meta.json``: feature schema, decision threshold, reference rows with their XGBoost
scores, and the canary row the health check sends. Parity (max |ONNX - XGBoost| on the
reference rows) must be within :data:`PARITY_TOLERANCE` or the import is refused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bentogate.data import Dataset
from bentogate.errors import ModelImportError

PARITY_TOLERANCE = 1e-5
ONNX_FILE = "model.onnx"
META_FILE = "meta.json"
_SOURCE_PREFIX = "source"


@dataclass(frozen=True)
class Artifact:
    """An imported model on disk, addressed by the sha256 of its ONNX bytes."""

    directory: Path
    sha256: str
    feature_names: tuple[str, ...]
    threshold: float
    reference_rows: np.ndarray
    reference_scores: np.ndarray
    canary_served_score: float
    parity_max_abs_diff: float

    @property
    def onnx_path(self) -> Path:
        return self.directory / ONNX_FILE

    @property
    def source_path(self) -> Path:
        return next(self.directory.glob(f"{_SOURCE_PREFIX}.*"))

    @property
    def canary_row(self) -> list[float]:
        return [float(v) for v in self.reference_rows[0]]

    @property
    def canary_score(self) -> float:
        return float(self.reference_scores[0])


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_booster(model_file: Path) -> Any:
    import xgboost as xgb

    if model_file.suffix not in (".json", ".ubj"):
        raise ModelImportError(f"{model_file}: expected an XGBoost .json or .ubj model file")
    try:
        return xgb.Booster(model_file=str(model_file))
    except (xgb.core.XGBoostError, OSError) as exc:
        raise ModelImportError(f"{model_file}: not a readable XGBoost model ({exc})") from exc


def _xgboost_scores(booster: Any, rows: np.ndarray) -> np.ndarray:
    return np.asarray(booster.inplace_predict(rows, validate_features=False), dtype=np.float64)


def _to_onnx(booster: Any, n_features: int) -> bytes:
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    # onnxmltools only understands the positional names f0..fn; the schema is kept apart.
    unnamed = booster.copy()
    unnamed.feature_names = None
    unnamed.feature_types = None
    try:
        model = convert_xgboost(
            unnamed,
            initial_types=[("features", FloatTensorType([None, n_features]))],
            target_opset=15,
        )
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        raise ModelImportError(f"ONNX export failed: {exc}") from exc
    return bytes(model.SerializeToString())


def onnx_scores(onnx_path: Path, rows: np.ndarray) -> np.ndarray:
    """Fraud probabilities of ``rows`` scored by onnxruntime (class-1 column)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outputs = session.run(["probabilities"], {"features": np.asarray(rows, dtype=np.float32)})
    return np.asarray(outputs[0][:, 1], dtype=np.float64)


def _schema(booster: Any, reference: Dataset) -> tuple[str, ...]:
    names = tuple(booster.feature_names or reference.feature_names)
    if booster.num_features() != len(names):
        raise ModelImportError(
            f"model expects {booster.num_features()} features, schema names {len(names)}"
        )
    if tuple(reference.feature_names) != names:
        missing = sorted(set(names) - set(reference.feature_names))
        raise ModelImportError(
            "reference data columns differ from the model's features"
            + (f" (missing: {', '.join(missing[:5])})" if missing else " (order differs)")
        )
    return names


def import_xgboost(
    model_file: Path,
    reference: Dataset,
    artifacts_dir: Path,
    *,
    threshold: float = 0.5,
    n_reference: int = 64,
) -> Artifact:
    """Export ``model_file`` to ONNX, check parity on reference rows, store the artifact.

    Returns the stored :class:`Artifact`. Raises :class:`ModelImportError` if the file is not
    an XGBoost model, the schema does not match the reference data, or parity fails.
    """
    booster = _load_booster(model_file)
    names = _schema(booster, reference)
    rows = np.asarray(reference.features[:n_reference], dtype=np.float32)
    if len(rows) == 0:
        raise ModelImportError("reference data has no rows")
    expected = _xgboost_scores(booster, rows)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=artifacts_dir, prefix=".import-"))
    try:
        (staging / ONNX_FILE).write_bytes(_to_onnx(booster, len(names)))
        served = onnx_scores(staging / ONNX_FILE, rows)
        delta = float(np.max(np.abs(served - expected)))
        if delta > PARITY_TOLERANCE:
            raise ModelImportError(
                f"parity failed: max |ONNX - XGBoost| = {delta:.3g} > {PARITY_TOLERANCE:g}"
            )
        shutil.copyfile(model_file, staging / f"{_SOURCE_PREFIX}{model_file.suffix}")
        meta = {
            "feature_names": list(names),
            "threshold": threshold,
            "reference_rows": rows.tolist(),
            "reference_scores": expected.tolist(),
            # What the served model answers for the canary, to the bit (same onnxruntime):
            # the health check compares it as a string.
            "canary_served_score": float(np.float32(served[0])),
            "parity_max_abs_diff": delta,
        }
        (staging / META_FILE).write_text(json.dumps(meta))
        sha = sha256_file(staging / ONNX_FILE)
        final = artifacts_dir / sha
        if final.exists():
            shutil.rmtree(staging)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_artifact(final)


def load_artifact(directory: Path) -> Artifact:
    """Read an artifact directory back. Raises :class:`ModelImportError` if it is incomplete."""
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelImportError(f"{directory}: not a bentogate artifact ({exc})") from exc
    return Artifact(
        directory=directory,
        sha256=directory.name,
        feature_names=tuple(meta["feature_names"]),
        threshold=float(meta["threshold"]),
        reference_rows=np.asarray(meta["reference_rows"], dtype=np.float32),
        reference_scores=np.asarray(meta["reference_scores"], dtype=np.float64),
        canary_served_score=float(meta["canary_served_score"]),
        parity_max_abs_diff=float(meta["parity_max_abs_diff"]),
    )


def check_parity(artifact: Artifact) -> dict[str, float | bool]:
    """Re-score the reference rows with both runtimes; the figures for the validation record."""
    booster = _load_booster(artifact.source_path)
    delta = float(
        np.max(
            np.abs(
                onnx_scores(artifact.onnx_path, artifact.reference_rows)
                - _xgboost_scores(booster, artifact.reference_rows)
            )
        )
    )
    return {
        "max_abs_diff": delta,
        "tolerance": PARITY_TOLERANCE,
        "passed": delta <= PARITY_TOLERANCE,
    }


def quality(artifact: Artifact, holdout: Dataset) -> dict[str, float]:
    """AUC, recall and precision at the artifact's threshold on a labelled holdout."""
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    if tuple(holdout.feature_names) != artifact.feature_names:
        raise ModelImportError("holdout columns differ from the model's features")
    scores = onnx_scores(artifact.onnx_path, holdout.features)
    predicted = (scores >= artifact.threshold).astype(int)
    return {
        "auc": float(roc_auc_score(holdout.labels, scores)),
        "recall": float(recall_score(holdout.labels, predicted, zero_division=0)),
        "precision": float(precision_score(holdout.labels, predicted, zero_division=0)),
        "rows": float(len(holdout.labels)),
    }
