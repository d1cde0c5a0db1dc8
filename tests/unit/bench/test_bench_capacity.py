"""The capacity search: doubling, bisection, and what limited it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.capacity import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Capacity,
    LoadSpec,
    Step,
    _judged,
    find_capacity,
    interleaved_capacities,
)

SPEC = LoadSpec(bodies=Path("unused.json"), pause_s=0.0)


def _step(rate: float, p99_ms: float, *, errors: int = 0, cpu: float = 0.2) -> Step:
    return Step(rate, PASS, 0.2, p99_ms, p99_ms, errors, 100, 100, cpu, 0.1)


def _target(capacity: float, *, generator_limit: float = float("inf")):  # type: ignore[no-untyped-def]
    def run(port: int, rate: float, spec: LoadSpec) -> Step:
        starved = rate > generator_limit  # a generator short of CPU sends late: p99 grows
        p99 = 1.0 if rate <= capacity and not starved else 50.0
        return _judged(_step(rate, p99, cpu=0.95 if starved else 0.3), spec.p99_limit_ms)

    return run


def test_the_search_brackets_the_capacity_within_the_resolution() -> None:
    found = find_capacity(1, SPEC, start_rate=250, resolution=0.05, step_runner=_target(3000))
    assert found.limited_by == "target"
    assert 3000 * 0.95 <= found.rate <= 3000
    rates = [step.rate for step in found.steps]
    assert rates[:5] == [250, 500, 1000, 2000, 4000]


def test_a_generator_short_of_cpu_makes_the_result_a_lower_bound() -> None:
    found = find_capacity(1, SPEC, step_runner=_target(10_000, generator_limit=2500))
    assert found.limited_by == "generator"
    assert found.rate <= 2500


def test_passing_the_ceiling_stops_the_search() -> None:
    found = find_capacity(1, SPEC, start_rate=1000, max_rate=4000, step_runner=_target(1e9))
    assert (found.rate, found.limited_by) == (4000, "ceiling")


def test_a_failing_start_searches_downwards() -> None:
    found = find_capacity(1, SPEC, start_rate=250, resolution=0.1, step_runner=_target(100))
    assert [step.rate for step in found.steps][:3] == [250, 125, 62.5]
    assert 90 <= found.rate <= 100


def test_nothing_passing_is_a_capacity_of_zero() -> None:
    found = find_capacity(1, SPEC, start_rate=250, min_rate=30, step_runner=_target(10))
    assert (found.rate, found.limited_by) == (0.0, "target")
    assert [step.rate for step in found.steps] == [250, 125, 62.5, 31.25]


@pytest.mark.parametrize(
    ("step", "verdict"),
    [
        (_step(100, 4.9), PASS),
        (_step(100, 5.1), FAIL),
        (_step(100, 1.0, errors=1), FAIL),
        (_step(100, float("nan")), FAIL),
        (_step(100, 9.0, cpu=0.95), INCONCLUSIVE),
        (Step(100, PASS, 0.2, 1.0, 1.0, 0, 100, 100, 0.2, 6.0), INCONCLUSIVE),  # stalled
    ],
)
def test_a_step_passes_within_the_limit_without_errors(step: Step, verdict: str) -> None:
    assert _judged(step, 5.0).verdict == verdict


def test_interleaved_searches_alternate_the_order_and_keep_the_median() -> None:
    order: list[str] = []
    found = {"a": iter([1000.0, 3000.0, 2000.0]), "b": iter([500.0, 700.0, 600.0])}

    def search(port: int, spec: LoadSpec, **_: object) -> Capacity:
        key = "a" if port == 1 else "b"
        order.append(key)
        rate = next(found[key])
        return Capacity(rate, "target", (_step(rate, 1.0), _step(rate * 2, 50.0)))

    results = interleaved_capacities({"a": (1, SPEC), "b": (2, SPEC)}, 3, search=search)
    assert order == ["a", "b", "b", "a", "a", "b"]
    assert results["a"]["rate"] == 2000.0
    assert results["a"]["rates"] == [1000.0, 3000.0, 2000.0]
    assert results["b"]["rate"] == 600.0
    assert len(results["b"]["steps"]) == 6  # type: ignore[arg-type]
