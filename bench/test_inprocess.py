"""In-process benchmarks (pytest-benchmark): one row and batches scored by onnxruntime,
XGBoost's native predictor and the seed's joblib-pickled scikit-learn-API model; the
service's own hot path; a request through BentoML's whole ASGI stack, without sockets.

Run ``pytest bench/test_inprocess.py``; see bench/README.md for the regression guard.
"""

from __future__ import annotations

from itertools import cycle
from types import ModuleType
from typing import Any

import numpy as np
import orjson
import pytest

from bench.asgi import AsgiDriver
from bench.batch import batches

BATCHES = (64, 1024)


def _turns(rows: np.ndarray, size: int) -> Any:
    """Batches of ``size`` rows in turn: each call scores other rows than the last (the
    same rows again and again are learnt by the branch predictor; bench/batch.py)."""
    return cycle(batches(rows, size)).__next__


@pytest.mark.benchmark(group="one row")
def test_one_row_onnxruntime(benchmark: Any, onnx_session: Any, rows: np.ndarray) -> None:
    row = rows[:1]
    name = onnx_session.get_inputs()[0].name
    score = benchmark(lambda: onnx_session.run(["probabilities"], {name: row})[0][0, 1])
    assert 0.0 <= score <= 1.0


@pytest.mark.benchmark(group="one row")
def test_one_row_xgboost(benchmark: Any, booster: Any, rows: np.ndarray) -> None:
    row = rows[:1]
    score = benchmark(lambda: booster.inplace_predict(row, validate_features=False)[0])
    assert 0.0 <= score <= 1.0


@pytest.mark.benchmark(group="one row")
def test_one_row_pickled_sklearn(benchmark: Any, pickled: Any, rows: np.ndarray) -> None:
    row = rows[:1]
    score = benchmark(lambda: pickled.predict_proba(row)[0, 1])
    assert 0.0 <= score <= 1.0


@pytest.mark.parametrize("size", BATCHES)
@pytest.mark.benchmark(group="batch")
def test_batch_onnxruntime(benchmark: Any, scorer: Any, rows: np.ndarray, size: int) -> None:
    """What /predict_batch runs on its checked rows: the service's Scorer.score_rows."""
    batch = _turns(rows, size)
    scores = benchmark(lambda: scorer.score_rows(batch()))
    assert scores.shape == (size,)


@pytest.mark.parametrize("size", BATCHES)
@pytest.mark.benchmark(group="batch")
def test_batch_xgboost(benchmark: Any, booster: Any, rows: np.ndarray, size: int) -> None:
    batch = _turns(rows, size)
    scores = benchmark(lambda: booster.inplace_predict(batch(), validate_features=False))
    assert scores.shape == (size,)


@pytest.mark.parametrize("size", BATCHES)
@pytest.mark.benchmark(group="batch")
def test_batch_pickled_sklearn(benchmark: Any, pickled: Any, rows: np.ndarray, size: int) -> None:
    batch = _turns(rows, size)
    scores = benchmark(lambda: pickled.predict_proba(batch())[:, 1])
    assert scores.shape == (size,)


@pytest.mark.benchmark(group="service")
def test_service_parse_check_score(benchmark: Any, scorer: Any, body: bytes) -> None:
    """What service.py does per /predict besides HTTP: parse, check every value, score."""
    if hasattr(scorer, "score_one"):
        one = scorer.score_one
    else:  # a service.py from before score_one (--bench-project-dir): what it did instead
        one = lambda row: float(scorer.score_rows(np.asarray([row], dtype=np.float32))[0])  # noqa: E731
    score = benchmark(lambda: one(scorer.row(orjson.loads(body)["features"])))
    assert 0.0 <= score <= 1.0


@pytest.mark.benchmark(group="service")
def test_service_request_through_bentoml_asgi(
    benchmark: Any, asgi: AsgiDriver, service: ModuleType
) -> None:
    """One POST /predict through BentoML's middleware stack and service.py (no sockets)."""
    assert benchmark(asgi.request) == 200
