"""The verdict logic over figures and evidence: every limit, every inconclusive case, which
doubts a longer run can settle, and which failures stand however busy the generator was."""

from __future__ import annotations

import dataclasses

import pytest

from bentogate.loadtest import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    GatePolicy,
    TargetFigures,
    Verdict,
    evaluate,
)
from bentogate.loadtest.evidence import BEYOND, UNSURE, WITHIN, Comparison, Evidence, Interval
from bentogate.loadtest.samples import HostCPU
from bentogate.settings import GateSettings

NAN = float("nan")
POLICY = GatePolicy.from_settings(
    GateSettings(rate=200.0, users=16, p50_ms=5, p95_ms=15, p99_ms=25, min_samples=1000)
)


def figs(**kw: object) -> TargetFigures:
    base = TargetFigures(
        samples=4000, p50_ms=1.0, p95_ms=2.0, p99_ms=3.0, p999_ms=6.0, mean_ms=1.2,
        max_ms=9.0, achieved_rate=200.0, errors={}, error_ratio=0.0, target_rate=200.0,
    )  # fmt: skip
    return dataclasses.replace(base, **kw)


def comp(name: str, decision: str, measured: float, low: float, high: float,
         allowed: float) -> Comparison:  # fmt: skip
    unit = "x" if name.endswith("vs live") else "ms"
    excess = Interval(measured - allowed, low - allowed, high - allowed)
    return Comparison(name, unit, Interval(measured, low, high), allowed, excess, decision)


def evidence(*limits: Comparison, regressions: tuple[Comparison, ...] = (),
             stall_fraction: float = 0.0) -> Evidence:  # fmt: skip
    basis = regressions[0].name.split()[0] if regressions else ""
    return Evidence(basis, 20, (), stall_fraction, limits, regressions)


GOOD = evidence(comp("client p99", WITHIN, 3.0, 2.5, 4.0, 25.0))
SLOW_P99 = comp("client p99", BEYOND, 31.2, 28.4, 35.0, 25.0)
SERVER_P50_SLOWER = comp("server p50 vs live", BEYOND, 1.52, 1.47, 1.58, 1.25)
SERVER_P99_UNSURE = comp("server p99 vs live", UNSURE, 1.18, 0.95, 1.41, 1.25)
TWO = {"candidate": figs(), "live": figs()}
BUSY = HostCPU(busy_s=19.4, steal_s=4.2, total_s=20.0)  # 97% busy, 21% stolen


def test_good_candidate_passes_with_no_reasons() -> None:
    assert evaluate(POLICY, {"candidate": figs()}, GOOD, 0.3) == Verdict(PASS)


def test_a_limit_beyond_its_whole_interval_fails_naming_measured_and_allowed() -> None:
    verdict = evaluate(POLICY, {"candidate": figs()}, evidence(SLOW_P99), 0.3)
    assert verdict == Verdict(FAIL, ("client p99 31.2 ms (interval 28.4-35.0 ms) > 25.0 ms",))


def test_a_client_limit_beyond_is_undecided_while_the_service_own_time_clears_it() -> None:
    # client p99 41.8 ms with the stand-in's own p99 0.097 ms: measured on a host frozen
    # 50 ms in every 0.55 s on one core at a time, where the generator kept its schedule
    own = comp("server p99", WITHIN, 0.08, 0.06, 0.097, 25.0)
    beyond = comp("client p99", BEYOND, 41.8, 29.7, 45.2, 25.0)
    ev = dataclasses.replace(evidence(beyond), server_limits=(own,))
    verdict = evaluate(POLICY, {"candidate": figs()}, ev, 0.3)
    assert verdict == Verdict(INCONCLUSIVE, (
        "client p99 41.8 ms (interval 29.7-45.2 ms) > 25.0 ms, but the server's own p99 is at "
        "most 0.097 ms: the time went outside the service (a busy host, the "
        "proxy, or queueing in front of it): not decided",
    ), extendable=True)  # fmt: skip
    # what the host's CPUs did is named where the host is blamed, and decides nothing
    named = evaluate(POLICY, {"candidate": figs()}, ev, 0.3, host=BUSY)
    assert named.verdict == INCONCLUSIVE and named.reasons[0].endswith(
        "(a busy host, the proxy, or queueing in front of it: the host's CPUs 97% busy, 21% "
        "stolen by the hypervisor): not decided"
    ), named.reasons
    # the service's own time beyond the limit (or unsure of it) leaves the failure standing
    for decision in (BEYOND, UNSURE):
        slow = dataclasses.replace(ev, server_limits=(dataclasses.replace(own, decision=decision),))
        assert evaluate(POLICY, {"candidate": figs()}, slow, 0.3).verdict == FAIL


