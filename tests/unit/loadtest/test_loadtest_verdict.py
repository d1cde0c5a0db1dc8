"""The verdict logic: every limit, every inconclusive case, regression against live."""

from __future__ import annotations

import dataclasses

import pytest

from bentogate.settings import GateSettings
from loadtest import FAIL, INCONCLUSIVE, PASS, GatePolicy, TargetFigures, evaluate

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


def test_good_candidate_passes_with_no_reasons() -> None:
    assert evaluate(POLICY, {"candidate": figs()}, 0.3) == (PASS, ())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"p50_ms": 5.04}, "p50 5.0 ms > 5.0 ms"),
        ({"p95_ms": 15.2}, "p95 15.2 ms > 15.0 ms"),
        ({"p99_ms": 31.24}, "p99 31.2 ms > 25.0 ms"),
        (
            {"errors": {"status 500": 5, "connection": 1}, "error_ratio": 0.0015},
            "error ratio 0.15% > 0.10% (status 500: 5, connection: 1)",
        ),
    ],
)
def test_each_limit_fails_with_measured_and_allowed(change: dict, reason: str) -> None:
    assert evaluate(POLICY, {"candidate": figs(**change)}, 0.3) == (FAIL, (reason,))


def test_limits_are_inclusive() -> None:
    at_limit = figs(p50_ms=5.0, p95_ms=15.0, p99_ms=25.0, error_ratio=0.001)
    assert evaluate(POLICY, {"candidate": at_limit}, 0.3)[0] == PASS


def test_every_violation_is_named() -> None:
    verdict, reasons = evaluate(
        POLICY, {"candidate": figs(p50_ms=6.0, p95_ms=20.0, p99_ms=40.0)}, 0.3
    )
    assert verdict == FAIL
    assert [r.split()[0] for r in reasons] == ["p50", "p95", "p99"]


def test_all_requests_failed_is_a_fail_not_a_crash() -> None:
    broken = figs(p50_ms=NAN, p95_ms=NAN, p99_ms=NAN, errors={"connection": 4000},
                  error_ratio=1.0)  # fmt: skip
    verdict, reasons = evaluate(POLICY, {"candidate": broken}, 0.3)
    assert verdict == FAIL
    assert reasons == ("error ratio 100.00% > 0.10% (connection: 4000)",)


def test_saturated_generator_is_inconclusive_never_pass() -> None:
    verdict, reasons = evaluate(POLICY, {"candidate": figs()}, 0.95)
    assert verdict == INCONCLUSIVE
    assert reasons == ("generator CPU 95% of a core >= 90%",)


def test_unknown_cpu_is_not_held_against_the_run() -> None:
    assert evaluate(POLICY, {"candidate": figs()}, NAN)[0] == PASS


def test_inconclusive_keeps_violations_among_reasons() -> None:
    verdict, reasons = evaluate(POLICY, {"candidate": figs(p99_ms=40.0)}, 0.99)
    assert verdict == INCONCLUSIVE
    assert reasons == ("generator CPU 99% of a core >= 90%", "p99 40.0 ms > 25.0 ms")


def test_too_few_samples_is_inconclusive() -> None:
    verdict, reasons = evaluate(POLICY, {"candidate": figs(samples=999)}, 0.3)
    assert (verdict, reasons) == (INCONCLUSIVE, ("candidate: 999 samples < 1000",))


def test_rate_shortfall_with_too_few_users_is_inconclusive() -> None:
    few_users = dataclasses.replace(POLICY, users=2)  # 2 / 200 req/s = 10 ms < 25 ms limit
    verdict, reasons = evaluate(few_users, {"candidate": figs(achieved_rate=189.9)}, 0.3)
    assert verdict == INCONCLUSIVE
    assert reasons == ("candidate: achieved rate 189.9 req/s < 95% of 200 req/s",)


def test_rate_shortfall_with_enough_users_is_the_targets_fault() -> None:
    # 16 users / 200 req/s = 80 ms per request: falling behind means responses > 80 ms
    verdict, reasons = evaluate(POLICY, {"candidate": figs(achieved_rate=100.0)}, 0.3)
    assert verdict == FAIL
    assert reasons == (
        "candidate: achieved rate 100.0 req/s < 95% of 200 req/s (responses too slow for 16 users)",
    )


def test_rate_at_95_percent_is_enough() -> None:
    assert evaluate(POLICY, {"candidate": figs(achieved_rate=190.0)}, 0.3)[0] == PASS


def test_regression_against_live() -> None:
    verdict, reasons = evaluate(
        POLICY, {"candidate": figs(p99_ms=9.1), "live": figs(p99_ms=6.0)}, 0.3
    )
    assert verdict == FAIL
    assert reasons == ("p99 regression 9.1 ms > 9.0 ms (max of 1.5 x live 6.0 ms, live + 2 ms)",)
    within = {"candidate": figs(p99_ms=9.0), "live": figs(p99_ms=6.0)}
    assert evaluate(POLICY, within, 0.3) == (PASS, ())


def test_regression_floor_absorbs_small_absolute_differences() -> None:
    tiny = {"candidate": figs(p99_ms=2.4), "live": figs(p99_ms=0.5)}  # 4.8x but +1.9 ms
    assert evaluate(POLICY, tiny, 0.3) == (PASS, ())
    strict = dataclasses.replace(POLICY, regression_floor_ms=0.0)
    assert evaluate(strict, tiny, 0.3)[0] == FAIL


def test_live_without_successes_is_inconclusive() -> None:
    live = figs(p99_ms=NAN, errors={"connection": 4000}, error_ratio=1.0)
    verdict, reasons = evaluate(POLICY, {"candidate": figs(), "live": live}, 0.3)
    assert verdict == INCONCLUSIVE
    assert "live: no successful request to compare against" in reasons


def test_live_rate_shortfall_is_inconclusive_and_live_limits_do_not_apply() -> None:
    live = figs(p99_ms=20.0, p50_ms=9.0, achieved_rate=100.0)
    verdict, reasons = evaluate(POLICY, {"candidate": figs(), "live": live}, 0.3)
    assert verdict == INCONCLUSIVE
    assert reasons == ("live: achieved rate 100.0 req/s < 95% of 200 req/s",)


def test_min_samples_is_per_target() -> None:
    few = {"candidate": figs(samples=2000), "live": figs(samples=500)}
    assert evaluate(POLICY, few, 0.3) == (INCONCLUSIVE, ("live: 500 samples < 1000",))


def test_candidate_is_required() -> None:
    with pytest.raises(KeyError):
        evaluate(POLICY, {"live": figs()}, 0.3)
