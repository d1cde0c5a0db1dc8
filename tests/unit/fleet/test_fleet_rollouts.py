"""Fleet governance on SQLite: heartbeats, rollouts started with a promotion, judged from the
hosts' reports, settled once (complete, or rolled back on every host)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fleet_unit_support import SHA, context, gated, report

from bentogate import fleet, fleetstatus
from bentogate.errors import ConcurrentChange, GovernanceError
from bentogate.governance import HostInfo, Registry, RolloutInfo

NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    registry = Registry(f"sqlite:///{tmp_path / 'gov.db'}")
    registry.upgrade()
    return registry


def test_fleet_heartbeat_inserts_then_updates(reg: Registry) -> None:
    first = reg.heartbeat("h1", {"models": {}})
    second = reg.heartbeat("h1", report("fraud", "1"))
    assert [h.name for h in reg.hosts()] == ["h1"]
    assert second.first_seen == first.first_seen <= second.last_heartbeat
    assert reg.hosts()[0].report == report("fraud", "1")
    assert not [e for e in reg.audit() if e.action == "heartbeat"]  # never audited
    with pytest.raises(GovernanceError, match="JSON"):
        reg.heartbeat("h1", {"bad": object()})


def test_fleet_rollout_promotes_records_hosts_and_completes_once(reg: Registry) -> None:
    v1 = gated(reg)
    rollout = reg.start_rollout(
        "fraud", v1, actor="rel", sha256=SHA, hosts=["h2", "h1"], deadline_s=60
    )
    assert (rollout.status, rollout.hosts, rollout.from_version) == (
        "in_progress",
        ("h1", "h2"),
        None,
    )
    assert str(reg.production_version("fraud").version) == v1  # type: ignore[union-attr]
    promoted = [e for e in reg.audit("fraud") if e.action == "promote"][-1]
    assert (promoted.actor, promoted.payload["hosts"]) == ("rel", ["h1", "h2"])
    done = reg.settle_rollout(
        "fraud", rollout.id, actor="h1", complete=True, reason="ok", results={"h1": "live"}
    )
    again = reg.settle_rollout(
        "fraud", rollout.id, actor="h2", complete=False, reason="late", results={}
    )
    assert done.status == again.status == "complete"  # the first settler wins
    assert [e.action for e in reg.audit("fraud")].count("rollout") == 1


def test_fleet_failed_rollout_returns_the_previous_version(reg: Registry) -> None:
    v1 = gated(reg)
    reg.promote("fraud", v1, actor="rel", sha256=SHA)
    v2 = gated(reg)
    rollout = reg.start_rollout("fraud", v2, actor="rel", sha256=SHA, hosts=["h1"], deadline_s=60)
    with pytest.raises(ConcurrentChange, match="in progress"):
        reg.start_rollout("fraud", v2, actor="rel", sha256=SHA, hosts=["h1"], deadline_s=60)
    done = reg.settle_rollout(
        "fraud", rollout.id, actor="h1", complete=False, reason="h1 failed", results={}
    )
    assert done.status == "rolled_back"
    assert reg.production_version("fraud").version == v1  # type: ignore[union-attr]
    assert [e.action for e in reg.audit("fraud")][-3:] == ["demote", "rollback", "rollout"]


def test_fleet_a_first_rollout_that_fails_has_nothing_to_return_to(reg: Registry) -> None:
    v1 = gated(reg)
    rollout = reg.start_rollout("fraud", v1, actor="rel", sha256=SHA, hosts=["h1"], deadline_s=60)
    done = reg.settle_rollout(
        "fraud", rollout.id, actor="h1", complete=False, reason="x", results={}
    )
    assert done.status == "failed" and "no previous version" in done.outcome["rollback"]


def test_fleet_rollout_needs_hosts(reg: Registry) -> None:
    v1 = gated(reg)
    with pytest.raises(GovernanceError, match="heartbeat"):
        reg.start_rollout("fraud", v1, actor="rel", sha256=SHA, hosts=[], deadline_s=60)
    assert reg.production_version("fraud") is None


def _rollout(hosts: tuple[str, ...] = ("h1", "h2")) -> RolloutInfo:
    return RolloutInfo(
        id=1, model="fraud", version="2", from_version="1", actor="rel", status="in_progress",
        hosts=hosts, started_at=NOW, deadline=NOW + timedelta(seconds=60), finished_at=None,
        outcome={},
    )  # fmt: skip


def _host(name: str, body: dict, at: datetime = NOW + timedelta(seconds=5)) -> HostInfo:
    return HostInfo(name=name, first_seen=NOW, last_heartbeat=at, report=body)


LIVE = report("fraud", "2")
OLD = report("fraud", "1")
SICK = report("fraud", "2", healthy=False)
FAILED = report("fraud", "1", failed="2", error="x")
EARLY = NOW - timedelta(seconds=1)  # a report sent before the rollout started proves nothing
LATE = NOW + timedelta(seconds=61)


@pytest.mark.parametrize(
    ("hosts", "now", "verdict"),
    [
        ([_host("h1", LIVE), _host("h2", LIVE)], NOW, "complete"),
        ([_host("h1", LIVE), _host("h2", OLD)], NOW, "pending"),
        ([_host("h1", SICK), _host("h2", LIVE)], NOW, "pending"),
        ([_host("h1", FAILED), _host("h2", LIVE)], NOW, "failed"),
        ([_host("h1", LIVE)], LATE, "failed"),
        ([_host("h1", LIVE, EARLY), _host("h2", LIVE)], NOW, "pending"),
    ],
)
def test_fleet_judge(hosts: list[HostInfo], now: datetime, verdict: str) -> None:
    assert fleet.judge(_rollout(), hosts, now).verdict == verdict


def test_fleet_judge_names_the_late_hosts() -> None:
    judged = fleet.judge(_rollout(), [_host("h1", report("fraud", "2"))], NOW + timedelta(hours=1))
    assert judged.reason == "deadline passed; not live on h2"
    assert judged.hosts == {"h1": "live", "h2": "no report"}


def test_fleet_status_flags_divergence_staleness_and_health(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    version = gated(ctx.registry)
    ctx.registry.promote("fraud", version, actor="rel", sha256=SHA)
    ctx.registry.heartbeat("h1", report("fraud", version))
    ctx.registry.heartbeat("h2", report("fraud", version))
    assert fleetstatus.consistent(fleetstatus.fleet_rows(ctx))
    ctx.registry.heartbeat("h2", report("fraud", "0", healthy=False))
    rows = {r["host"]: r for r in fleetstatus.fleet_rows(ctx)}
    assert rows["h2"]["flags"] == ["DIVERGED", "UNHEALTHY"]
    assert rows["h1"]["flags"] == ["DIVERGED"]  # two versions on one port: the fleet diverges
    later = datetime.now(UTC) + timedelta(hours=1)
    assert all("STALE" in r["flags"] for r in fleetstatus.fleet_rows(ctx, now=later))
    assert "DIVERGED" in fleetstatus.fleet_table(fleetstatus.fleet_rows(ctx))
    ctx.close()
