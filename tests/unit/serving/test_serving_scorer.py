"""The served model and its input contract, on a real ONNX artifact."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bentogate.modelimport import Artifact
from serving import InputError, Scorer


@pytest.fixture(scope="module")
def scorer(artifact: Artifact) -> Scorer:
    return Scorer(artifact.directory, name="fraud", version="1", expected_sha256=artifact.sha256)


def test_canary_scores_as_recorded(scorer: Scorer, artifact: Artifact) -> None:
    assert scorer.canary_ok()
    rows = artifact.reference_rows[:5]
    assert np.allclose(scorer.score_rows(rows), artifact.reference_scores[:5], atol=1e-5)


@pytest.mark.parametrize("size", [1, 2, 64, 1024])
def test_a_batch_scores_each_row_as_one_row_requests_do(
    scorer: Scorer, artifact: Artifact, size: int
) -> None:
    """The batch session (every core) and the one-row session (one thread) are one model:
    each row of a batch scores what /predict answers for it."""
    rows = np.resize(np.asarray(artifact.reference_rows, dtype=np.float32), (size, 220))
    batch = scorer.score_rows(rows)
    one_by_one = [scorer.score_one(row.tolist()) for row in rows]
    assert batch.shape == (size,)
    assert np.allclose(batch, one_by_one, rtol=0, atol=1e-6)


def test_named_and_ordered_inputs_score_the_same(scorer: Scorer, artifact: Artifact) -> None:
    row = artifact.canary_row
    named = dict(zip(artifact.feature_names, row, strict=True))
    assert scorer.row(named).tolist() == row
    assert scorer.row(list(reversed(row))).tolist() != row


def test_values_near_float32s_limit_are_scored_not_refused(scorer: Scorer) -> None:
    """Each value within float32's range although their squares add up past the fast
    check's bound: the per-value check, not the sum, decides."""
    big = float(np.finfo(np.float32).max) * 0.9
    features = [big, -big, 3] + [0.0] * 217
    assert scorer.row(features).tolist() == features
    assert 0.0 <= scorer.score_one(scorer.row(features)) <= 1.0


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([1.0, 2.0], "expected 220 features, got 2"),
        ({"amount": 1.0}, "missing feature(s): amount_log"),
        ({"bogus": 1.0}, "unknown feature(s): bogus"),
        ("x", "expected a list or an object"),
        (["x"] + [0.0] * 219, "feature 0 (amount) must be a number, got a string"),
        ([None] + [0.0] * 219, "must be a number, got null"),
        ([True] + [0.0] * 219, "must be a number, got a boolean"),
        ([math.nan] + [0.0] * 219, "feature 0 (amount) must be a finite number"),
        ([0.0, math.inf] + [0.0] * 218, "feature 1 (amount_log) must be a finite number"),
        ([1e39] + [0.0] * 219, "must be a finite number"),
    ],
)
def test_bad_rows_are_refused_naming_the_problem(
    scorer: Scorer, features: Any, message: str
) -> None:
    with pytest.raises(InputError) as caught:
        scorer.row(features)
    assert message in str(caught.value)


def test_a_model_file_changed_after_approval_refuses_to_load(artifact: Artifact) -> None:
    with pytest.raises(RuntimeError, match="differs from the approved"):
        Scorer(artifact.directory, name="fraud", version="1", expected_sha256="0" * 64)


def test_a_model_scoring_unlike_its_record_is_not_ready(artifact: Artifact, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(artifact.onnx_path.read_bytes())
    meta = json.loads((artifact.directory / "meta.json").read_text())
    meta["reference_scores"][0] += 0.01
    (broken / "meta.json").write_text(json.dumps(meta))
    scorer = Scorer(broken, name="fraud", version="1", expected_sha256=artifact.sha256)
    assert not scorer.canary_ok()
