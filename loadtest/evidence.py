"""The evidence a verdict stands on: block-bootstrap intervals, paired in time, and host stalls.

Pure numpy over :class:`~bentogate.loadtest.samples.Samples`; no timing, so it is tested on
synthetic samples of known distributions.

Why this shape (the anchors: Kayenta compares canary with baseline per metric with a
statistical test; Iter8 and Argo Rollouts repeat measurements before they decide):

* **Paired in time.** Candidate and live take turns request by request (the locustfile), so
  every second of the window holds both. The window is cut into blocks of ``block_s``; a
  bootstrap replicate draws blocks with replacement and uses *the same draw for both
  targets*. A burst on the host slows both targets in the blocks it hits and moves both
  quantiles of a replicate together, so it widens the interval of their ratio far less
  than it moves either one; and resampling whole blocks respects that requests of one
  second are not independent (a per-request bootstrap would be too sure of itself).
* **Intervals, not points.** Every limit is judged on a percentile interval (one-sided
  ``confidence`` at each end) of ``measured - allowed``: *beyond* when the whole interval
  is above 0, *within* when it is all at or below 0, *unsure* otherwise (more blocks can
  decide it). One burst in one block of twenty shows in a replicate only when that block is
  drawn, so it cannot make a whole interval cross a limit.
* **Regressions on the server's own time.** The candidate's p50 and p99 server time
  (``Server-Timing``) against live's, each with its own allowance: precise to
  microseconds, free of the load generator's and the proxy's share. When a target sends
  no server time (a Bento built before it did), client latency stands in, and the
  evidence says so.
* **Host stalls are named.** A tenth of a second in which the generator itself sent a
  quarter of its requests late by over ``stall_factor`` x the median client latency, or in
  which a quarter or more of *both* targets' requests took that much longer than their own
  median, is the host's doing, not the candidate's: its requests are left out of every
  comparison and counted (:func:`host_stalls`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .policy import GatePolicy
from .samples import Samples

STALL_BIN_S = 0.1  # bursts seen on these machines last 20-70 ms: a bin is about one burst
MIN_BIN_REQUESTS = 3  # fewer requests of a target in a bin say nothing about a stall
STALL_SHARE = 0.25  # of a target's requests in a bin slow: the bin is slow for it
REPLICATES = 1000
SEED = 20181127  # fixed: the same samples always give the same intervals (and verdict)
SERVER_COVERAGE = 0.99  # share of successful requests with a server time to judge on it
CANDIDATE, LIVE = "candidate", "live"
WITHIN, BEYOND, UNSURE = "within", "beyond", "unsure"
# the absolute limits: judged on what clients see, and on the server's own time beside it
LIMIT_QUANTILES = (("p50", 0.50, "p50_ms"), ("p95", 0.95, "p95_ms"), ("p99", 0.99, "p99_ms"))
REGRESSION_QUANTILES = (("p50", 0.50, "max_regression"), ("p99", 0.99, "max_tail_regression"))
_CHUNK = 200  # replicates per vectorised step (bounds memory: chunk x requests weights)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval (``low`` <= ``high``)."""

    estimate: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float | None]:
        return {k: (v if math.isfinite(v) else None) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Comparison:
    """One limit judged: ``measured`` (ms, or a ratio for a regression: unit "x") against
    ``allowed`` (same unit), and the interval of ``excess`` = measured - allowed (ms) that
    decides: ``decision`` is "within", "beyond" or "unsure"; ``detail`` adds the figures
    behind a ratio."""

    name: str
    unit: str
    measured: Interval
    allowed: float
    excess: Interval
    decision: str
    detail: str = ""

    def describe(self) -> str:
        """E.g. ``server p50 vs live 1.52x (interval 1.47x-1.58x) > 1.25x (candidate 0.778
        ms, live 0.512 ms)`` or ``client p99 31.2 ms (interval 28.4-35.0 ms) > 25.0 ms``."""
        m, sign = self.measured, {WITHIN: "<=", BEYOND: ">", UNSURE: "vs"}[self.decision]
        if self.unit == "x":
            span = f"{m.low:.2f}x-{m.high:.2f}x"
            text = f"{self.name} {m.estimate:.2f}x (interval {span}) {sign} {self.allowed:.2f}x"
        else:
            span = f"{ms_text(m.low)}-{ms_text(m.high)} ms"
            text = (f"{self.name} {ms_text(m.estimate)} ms (interval {span}) {sign} "
                    f"{ms_text(self.allowed)} ms")  # fmt: skip
        return f"{text} ({self.detail})" if self.detail else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "unit": self.unit, "measured": self.measured.to_dict(),
            "allowed": self.allowed, "excess": self.excess.to_dict(), "decision": self.decision,
            "detail": self.detail, "text": self.describe(),
        }  # fmt: skip


