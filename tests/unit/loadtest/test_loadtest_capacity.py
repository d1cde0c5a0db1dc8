"""Capacity search against a fake gate whose verdict depends on the rate only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bentogate.errors import ConfigError
from bentogate.settings import GateSettings
from loadtest import FAIL, INCONCLUSIVE, PASS, GatePolicy, GateResult, Target, find_capacity
from loadtest.figures import TargetFigures

POLICY = GatePolicy.from_settings(GateSettings(rate=100.0))
TARGET = Target("candidate", "http://127.0.0.1:1", "3")


def fake_gate(capacity: float, above: str = FAIL):
    calls: list[float] = []

    def gate(target: Target, rows: list, policy: GatePolicy, out_dir: Path) -> GateResult:
        calls.append(policy.rate)
        verdict = PASS if policy.rate <= capacity else above
        fig = TargetFigures(1000, 1, 2, 3, 4, 1, 5, policy.rate)
        return GateResult(verdict, (), policy, {"candidate": fig}, 0.2, out_dir / "j",
                          out_dir / "h", None)  # fmt: skip

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
