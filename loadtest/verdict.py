"""The gate's verdict: pure logic over a policy and the measured figures.

* ``inconclusive``: the measurement cannot be trusted — the generator's CPU was saturated,
  a target got fewer than ``min_samples`` requests, the live target (the yardstick) could
  not be measured, or a target was not driven at >= 95 % of the rate while the generator
  had too few users to blame the target for it. Never a pass, even if every limit held.
* ``fail``: a trusted measurement violates a limit; every violated limit is named with the
  measured and the allowed value.
* ``pass``: otherwise; ``reasons`` is empty.
"""

from __future__ import annotations

import math

from .figures import TargetFigures
from .policy import GatePolicy

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
VERDICTS = (PASS, FAIL, INCONCLUSIVE)
MAX_GENERATOR_CPU = 0.9  # Locust's own cpu_warning threshold, as a fraction of one core
MIN_RATE_FRACTION = 0.95
CANDIDATE, LIVE = "candidate", "live"


def evaluate(
    policy: GatePolicy,
    figures: dict[str, TargetFigures],
    generator_cpu: float,
    *,
    max_cpu: float = MAX_GENERATOR_CPU,
    min_rate_fraction: float = MIN_RATE_FRACTION,
) -> tuple[str, tuple[str, ...]]:
    """Return ``(verdict, reasons)`` for the figures of ``candidate`` (and ``live`` if any).

    ``generator_cpu`` is the Locust process's CPU over the measured window in cores (nan if
    unknown, which is not held against the run). Raises KeyError without a candidate.
    """
    cand = figures[CANDIDATE]
    live = figures.get(LIVE)
    doubts: list[str] = []
    violations: list[str] = []
    if generator_cpu >= max_cpu:
        doubts.append(f"generator CPU {generator_cpu:.0%} of a core >= {max_cpu:.0%}")
    for name, fig in figures.items():
        if fig.samples < policy.min_samples:
            doubts.append(f"{name}: {fig.samples} samples < {policy.min_samples}")
        rate_problem = _rate_shortfall(name, fig, policy, min_rate_fraction)
        if rate_problem and name == CANDIDATE and _users_suffice(policy):
            violations.append(f"{rate_problem} (responses too slow for {policy.users} users)")
        elif rate_problem:
            doubts.append(rate_problem)
    violations.extend(limit_violations(policy, cand))
    if live is not None:
        if math.isnan(live.p99_ms):
            doubts.append("live: no successful request to compare against")
        else:
            violations.extend(regression_violations(policy, cand, live))
    if doubts:
        return INCONCLUSIVE, tuple(doubts + violations)
    if violations:
        return FAIL, tuple(violations)
    return PASS, ()


def limit_violations(policy: GatePolicy, fig: TargetFigures) -> list[str]:
    """Absolute limits: p50/p95/p99 and the error ratio (with errors by kind)."""
    out = []
    for label, measured, allowed in (
        ("p50", fig.p50_ms, policy.p50_ms),
        ("p95", fig.p95_ms, policy.p95_ms),
        ("p99", fig.p99_ms, policy.p99_ms),
    ):
        if measured > allowed:  # nan (no successful request) is left to the error ratio
            out.append(f"{label} {measured:.1f} ms > {allowed:.1f} ms")
    if fig.error_ratio > policy.max_error_ratio:
        kinds = ", ".join(f"{kind}: {n}" for kind, n in fig.errors.items())
        out.append(f"error ratio {fig.error_ratio:.2%} > {policy.max_error_ratio:.2%} ({kinds})")
    return out


def regression_violations(
    policy: GatePolicy, cand: TargetFigures, live: TargetFigures
) -> list[str]:
    """Candidate p99 against live p99 from the same run."""
    allowed = max(policy.max_regression * live.p99_ms, live.p99_ms + policy.regression_floor_ms)
    if cand.p99_ms > allowed:
        return [
            f"p99 regression {cand.p99_ms:.1f} ms > {allowed:.1f} ms "
            f"(max of {policy.max_regression:g} x live {live.p99_ms:.1f} ms, "
            f"live + {policy.regression_floor_ms:g} ms)"
        ]
    return []


def _rate_shortfall(
    name: str, fig: TargetFigures, policy: GatePolicy, min_fraction: float
) -> str | None:
    if fig.achieved_rate >= min_fraction * policy.rate:
        return None
    return (
        f"{name}: achieved rate {fig.achieved_rate:.1f} req/s < "
        f"{min_fraction:.0%} of {policy.rate:g} req/s"
    )


def _users_suffice(policy: GatePolicy) -> bool:
    """Whether users can carry the rate at the p99 limit (Little's law).

    Then a shortfall with an unsaturated generator means responses took longer than
    ``users / rate``, i.e. beyond the limit: the target's fault, not the generator's.
    """
    return policy.users / policy.rate * 1e3 >= policy.p99_ms