def ms_text(value: float) -> str:
    """Milliseconds to the precision that matters: microseconds below 1 ms."""
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.1f}"


@dataclass(frozen=True)
class Evidence:
    """Everything the verdict weighs beyond plain counts.

    ``basis``: what regressions are judged on ("server", "client", or "" without live);
    ``blocks``: bootstrap blocks in the window; ``stalls``: stalled bins as (start, end)
    seconds of the run; ``stall_fraction``: their share of the window; ``limits``: client
    latency limits of the candidate; ``server_limits``: the same limits on the candidate's
    own server time (empty when it sends none), which tells whether a client figure beyond
    its limit was spent in the service; ``live_limits``: the same client limits on live in
    the same run (empty without live), which tells whether a limit the candidate is beyond
    held for the version in production at the same moments; ``regressions``: candidate vs
    live.
    """

    basis: str
    blocks: int
    stalls: tuple[tuple[float, float], ...]
    stall_fraction: float
    limits: tuple[Comparison, ...]
    regressions: tuple[Comparison, ...]
    server_limits: tuple[Comparison, ...] = ()
    live_limits: tuple[Comparison, ...] = ()

    @property
    def comparisons(self) -> tuple[Comparison, ...]:
        """Every limit judged, as a report lists them."""
        return self.regressions + self.limits + self.server_limits + self.live_limits

    def to_dict(self) -> dict[str, Any]:
        return {
            "basis": self.basis, "blocks": self.blocks,
            "stalls": [list(s) for s in self.stalls], "stall_fraction": self.stall_fraction,
            "limits": [c.to_dict() for c in self.limits],
            "regressions": [c.to_dict() for c in self.regressions],
            "server_limits": [c.to_dict() for c in self.server_limits],
            "live_limits": [c.to_dict() for c in self.live_limits],
        }  # fmt: skip


def gather(samples: Samples, policy: GatePolicy) -> Evidence:
    """The intervals and stalls of one run (or of runs laid end to end by
    :meth:`Samples.extended_by`) under ``policy``."""
    ok = samples.measured & (samples.kind == 0)
    stalled_bins = host_stalls(samples, ok, policy.stall_factor)
    kept = ok & ~np.isin(_bins(samples, STALL_BIN_S), stalled_bins)
    n_blocks = _bin_count(samples, policy.block_s)
    blocks = np.clip(_bins(samples, policy.block_s), 0, n_blocks - 1)
    rng = np.random.default_rng(SEED)
    draws = rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=REPLICATES)
    cand = kept & (samples.target == samples.target_index(CANDIDATE))
    client = samples.latency.astype(np.float64) * 1e3
    server = samples.server.astype(np.float64) * 1e3
    limits = _limits("client", client, cand, blocks, draws, policy)
    server_limits = (_limits("server", server, cand & np.isfinite(server), blocks, draws, policy)
                     if _covered(server, cand) else [])  # fmt: skip
    basis, regressions, live_limits = "", list[Comparison](), list[Comparison]()
    if LIVE in samples.targets:
        live = kept & (samples.target == samples.target_index(LIVE))
        live_limits = _limits("live client", client, live, blocks, draws, policy)
        if cand.any() and live.any():
            basis, regressions = _regressions(client, server, cand, live, blocks, draws, policy)
    return Evidence(
        basis=basis,
        blocks=n_blocks,
        stalls=tuple(
            (samples.warmup_s + b * STALL_BIN_S, samples.warmup_s + (b + 1) * STALL_BIN_S)
            for b in stalled_bins.tolist()
        ),
        stall_fraction=len(stalled_bins) / _bin_count(samples, STALL_BIN_S),
        limits=tuple(limits),
        regressions=tuple(regressions),
        server_limits=tuple(server_limits),
        live_limits=tuple(live_limits),
    )


