"""The agent's promises without real processes (SQLite): a failed start is retried a bounded
number of times, each try audited; keep-alive heartbeats while a pass waits; heartbeat ages
and rollout deadlines judged by the database's clock, whatever the processes' clocks say."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fleet_unit_support import SHA, context, gated, report

from bentogate import agent, fleet, fleetstatus, host
from bentogate.context import Context, Ref
from bentogate.errors import BentogateError, DatabaseUnavailable, IllegalTransition
from bentogate.errors import RuntimeBackendError as StartFailed
from bentogate.governance import Registry
from bentogate.heartbeat import Heartbeat
from bentogate.settings import AgentSettings


@pytest.mark.parametrize(
    ("attempts", "first", "ceiling", "delays"),
    [(3, 2.0, 30.0, [2.0, 4.0]), (5, 1.5, 5.0, [1.5, 3.0, 5.0, 5.0]), (1, 2.0, 30.0, [])],
)
def test_fleet_start_retries_are_bounded_and_back_off(
    attempts: int, first: float, ceiling: float, delays: list[float]
) -> None:
    settings = AgentSettings(start_attempts=attempts, start_retry_s=first, max_backoff_s=ceiling)
    assert agent.retry_delays(settings) == delays


def test_fleet_start_attempts_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="start_attempts"):
        AgentSettings(start_attempts=0)


class RecordingBeat(Heartbeat):
    """A heartbeat whose waits return at once, recorded; ``stopping``: as if told to stop."""

    def __init__(self, ctx: Context, *, stopping: bool = False) -> None:
        super().__init__(ctx, threading.Event())
        self.waits: list[float] = []
        self.stopping = stopping

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self.stopping


def _starts(monkeypatch: pytest.MonkeyPatch, *errors: BentogateError | None) -> list[Ref]:
    """``host.start`` raises ``errors`` in turn (None: succeeds); returns the refs it got."""
    calls: list[Ref] = []
    left = list(errors)

    def start(_ctx: Context, ref: Ref, **_: object) -> list[object]:
        calls.append(ref)
        error = left.pop(0) if left else None
        if error is not None:
            raise error
        return []

    monkeypatch.setattr(host, "start", start)
    return calls


def _in_rollout(tmp_path: Path) -> tuple[Context, Ref, int]:
    ctx = context(tmp_path, host="h1", agent={"start_attempts": 3, "start_retry_s": 2.0})
    version = gated(ctx.registry)
    rollout = ctx.registry.start_rollout(
        "fraud", version, actor="rel", sha256=SHA, hosts=["h1"], deadline_s=60
    )
    return ctx, Ref("fraud", version), rollout.id


def _failures(ctx: Context) -> list[dict[str, object]]:
    return [e.payload for e in ctx.registry.audit("fraud") if e.action == "start_failed"]


def test_fleet_a_start_that_fails_once_is_retried_and_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, ref, rollout_id = _in_rollout(tmp_path)
    calls = _starts(monkeypatch, StartFailed("bentoml serve exited with 1"), None)
    beat = RecordingBeat(ctx)
    assert agent._start(ctx, ref, beat) == 2
    assert calls == [ref, ref] and beat.waits == [2.0]
    [failure] = _failures(ctx)
    assert failure == {
        "host": "h1", "tries": 1, "of": 3, "error": "bentoml serve exited with 1",
        "retry_in_s": 2.0, "rollout_id": rollout_id,
    }  # fmt: skip
    [row] = [e for e in ctx.registry.audit("fraud") if e.action == "start_failed"]
    assert (row.actor, row.version) == ("h1", ref.version)
    assert row.reason.startswith(f"h1: start 1 of 3 of {ref} failed, retrying in 2 s")
    ctx.close()


def test_fleet_a_start_that_keeps_failing_gives_up_after_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, ref, _ = _in_rollout(tmp_path)
    calls = _starts(monkeypatch, *[StartFailed(f"try {i}") for i in (1, 2, 3, 4)])
    beat = RecordingBeat(ctx)
    with pytest.raises(StartFailed, match="try 3"):
        agent._start(ctx, ref, beat)
    assert len(calls) == 3 and beat.waits == [2.0, 4.0]
    failures = _failures(ctx)
    assert [(f["tries"], f["retry_in_s"]) for f in failures] == [(1, 2.0), (2, 4.0), (3, None)]
    assert "giving up" in ctx.registry.audit("fraud")[-1].reason
    ctx.close()


@pytest.mark.parametrize(
    "error",
    [IllegalTransition("refused: not approved"), DatabaseUnavailable("cannot use the DB")],
)
def test_fleet_a_refusal_or_a_lost_db_is_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BentogateError
) -> None:
    ctx, ref, _ = _in_rollout(tmp_path)
    calls = _starts(monkeypatch, error, None)
    beat = RecordingBeat(ctx)
    with pytest.raises(type(error)):
        agent._start(ctx, ref, beat)
    assert len(calls) == 1 and beat.waits == [] and _failures(ctx) == []
    ctx.close()


def test_fleet_an_agent_told_to_stop_does_not_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, ref, _ = _in_rollout(tmp_path)
    calls = _starts(monkeypatch, StartFailed("slow"), None)
    with pytest.raises(StartFailed):
        agent._start(ctx, ref, RecordingBeat(ctx, stopping=True))
    assert len(calls) == 1
    ctx.close()


# -- keep-alive heartbeats -------------------------------------------------------------------


def test_fleet_keep_alives_only_in_a_long_pass_and_without_judged_failures(tmp_path: Path) -> None:
    ctx = context(tmp_path, host="h1", agent={"interval_s": 0.2})
    beat = Heartbeat(ctx, threading.Event())
    beat.send(report("fraud", "1", failed="2", error="boom"))
    sent = ctx.registry.hosts()[0]
    time.sleep(0.25)
    assert not beat.keep_alive(ctx.registry)  # idle: the next pass reports
    beat.doing("starting fraud:2 (try 1 of 3)")
    assert not beat.keep_alive(ctx.registry)  # a quick pass sends none: its report follows
    time.sleep(0.25)
    assert beat.keep_alive(ctx.registry)  # a pass that runs long does
    assert not beat.keep_alive(ctx.registry)  # one per interval
    [alive] = ctx.registry.hosts()
    assert alive.last_heartbeat > sent.last_heartbeat
    assert alive.report["busy"] == "starting fraud:2 (try 1 of 3)"
    assert alive.report["models"]["fraud"] == {**sent.report["models"]["fraud"], "failed": None}
    ctx.close()


def test_fleet_heartbeats_go_on_while_a_pass_waits(tmp_path: Path) -> None:
    ctx = context(tmp_path, host="h1", agent={"interval_s": 0.1})
    beat = Heartbeat(ctx, threading.Event())
    beat.send(report("fraud", "1"))
    seen = set()
    with beat:
        beat.doing("waiting for fraud:2 to be ready")
        until = time.monotonic() + 1.0
        while time.monotonic() < until:  # a pass that waits one second
            seen.add(ctx.registry.hosts()[0].last_heartbeat)
            time.sleep(0.02)
    assert len(seen) >= 5, sorted(seen)  # one every interval_s (0.1 s), give or take
    ctx.close()


# -- the database's clock --------------------------------------------------------------------


def test_fleet_db_now_is_the_databases_clock_in_utc(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    before = datetime.now(UTC)
    moment = ctx.registry.db_now()
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= moment <= datetime.now(UTC) + timedelta(seconds=1)
    assert ctx.registry.db_now() >= moment
    ctx.close()


def _skewed(ctx: Context, skew: timedelta) -> Context:
    """Another process on the same DB whose clock is ``skew`` off."""

    def clock() -> datetime:
        return datetime.now(UTC) + skew

    return Context(ctx.settings, _registry=Registry(ctx.settings.database_url, clock=clock))


@pytest.mark.parametrize("skew", [timedelta(hours=1), timedelta(hours=-1)])
def test_fleet_a_skewed_clock_changes_no_verdict(tmp_path: Path, skew: timedelta) -> None:
    ctx = context(tmp_path)
    version = gated(ctx.registry)
    workstation, agent_host = _skewed(ctx, skew), _skewed(ctx, -skew)
    rollout = workstation.registry.start_rollout(
        "fraud", version, actor="rel", sha256=SHA, hosts=["h1", "h2"], deadline_s=60
    )
    assert abs(rollout.started_at - ctx.registry.db_now()) < timedelta(seconds=5)
    agent_host.registry.heartbeat("h1", report("fraud", version))
    assert fleet.settle(agent_host, actor="h1") == []  # pending: h2 has not reported
    assert {h.name for h in fleet.live_hosts(agent_host)} == {"h1"}
    assert [r["flags"] for r in fleetstatus.fleet_rows(workstation) if r["host"] == "h1"] == [[]]
    agent_host.registry.heartbeat("h2", report("fraud", version))
    [done] = fleet.settle(workstation, actor="rel")
    assert done.status == "complete", done.outcome
    for each in (ctx, workstation, agent_host):
        each.close()


@pytest.mark.parametrize("skew", [timedelta(hours=1), timedelta(hours=-1)])
def test_fleet_a_deadline_passes_by_the_databases_clock(tmp_path: Path, skew: timedelta) -> None:
    ctx = context(tmp_path)
    version = gated(ctx.registry)
    workstation, agent_host = _skewed(ctx, skew), _skewed(ctx, -skew)
    workstation.registry.start_rollout(
        "fraud", version, actor="rel", sha256=SHA, hosts=["h1"], deadline_s=2.0
    )
    agent_host.registry.heartbeat("h1", report("fraud", "0"))
    # Not yet, by either skewed clock. (2 s: with 0.5 s, a CI run on a busy machine took
    # longer than that from the rollout's start to this settle.)
    assert fleet.settle(agent_host, actor="h1") == []
    time.sleep(2.1)
    [done] = fleet.settle(agent_host, actor="h1")
    assert done.status == "failed" and done.outcome["reason"] == "deadline passed; not live on h1"
    for each in (ctx, workstation, agent_host):
        each.close()


def test_fleet_an_agent_stopped_while_it_waits_to_retry_reports_no_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, ref, _ = _in_rollout(tmp_path)
    ctx.settings.agent.interval_s, ctx.settings.agent.start_retry_s = 0.1, 30.0
    monkeypatch.setattr(host, "ensure_bento", lambda _ctx, ref: str(ref))
    _starts(monkeypatch, StartFailed("crashed"))
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(ctx, stop))
    thread.start()
    try:
        wait = time.monotonic() + 10
        while not _failures(ctx) and time.monotonic() < wait:
            time.sleep(0.05)
        time.sleep(0.3)  # keep-alives while it waits to retry
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert [(f["tries"], f["retry_in_s"]) for f in _failures(ctx)] == [(1, 30.0)]
    [h1] = ctx.registry.hosts()
    assert h1.report["busy"] == f"starting {ref} (try 1 of 3)"  # a keep-alive, the last word
    assert fleet.settle(ctx, actor="test") == []  # nothing says the start failed for good
    ctx.close()


def _host_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The host operations ``agent._converge`` calls, recorded (none acts); starts succeed."""
    calls: list[str] = []
    for name in ("ensure_bento", "apply_routes", "wait_healthy", "cut_over", "stop"):
        monkeypatch.setattr(host, name, lambda *_, _n=name, **__: calls.append(_n))
    _starts(monkeypatch, None)
    return calls


