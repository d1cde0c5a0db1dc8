"""What `bentogate status` shows and when it exits non-zero, from fake rows (no HAProxy);
the tables of inventory and show; the progress view on a terminal and in a log."""

from __future__ import annotations

import io
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from rich.console import Console

from bentogate.progress import LiveSteps, PlainSteps, elapsed_text, progress_view
from bentogate.status import find_problems
from bentogate.tables import inventory_text, status_text, story_text, to_text, utc_moment


def row(version: str, role: str, health: str = "UP", **extra: Any) -> dict[str, Any]:
    """A status row as :func:`bentogate.status.status_rows` makes it."""
    return {
        "model": "fraud",
        "version": version,
        "state": {"live": "production", "candidate": "gated"}.get(role, "gated"),
        "role": role,
        "warm_until": None,
        "bake": None,
        "production_port": 10000,
        "candidate_port": 10001,
        "backend_port": 3000 + int(version),
        "health": health,
        "check": "L7OK" if health == "UP" else "L7STS",
        "check_ms": 2,
        "last_check": "" if health == "UP" else "the canary prediction did not answer 200",
        "sessions": 0,
        "req_per_s": 41,
        "5xx": 0,
        "rtime_ms": 1,
        "ttime_ms": 3,
        "memory_mb": 251.3,
        **extra,
    }


ROUTES = {"fraud": "be_fraud_2", "fraud.candidate": "be_fraud_3"}


def test_all_routed_servers_up_is_no_problem_whatever_the_unrouted_ones_are() -> None:
    rows = [row("2", "live"), row("3", "candidate"), row("1", "previous", "DOWN")]
    assert find_problems(rows, ROUTES) == []


@pytest.mark.parametrize(("down", "port"), [("2", "production :10000"), ("3", "candidate :10001")])
def test_a_routed_server_not_up_is_a_problem_naming_port_check_and_reason(
    down: str, port: str
) -> None:
    rows = [
        row(v, r, "DOWN" if v == down else "UP") for v, r in (("2", "live"), ("3", "candidate"))
    ]
    [problem] = find_problems(rows, ROUTES)
    assert f"fraud:{down} on :300{down}" in problem.text and port in problem.text
    assert "DOWN" in problem.text and "L7STS" in problem.text
    assert "the canary prediction did not answer 200" in problem.text


@pytest.mark.parametrize("health", ["UP 1/2", "DOWN 1/2", "DRAIN", "MAINT", "unknown"])
def test_anything_but_fully_up_on_a_routed_backend_is_a_problem(health: str) -> None:
    assert len(find_problems([row("2", "live", health)], ROUTES)) == 1


def test_no_haproxy_is_a_problem_only_where_the_db_routes_a_version() -> None:
    [problem] = find_problems([row("2", "live", "unknown")], None)
    assert "HAProxy is not running" in problem.text and "fraud:2" in problem.text
    assert find_problems([row("1", "previous", "unknown")], None) == []
    assert find_problems([], None) == []


def test_the_status_table_shows_health_check_reason_and_live_figures() -> None:
    rows = [
        row("2", "live", "DOWN", **{"5xx": 7, "req_per_s": 12, "rtime_ms": 4}),
        row("1", "previous", warm_until="2026-12-06T12:05:00+00:00"),
    ]
    text = status_text(rows, find_problems(rows, ROUTES))
    assert "fraud  production :10000  candidate :10001" in text
    header = next(line for line in text.splitlines() if "health" in line)
    for column in ("version", "role", "port", "health", "check", "req/s", "5xx", "resp", "memory"):
        assert column in header
    live = next(line for line in text.splitlines() if line.split()[:1] == ["2"])
    assert re.search(r"live\s+3002\s+DOWN\s+L7STS 2 ms\s+12\s+7\s+4 ms\s+251.3 MB", live), live
    assert "the canary prediction did not answer 200" in text
    assert "warm until 2026-12-06 12:05:00 UTC" in text
    assert "✗ fraud:2 on :3002 takes the traffic of production :10000 but is DOWN" in text
    assert "\x1b[" not in text  # not a terminal: no styles


def test_nothing_deployed_says_so() -> None:
    assert status_text([], []) == "nothing deployed on this host"


