"""Capacity search: the highest rate at which a target still passes the gate's policy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bentogate.errors import ConfigError

from .policy import GatePolicy, Target
from .result import GateResult
from .runner import run_gate
from .search import highest_passing_rate

GateRun = Callable[..., GateResult]


@dataclass(frozen=True)
class CapacityResult:
    """``rate``: highest passing rate found (0.0 if none passed); ``limited_by``: "target"
    (a higher rate failed), "generator" (a higher rate was inconclusive: the true capacity
    may be higher) or "ceiling" (``max_rate`` passed); ``runs``: (rate, verdict, p99 ms)."""

    rate: float
    limited_by: str
    runs: tuple[tuple[float, str, float], ...]


def find_capacity(
    target: Target,
    rows: list[list[float]],
    policy: GatePolicy,
    out_dir: Path,
    *,
    max_rate: float,
    resolution: float = 0.1,
    progress: Callable[[str], None] | None = None,
    gate: GateRun = run_gate,
) -> CapacityResult:
    """The highest rate the target passes the policy at (:func:`highest_passing_rate`:
    double from ``policy.rate`` until a run does not pass or ``max_rate`` passes, then
    bisect until the bracket is narrower than ``resolution``, relative).

    Each step is a full ``run_gate`` (warm-up + duration) under ``out_dir/rate-<r>``.
    Raises ConfigError for a bad ``max_rate``/``resolution``; LoadTestError from the runs.
    """
    if max_rate < policy.rate or not 0 < resolution < 1:
        raise ConfigError("capacity search needs max_rate >= policy.rate and 0 < resolution < 1")
    runs: list[tuple[float, str, float]] = []

    def verdict_at(rate: float) -> str:
        if progress is not None:  # a step while it runs, its verdict a detail of it
            progress(f"capacity: {rate:g} req/s for {policy.duration_s:g} s")
        result = gate(target, rows, dataclasses.replace(policy, rate=rate),
                      out_dir / f"rate-{rate:g}")  # fmt: skip
        p99 = result.figures["candidate"].p99_ms
        runs.append((rate, result.verdict, p99))
        if progress is not None:
            progress(f"  {rate:g} req/s -> {result.verdict} (p99 {p99:.1f} ms)")
        return result.verdict

    rate, limited_by = highest_passing_rate(
        verdict_at, start_rate=policy.rate, max_rate=max_rate, resolution=resolution
    )
    return CapacityResult(rate, limited_by, tuple(runs))
