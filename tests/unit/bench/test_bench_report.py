"""The results files: goals judged, ratios to the floor, a figure."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import report


def _capacity(rate: float, *others: float) -> dict[str, Any]:
    steps = [{"rate": rate, "p99_ms": 2.0}, {"rate": rate * 2, "p99_ms": 40.0}]
    rates = [rate, *others] if others else [rate, rate, rate]
    return {"rate": rate, "rates": rates, "limited_by": "target", "steps": steps}


def _spread(median: float) -> dict[str, float]:
    return {"median": median, "q1": median * 0.9, "q3": median * 1.1, "min": median * 0.8,
            "max": median * 1.2}  # fmt: skip


def _batch() -> dict[str, Any]:
    sizes = {}
    for size, (ours, native) in {"64": (120.0, 400.0), "1024": (4000.0, 2000.0)}.items():
        us = {
            "bentogate": _spread(ours),
            "xgboost": _spread(native),
            "xgboost_1_thread": _spread(native * 1.5),
            "onnxruntime_1_thread": _spread(ours * 2),
        }
        vs = {"xgboost": _spread(ours / native), "xgboost_1_thread": _spread(ours / native / 1.5),
              "onnxruntime_1_thread": _spread(0.5)}  # fmt: skip
        sizes[size] = {"rows": int(size), "rounds": 3, "us": us, "bentogate_vs": vs}
    return {"cores": 2, "omp_num_threads": None, "resident_mib_before_scorer": 200.0,
            "resident_mib_after_scorer": 204.5, "sizes": sizes}  # fmt: skip


def _results() -> dict[str, Any]:
    serial = {
        key: {"p50_ms": p50, "p99_ms": p50 * 2, "p99_9_ms": p50 * 4, "errors": 0}
        for key, p50 in (("bare", 0.2), ("bento", 0.4), ("haproxy", 0.45), ("mlserver", 0.9))
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
                     "haproxy": _capacity(1800, 1700, 2000),
                     "mlserver": _capacity(900, 1000, 850)},
        "batch": _batch(),
        "peer": {
            "settings": {"debug": False}, "score_check": {"bentogate": 0.25, "mlserver": 0.25},
            "resident_mib": 480.0,
            "versions": {"mlserver": "1.7.1", "mlserver-xgboost": "1.7.1", "xgboost": "3.2.0",
                         "uvicorn": "0.55.0"},
        },
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
    assert rows["serial p50 through HAProxy vs bare"] == ("2.25x", False)  # 0.45 / 0.2
    assert rows["serial p99 through HAProxy vs bare"] == ("2.25x", False)
    assert rows["capacity at p99 ≤ 5 ms, 1 replica through HAProxy vs one bare process"] == (
        "0.45x",
        False,
    )
    assert rows["serial p50 through HAProxy vs MLServer"] == ("0.50x", True)
    assert rows["capacity through HAProxy vs MLServer"] == ("2.00x", True)
    assert rows["/predict_batch of 64 rows vs XGBoost native (default threads)"] == ("0.30x", True)
    assert rows["/predict_batch of 1024 rows vs XGBoost native (default threads)"] == (
        "2.00x",
        False,
    )


def test_with_several_replicas_capacity_is_judged_against_as_many_bare_processes() -> None:
    results = _results()
    results["config"]["replicas"] = 2
    results["capacity"]["bare_n"] = _capacity(3000)
    results["serial"]["haproxy"] = {"p50_ms": 0.3, "p99_ms": 0.36, "p99_9_ms": 1.0, "errors": 0}
    rows = {goal: (value, met) for goal, _, value, met in report.goals(results)}
    assert rows["capacity at p99 ≤ 5 ms, 2 replicas through HAProxy vs bare x 2"] == (
        "0.60x",
        True,
    )  # 1800 / 3000: the single process's 4000 is not the comparison any more
    assert rows["serial p50 through HAProxy vs bare"] == ("1.50x", True)
    assert rows["serial p99 through HAProxy vs bare"] == ("0.90x", True)


def test_a_ratio_that_rounds_to_its_limit_is_printed_to_three_decimals() -> None:
    results = _results()
    results["serial"]["haproxy"] = {"p50_ms": 0.321, "p99_ms": 0.4, "p99_9_ms": 1.0, "errors": 0}
    rows = {goal: (value, met) for goal, _, value, met in report.goals(results)}
    assert rows["serial p50 through HAProxy vs bare"] == ("1.605x", False)  # 0.321 / 0.2


def test_the_measured_revision_heads_the_report() -> None:
    results = _results()
    results["config"]["revision"] = "0123456789ab + uncommitted changes"
    first = report.markdown(results).splitlines()[2]
    assert first.startswith("One run of `./run bench` of commit 0123456789ab + uncommitted")
    del results["config"]["revision"]  # a results file from before the revision was kept
    assert report.markdown(results).splitlines()[2].startswith("One run of `./run bench` on ")


def test_the_revision_is_the_checkouts_commit_and_says_if_it_was_changed(tmp_path: Path) -> None:
    from bench.machine import revision

    assert revision(tmp_path) is None  # not a checkout
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "f").write_text("a")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    assert revision(tmp_path) == head
    (tmp_path / "f").write_text("b")
    assert revision(tmp_path) == f"{head} + uncommitted changes"


def _memory(*others: dict[str, Any]) -> dict[str, Any]:
    return {
        "replica_mib": [120.0, 121.0], "replicas_total_mib": 241.0, "haproxy_mib": 20.0,
        "bare_mib": 60.0, "bare_n_mib": 118.0, "mlserver_mib": 480.0,
        "after_cutover": [
            {"pid": 1, "kind": "bento", "name": "python -m bentoml serve fraud:1",
             "command": "/v/bin/python -m bentoml serve fraud:1", "resident_mib": 120.0},
            {"pid": 2, "kind": "haproxy", "name": "haproxy -W -D", "command": "haproxy -W -D",
             "resident_mib": 20.0},
            *others,
        ],
    }  # fmt: skip


_EXPIRER = {"pid": 3, "kind": "other", "name": "python -m bentogate.expirer",
            "command": "/v/bin/python -m bentogate.expirer", "resident_mib": 80.4}  # fmt: skip


def test_memory_per_replica_is_a_goal_row_without_a_limit() -> None:
    results = _results()
    results["memory"] = _memory()
    rows = {goal: (aim, value, met) for goal, aim, value, met in report.goals(results)}
    assert rows["resident memory per replica (arbiter + worker)"] == (
        "reported",
        "120, 121 MiB (all 2: 241 MiB)",
        None,
    )
    other = (
        "other bentogate processes once the cutover's warm window ended (besides Bentos, "
        "HAProxy, agent)"
    )
    assert rows[other] == ("none", "none", True)


def test_a_process_of_bentogate_besides_bentos_and_haproxy_fails_its_goal() -> None:
    results = _results()
    results["memory"] = _memory(_EXPIRER)
    rows = {goal: (value, met) for goal, _, value, met in report.goals(results)}
    other = (
        "other bentogate processes once the cutover's warm window ended (besides Bentos, "
        "HAProxy, agent)"
    )
    assert rows[other] == ("python -m bentogate.expirer (80 MiB)", False)
    # the fleet agent is the one more process the issue allows
    agent = {**_EXPIRER, "kind": "agent", "name": "bentogate agent --host h1"}
    results["memory"] = _memory(agent)
    rows = {goal: (value, met) for goal, _, value, met in report.goals(results)}
    assert rows[other] == ("none", True)


def test_no_memory_figures_no_memory_rows(tmp_path: Path) -> None:
    results = _results()  # a results file from before the memory figures
    assert not [row for row in report.goals(results) if "memory" in row[0]]
    report.write(results, tmp_path, {"bare": [200.0]})
    assert "## Resident memory" not in (tmp_path / "results.md").read_text()


def test_the_memory_table_and_what_else_ran_after_the_cutover(tmp_path: Path) -> None:
    results = _results()
    results["config"]["replicas"] = 2
    results["memory"] = _memory(_EXPIRER)
    report.write(results, tmp_path, {"bare": [200.0]})
    text = (tmp_path / "results.md").read_text()
    assert "| resident memory per replica (arbiter + worker) | reported | 120, 121 MiB" in text
    assert "| Bento replica 2 of v1 | 121 |" in text
    assert "| all 2 replicas of v1 | 241 |" in text
    assert "| HAProxy (master and worker) | 20 |" in text
    assert "| bare floor, one process | 60 |" in text
    assert "| bare floor, 2 processes (one per replica) | 118 |" in text
    assert "| MLServer (the peer) | 480 |" in text
    other = (
        "| other bentogate processes once the warm window ended: python -m bentogate.expirer | 80 |"
    )
    assert other in text
    assert "| other bentogate processes in the warm window: none | 0 |" in text
    assert "1 Bento process tree(s), 1 HAProxy and 0 agent; besides them: " in text
    assert "`/v/bin/python -m bentogate.expirer` (80 MiB)." in text
    saved = json.loads((tmp_path / "results.json").read_text())["memory"]
    assert saved["replica_mib"] == [120.0, 121.0] and saved["bare_n_mib"] == 118.0
    results["memory"] = {**_memory(), "warm_window": [_EXPIRER]}  # baking, then gone
    report.write(results, tmp_path, {"bare": [200.0]})
    text = (tmp_path / "results.md").read_text()
    assert (
        "| other bentogate processes in the warm window: python -m bentogate.expirer | 80 |" in text
    )
    assert "| other bentogate processes once the warm window ended: none | 0 |" in text
    assert "nothing else of bentogate's." in text


def test_a_peer_that_holds_no_rate_within_the_limit_is_behind_any_rate() -> None:
    results = _results()
    results["capacity"]["mlserver"] = _capacity(0, 0, 0)
    rows = {goal: (value, met) for goal, _, value, met in report.goals(results)}
    assert rows["capacity through HAProxy vs MLServer"] == (
        "MLServer held no rate at p99 ≤ 5 ms",
        True,
    )
    results["capacity"]["haproxy"] = _capacity(0, 0, 0)
    rows = {goal: (value, met) for goal, _, value, met in report.goals(results)}
    assert rows["capacity through HAProxy vs MLServer"] == ("-", False)


def test_the_peer_capacity_ratio_comes_with_the_rounds_paired_extremes() -> None:
    ratios = report.peer_ratios(_results())
    # rounds: 1800/900, 1700/1000, 2000/850
    assert ratios["capacity"] == 2.0
    assert ratios["capacity_min"] == 1.7
    assert abs(ratios["capacity_max"] - 2000 / 850) < 1e-12


def test_the_markdown_has_ratios_to_the_floor_and_the_release_times(tmp_path: Path) -> None:
    results = _results()
    report.write(results, tmp_path, {"bare": [200.0, 210.0], "haproxy": [450.0, 500.0]})
    text = (tmp_path / "results.md").read_text()
    assert "| Bento, direct (one replica) | 0.400 | 0.800 | 1.600 | 2.00x | 0 |" in text
    assert (
        "| Bento through HAProxy (all replicas) | 1800 | 1700 to 2000 | 0.45x | target | 2 |"
        in text
    )
    assert "| serial p50 | 0.450 ms | 0.900 ms | 0.50x |" in text
    assert "| 2.00x (1.70x to 2.35x) |" in text
    assert "| 64 | 120 (108-132) | 400 (360-440) | 600 (540-660) | 240 (216-264) |" in text
    assert "add to a process (the Scorer loaded, onnxruntime imported before): 4.5 MiB" in text
    assert "1 : 15.0 : nan" in text  # ORT : XGBoost : (no pickled figure in this run)
    assert "| **deploy** (build → healthy behind HAProxy) | **9.00** | **10.00** |" in text
    assert "| cutover: `promote` v2 (v1 stays warm) | 2.00 | 0.300 | 0 of 500 |" in text
    assert "| `rollback` to the warm v1 | 0.05 | 0.010 | 0 of 400 |" in text
    assert (
        "| `rollback` to the restarted v1 | 6.50 | 6.400 | 1 of 900 (RemoteDisconnected) |" in text
    )
    assert json.loads((tmp_path / "results.json").read_text())["serial"]["bare"]["p50_ms"] == 0.2
    assert (tmp_path / "latency.png").read_bytes()[:4] == b"\x89PNG"


def test_cpu_per_request_each_process_and_against_the_floor_of_as_many_processes() -> None:
    def target(total: float, **us: float) -> dict[str, Any]:
        return {"us": us, "total_us": total, "generator_us": 40.0, "p99_ms": 1.2,
                "errors": 0, "rounds": [{}, {}, {}]}  # fmt: skip

    results = _results()
    results["cpu"] = {"rate": 3250.0, "targets": {
        "bare": target(80.0, floor=80.0), "bare_n": target(100.0, floor=100.0),
        "bento": target(120.0, replica=120.0),
        "haproxy": target(200.0, haproxy=50.0, **{"replica 1": 110.0, "replica 2": 40.0}),
    }}  # fmt: skip
    text = report.markdown(results)
    assert "## CPU per request at 3250 req/s (open loop)" in text
    assert "median of 3 interleaved rounds" in text
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()
            if line.startswith("| ") and "µs" not in line}  # fmt: skip
    assert "| haproxy 50, replica 1 110, replica 2 40 | 200 | 2.00x |" in rows[
        report.TARGETS["haproxy"]]  # against two bare processes (100), not one (80)
    assert "| replica 120 | 120 | 1.50x |" in rows[report.TARGETS["bento"]]


def test_a_run_from_before_cpu_per_request_has_no_such_table() -> None:
    assert "CPU per request" not in report.markdown(_results())


@pytest.mark.parametrize(
    ("ours", "floor", "shown", "met"),
    [
        # the floor passed the ceiling: 13,000 / 16,000 is an upper bound of the ratio
        ((13000, "target"), (16000, "ceiling"),
         "0.81x (the floor passed the search's ceiling: at least 16000 req/s)", None),
        ((8000, "target"), (16000, "ceiling"),
         "0.50x (the floor passed the search's ceiling: at least 16000 req/s)", False),
        # ours outran its generator: 9,000 / 10,000 is a lower bound
        ((9000, "generator"), (10000, "target"),
         "0.90x (HAProxy outran its load generator: at least 9000 req/s)", True),
        ((5000, "generator"), (10000, "target"),
         "0.50x (HAProxy outran its load generator: at least 5000 req/s)", None),
    ],
)
def test_a_capacity_search_that_found_only_a_lower_bound_is_judged_only_where_it_can_be(
    ours: tuple[float, str], floor: tuple[float, str], shown: str, met: bool | None
) -> None:
    results = _results()
    results["config"]["replicas"] = 2
    results["capacity"]["haproxy"] = {**_capacity(ours[0]), "limited_by": ours[1]}
    results["capacity"]["bare_n"] = {**_capacity(floor[0]), "limited_by": floor[1]}
    rows = {goal: (value, ok) for goal, _, value, ok in report.goals(results)}
    assert rows["capacity at p99 ≤ 5 ms, 2 replicas through HAProxy vs bare x 2"] == (shown, met)