def test_a_limit_live_is_beyond_too_in_the_same_run_is_undecided() -> None:
    # a host slow for the whole window (the service's own time too): both versions beyond
    # the limit, neither slower than the other
    live_beyond = comp("live client p99", BEYOND, 30.4, 27.9, 33.0, 25.0)
    own = comp("server p99", BEYOND, 28.9, 26.8, 31.5, 25.0)
    same = comp("server p99 vs live", WITHIN, 1.03, 0.97, 1.09, 1.25)
    ev = dataclasses.replace(evidence(SLOW_P99, regressions=(same,)), server_limits=(own,),
                             live_limits=(live_beyond,))  # fmt: skip
    verdict = evaluate(POLICY, TWO, ev, 0.3)
    assert verdict == Verdict(INCONCLUSIVE, (
        "client p99 31.2 ms (interval 28.4-35.0 ms) > 25.0 ms, but live's p99 in the same run "
        "is beyond it too (30.4 ms, interval 27.9-33.0 ms): not the candidate's doing but a "
        "slow host or a limit production does not meet either: not decided",
    ), extendable=True)  # fmt: skip
    named = evaluate(POLICY, TWO, ev, 0.3, host=BUSY)
    assert "a slow host (the host's CPUs 97% busy, 21% stolen" in named.reasons[0], named.reasons
    # slower than live as well: the regression fails it, whatever live's limits say
    worse = dataclasses.replace(ev, regressions=(SERVER_P50_SLOWER,))
    assert evaluate(POLICY, TWO, worse, 0.3).verdict == FAIL
    # live within the limit, or only unsure of it: the candidate's own breach, a fail
    for decision, low, high in ((WITHIN, 20.0, 24.9), (UNSURE, 23.0, 26.0)):
        live_other = comp("live client p99", decision, 24.0, low, high, 25.0)
        other = dataclasses.replace(ev, live_limits=(live_other,))
        assert evaluate(POLICY, TWO, other, 0.3) == Verdict(FAIL, (SLOW_P99.describe(),))


def test_errors_fail_by_kind() -> None:
    broken = figs(errors={"status 500": 5, "connection": 1}, error_ratio=0.0015)
    verdict = evaluate(POLICY, {"candidate": broken}, GOOD, 0.3)
    assert verdict == Verdict(FAIL, ("error ratio 0.15% > 0.10% (status 500: 5, connection: 1)",))


def test_all_requests_failed_is_a_fail_not_a_crash() -> None:
    broken = figs(p50_ms=NAN, p95_ms=NAN, p99_ms=NAN, errors={"connection": 4000},
                  error_ratio=1.0)  # fmt: skip
    verdict = evaluate(POLICY, {"candidate": broken}, evidence(), 0.3)
    assert verdict == Verdict(FAIL, ("error ratio 100.00% > 0.10% (connection: 4000)",))


def test_a_straddling_interval_is_inconclusive_and_extendable() -> None:
    verdict = evaluate(POLICY, TWO, evidence(regressions=(SERVER_P99_UNSURE,)), 0.3)
    assert verdict.verdict == INCONCLUSIVE and verdict.extendable
    assert verdict.reasons == (
        "server p99 vs live 1.18x (interval 0.95x-1.41x) vs 1.25x: not decided",
    )


def test_a_significant_server_regression_fails_even_when_other_doubts_exist() -> None:
    # server-side figures do not depend on the generator, so its saturation cannot excuse
    # them; and one clearly broken limit is enough whatever else is undecided
    ev = evidence(regressions=(SERVER_P50_SLOWER, SERVER_P99_UNSURE))
    verdict = evaluate(POLICY, TWO, ev, 0.95)
    assert verdict == Verdict(FAIL, ("server p50 vs live 1.52x (interval 1.47x-1.58x) > 1.25x",))


def test_a_client_limit_is_not_trusted_from_a_saturated_generator() -> None:
    verdict = evaluate(POLICY, {"candidate": figs()}, evidence(SLOW_P99), 0.95)
    assert verdict.verdict == INCONCLUSIVE and not verdict.extendable
    assert verdict.reasons == (
        "generator CPU 95% of a core >= 90%",
        "client p99 31.2 ms (interval 28.4-35.0 ms) > 25.0 ms: not decided",
    )


def test_saturated_generator_is_inconclusive_never_pass() -> None:
    verdict = evaluate(POLICY, {"candidate": figs()}, GOOD, 0.95)
    assert verdict == Verdict(INCONCLUSIVE, ("generator CPU 95% of a core >= 90%",))


def test_unknown_cpu_is_not_held_against_the_run() -> None:
    assert evaluate(POLICY, {"candidate": figs()}, GOOD, NAN).verdict == PASS


