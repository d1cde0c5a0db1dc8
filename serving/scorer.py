"""The model of one version, as served: its ONNX file checked against the approved sha256,
scored with onnxruntime, and its canary row, the check that it scores as recorded.

Two sessions of the one model file, each with the options its traffic needs: one row runs
on the calling thread alone (a thread pool costs more in hand-offs than a 10 µs run gains),
a batch on every core this process may use (onnxruntime splits the trees of each block of
rows over its threads; bench/README.md, "Batches"). A second session of this model costs
about 2-3 MiB resident.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from serving.contract import FeatureSchema


class Scorer(FeatureSchema):
    """An ONNX model plus its schema: validates inputs (:class:`FeatureSchema`) and scores
    them with onnxruntime.

    A schema by inheritance, not by a field: ``scorer.row`` stays one method lookup on the
    request path.
    """

    def __init__(self, model_dir: Path, *, name: str, version: str, expected_sha256: str) -> None:
        """Load ``model_dir``'s ``model.onnx`` and ``meta.json``; RuntimeError if the model
        is not the approved one (its sha256 differs from ``expected_sha256``)."""
        onnx_path = model_dir / "model.onnx"
        self.sha256 = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
        if self.sha256 != expected_sha256:
            raise RuntimeError(
                f"refusing to serve {name}:{version}: model sha256 {self.sha256[:12]} differs "
                f"from the approved {expected_sha256[:12]}"
            )
        meta = json.loads((model_dir / "meta.json").read_text())
        super().__init__(meta["feature_names"])
        self.name = name
        self.version = version
        self.threshold = float(meta["threshold"])
        self._canary = (meta["reference_rows"][0], float(meta["reference_scores"][0]))
        self._session = ort.InferenceSession(
            str(onnx_path), one_row_options(), providers=["CPUExecutionProvider"]
        )
        self._batch_session = ort.InferenceSession(
            str(onnx_path), batch_options(), providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._outputs = ["probabilities"]
        # The one-row input, refilled in place by every /predict (the event loop runs one
        # handler at a time, and scoring never awaits).
        self._one = np.zeros((1, len(self.feature_names)), dtype=np.float32)
        self._one_feed = {self._input: self._one}
        self._identity = {"model": name, "model_version": version}

    def canary_ok(self, tolerance: float = 1e-5) -> bool:
        """Score the recorded canary row with each session; True if both match the score
        recorded at import."""
        row, expected = self._canary
        one = self.score_one(row)
        batch = self.score_rows(np.asarray([row], dtype=np.float32))[0]
        return abs(one - expected) <= tolerance and abs(batch - expected) <= tolerance

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        """Fraud probabilities for a float32 matrix of rows in schema order (the batch
        session: every core this process may use)."""
        return self._batch_session.run(self._outputs, {self._input: rows})[0][:, 1]

    def score_one(self, row: np.ndarray | list[float]) -> float:
        """The fraud probability of one checked row (see :meth:`row`), without allocating
        the input: the row is copied into a buffer the session reads."""
        self._one[0] = row
        return float(self._session.run(self._outputs, self._one_feed)[0][0, 1])

    def last_row(self) -> bytes:
        """The row :meth:`score_one` scored last, as the float32 bytes the model read."""
        return self._one.tobytes()

    def identity(self) -> dict[str, Any]:
        """``model`` and ``model_version`` of every answer (one dict, spread into each)."""
        return self._identity

    def describe(self) -> dict[str, Any]:
        """What ``GET /model`` answers: name, version, sha256, threshold, feature names."""
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "threshold": self.threshold,
            "feature_names": self.feature_names,
        }


def one_row_options() -> ort.SessionOptions:
    """The one-row session's options: one thread, the caller's."""
    return _options(threads=1)


def batch_options() -> ort.SessionOptions:
    """The batch session's options: one thread per core this process may run on."""
    return _options(threads=len(os.sched_getaffinity(0)))


def _options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads sleep rather than spin: on a host whose cores also run HAProxy and
    # the other replicas, a spinning pool takes their CPU between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
