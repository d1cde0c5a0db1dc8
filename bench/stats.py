"""Percentiles and summaries shared by the benchmark parts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50.0, 99.0, 99.9)


def percentiles_ms(latencies_us: Sequence[float]) -> dict[str, float]:
    """p50/p99/p99.9 (and mean, max) in milliseconds; NaN for no samples."""
    if not latencies_us:
        nan = float("nan")
        return {"p50_ms": nan, "p99_ms": nan, "p99_9_ms": nan, "mean_ms": nan, "max_ms": nan}
    values = np.asarray(latencies_us, dtype=np.float64) / 1000.0
    p50, p99, p999 = np.percentile(values, PERCENTILES)
    return {
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "p99_9_ms": float(p999),
        "mean_ms": float(values.mean()),
        "max_ms": float(values.max()),
    }


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when the denominator is 0 or NaN."""
    if not denominator or denominator != denominator:
        return float("nan")
    return numerator / denominator