def _limits(
    side: str,
    values: np.ndarray,
    mask: np.ndarray,
    blocks: np.ndarray,
    draws: np.ndarray,
    policy: GatePolicy,
) -> list[Comparison]:
    """The absolute latency limits (p50/p95/p99) judged on ``values[mask]`` (ms)."""
    if not mask.any():
        return []
    qs = [q for _, q, _ in LIMIT_QUANTILES]
    boot = bootstrap_quantiles(values[mask], blocks[mask], draws, qs)
    out = []
    for (label, q, field), reps in zip(LIMIT_QUANTILES, boot, strict=True):
        allowed = float(getattr(policy, field))
        point = quantile(values[mask], q)
        out.append(_compare(f"{side} {label}", "ms", point, reps, allowed, point - allowed,
                            reps - allowed, policy.alpha))  # fmt: skip
    return out


def _covered(server: np.ndarray, *masks: np.ndarray) -> bool:
    """Whether enough of each mask's requests carry a server time to judge on it."""
    return all(
        np.count_nonzero(np.isfinite(server[m])) >= SERVER_COVERAGE * np.count_nonzero(m)
        for m in masks
    )


def _regressions(
    client: np.ndarray,
    server: np.ndarray,
    cand: np.ndarray,
    live: np.ndarray,
    blocks: np.ndarray,
    draws: np.ndarray,
    policy: GatePolicy,
) -> tuple[str, list[Comparison]]:
    """Candidate vs live on server time (ms) where both send it, else on client time."""
    covered = _covered(server, cand, live)
    basis = "server" if covered else "client"
    values = server if covered else client
    cand, live = cand & np.isfinite(values), live & np.isfinite(values)
    qs = [q for _, q, _ in REGRESSION_QUANTILES]
    boot_c = bootstrap_quantiles(values[cand], blocks[cand], draws, qs)
    boot_l = bootstrap_quantiles(values[live], blocks[live], draws, qs)
    floor_ms = policy.regression_floor_us / 1e3
    out = []
    for (label, q, field), rc, rl in zip(REGRESSION_QUANTILES, boot_c, boot_l, strict=True):
        pc, pl = quantile(values[cand], q), quantile(values[live], q)
        ratio = float(getattr(policy, field))
        allowed_ms = max(ratio * pl, pl + floor_ms)
        excess_reps = rc - np.maximum(ratio * rl, rl + floor_ms)
        judged = _compare(f"{basis} {label} vs live", "x", pc / pl, rc / rl, allowed_ms / pl,
                          pc - allowed_ms, excess_reps, policy.alpha)  # fmt: skip
        detail = f"candidate {ms_text(pc)} ms, live {ms_text(pl)} ms"
        out.append(dataclasses.replace(judged, detail=detail))
    return basis, out


def _compare(
    name: str,
    unit: str,
    point: float,
    reps: np.ndarray,
    allowed: float,
    excess_point: float,
    excess_reps: np.ndarray,
    alpha: float,
) -> Comparison:
    measured = _interval(point, reps, alpha)
    excess = _interval(excess_point, excess_reps, alpha)
    if excess.low > 0:
        decision = BEYOND
    elif excess.high <= 0:
        decision = WITHIN
    else:
        decision = UNSURE
    return Comparison(name, unit, measured, allowed, excess, decision)


