"""The batches bench/batch.py scores: other rows each call, every one a whole batch."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from bench.batch import STRIDE, batches


def test_each_batch_starts_a_stride_after_the_last_and_wraps_around() -> None:
    rows = np.arange(2400 * 3, dtype=np.float32).reshape(2400, 3)
    taken = batches(rows, 1024)
    assert len(taken) == -(-2400 // STRIDE[1024])
    assert all(batch.shape == (1024, 3) and batch.flags["C_CONTIGUOUS"] for batch in taken)
    assert taken[1][0, 0] == rows[STRIDE[1024], 0]
    last = taken[-1]
    wrapped = (len(taken) - 1) * STRIDE[1024] + 1023 - 2400
    assert last[-1, 0] == rows[wrapped, 0]


def test_consecutive_batches_of_64_differ() -> None:
    rows = np.random.default_rng(1).random((2400, 4), dtype=np.float32)
    taken = batches(rows, 64)
    assert all(not np.array_equal(a, b) for a, b in pairwise(taken))
