"""The benchmark's models: one synthetic data set, two 300-tree XGBoost versions, the
ONNX export bentogate serves, and the seed's "before" (a joblib-pickled scikit-learn-API
model), all built from bentogate's own code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bentogate.data import Dataset, make_transactions, read_csv, train_xgboost, write_csv
from bentogate.modelimport import import_xgboost

TREES = 300
DEPTH = 6
ROWS = 8_000
SEND_ROWS = 256


@dataclass(frozen=True)
class ModelFiles:
    """v1 and v2 (XGBoost JSON; v2 ranks at least as well as v1), the holdout CSV, the ONNX
    export of v1 and a few hundred holdout rows to send."""

    v1: Path
    v2: Path
    holdout: Path
    onnx: Path
    rows: np.ndarray


def _auc(booster: Any, data: Dataset) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(data.labels, booster.inplace_predict(data.features)))


def train(directory: Path, *, seed: int = 7) -> ModelFiles:
    """Train both versions into ``directory`` (about 10 s each on 2 cores)."""
    directory.mkdir(parents=True, exist_ok=True)
    train_set, holdout = make_transactions(ROWS, seed=seed).split(0.7)
    boosters = [
        train_xgboost(train_set, n_estimators=TREES, max_depth=DEPTH, seed=s) for s in (0, 1)
    ]
    # Validation refuses a v2 that ranks fraud worse than production: v2 is the better one.
    boosters.sort(key=lambda b: _auc(b, holdout))
    paths = []
    for name, booster in zip(("v1", "v2"), boosters, strict=True):
        path = directory / f"fraud_{name}.json"
        booster.save_model(str(path))  # type: ignore[attr-defined]
        paths.append(path)
    write_csv(holdout, directory / "holdout.csv")
    import_xgboost(paths[0], holdout, directory / "artifacts")
    return load(directory)


def load(directory: Path) -> ModelFiles:
    """The files :func:`train` wrote into ``directory``."""
    artifacts = [p for p in (directory / "artifacts").iterdir() if not p.name.startswith(".")]
    if len(artifacts) != 1:
        raise FileNotFoundError(f"expected one imported artifact under {directory}")
    holdout = directory / "holdout.csv"
    return ModelFiles(
        v1=directory / "fraud_v1.json",
        v2=directory / "fraud_v2.json",
        holdout=holdout,
        onnx=artifacts[0] / "model.onnx",
        rows=read_csv(holdout).features[:SEND_ROWS],
    )


def sklearn_pickle(model_file: Path, out: Path) -> Path:
    """The seed's "before": the model behind scikit-learn's API, pickled with joblib."""
    import joblib
    from xgboost import XGBClassifier

    model = XGBClassifier(n_jobs=1)
    model.load_model(str(model_file))
    joblib.dump(model, out)
    return out


def serving_session(onnx: Path) -> Any:
    """An onnxruntime session with the service's own options (service.py, ``Scorer``): one
    thread, sequential, every graph optimization; what in-process timings should measure."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