def _interval(point: float, reps: np.ndarray, alpha: float) -> Interval:
    low, high = np.quantile(reps, [alpha, 1 - alpha])
    return Interval(float(point), float(low), float(high))


def quantile(values: np.ndarray, q: float) -> float:
    """Nearest-rank quantile (numpy's inverted CDF); nan for no values."""
    if values.size == 0:
        return float("nan")
    return float(np.quantile(values, q, method="inverted_cdf"))


def bootstrap_quantiles(
    values: np.ndarray, blocks: np.ndarray, draws: np.ndarray, qs: list[float]
) -> np.ndarray:
    """Quantiles ``qs`` of ``values`` in every bootstrap replicate: shape (len(qs), reps).

    ``blocks[i]`` is the block of ``values[i]``; ``draws[r, b]`` how often replicate ``r``
    drew block ``b`` (a multinomial draw). A replicate's quantile is the nearest-rank
    quantile of the values weighted by their block's count.
    """
    order = np.argsort(values, kind="stable")
    ordered, owner = values[order], blocks[order]
    out = np.empty((len(qs), len(draws)))
    for start in range(0, len(draws), _CHUNK):
        weights = draws[start : start + _CHUNK][:, owner]
        cumulative = np.cumsum(weights, axis=1)
        total = cumulative[:, -1:]
        for i, q in enumerate(qs):
            # first index whose cumulative weight reaches q of the total
            idx = np.count_nonzero(cumulative < q * total, axis=1)
            picked = ordered[np.minimum(idx, len(ordered) - 1)]
            out[i, start : start + _CHUNK] = np.where(total[:, 0] > 0, picked, np.nan)
    return out


def host_stalls(samples: Samples, ok: np.ndarray, factor: float) -> np.ndarray:
    """Bins (indices of STALL_BIN_S from the window's start) in which the host stalled.

    Two witnesses, either suffices:

    * the generator itself: it sent at least a quarter of the bin's successful requests
      (every target's) more than ``factor`` x their median client latency behind the moment
      it meant to (``late``). A process that cannot run on time cannot time a response on
      time either, and on a frozen or overbooked host the target stalls with it; this works
      with one target. (A slow target keeps every user busy, which is not lateness: its
      requests go out the moment a user is free.)
    * with two targets: at least a quarter of *every* target's successful requests took over
      ``factor`` x that target's own median client latency. (A quarter, not a half: a burst
      that covers a third of a bin still marks it.)
    """
    n_bins = _bin_count(samples, STALL_BIN_S)
    where = np.clip(_bins(samples, STALL_BIN_S), 0, n_bins - 1)
    if not ok.any():
        return np.array([], dtype=np.int64)
    late = samples.late > factor * np.median(samples.latency[ok])
    stalled = _slow_bins(where[ok], late[ok], n_bins)
    if len(samples.targets) >= 2:
        both = np.ones(n_bins, dtype=bool)
        for index in range(len(samples.targets)):
            mine = ok & (samples.target == index)
            if not mine.any():
                both[:] = False
                break
            latency = samples.latency[mine]
            both &= _slow_bins(where[mine], latency > factor * np.median(latency), n_bins)
        stalled |= both
    return np.flatnonzero(stalled)


def _slow_bins(where: np.ndarray, slow: np.ndarray, n_bins: int) -> np.ndarray:
    """Bins with at least MIN_BIN_REQUESTS requests of which a STALL_SHARE are ``slow``."""
    total = np.bincount(where, minlength=n_bins)
    slow_count = np.bincount(where, weights=slow, minlength=n_bins)
    return (total >= MIN_BIN_REQUESTS) & (slow_count >= STALL_SHARE * total)


def _bin_count(samples: Samples, width: float) -> int:
    """Bins of ``width`` seconds in the measured window (at least one)."""
    return max(1, math.ceil(samples.duration_s / width - 1e-9))


def _bins(samples: Samples, width: float) -> np.ndarray:
    return np.floor((samples.intended - samples.warmup_s) / width).astype(np.int64)
