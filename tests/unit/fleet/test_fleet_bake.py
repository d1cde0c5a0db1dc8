"""A bake breach on a fleet host (governance DB on SQLite, a recording runtime: no processes):
production goes back once however many hosts saw it, a rollout in progress ends with the
breach, the failed version has no warm time and stops, and the agent's wait between two
reconciliations ends as soon as a bake does."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fleet_unit_support import SHA, RecordingRuntime, context, gated

from bentogate import agent, bake, fleet, warm
from bentogate.context import Context, Ref
from bentogate.errors import ConcurrentChange
from bentogate.governance import Action, Role, RolloutStatus
from bentogate.heartbeat import Heartbeat
from bentogate.loadtest import GatePolicy

EVIDENCE = {"breach": "server p99 > 25 ms (p99_ms): 20 of 200 answers …", "host": "h2"}
REASON = "automatic rollback of fraud:2 (bake breach on h2): server p99 > 25 ms …"


def _two_live(tmp_path: Path, keep_previous_s: float = 300) -> Context:
    """fraud:1 then fraud:2 promoted over it; one deployment each on host "local"."""
    ctx = context(tmp_path, bento={"keep_previous_s": keep_previous_s, "expire_warm": "agent"})
    ctx.__dict__["runtime"] = RecordingRuntime()  # the cached property, replaced
    for port in (3001, 3002):
        version = gated(ctx.registry)
        ctx.registry.record_deployment("fraud", version, host="local", port=port, pid=None,
                                       role=Role.CANDIDATE)  # fmt: skip
        ctx.registry.promote("fraud", version, actor="rel", sha256=SHA)
    return ctx


def _roll_back(ctx: Context) -> None:
    fleet.roll_back(ctx, Ref("fraud", "2"), actor=bake.WATCHER, reason=REASON, evidence=EVIDENCE)


def test_two_hosts_breaching_at_once_roll_the_fleet_back_once(tmp_path: Path) -> None:
    ctx = _two_live(tmp_path)
    _roll_back(ctx)  # the first host's watcher
    assert ctx.registry.production_version("fraud").version == "1"  # type: ignore[union-attr]
    failed_at = ctx.registry.get_version("fraud", "2").bake_failed_at
    assert failed_at is not None
    with pytest.raises(ConcurrentChange, match=r"fraud:2 is no longer production \(fraud:1 is\)"):
        _roll_back(ctx)  # the second's: refused, nothing changes
    assert ctx.registry.production_version("fraud").version == "1"  # type: ignore[union-attr]
    assert ctx.registry.get_version("fraud", "2").bake_failed_at == failed_at
    rollbacks = [e for e in ctx.registry.audit("fraud") if e.action == Action.ROLLBACK]
    assert [(e.outcome, e.actor) for e in rollbacks] == [("ok", "bake-watcher"),
                                                         ("refused", "bake-watcher")]  # fmt: skip
    assert rollbacks[0].reason == REASON and rollbacks[0].payload["evidence"] == EVIDENCE
    assert rollbacks[1].payload["evidence"] == EVIDENCE  # each host's figures are audited
    assert ctx.registry.verify_audit()[0]


def test_a_rollout_in_progress_ends_with_the_breach(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    reg = ctx.registry
    reg.promote("fraud", gated(reg), actor="rel", sha256=SHA)
    two = gated(reg)
    reg.start_rollout("fraud", two, actor="rel", sha256=SHA, hosts=["h1", "h2"], deadline_s=60)
    restored = fleet.roll_back(ctx, Ref("fraud", two), actor=bake.WATCHER, reason=REASON,
                               evidence=EVIDENCE)  # fmt: skip
    assert restored.version == "1"
    [rollout] = reg.rollouts("fraud")
    assert rollout.status == RolloutStatus.FAILED
    assert rollout.outcome["reason"] == REASON
    assert rollout.outcome["rollback"] == "1 is production already; nothing switched"
    assert [e.action for e in reg.audit("fraud")][-2:] == [Action.ROLLBACK, Action.ROLLOUT]


def test_the_version_that_failed_its_bake_has_no_warm_time_and_the_agent_stops_it(
    tmp_path: Path,
) -> None:
    ctx = _two_live(tmp_path)
    _roll_back(ctx)
    demoted_at = ctx.registry.get_version("fraud", "2").demoted_at
    assert [(w.ref, w.until) for w in warm.warm_versions(ctx)] == [(Ref("fraud", "2"), demoted_at)]
    report = agent.Report("local", "127.0.0.1")
    [model] = ctx.registry.models()
    agent._converge(ctx, model, "1", {"fraud": "1"}, report, Heartbeat(ctx, threading.Event()))
    assert report.actions == ["stopped fraud:2"]
    assert {d.version for d in ctx.registry.deployments(host="local")} == {"1"}


def test_a_plainly_demoted_version_stays_warm(tmp_path: Path) -> None:
    ctx = _two_live(tmp_path)
    [entry] = warm.warm_versions(ctx)
    assert entry.ref == Ref("fraud", "1") and entry.until > datetime.now(UTC)


def test_a_promoted_version_is_baked_also_once_hosts_started_it_in_production(
    tmp_path: Path,
) -> None:
    """An agent starts the new version after the DB promoted it: that deployment is audited
    in the production state too, and must not hide the promotion (nor is it a rollback)."""
    ctx = _two_live(tmp_path)
    ctx.registry.record_deployment("fraud", "2", host="h2", port=3005, pid=None,
                                   role=Role.LIVE)  # fmt: skip
    assert [e.action for e in ctx.registry.audit("fraud", "2")][-1] == Action.DEPLOY
    [(model, watch)] = bake._watches(ctx, {}, {"fraud": "2"}).items()
    assert (model, watch.live, watch.previous) == ("fraud", Ref("fraud", "2"), Ref("fraud", "1"))
    assert bake._watches(ctx, {}, {"fraud": "1"}) == {}  # not cut over here: not baked here
    ctx.registry.rollback("fraud", actor="rel")
    ctx.registry.record_deployment("fraud", "1", host="h2", port=3006, pid=None,
                                   role=Role.LIVE)  # fmt: skip
    assert bake._watches(ctx, {}, None) == {}  # rolled back to: never baked


def _watch(version: str) -> bake.Watch:
    policy = GatePolicy(
        rate=100, duration_s=10, warmup_s=1, users=4, p50_ms=5, p95_ms=10, p99_ms=25,
        max_error_ratio=0, min_samples=10, max_regression=1.25,
    )  # fmt: skip
    return bake.Watch(Ref("fraud", version), Ref("fraud", "1"), datetime.now(UTC), policy)


def test_the_agents_wait_ends_when_a_bake_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = context(tmp_path)
    baking = {"fraud": _watch("2")}
    looks: list[dict[str, bake.Watch]] = [baking, baking, {}]  # then production moved
    calls = []

    def look(*_: object, **kwargs: object) -> dict[str, bake.Watch]:
        calls.append(kwargs["serving"])
        return looks.pop(0)

    monkeypatch.setattr(bake, "look", look)
    monkeypatch.setattr(bake, "POLL_S", 0.01)
    started = time.monotonic()
    left = agent.bake_until(ctx, {}, threading.Event(), 30.0, serving={"fraud": "2"})
    assert left == {} and len(calls) == 3 and time.monotonic() - started < 5
    assert calls[0] == {"fraud": "2"}


def test_the_agents_wait_without_a_bake_is_the_plain_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = context(tmp_path)
    calls = []
    monkeypatch.setattr(bake, "look", lambda *_, **__: calls.append(1) or {})
    started = time.monotonic()
    agent.bake_until(ctx, {}, threading.Event(), 0.3, serving={})
    assert len(calls) == 1 and time.monotonic() - started >= 0.29


def test_a_failing_look_never_ends_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = context(tmp_path)

    def look(*_: object, **__: object) -> dict[str, bake.Watch]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(bake, "look", look)
    left = agent.bake_until(ctx, {"fraud": _watch("2")}, threading.Event(), 0.1, serving={})
    assert left == {}
    assert "bake: look failed: a bug" in caplog.text


def test_a_breach_is_acted_on_once_and_a_refused_rollback_is_kept_in_the_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = context(tmp_path)
    watch = _watch("2")
    first = {"fraud": watch}
    monkeypatch.setattr(bake, "_watches", lambda _, current, *__: current or first)
    breach = "error ratio 20.0% (40 of 200 requests answered 5xx) > 1.0% over 2.0 s"
    reading = bake.Reading("fraud", "2", "1", until="-", at="12:00:02", breach=breach)
    monkeypatch.setattr(bake, "poll", lambda *_: reading)
    rolled: list[bake.Reading] = []

    def roll(_: Context, __: bake.Watch, seen: bake.Reading) -> None:
        rolled.append(seen)
        raise ConcurrentChange("refused: rollback fraud — fraud:2 is no longer production")

    said: list[str] = []
    watches = bake.look(ctx, {}, roll=roll, progress=said.append)
    watches = bake.look(ctx, watches, roll=roll, progress=said.append)  # not again
    assert rolled == [reading] and watches["fraud"].ended
    assert said[0].startswith("fraud:2: baking against the warm fraud:1 until ")
    assert said[1:] == [
        f"fraud:2: {breach}: rolling back to fraud:1",
        "fraud:2: automatic rollback not done: refused: rollback fraud — fraud:2 is no longer "
        "production",
    ]
    kept = bake.last_reading(ctx, "fraud")
    assert kept is not None and kept.breach == (
        f"{breach} (rollback not done: refused: rollback fraud — fraud:2 is no longer production)"
    )
