"""The promotion's gate measures an inconclusive run again (bentogate/gating.py): up to the
policy's ``max_runs``, each run recorded; a pass or a fail ends it. The load test itself is
faked here (its verdicts are tests/integration/loadtest's); the loop and its records are real."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bentogate import gating
from bentogate.context import Ref
from bentogate.errors import ConfigError, GateFailed, GateInconclusive
from bentogate.loadtest import GatePolicy, Target
from bentogate.settings import GateSettings

REF = Ref("fraud", "2")


@dataclasses.dataclass
class _Run:
    """A gate run's result as ``loadtest.run_gate`` returns it (what gating reads of it)."""

    verdict: str
    reasons: tuple[str, ...]
    report_html: Path

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reasons": list(self.reasons)}


class _Registry:
    """The two calls the gate makes of the governance DB: the policy, and each run's record."""

    def __init__(self, policy: GatePolicy) -> None:
        self.policy = policy
        self.recorded: list[tuple[str, str | None]] = []

    def gate_policy(self, model: str) -> dict[str, Any]:
        return self.policy.to_dict()

    def record_gate(self, model: str, version: str, **run: Any) -> None:
        self.recorded.append((run["verdict"], run["compared_with"]))


def _gate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, verdicts: list[str], max_runs: int
) -> tuple[_Registry, list[str], list[float]]:
    """Run ``gating.gate`` whose load tests answer ``verdicts`` in turn; return the registry,
    the progress lines and the pauses slept."""
    policy = GatePolicy.from_settings(GateSettings(), max_runs=max_runs)
    registry = _Registry(policy)
    ctx = SimpleNamespace(registry=registry, settings=SimpleNamespace(reports_dir=tmp_path))
    answers = iter(verdicts)
    slept: list[float] = []

    def run_gate(candidate: Target, rows: Any, policy: GatePolicy, out_dir: Path,
                 **_: Any) -> _Run:  # fmt: skip
        verdict = next(answers)
        why = () if verdict == "pass" else (f"client p99 24.9 ms vs 25.0 ms: {verdict}",)
        return _Run(verdict, why, out_dir / "gate-report.html")

    live = Target("live", "http://127.0.0.1:10000", "1")
    monkeypatch.setattr(gating, "run_gate", run_gate)
    monkeypatch.setattr(gating, "_reference_rows", lambda ctx, ref: [[0.0]])
    monkeypatch.setattr(gating, "gate_targets", lambda ctx, ref: (live, live))
    monkeypatch.setattr(gating.host, "wait_healthy", lambda *a, **k: None)
    monkeypatch.setattr(gating.time, "sleep", slept.append)
    lines: list[str] = []
    try:
        gating.gate(ctx, REF, actor="rel", progress=lines.append)  # type: ignore[arg-type]
    finally:
        assert next(answers, None) is None, "the gate ran fewer times than the test expects"
    return registry, lines, slept


def test_an_inconclusive_run_is_measured_again_and_a_pass_then_passes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    registry, lines, slept = _gate(monkeypatch, tmp_path, ["inconclusive", "pass"], max_runs=2)
    assert registry.recorded == [("inconclusive", "1"), ("pass", "1")]  # both runs on record
    assert slept == [gating.RERUN_PAUSE_S]
    again = [line for line in lines if "a new run" in line]
    assert again == [
        "gate inconclusive for fraud:2 (client p99 24.9 ms vs 25.0 ms: inconclusive): no "
        f"verdict, so a new run in {gating.RERUN_PAUSE_S:g} s (run 2 of max_runs=2)"
    ]


def test_a_failed_run_ends_the_gate_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(GateFailed, match=r"^gate failed for fraud:2: client p99 24\.9 ms"):
        _gate(monkeypatch, tmp_path, ["fail"], max_runs=3)


def test_a_fail_after_an_inconclusive_run_says_how_many_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(GateFailed, match=r"^gate failed for fraud:2 in 2 runs: client p99"):
        _gate(monkeypatch, tmp_path, ["inconclusive", "fail"], max_runs=3)


def test_the_last_allowed_inconclusive_run_refuses_with_its_reasons_and_report(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(GateInconclusive) as refused:
        _gate(monkeypatch, tmp_path, ["inconclusive"] * 3, max_runs=3)
    said = str(refused.value)
    assert said.startswith("gate inconclusive for fraud:2 in 3 runs: client p99 24.9 ms"), said
    assert said.endswith("gate-report.html)"), said
    assert refused.value.details["verdict"] == "inconclusive"


def test_one_run_is_all_with_max_runs_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(GateInconclusive, match=r"^gate inconclusive for fraud:2: client"):
        _gate(monkeypatch, tmp_path, ["inconclusive"], max_runs=1)


@pytest.mark.parametrize("bad", [0, 1.5, -1])
def test_max_runs_is_a_whole_number_of_at_least_one(bad: float) -> None:
    with pytest.raises(ConfigError, match=rf"gate policy max_runs={bad!r} must be a whole number"):
        GatePolicy.from_settings(GateSettings(), max_runs=bad)
