"""The statistics behind the verdict, on synthetic samples of known distributions: equal
targets, shifted ones, heavy-tailed bursts on both targets or on one, no server timing.
No timing is involved: every case is a seeded draw, and the same draw gives the same result.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bentogate.loadtest import GatePolicy, gather
from bentogate.loadtest.evidence import (
    BEYOND,
    STALL_BIN_S,
    UNSURE,
    WITHIN,
    Evidence,
    bootstrap_quantiles,
    quantile,
)
from bentogate.loadtest.samples import Samples
from bentogate.settings import GateSettings

KINDS = ("ok", "status", "connection", "wrong_version", "bad_body", "unfinished")
POLICY = GatePolicy.from_settings(GateSettings())  # the default policy: 200 req/s, 20 s
RATE, WARMUP, DURATION = POLICY.rate, 1.0, POLICY.duration_s


def paired(
    seed: int,
    *,
    factor: float = 1.0,
    duration: float = DURATION,
    live: bool = True,
    bursts: tuple[tuple[float, float, tuple[int, ...]], ...] = (),
    server_timing: bool = True,
    frozen: bool = False,
) -> Samples:
    """Candidate and live taking turns at RATE each, like the locustfile schedules them.

    Server time: lognormal around 0.5 ms (the Bento's, measured under gate load), the
    candidate's scaled by ``factor``; clients see it plus a lognormal ~1.5 ms overhead (the
    generator and HAProxy). ``bursts``: (start s, length s, targets hit): every request of
    those targets intended in it waits the rest of the burst plus a little (a stalled host);
    ``frozen``: the generator froze with it, so it sent those requests that late.
    """
    rng = np.random.default_rng(seed)
    targets = ("candidate", "live") if live else ("candidate",)
    n = len(targets)
    slots = np.arange(int((WARMUP + duration) * RATE * n))
    intended = slots / (RATE * n)
    target = (slots % n).astype(np.int8)
    server = rng.lognormal(np.log(0.5e-3), 0.35, slots.size)
    server[target == 0] *= factor
    latency = server + rng.lognormal(np.log(1.5e-3), 0.5, slots.size)
    late = np.zeros(slots.size)
    for start, length, hit in bursts:
        inside = (intended >= start) & (intended < start + length) & np.isin(target, hit)
        latency[inside] += start + length - intended[inside] + 2e-3
        if frozen:
            late[inside] = start + length - intended[inside]
    return Samples(
        intended=intended, lag=np.zeros(slots.size, np.float32),
        late=late.astype(np.float32),
        latency=latency.astype(np.float32),
        server=(server if server_timing else np.full(slots.size, np.nan)).astype(np.float32),
        status=np.full(slots.size, 200, np.int16), kind=np.zeros(slots.size, np.int8),
        target=target, targets=targets, kinds=KINDS, rate=RATE, warmup_s=WARMUP,
        duration_s=duration, scheduled=(int(duration * RATE),) * n, cpu_series=(),
        cpu_warnings=0,
    )  # fmt: skip


def decisions(ev: Evidence) -> dict[str, str]:
    return {c.name: c.decision for c in ev.regressions + ev.limits}


def test_equal_targets_pass_the_regression_checks_nearly_always() -> None:
    outcomes = [decisions(gather(paired(seed), POLICY)) for seed in range(20)]
    regression = [d[n] for d in outcomes for n in ("server p50 vs live", "server p99 vs live")]
    assert BEYOND not in regression  # an equal candidate is never failed
    assert regression.count(WITHIN) >= 38  # and at most 2 of 40 need a longer run
    assert all(d["client p99"] == WITHIN for d in outcomes)


@pytest.mark.parametrize("factor", [1.5, 2.0])
def test_a_slower_server_fails_on_p50_every_time(factor: float) -> None:
    for seed in range(5):
        ev = gather(paired(seed, factor=factor), POLICY)
        p50 = ev.regressions[0]
        assert (p50.name, p50.decision) == ("server p50 vs live", BEYOND)
        assert p50.measured.low > POLICY.max_regression
        assert p50.measured.estimate == pytest.approx(factor, rel=0.05)
        assert "candidate" in p50.detail and "live" in p50.detail


def test_the_interval_narrows_with_more_blocks() -> None:
    short = gather(paired(3, factor=1.2), POLICY).regressions[1]
    long = gather(paired(3, factor=1.2, duration=40.0), POLICY).regressions[1]
    assert long.measured.high - long.measured.low < short.measured.high - short.measured.low


def test_bursts_on_both_targets_are_host_stalls_left_out() -> None:
    # 60 ms stalls hitting both targets in 10 places: the host, not the candidate
    bursts = tuple((2.0 + 2 * i, 0.06, (0, 1)) for i in range(10))
    noisy = paired(11, bursts=bursts)
    ev = gather(noisy, POLICY)
    assert len(ev.stalls) >= 10 and ev.stall_fraction < POLICY.max_stall_fraction
    for start, _length, _hit in bursts:
        assert any(s <= start + 0.03 < e for s, e in ev.stalls), start
    assert decisions(ev)["client p99"] == WITHIN
    assert BEYOND not in [c.decision for c in ev.regressions]
    # the same bursts counted in would have put the client p99 near 30-60 ms
    no_stalls = dataclasses.replace(POLICY, stall_factor=1e9)
    assert gather(noisy, no_stalls).limits[2].measured.estimate > 10


def test_a_burst_on_the_candidate_alone_is_not_excused() -> None:
    bursts = tuple((2.0 + 0.5 * i, 0.1, (0,)) for i in range(30))  # 15 % of the window
    ev = gather(paired(5, bursts=bursts), POLICY)
    assert ev.stalls == ()
    assert decisions(ev)["client p99"] == BEYOND


def test_one_burst_cannot_flip_an_absolute_limit() -> None:
    # no live target to pair with: a single 300 ms stall in one of 20 blocks puts about 2 %
    # of the candidate's requests above the p99 limit, yet the limit is not failed on it
    alone = paired(8, live=False, bursts=((7.0, 0.3, (0,)),))
    ev = gather(alone, POLICY)
    point = quantile(alone.latency[alone.measured].astype(np.float64) * 1e3, 0.99)
    assert point > POLICY.p99_ms  # the plain p99 of the sample would fail it
    assert decisions(ev)["client p99"] in (UNSURE, WITHIN)


def slowed(samples: Samples, extra_s: float, targets: tuple[int, ...]) -> Samples:
    """Every request of ``targets`` ``extra_s`` slower in the service itself, for the whole
    window (a host starved throughout: no moment slower than the run's own median)."""
    hit = np.isin(samples.target, targets)
    server = samples.server.copy()
    latency = samples.latency.copy()
    server[hit] += extra_s
    latency[hit] += extra_s
    return dataclasses.replace(samples, server=server, latency=latency)


def test_a_host_slow_for_the_whole_window_shows_on_live_too() -> None:
    # 30 ms more in the service for every request of both targets: beyond every absolute
    # limit for both, equal to each other, and no moment stands out as a stall
    ev = gather(slowed(paired(6), 0.030, (0, 1)), POLICY)
    assert ev.stalls == ()
    assert [(c.name, c.decision) for c in ev.live_limits] == [
        ("live client p50", BEYOND), ("live client p95", BEYOND), ("live client p99", BEYOND),
    ]  # fmt: skip
    assert decisions(ev)["client p99"] == BEYOND
    assert [c.decision for c in ev.server_limits] == [BEYOND] * 3
    assert BEYOND not in [c.decision for c in ev.regressions]
    # the candidate alone slowed: live's limits hold, and the regressions see it
    alone = gather(slowed(paired(6), 0.030, (0,)), POLICY)
    assert [c.decision for c in alone.live_limits] == [WITHIN] * 3
    assert [c.decision for c in alone.regressions] == [BEYOND, BEYOND]
    # no live, no live limits
    assert gather(paired(6, live=False), POLICY).live_limits == ()


def test_without_server_timing_client_latency_stands_in() -> None:
    ev = gather(paired(2, factor=2.0, server_timing=False), POLICY)
    assert ev.basis == "client"
    assert [c.name for c in ev.regressions] == ["client p50 vs live", "client p99 vs live"]


def test_the_same_samples_give_the_same_evidence() -> None:
    samples = paired(4, factor=1.25)
    assert gather(samples, POLICY) == gather(samples, POLICY)


def test_no_live_no_regressions() -> None:
    ev = gather(paired(1, live=False), POLICY)
    assert (ev.basis, ev.regressions, ev.stalls) == ("", (), ())
    assert [c.name for c in ev.limits] == ["client p50", "client p95", "client p99"]


def test_one_draw_of_every_block_is_the_plain_quantile() -> None:
    rng = np.random.default_rng(0)
    values = rng.exponential(size=1000)
    blocks = rng.integers(0, 10, size=1000)
    once = np.ones((3, 10), dtype=np.int64)
    got = bootstrap_quantiles(values, blocks, once, [0.5, 0.99])
    assert got[0] == pytest.approx([quantile(values, 0.5)] * 3)
    assert got[1] == pytest.approx([quantile(values, 0.99)] * 3)
    # a draw that takes block 0 only is that block's quantile
    only = np.zeros((1, 10), dtype=np.int64)
    only[0, 0] = 10
    assert bootstrap_quantiles(values, blocks, only, [0.5])[0, 0] == quantile(
        values[blocks == 0], 0.5
    )


def test_stall_bins_are_a_tenth_of_a_second() -> None:
    ev = gather(paired(9, bursts=((5.0, 0.05, (0, 1)),)), POLICY)
    assert ev.stalls and all(e - s == pytest.approx(STALL_BIN_S) for s, e in ev.stalls)


def test_a_frozen_host_is_named_by_the_generator_even_without_live() -> None:
    # A first release (no live version): the host freezes for 50 ms every 0.55 s (measured
    # with a real-time burner on both cores: client p99 45 ms, the stand-in's own p99
    # 0.08 ms) and the generator, frozen too, sends what fell due in the freeze late.
    bursts = tuple((1.0 + 0.55 * i, 0.05, (0,)) for i in range(36))
    frozen = paired(4, live=False, bursts=bursts, frozen=True)
    ev = gather(frozen, POLICY)
    for start, _length, _hit in bursts:
        assert any(s <= start + 0.02 < e for s, e in ev.stalls), start
    assert decisions(ev)["client p99"] == WITHIN
    # the same bursts on a generator that kept its schedule are the target's own slowness
    slow = gather(paired(4, live=False, bursts=bursts), POLICY)
    assert slow.stalls == () and decisions(slow)["client p99"] == BEYOND