def test_fleet_an_agent_switches_only_to_what_the_db_makes_production_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass read v2 as production and started it; by the time its checks passed, the DB
    had rolled back to v1: the port stays on v1 (no cutover), and says why."""
    ctx = context(tmp_path, host="h1")
    one, two = gated(ctx.registry), gated(ctx.registry)
    ctx.registry.promote("fraud", one, actor="rel", sha256=SHA)
    calls = _host_calls(monkeypatch)
    model = ctx.registry.get_model("fraud")
    routed: dict[str, str | None] = {"fraud": one}
    report = agent.Report("h1", "127.0.0.1")
    agent._converge(ctx, model, two, routed, report, RecordingBeat(ctx))
    assert "cut_over" not in calls and routed == {"fraud": one}
    assert report.actions == [
        f"started fraud:{two}",
        f"not switching fraud to {two}: production moved",
    ]
    # production as read: the same pass cuts over
    ctx.registry.promote("fraud", two, actor="rel", sha256=SHA)
    calls.clear()
    agent._converge(ctx, model, two, routed, agent.Report("h1", "127.0.0.1"), RecordingBeat(ctx))
    assert calls[-1] == "cut_over"
    ctx.close()


def test_fleet_a_replaced_live_replica_joins_haproxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The port routes v1 already, but its replica died (record ended): the agent starts a
    new one, on whatever backend port is free, and asks for HAProxy's config to be
    re-rendered with it (no cutover: the route is right)."""
    ctx = context(tmp_path, host="h1")
    one = gated(ctx.registry)
    ctx.registry.promote("fraud", one, actor="rel", sha256=SHA)
    calls = _host_calls(monkeypatch)
    model = ctx.registry.get_model("fraud")
    report = agent.Report("h1", "127.0.0.1")
    assert agent._converge(ctx, model, one, {"fraud": one}, report, RecordingBeat(ctx)) is True
    assert calls == ["ensure_bento"] and report.actions == [f"started fraud:{one}"]
    ctx.close()