def test_a_table_on_a_terminal_is_styled() -> None:
    from bentogate.tables import status_renderable

    assert "\x1b[" in to_text(status_renderable([row("2", "live")], []), terminal=True)


def test_inventory_and_the_story_of_a_version_are_tables() -> None:
    inventory = [
        {"model": "fraud", "use": "in use", "owner": "risk", "live_version": "2",
         "live_port": 10000, "versions": 2, "validator": "vic", "last_validation": "x",
         "next_review_due": None},
    ]  # fmt: skip
    text = inventory_text(inventory)
    assert "live version" in text and re.search(r"fraud\s+in use\s+risk\s+2\s+10000", text)
    story = {
        "version": {"model": "fraud", "version": "2", "state": "gated", "sha256": "ab" * 32},
        "gate_runs": [{"created_at": "t1", "verdict": "pass", "compared_with": "1",
                       "report_path": "/r/gate-report.html"}],
        "shadow_runs": [],
        "deployments": [],
        "audit": [{"id": 1, "at": "t0", "actor": "dana", "action": "register", "model": "fraud",
                   "version": "2", "from_state": None, "to_state": "registered",
                   "outcome": "ok", "reason": ""}],
    }  # fmt: skip
    text = story_text(story)
    assert re.search(r"state\s+gated", text) and "ab" * 32 in text
    assert "gate runs" in text and "/r/gate-report.html" in text
    assert "shadow runs: (none)" in text and "deployments: (none)" in text
    assert re.search(r"1\s+t0\s+dana\s+register", text)


def test_plain_progress_is_one_line_each_after_the_time_of_day() -> None:
    out = io.StringIO()
    steps = PlainSteps(out)
    steps("waiting for fraud:2 on :3005 to be ready")
    steps("  t=   1.0s rate=100/s")
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d waiting for fraud:2 on :3005 to be ready", lines[0])
    assert lines[1].endswith("   t=   1.0s rate=100/s")


def test_progress_off_a_terminal_is_plain() -> None:
    out = io.StringIO()
    with progress_view(Console(file=out, force_terminal=False)) as progress:
        progress("building")
    assert out.getvalue().endswith(" building\n")


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100, color_system=None), out


def test_live_progress_keeps_one_line_per_finished_step_with_its_time() -> None:
    console, out = terminal()
    with progress_view(console) as progress:
        assert isinstance(progress, LiveSteps)
        progress("fraud:2: deploy")
        progress("waiting for fraud:2 on :3005 to be ready")
        progress("  a detail is no step")
        time.sleep(0.1)
    text = out.getvalue()
    assert re.search(r"✓ fraud:2: deploy\s*\n", text)  # a heading: no time
    assert re.search(r"✓ waiting for fraud:2 on :3005 to be ready \(0\.\d s\)", text)
    assert "✓ a detail" not in text and "✓   a detail" not in text


def test_the_step_a_failure_interrupts_is_marked() -> None:
    console, out = terminal()
    with pytest.raises(RuntimeError), progress_view(console) as progress:
        progress("bentoml build fraud:2")
        raise RuntimeError("boom")
    assert "✗ bentoml build fraud:2" in out.getvalue()


def test_the_running_step_shows_its_elapsed_time_and_latest_detail() -> None:
    console, _ = terminal()
    steps = LiveSteps(console)
    steps("gate fraud:2: 100 req/s for 4 s")
    steps("  t=   1.0s rate=100/s")
    steps("  t=   2.0s rate=100/s")
    shown = to_text(steps.__rich__(), terminal=False)
    assert "gate fraud:2: 100 req/s for 4 s (0.0 s)" in shown
    assert "t=   2.0s" in shown and "t=   1.0s" not in shown


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.43, "0.4 s"), (12.4, "12 s"), (125, "2 min 05 s")]
)
def test_elapsed_time_is_as_precise_as_it_matters(seconds: float, text: str) -> None:
    assert elapsed_text(seconds) == text


def test_a_moment_is_shown_in_utc_with_its_day() -> None:
    """A warm window of a day or more ends on another day than it began: the day is named."""
    two_hours_east = timezone(timedelta(hours=2))
    assert (
        utc_moment(datetime(2026, 12, 8, 1, 5, tzinfo=two_hours_east)) == "2026-12-07 23:05:00 UTC"
    )
