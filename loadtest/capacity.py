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
from .verdict import INCONCLUSIVE, PASS

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
    """Double the rate from ``policy.rate`` until a run does not pass (or ``max_rate``),
    then bisect until the bracket is narrower than ``resolution`` (relative).

    Each step is a full ``run_gate`` (warm-up + duration) under ``out_dir/rate-<r>``.
    Raises ConfigError for a bad ``max_rate``/``resolution``; LoadTestError from the runs.
    """
    if max_rate < policy.rate or not 0 < resolution < 1:
        raise ConfigError("capacity search needs max_rate >= policy.rate and 0 < resolution < 1")
    runs: list[tuple[float, str, float]] = []

    def verdict_at(rate: float) -> str:
        result = gate(target, rows, dataclasses.replace(policy, rate=rate),
                      out_dir / f"rate-{rate:g}")  # fmt: skip
        runs.append((rate, result.verdict, result.figures["candidate"].p99_ms))
        if progress is not None:
            progress(f"capacity: {rate:g} req/s -> {result.verdict}")
        return result.verdict

    good, bad, bad_verdict = 0.0, None, PASS
    rate = policy.rate
    while True:
        verdict = verdict_at(rate)
        if verdict != PASS:
            bad, bad_verdict = rate, verdict
            break
        good = rate
        if rate >= max_rate:
            return CapacityResult(good, "ceiling", tuple(runs))
        rate = min(rate * 2, max_rate)
    while good > 0 and (bad - good) / good > resolution:
        mid = (good + bad) / 2
        verdict = verdict_at(mid)
        if verdict == PASS:
            good = mid
        else:
            bad, bad_verdict = mid, verdict
    limited_by = "generator" if bad_verdict == INCONCLUSIVE else "target"
    return CapacityResult(good, limited_by, tuple(runs))
