"""The gate's verdict: pure logic over a policy, the measured figures and their evidence.

* ``fail``: trusted evidence breaks a limit, named with the measured and the allowed value:
  a regression whose whole interval lies beyond the allowed one (server-side figures stay
  trustworthy however busy the generator was), the error ratio, a candidate that could not
  carry the rate with enough users, or a client latency limit whose whole interval lies
  beyond it while the generator kept its schedule and the service's own time does not
  clear it.
* a client latency limit beyond while the candidate's own server time at that quantile is
  certainly within it (client and server disagree badly) is not the candidate's proven
  fault: the time went outside it (a host stall on the service's core, the proxy, or
  queueing in front of it). It is named and undecided (inconclusive, extendable), never
  a pass.
* so is a client latency limit the candidate is beyond while live, served in the same run
  at the same moments, is beyond it too: a host slow for the whole window (which host-stall
  detection, relative to the run's own median, cannot see) or a limit the version in
  production does not meet either; whether the candidate is slower than live is the
  regressions' question, and they still fail it.
* ``inconclusive``: no limit is clearly broken, but the run cannot clear the candidate: the
  generator's CPU was saturated, a target got fewer than ``min_samples`` requests or fell
  short of the rate with too few users to blame it, the host stalled too often, or an
  interval straddles its limit. The last two can be decided by more data (the stalls are a
  share of the whole window, so a passing burst of noise is outlasted): ``extendable``.
  Never a pass, even if every estimate is within its limit.
* ``pass``: every interval lies within its limit; ``reasons`` is empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .evidence import BEYOND, CANDIDATE, LIVE, UNSURE, WITHIN, Evidence, ms_text
from .figures import TargetFigures
from .policy import GatePolicy
from .samples import HostCPU

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
VERDICTS = (PASS, FAIL, INCONCLUSIVE)
MAX_GENERATOR_CPU = 0.9  # Locust's own cpu_warning threshold, as a fraction of one core
MIN_RATE_FRACTION = 0.95
# Failures without an answer from the target (locustfile.KINDS): a saturated generator can
# cause these itself; a status, a wrong version or a bad body is the target's own answer.
_TRANSPORT_KINDS = frozenset({"connection", "unfinished"})


@dataclass(frozen=True)
class Verdict:
    """``verdict`` with its ``reasons``; ``extendable``: inconclusive only because some
    interval straddles its limit or the host stalled, so a longer run may decide it."""

    verdict: str
    reasons: tuple[str, ...] = ()
    extendable: bool = False


def evaluate(
    policy: GatePolicy,
    figures: dict[str, TargetFigures],
    evidence: Evidence,
    generator_cpu: float,
    *,
    host: HostCPU | None = None,
    max_cpu: float = MAX_GENERATOR_CPU,
    min_rate_fraction: float = MIN_RATE_FRACTION,
) -> Verdict:
    """The verdict on ``candidate`` (and ``live`` if any) from one run's figures and evidence.

    ``generator_cpu`` is the busiest Locust process's CPU over the window in cores (nan if
    unknown, which is not held against the run); ``host``, what the host's CPUs did
    meanwhile, is named where the verdict blames the host (it decides nothing). Raises
    KeyError without a candidate.
    """
    described = host.describe() if host is not None else ""
    busy_host = f": {described}" if described else ""
    cand = figures[CANDIDATE]
    doubts: list[str] = []  # the measurement cannot be trusted
    client_doubts: list[str] = []  # ... what clients see cannot (the generator's share)
    violations: list[str] = []
    if generator_cpu >= max_cpu:
        client_doubts.append(f"generator CPU {generator_cpu:.0%} of a core >= {max_cpu:.0%}")
    for name, fig in figures.items():
        if fig.samples < policy.min_samples:
            doubts.append(f"{name}: {fig.samples} samples < {policy.min_samples}")
        shortfall = _rate_shortfall(name, fig, policy, min_rate_fraction)
        if shortfall and name == CANDIDATE and _users_suffice(policy, len(figures)):
            violations.append(f"{shortfall} (responses too slow for {policy.users} users)")
        elif shortfall:
            client_doubts.append(shortfall)
    noise: list[str] = []  # the host was too busy: a longer window may outlast it
    if evidence.stall_fraction > policy.max_stall_fraction:
        noise.append(
            f"host stalls (the generator itself late, or both targets slow at once) in "
            f"{evidence.stall_fraction:.0%} of the window > {policy.max_stall_fraction:.0%} "
            f"(a busy machine, not the candidate{busy_host})"
        )
    if cand.error_ratio > policy.max_error_ratio:
        kinds = ", ".join(f"{kind}: {n}" for kind, n in cand.errors.items())
        text = f"error ratio {cand.error_ratio:.2%} > {policy.max_error_ratio:.2%} ({kinds})"
        if client_doubts and set(cand.errors) <= _TRANSPORT_KINDS:
            # No answer came (no connection, not finished) while the generator itself could
            # not hold the rate: its own stalls may be why. Never a pass; not a verdict.
            client_doubts.append(f"{text}: no answer while the generator was saturated")
        else:
            violations.append(text)
    live = figures.get(LIVE)
    if live is not None and math.isnan(live.p50_ms):
        doubts.append("live: no successful request to compare against")
    unsure = []
    own = {c.name.removeprefix("server "): c for c in evidence.server_limits}
    in_live = {c.name.removeprefix("live client "): c for c in evidence.live_limits}
    for comparison in evidence.regressions + evidence.limits:
        client_side = not comparison.name.startswith("server")
        label = comparison.name.removeprefix("client ")
        served = own.get(label) if client_side else None
        live_too = in_live.get(label) if client_side else None
        if comparison.decision == BEYOND and served is not None and served.decision == WITHIN:
            unsure.append(
                f"{comparison.describe()}, but the server's own {label} is at most "
                f"{ms_text(served.measured.high)} ms: the time went outside the service "
                f"(a busy host, the proxy, or queueing in front of it{busy_host}): not decided"
            )
        elif comparison.decision == BEYOND and live_too is not None and live_too.decision == BEYOND:
            m = live_too.measured
            unsure.append(
                f"{comparison.describe()}, but live's {label} in the same run is beyond it too "
                f"({ms_text(m.estimate)} ms, interval {ms_text(m.low)}-{ms_text(m.high)} ms): "
                f"not the candidate's doing but a slow host{f' ({described})' if described else ''}"
                " or a limit production does not meet either: not decided"
            )
        elif comparison.decision == BEYOND and not (client_side and client_doubts):
            violations.append(comparison.describe())
        elif comparison.decision == UNSURE or comparison.decision == BEYOND:
            unsure.append(f"{comparison.describe()}: not decided")
    doubts = client_doubts + doubts
    if violations:
        return Verdict(FAIL, tuple(violations))
    if doubts or noise or unsure:
        return Verdict(INCONCLUSIVE, tuple(doubts + noise + unsure), extendable=not doubts)
    return Verdict(PASS)


def _rate_shortfall(
    name: str, fig: TargetFigures, policy: GatePolicy, min_fraction: float
) -> str | None:
    if fig.achieved_rate >= min_fraction * policy.rate:
        return None
    return (
        f"{name}: achieved rate {fig.achieved_rate:.1f} req/s < "
        f"{min_fraction:.0%} of {policy.rate:g} req/s"
    )


def _users_suffice(policy: GatePolicy, targets: int) -> bool:
    """Whether users can carry every target's rate at the p99 limit (Little's law).

    Then a shortfall with an unsaturated generator means responses took longer than
    ``users / (targets x rate)``, i.e. beyond the limit: the target's fault, not the
    generator's.
    """
    return policy.users / (policy.rate * targets) * 1e3 >= policy.p99_ms
