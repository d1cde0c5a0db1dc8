"""Capacity search against a fake gate whose verdict depends on the rate only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bentogate.errors import ConfigError
from bentogate.loadtest import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    GatePolicy,
    GateResult,
    Target,
    find_capacity,
    highest_passing_rate,
)
from bentogate.loadtest.evidence import Evidence
from bentogate.loadtest.figures import TargetFigures
from bentogate.loadtest.samples import HostCPU
from bentogate.settings import GateSettings

POLICY = GatePolicy.from_settings(GateSettings(rate=100.0))
TARGET = Target("candidate", "http://127.0.0.1:1", "3")


def fake_gate(capacity: float, above: str = FAIL):
    calls: list[float] = []

    def gate(target: Target, rows: list, policy: GatePolicy, out_dir: Path) -> GateResult:
        calls.append(policy.rate)
        verdict = PASS if policy.rate <= capacity else above
        fig = TargetFigures(1000, 1, 2, 3, 4, 1, 5, policy.rate)
        evidence = Evidence("", 20, (), 0.0, (), ())
        return GateResult(verdict, (), policy, {"candidate": fig}, evidence, 0.2, HostCPU(),
                          policy.duration_s, 1, out_dir / "j", out_dir / "h", None)  # fmt: skip

    return gate, calls


def test_doubles_then_bisects_to_the_resolution(tmp_path: Path) -> None:
    gate, calls = fake_gate(capacity=730.0)
    result = find_capacity(TARGET, [[1.0]], POLICY, tmp_path, max_rate=10_000, gate=gate)
    assert calls[:5] == [100, 200, 400, 800, 600]
    assert result.limited_by == "target"
    assert 730 * 0.9 <= result.rate <= 730
    assert [r for r, _, _ in result.runs] == calls


def test_generator_limit_and_ceiling(tmp_path: Path) -> None:
    gate, _ = fake_gate(capacity=300.0, above=INCONCLUSIVE)
    result = find_capacity(TARGET, [[1.0]], POLICY, tmp_path, max_rate=10_000, gate=gate)
    assert result.limited_by == "generator"
    gate, calls = fake_gate(capacity=1e9)
    result = find_capacity(TARGET, [[1.0]], POLICY, tmp_path, max_rate=500, gate=gate)
    assert (result.rate, result.limited_by, calls) == (500, "ceiling", [100, 200, 400, 500])


def test_nothing_passes(tmp_path: Path) -> None:
    gate, calls = fake_gate(capacity=50.0)
    result = find_capacity(TARGET, [[1.0]], POLICY, tmp_path, max_rate=1000, gate=gate)
    assert (result.rate, calls) == (0.0, [100])


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        find_capacity(TARGET, [[1.0]], POLICY, tmp_path, max_rate=10)
    with pytest.raises(ConfigError):
        find_capacity(TARGET, [[1.0]], dataclasses.replace(POLICY), tmp_path, max_rate=1e3,
                      resolution=0)  # fmt: skip


@pytest.mark.parametrize(
    ("capacity", "over", "min_rate", "expected"),
    [
        # 100, 200, ... 1600 fails; 1200 passes, 1400 fails, 1300 passes, 1350 fails: 5 % apart
        (1300.0, "fail", None, (1300.0, "target")),
        (1300.0, "inconclusive", None, (1300.0, "generator")),
        (5000.0, "fail", None, (3200.0, "ceiling")),  # max_rate passes
        (40.0, "fail", None, (0.0, "target")),  # the start fails: no halving without min_rate
        (40.0, "fail", 20.0, (39.0625, "target")),  # halved to 25, then bisected up
    ],
)
def test_the_shared_search_doubles_halves_and_bisects(
    capacity: float, over: str, min_rate: float | None, expected: tuple[float, str]
) -> None:
    asked: list[float] = []

    def verdict_at(rate: float) -> str:
        asked.append(rate)
        return "pass" if rate <= capacity else over

    found = highest_passing_rate(
        verdict_at, start_rate=100.0, max_rate=3200.0, resolution=0.05, min_rate=min_rate
    )
    assert found == expected, asked