def test_a_stalling_host_is_named_and_a_longer_window_may_outlast_it() -> None:
    ev = dataclasses.replace(GOOD, stall_fraction=0.34)
    verdict = evaluate(POLICY, {"candidate": figs()}, ev, 0.3)
    assert verdict == Verdict(INCONCLUSIVE, (
        "host stalls (the generator itself late, or both targets slow at once) in 34% of the "
        "window > 25% (a busy machine, not the candidate)",
    ), extendable=True)  # fmt: skip
    # with another doubt beside it, more of the same window cannot help
    few = evaluate(POLICY, {"candidate": figs(samples=999)}, ev, 0.3)
    assert few.verdict == INCONCLUSIVE and not few.extendable
    assert evaluate(POLICY, {"candidate": figs()}, dataclasses.replace(GOOD, stall_fraction=0.25),
                    0.3).verdict == PASS  # fmt: skip


def test_too_few_samples_is_inconclusive() -> None:
    verdict = evaluate(POLICY, {"candidate": figs(samples=999)}, GOOD, 0.3)
    assert verdict == Verdict(INCONCLUSIVE, ("candidate: 999 samples < 1000",))


def test_min_samples_is_per_target() -> None:
    few = {"candidate": figs(samples=2000), "live": figs(samples=500)}
    assert evaluate(POLICY, few, GOOD, 0.3) == Verdict(INCONCLUSIVE, ("live: 500 samples < 1000",))


def test_rate_shortfall_with_too_few_users_is_inconclusive() -> None:
    few_users = dataclasses.replace(POLICY, users=2)  # 2 / 200 req/s = 10 ms < 25 ms limit
    verdict = evaluate(few_users, {"candidate": figs(achieved_rate=189.9)}, GOOD, 0.3)
    assert verdict == Verdict(
        INCONCLUSIVE, ("candidate: achieved rate 189.9 req/s < 95% of 200 req/s",)
    )


def test_rate_shortfall_with_enough_users_is_the_targets_fault() -> None:
    # 16 users / 200 req/s = 80 ms per request: falling behind means responses > 80 ms
    verdict = evaluate(POLICY, {"candidate": figs(achieved_rate=100.0)}, GOOD, 0.3)
    assert verdict == Verdict(FAIL, (
        "candidate: achieved rate 100.0 req/s < 95% of 200 req/s (responses too slow for 16 "
        "users)",
    ))  # fmt: skip


def test_users_must_carry_both_targets_rates() -> None:
    # 16 users / (2 x 200 req/s) = 40 ms >= 25 ms: enough; 8 users: 20 ms, not enough
    shortfall = {"candidate": figs(achieved_rate=100.0), "live": figs()}
    assert evaluate(POLICY, shortfall, GOOD, 0.3).verdict == FAIL
    eight = dataclasses.replace(POLICY, users=8)
    assert evaluate(eight, shortfall, GOOD, 0.3).verdict == INCONCLUSIVE


def test_rate_at_95_percent_is_enough() -> None:
    assert evaluate(POLICY, {"candidate": figs(achieved_rate=190.0)}, GOOD, 0.3).verdict == PASS


def test_live_without_successes_is_inconclusive() -> None:
    live = figs(p50_ms=NAN, p99_ms=NAN, errors={"connection": 4000}, error_ratio=1.0)
    verdict = evaluate(POLICY, {"candidate": figs(), "live": live}, GOOD, 0.3)
    assert verdict.verdict == INCONCLUSIVE
    assert "live: no successful request to compare against" in verdict.reasons


def test_live_rate_shortfall_is_inconclusive_and_live_limits_do_not_apply() -> None:
    live = figs(p99_ms=20.0, p50_ms=9.0, achieved_rate=100.0)
    verdict = evaluate(POLICY, {"candidate": figs(), "live": live}, GOOD, 0.3)
    assert verdict == Verdict(INCONCLUSIVE, ("live: achieved rate 100.0 req/s < 95% of 200 req/s",))


def test_candidate_is_required() -> None:
    with pytest.raises(KeyError):
        evaluate(POLICY, {"live": figs()}, GOOD, 0.3)


def test_transport_errors_of_a_saturated_generator_are_not_charged_to_the_target() -> None:
    """No answer (connection, unfinished) while the generator was at its CPU limit: doubt;
    an HTTP error status in the same run is the target's own answer: a violation."""
    saturated = 0.97
    silent = figs(errors={"connection": 40, "unfinished": 10}, error_ratio=0.05)
    verdict = evaluate(POLICY, {"candidate": silent}, GOOD, saturated)
    assert verdict.verdict == INCONCLUSIVE
    assert any("no answer while the generator was saturated" in r for r in verdict.reasons)
    answered = figs(errors={"status 500": 40}, error_ratio=0.04)
    assert evaluate(POLICY, {"candidate": answered}, GOOD, saturated).verdict == FAIL
    assert evaluate(POLICY, {"candidate": silent}, GOOD, 0.3).verdict == FAIL
