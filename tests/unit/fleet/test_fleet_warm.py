"""Which versions stay warm after a cutover, and that the agent keeps them until their time
(governance DB on SQLite, a recording runtime: no processes)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from fleet_unit_support import SHA, RecordingRuntime, context, gated

from bentogate import agent, warm
from bentogate.context import Context, Ref
from bentogate.governance import Role
from bentogate.heartbeat import Heartbeat


def _promoted_twice(tmp_path: Path, keep_previous_s: float) -> tuple[Context, RecordingRuntime]:
    """fraud:1 live, then fraud:2 promoted over it; one deployment each on host "local"."""
    ctx = context(tmp_path, bento={"keep_previous_s": keep_previous_s})
    runtime = RecordingRuntime()
    ctx.__dict__["runtime"] = runtime  # the cached property, replaced for this context
    reg = ctx.registry
    for port in (3001, 3002):
        version = gated(reg)
        reg.record_deployment("fraud", version, host="local", port=port, pid=None,
                              role=Role.CANDIDATE)  # fmt: skip
        reg.promote("fraud", version, actor="rel", sha256=SHA)
    return ctx, runtime


def test_the_version_that_left_production_is_warm_for_keep_previous_s(tmp_path: Path) -> None:
    ctx, _ = _promoted_twice(tmp_path, 90)
    [entry] = warm.warm_versions(ctx)
    demoted_at = ctx.registry.get_version("fraud", "1").demoted_at
    assert demoted_at is not None
    assert (entry.ref, entry.until) == (Ref("fraud", "1"), demoted_at + timedelta(seconds=90))
    # Rolled back: 1 is production again (not warm), 2 is warm from its own demotion.
    ctx.registry.rollback("fraud", actor="rel")
    [entry] = warm.warm_versions(ctx)
    demoted_at = ctx.registry.get_version("fraud", "2").demoted_at
    assert demoted_at is not None
    assert (entry.ref, entry.until) == (Ref("fraud", "2"), demoted_at + timedelta(seconds=90))


def test_a_candidate_that_never_served_production_is_not_warm(tmp_path: Path) -> None:
    ctx, _ = _promoted_twice(tmp_path, 90)
    version = gated(ctx.registry)
    ctx.registry.record_deployment("fraud", version, host="local", port=3003, pid=None,
                                   role=Role.CANDIDATE)  # fmt: skip
    assert [entry.ref.version for entry in warm.warm_versions(ctx)] == ["1"]


def _converge(ctx: Context) -> agent.Report:
    report = agent.Report("local", "127.0.0.1")
    [model] = ctx.registry.models()
    agent._converge(ctx, model, "2", {"fraud": "2"}, report, Heartbeat(ctx, threading.Event()))
    return report


def test_the_agent_keeps_a_warm_version_and_stops_one_without_warm_time(
    tmp_path: Path,
) -> None:
    ctx, runtime = _promoted_twice(tmp_path / "warm", 300)
    assert _converge(ctx).actions == []
    assert ("stop", "fraud:1") not in runtime.calls
    assert {d.version for d in ctx.registry.deployments(host="local")} == {"1", "2"}

    ctx, runtime = _promoted_twice(tmp_path / "cold", 0)
    assert _converge(ctx).actions == ["stopped fraud:1"]
    assert ("stop", "fraud:1") in runtime.calls
    assert {d.version for d in ctx.registry.deployments(host="local")} == {"2"}
