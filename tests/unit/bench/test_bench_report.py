"""The results files: goals judged, ratios to the floor, a figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import report


def _capacity(rate: float) -> dict[str, Any]:
    steps = [{"rate": rate, "p99_ms": 2.0}, {"rate": rate * 2, "p99_ms": 40.0}]
    return {"rate": rate, "limited_by": "target", "steps": steps}


def _results() -> dict[str, Any]:
    serial = {
        key: {"p50_ms": p50, "p99_ms": p50 * 2, "p99_9_ms": p50 * 4, "errors": 0}
        for key, p50 in (("bare", 0.2), ("bento", 0.4), ("haproxy", 0.45))
    }
    return {
        "started": "2026-01-01 00:00 UTC",
        "elapsed_s": 300.0,
        "machine": {
            "cpus": 2, "cpu_model": "x", "python": "3.11", "haproxy": "2.6",
            "load_average_1m": 0.1, "packages": {"bentoml": "1.4.40"},
        },
        "background_cpu": {"start": 0.02, "end": 0.03},
        "config": {
            "workers": 2, "serial_count": 100, "serial_warmup": 10,
            "capacity": {"p99_limit_ms": 5.0, "connections": 32, "warmup_s": 0.5,
                         "duration_s": 2.5},
        },
        "inprocess": {"test_one_row_onnxruntime": {"median_us": 10.0},
                      "test_one_row_xgboost": {"median_us": 150.0}},
        "serial": serial,
        "capacity": {"bare": _capacity(4000), "bento": _capacity(2400),
                     "haproxy": _capacity(1800)},
        "release": {
            "v1": {"build": 4.0, "deploy": 5.0},
            "v2": {"build": 4.5, "deploy": 5.5, "promote": 2.0},
            "cutover": {"switch_s": 2.0, "first_new_answer_s": 0.3, "last_old_answer_s": 0.29,
                        "probe_requests": 500, "probe_failures": 0, "failure_kinds": ""},
            "rollback": {
                "warm": {"switch_s": 0.05, "first_new_answer_s": 0.01,
                         "last_old_answer_s": 0.009, "probe_requests": 400,
                         "probe_failures": 0, "failure_kinds": ""},
                "restarted": {"switch_s": 6.5, "first_new_answer_s": 6.4,
                              "last_old_answer_s": 6.39, "probe_requests": 900,
                              "probe_failures": 1, "failure_kinds": "RemoteDisconnected"},
            },
        },
    }  # fmt: skip


def test_goals_are_judged_from_the_haproxy_figures() -> None:
    rows = {goal: (value, met) for goal, _, value, met in report.goals(_results())}
    assert rows["serial p50 through HAProxy"] == ("0.450 ms", True)
    assert rows["serial p99 through HAProxy"] == ("0.900 ms", True)
    assert rows["capacity through HAProxy at p99 ≤ 5 ms, vs bare"] == ("0.45x", False)


def test_the_markdown_has_ratios_to_the_floor_and_the_release_times(tmp_path: Path) -> None:
    results = _results()
    report.write(results, tmp_path, {"bare": [200.0, 210.0], "haproxy": [450.0, 500.0]})
    text = (tmp_path / "results.md").read_text()
    assert "| Bento, direct (one replica) | 0.400 | 0.800 | 1.600 | 2.00x | 0 |" in text
    assert "| Bento through HAProxy (all replicas) | 1800 | 0.45x | target | 2 |" in text
    assert "1 : 15.0 : nan" in text  # ORT : XGBoost : (no pickled figure in this run)
    assert "| **deploy** (build → healthy behind HAProxy) | **9.00** | **10.00** |" in text
    assert "| cutover: `promote` v2 (v1 stays warm) | 2.00 | 0.300 | 0 of 500 |" in text
    assert "| `rollback` to the warm v1 | 0.05 | 0.010 | 0 of 400 |" in text
    assert (
        "| `rollback` to the restarted v1 | 6.50 | 6.400 | 1 of 900 (RemoteDisconnected) |" in text
    )
    assert json.loads((tmp_path / "results.json").read_text())["serial"]["bare"]["p50_ms"] == 0.2
    assert (tmp_path / "latency.png").read_bytes()[:4] == b"\x89PNG"
