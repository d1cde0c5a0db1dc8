"""Samples files in the locustfile's format, for the loadtest unit tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ["ok", "status", "connection", "wrong_version", "bad_body", "unfinished"]
# intended, lag, latency, status, kind, target[, server time (s); nan when left out
# [, the generator's own lateness (s); 0 when left out]]
Row = tuple[float, ...]
NAN = float("nan")


def write_samples(path: Path, rows: Sequence[Row], **meta: Any) -> Path:
    """Write one ``samples-*.npz`` exactly as loadtest/locustfile.py does."""
    full = {
        "format": 4, "start": 1000.0, "rate": 100.0, "warmup_s": 1.0, "duration_s": 10.0,
        "offset": 0, "stride": 1, "targets": ["candidate"], "kinds": KINDS,
        "scheduled": [1000], "cpu": [[0.0, 0.0], [11.0, 2.2]], "cpu_warnings": 0, "users": 16,
        "host": [[0.0, 0.0, 0.0, 0.0], [11.0, 11.0, 2.2, 22.0]],
        **meta,
    }  # fmt: skip
    full_rows = [tuple(r) + (NAN, 0.0)[len(r) - 6 :] for r in rows]
    cols = list(zip(*full_rows, strict=True)) if rows else [[]] * 8
    np.savez(
        path,
        meta=np.array(json.dumps(full)),
        intended=np.array(cols[0], dtype=np.float64),
        lag=np.array(cols[1], dtype=np.float32),
        late=np.array(cols[7], dtype=np.float32),
        latency=np.array(cols[2], dtype=np.float32),
        server=np.array(cols[6], dtype=np.float32),
        status=np.array(cols[3], dtype=np.int16),
        kind=np.array(cols[4], dtype=np.int8),
        target=np.array(cols[5], dtype=np.int8),
    )
    return path


def uniform_run(n: int = 1000, target: int = 0, warmup_rows: int = 50) -> list[Row]:
    """n measured ok requests with latencies 1..n ms in shuffled order, plus warm-up rows."""
    rng = np.random.default_rng(7)
    lat = rng.permutation(np.arange(1, n + 1)) / 1e3
    rows: list[Row] = [(0.5, 0.0, 9.0, 200, 0, target)] * warmup_rows  # slow, excluded
    rows += [(1.0 + i * 10.0 / n, 0.0005, float(lat[i]), 200, 0, target) for i in range(n)]
    return rows
