"""The gate-sensitivity benchmark's bookkeeping: verdicts counted per factor and condition,
the table and the figure, the running order, the noisy neighbour's lifetime."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from bench import sensitivity_report as sr
from bench.gate_sensitivity import NOISY, QUIET, Options, schedule
from bench.noise import noisy_neighbour
from bentogate.loadtest import GatePolicy
from bentogate.settings import GateSettings


def _run(factor: float, condition: str, verdict: str, ratio: float, wall: float) -> dict[str, Any]:
    comparisons = [
        {"name": name, "estimate": ratio, "low": ratio * 0.95, "high": ratio * 1.05,
         "allowed": 1.25, "decision": "within"}
        for name in (sr.P50, sr.P99)
    ]  # fmt: skip
    return {
        "factor": factor, "condition": condition, "verdict": verdict, "wall_s": wall,
        "server_p50_ratio": ratio, "regressions": comparisons, "reasons": [],
    }  # fmt: skip


def _runs() -> list[dict[str, Any]]:
    return [
        _run(1.0, QUIET, "pass", 1.0, 30.0),
        _run(1.0, QUIET, "pass", 1.02, 32.0),
        _run(1.0, QUIET, "inconclusive", 1.1, 60.0),
        _run(1.0, NOISY, "pass", 0.98, 31.0),
        _run(2.0, NOISY, "fail", 1.9, 28.0),
        _run(2.0, QUIET, "fail", 2.1, 27.0),
        _run(2.0, QUIET, "fail", 2.0, 29.0),
        {"factor": 2.0, "condition": QUIET, "verdict": "error", "wall_s": 5.0,
         "server_p50_ratio": None, "regressions": [], "reasons": ["Locust exited"]},
    ]  # fmt: skip


COST = {
    "depth": 128,
    "base_us": 35.0,
    "points": [{"chains": 250, "added_us": 75.0, "per_chain_us": 0.3}],
}


def _results() -> dict[str, Any]:
    return {
        "started": "2026-01-01 00:00 UTC",
        "elapsed_s": 600.0,
        "machine": {"cpus": 2, "cpu_model": "x", "python": "3.11", "haproxy": "2.6"},
        "background_cpu": {"start": 0.02, "end": 0.03},
        "config": {"noise": {"on_s": 0.2, "off_s": 0.8}},
        "policy": GatePolicy.from_settings(GateSettings()).to_dict(),
        "policy_is_default": True,
        "calibration": {
            "live_server_p50_ms": 0.31,
            "chain_cost": COST,
            "identical": {"same_sha256": False},
        },
        "copies": {"1": {"version": "2", "chains": 0}, "2": {"version": "3", "chains": 1033}},
        "runs": _runs(),
    }


def test_the_summary_counts_each_verdict_per_factor_and_condition() -> None:
    rows = sr.summarize(_runs())
    keys = [(row["factor"], row["condition"]) for row in rows]
    assert keys == [(1.0, QUIET), (1.0, NOISY), (2.0, QUIET), (2.0, NOISY)]
    quiet1, noisy1, quiet2, noisy2 = rows
    assert (quiet1["runs"], quiet1["pass"], quiet1["fail"], quiet1["inconclusive"]) == (3, 2, 0, 1)
    assert (noisy1["runs"], noisy1["pass"]) == (1, 1)
    assert (quiet2["runs"], quiet2["fail"], quiet2["error"], quiet2["pass"]) == (3, 2, 1, 0)
    assert (noisy2["runs"], noisy2["fail"]) == (1, 1)
    assert quiet1["median_ratio"] == pytest.approx(1.02)
    assert quiet2["median_ratio"] == pytest.approx(2.05)  # the errored run has no ratio
    assert (quiet1["median_wall_s"], quiet1["max_wall_s"]) == (32.0, 60.0)
    assert quiet1["median_allowed"] == pytest.approx(1.25)


def test_a_group_without_ratios_has_nan_medians() -> None:
    rows = sr.summarize([{"factor": 1.5, "condition": QUIET, "verdict": "error",
                          "wall_s": 3.0, "server_p50_ratio": None, "regressions": []}])  # fmt: skip
    assert math.isnan(rows[0]["median_ratio"]) and math.isnan(rows[0]["median_allowed"])


def test_the_markdown_has_the_table_and_the_policy_line() -> None:
    text = sr.markdown(_results())
    assert "| 1x | quiet | 3 | 2 | 0 | 1 | 0 | 1.02x | 1.25x | 32 | 60 |" in text
    assert "| 2x | quiet | 3 | 0 | 2 | 0 | 1 | 2.05x | 1.25x | 27 | 29 |" in text
    assert "200 req/s per target" in text and "p50 at most 1.25x live's" in text
    assert (
        "0.310 ms" in text and "250 chains +75 µs (0.300 µs each)" in text and "1033 chains" in text
    )


def test_the_error_column_appears_only_when_a_run_errored() -> None:
    lines = sr.table(sr.summarize(_runs()[:4]))
    assert "error" not in lines[0]
    assert lines[1].count("|") == lines[0].count("|")
    assert lines[2] == "| 1x | quiet | 3 | 2 | 0 | 1 | 1.02x | 1.25x | 32 | 60 |"


def test_write_produces_the_three_files(tmp_path: Path) -> None:
    paths = sr.write(_results(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "gate_sensitivity.json", "gate_sensitivity.md", "gate_sensitivity.png",
    ]  # fmt: skip
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_quiet_and_noisy_runs_are_interleaved() -> None:
    assert schedule(3, 1) == [QUIET, NOISY, QUIET, QUIET]
    assert schedule(1, 2) == [QUIET, NOISY, NOISY]
    assert schedule(2, 0) == [QUIET, QUIET]


def test_the_identical_copy_has_its_own_counts() -> None:
    options = Options(runs=5, identical_runs=20, noisy_identical_runs=10, factors=(1.0, 2.0),
                      noise=True, out=Path("."), wait_quiet=0, verbose=False)  # fmt: skip
    assert options.counts(1.0) == (20, 10) and options.counts(2.0) == (5, 5)
    quiet_only = Options(**{**options.__dict__, "noise": False})
    assert quiet_only.counts(1.0) == (20, 0)


def test_the_noisy_neighbour_is_stopped_when_the_block_ends() -> None:
    with noisy_neighbour(0.01, 0.01) as noise:
        time.sleep(0.2)
    assert noise.wall_s > 0 and math.isfinite(noise.cpu_s)
    assert noise.duty == 0.5


def test_the_noisy_neighbour_needs_a_duty_cycle() -> None:
    with pytest.raises(ValueError), noisy_neighbour(0.0, 0.0):
        pass
