"""Three API hosts, one PostgreSQL: agents converge, promote under load, survive a kill and
a database outage.

A version that breaches its bake on a host is rolled back on every host (the agents bake).

One module-scoped fleet: a release workstation builds v1 and v2 into the shared archive
directory; three hosts (own BENTOGATE_HOME, ports, HAProxy; the model's port + a per-host
offset; ``tests/hosts.py``) each run ``python -m bentogate.cli agent`` as a real subprocess.
Each test first brings the fleet to the state it needs (every agent running, PostgreSQL up,
the fleet consistent, serving the version named by the fixture, by a fleet promotion when
it does not), so the tests pass in any order and one at a time. The gate itself is
exercised in tests/integration/e2e and loadtest; here its passing verdict is recorded
directly so that the fleet is what is under test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fleet_support import (
    HOST_SPAN,
    PG_DEFAULT,
    Host,
    Load,
    make_host,
    pg_problem,
    pg_schema,
    pg_start,
    pg_stop,
    predict,
    wait_for,
)
from hosts import ACTORS, Models, host_lifetime, host_settings, register

from bentogate import bake, fleet, gating, release
from bentogate.bentos import pid_alive, process_tree
from bentogate.cli import main
from bentogate.context import Context, Ref
from bentogate.governance import RolloutInfo

pytestmark = pytest.mark.integration

MODEL = "fraud"
NAMES = ("h1", "h2", "h3")


def _pg_base() -> str:
    return os.environ.get("BENTOGATE_TEST_PG_URL") or PG_DEFAULT


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    configured = os.environ.get("BENTOGATE_TEST_PG_URL")
    base = _pg_base()
    problem = pg_problem(base)
    if problem is not None:
        if configured:
            pytest.fail(f"BENTOGATE_TEST_PG_URL is set but unusable: {problem}")
        pytest.skip(f"no PostgreSQL at {base} ({problem})")
    url, drop = pg_schema(base)
    try:
        yield url
    finally:
        pg_start(base)  # a test that stopped it has restarted it; make sure
        drop()


@pytest.fixture(scope="module")
def workstation(
    tmp_path_factory: pytest.TempPathFactory,
    pg_url: str,
    port_block: Callable[[int], int],
    trained_models: Models,
) -> Iterator[tuple[Context, dict[str, str]]]:
    """The release workstation: v1 and v2 registered, approved, built (archives in the
    shared directory) and gated; nothing served here. Its port block is followed by one
    block per fleet host."""
    root = tmp_path_factory.mktemp("fleet")
    settings = host_settings(
        root / "rel",
        port_block(HOST_SPAN * (1 + len(NAMES))),
        size=HOST_SPAN,
        models=1,
        db_url=pg_url,
        host="workstation",
        shared_bentos_dir=root / "shared",
    )
    ctx = Context(settings)
    release.init(ctx)
    holdout = trained_models.holdout
    versions = {}
    for name in ("v1", "v2"):
        ref = register(ctx, MODEL, getattr(trained_models, name), holdout)
        release.validate(ctx, ref, holdout, actor=ACTORS.validator)
        release.approve(ctx, ref, actor=ACTORS.approver)
        release.build(ctx, ref, actor=ACTORS.release)
        ctx.registry.stage(MODEL, ref.version, actor=ACTORS.release)
        ctx.registry.record_gate(
            MODEL,
            ref.version,
            actor=ACTORS.release,
            policy={"rate": 100},
            results={"note": "fleet test: the gate is exercised in tests/integration/e2e"},
            verdict="pass",
            report_path="-",
            compared_with=None,
        )
        versions[name] = ref.version
    try:
        yield ctx, versions
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def hosts(
    tmp_path_factory: pytest.TempPathFactory,
    pg_url: str,
    workstation: tuple[Context, dict[str, str]],
) -> Iterator[list[Host]]:
    ctx, _ = workstation
    base = ctx.settings.ports.production_start
    shared = ctx.settings.bentos_dir
    fleet_hosts = [
        make_host(name, i, base, tmp_path_factory.mktemp(name), pg_url, shared)
        for i, name in enumerate(NAMES)
    ]
    with contextlib.ExitStack() as stack:
        # At the end, in this order: PostgreSQL up, agents stopped, hosts shut down.
        for host in fleet_hosts:
            stack.enter_context(host_lifetime(host.settings))
        for host in fleet_hosts:
            stack.callback(host.stop_agent)
        stack.callback(pg_start, _pg_base())
        for host in fleet_hosts:
            host.start_agent()
        yield fleet_hosts


def _converge(ctx: Context, hosts: list[Host], version: str | None) -> None:
    """Every agent running with a recent heartbeat, PostgreSQL up; with ``version``, the
    fleet consistent and every host serving it (a fleet promotion first if it is not
    production). (Without a production version the fleet is not "consistent": each host
    reports the model unhealthy, as it serves nothing.)"""
    pg_start(_pg_base())
    for host in hosts:
        if not host.agent_alive():
            host.start_agent()
    wait_for(lambda: {h.name for h in fleet.live_hosts(ctx)} == set(NAMES), 60, "heartbeats")
    live = ctx.registry.production_version(MODEL)
    if version is not None and (live is None or live.version != version):
        done = _settled(ctx, _promote(ctx, version))
        assert done.status == "complete", (done.outcome, _dump(hosts))
    if version is not None:
        wait_for(lambda: fleet.consistent(fleet.fleet_rows(ctx)), 60, "a consistent fleet")
        wait_for(lambda: _all_serve(hosts, ctx, version), 60, f"every host serving {version}")
        wait_for(lambda: all(_single_deployment(ctx, h) for h in hosts), 30, "old versions gone")


@pytest.fixture
def on_v1(workstation: tuple[Context, dict[str, str]], hosts: list[Host]) -> None:
    """Every host serves v1."""
    ctx, versions = workstation
    _converge(ctx, hosts, versions["v1"])


@pytest.fixture
def on_v2(workstation: tuple[Context, dict[str, str]], hosts: list[Host]) -> None:
    """Every host serves v2."""
    ctx, versions = workstation
    _converge(ctx, hosts, versions["v2"])


@pytest.fixture
def not_on_v1(workstation: tuple[Context, dict[str, str]], hosts: list[Host]) -> None:
    """v1 is not production: none is yet (a fresh fleet), or v2 is, on every host."""
    ctx, versions = workstation
    live = ctx.registry.production_version(MODEL)
    _converge(ctx, hosts, versions["v2"] if live is not None else None)


def _ports(hosts: list[Host], ctx: Context) -> list[int]:
    model_port = ctx.registry.get_model(MODEL).production_port
    return [model_port + h.port_offset for h in hosts]


def _serving(hosts: list[Host], ctx: Context) -> list[str]:
    return [predict(port) for port in _ports(hosts, ctx)]


def _promote(ctx: Context, version: str, **kwargs: float) -> RolloutInfo:
    return fleet.promote(ctx, Ref(MODEL, version), actor=ACTORS.release, **kwargs)


def _settled(ctx: Context, rollout: RolloutInfo) -> RolloutInfo:
    return fleet.wait_rollout(ctx, rollout, actor="test")


def _dump(hosts: list[Host]) -> str:
    return "\n".join(h.log_tail() for h in hosts)


def _records_match_processes(host: Host) -> None:
    """Every recorded deployment runs; nothing of the host runs unrecorded."""
    context = host.context()
    try:
        deployments = context.registry.deployments(host=host.name)
        for deployment in deployments:
            assert deployment.pid is not None and pid_alive(deployment.pid), deployment
        assert len(deployments) == 1, deployments
    finally:
        context.close()


@pytest.mark.usefixtures("not_on_v1")
def test_fleet_agents_converge_on_one_version(
    workstation: tuple[Context, dict[str, str]],
    hosts: list[Host],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx, versions = workstation
    rollout = _promote(ctx, versions["v1"])
    assert set(rollout.hosts) == {"h1", "h2", "h3"}
    done = _settled(ctx, rollout)
    assert done.status == "complete", (done.outcome, _dump(hosts))
    assert _serving(hosts, ctx) == [versions["v1"]] * 3
    rows = fleet.fleet_rows(ctx)
    assert fleet.consistent(rows), rows
    assert {(r["host"], r["version"], r["healthy"]) for r in rows} == {
        (h, versions["v1"], True) for h in ("h1", "h2", "h3")
    }
    assert all(r["heartbeat_age_s"] < 10 for r in rows)
    # The CLI shows the same, exit 0 while the fleet is consistent.
    monkeypatch.setenv("BENTOGATE_HOME", str(ctx.settings.home))
    monkeypatch.setenv("BENTOGATE_DB_URL", str(ctx.settings.db_url))
    main(["status", "--fleet"])  # returns (exit 0) only when nothing is flagged
    out = capsys.readouterr().out
    assert "h1" in out and "h3" in out and "DIVERGED" not in out


@pytest.mark.usefixtures("on_v1")
def test_fleet_promotion_under_load_loses_no_request(
    workstation: tuple[Context, dict[str, str]], hosts: list[Host]
) -> None:
    ctx, versions = workstation
    with Load(_ports(hosts, ctx)) as load:
        wait_for(lambda: load.total > 100, 30, "load to start")
        started = datetime.now(UTC)
        done = _settled(ctx, _promote(ctx, versions["v2"]))
        took = (datetime.now(UTC) - started).total_seconds()
        before = load.total
        wait_for(lambda: load.total > before + 100, 30, "load after the rollout")
    assert done.status == "complete", (done.outcome, _dump(hosts))
    assert load.errors == [], load.errors[:10]
    served = {version for (_, version) in load.versions}
    assert served == {versions["v1"], versions["v2"]}
    assert _serving(hosts, ctx) == [versions["v2"]] * 3
    for host in hosts:
        _records_match_processes(host)
    # Governance: who, when, which hosts.
    promoted = [e for e in ctx.registry.audit(MODEL, versions["v2"]) if e.action == "promote"]
    assert promoted[-1].actor == ACTORS.release
    assert promoted[-1].payload["hosts"] == ["h1", "h2", "h3"]
    settled = [e for e in ctx.registry.audit(MODEL) if e.action == "rollout"]
    assert "complete on h1, h2, h3" in settled[-1].reason
    print(f"\nfleet promotion: {took:.1f} s, {load.total} requests, 0 errors")


@pytest.mark.usefixtures("on_v2")
def test_fleet_agent_killed_mid_promotion_restarts_and_finishes(
    workstation: tuple[Context, dict[str, str]], hosts: list[Host]
) -> None:
    ctx, versions = workstation
    target = versions["v1"]
    victim = hosts[1]
    with Load(_ports(hosts, ctx)) as load:
        rollout = _promote(ctx, target)
        # Killed once it has started the target (recorded before it is ready).
        wait_for(
            lambda: any(d.version == target for d in ctx.registry.deployments(host=victim.name)),
            60,
            f"{victim.name} to start {target}",
            poll=0.05,
        )
        victim.kill_agent()
        victim.start_agent()
        done = _settled(ctx, rollout)
    assert done.status == "complete", (done.outcome, _dump(hosts))
    assert load.errors == [], load.errors[:10]
    assert _serving(hosts, ctx) == [target] * 3
    wait_for(lambda: _single_deployment(ctx, victim), 30, "old version stopped on the victim")
    _records_match_processes(victim)


def _replaced(ctx: Context, host: Host, old: int) -> bool:
    return [d.id for d in ctx.registry.deployments(host=host.name)] not in ([], [old])


def _since(moment: datetime) -> float:
    return (datetime.now(UTC) - moment).total_seconds()


def _single_deployment(ctx: Context, host: Host) -> bool:
    return len(ctx.registry.deployments(host=host.name)) == 1


@pytest.mark.usefixtures("on_v1")
def test_fleet_rolls_back_on_every_host_when_one_misses_the_deadline(
    workstation: tuple[Context, dict[str, str]], hosts: list[Host]
) -> None:
    ctx, versions = workstation
    current, target = versions["v1"], versions["v2"]
    dead = hosts[2]
    dead.kill_agent()  # still in the fleet (recent heartbeat), but it will never cut over
    with Load(_ports(hosts, ctx)) as load:
        # The deadline passes whether or not the two others cut over first (a Bento's start
        # and its first passed check take about 5 s here): the rollout is rolled back.
        done = _settled(ctx, _promote(ctx, target, deadline_s=10))
        assert done.status == "rolled_back", done
        assert "not live on h3" in done.outcome["reason"]
        wait_for(
            lambda: _serving(hosts, ctx) == [current] * 3, 60, "every host back on the old version"
        )
    assert load.errors == [], load.errors[:10]
    assert ctx.registry.production_version(MODEL).version == current  # type: ignore[union-attr]
    dead.start_agent()
    wait_for(lambda: fleet.consistent(fleet.fleet_rows(ctx)), 60, "a consistent fleet")
    actions = [e.action for e in ctx.registry.audit(MODEL)]
    assert "rollback" in actions


@pytest.mark.usefixtures("on_v1")
def test_fleet_keeps_serving_without_postgres_and_agents_recover(
    workstation: tuple[Context, dict[str, str]], hosts: list[Host]
) -> None:
    ctx, _ = workstation
    base = _pg_base()
    ports = _ports(hosts, ctx)
    with Load(ports) as load:
        pg_stop()
        try:
            stopped = datetime.now(UTC)
            wait_for(lambda: load.total > 300, 30, "load while PostgreSQL is down")
            before = load.total
            wait_for(lambda: load.total > before + 200, 30, "more load while PostgreSQL is down")
            # long enough for several failed passes and a backoff at its ceiling (2 s)
            wait_for(lambda: _since(stopped) > 8, 30, "an outage of 8 s")
            assert all(h.agent_alive() for h in hosts), _dump(hosts)
        finally:
            pg_start(base)
        outage = (datetime.now(UTC) - stopped).total_seconds()
        wait_for(
            lambda: all(
                (datetime.now(UTC) - h.last_heartbeat).total_seconds() < 3
                for h in ctx.registry.hosts()
            ),
            60,
            "heartbeats after PostgreSQL returned",
        )
    assert load.errors == [], load.errors[:10]
    assert fleet.consistent(fleet.fleet_rows(ctx))
    assert any("keeping what runs" in Path(h.log_path).read_text() for h in hosts)
    print(f"\nPostgreSQL down {outage:.1f} s: {load.total} requests, 0 errors")


@pytest.mark.usefixtures("on_v1")
def test_fleet_agent_repairs_a_dead_live_bento(
    workstation: tuple[Context, dict[str, str]], hosts: list[Host]
) -> None:
    ctx, versions = workstation
    victim = hosts[0]
    [deployment] = ctx.registry.deployments(host=victim.name)
    assert deployment.pid is not None
    for pid in process_tree(deployment.pid):
        os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: _replaced(ctx, victim, deployment.id),
        60,
        "a replacement deployment",
    )
    wait_for(lambda: _all_serve(hosts, ctx, versions["v1"]), 90, "the repaired host serving")
    wait_for(lambda: fleet.consistent(fleet.fleet_rows(ctx)), 30, "a consistent fleet")


@contextlib.contextmanager
def _baking_agents(hosts: list[Host], keep_previous_s: float) -> Iterator[None]:
    """Every agent restarted with a warm window (a previous version stays, so the agent bakes
    the new one); at the end, restarted without one again."""

    def restart(keep: float) -> None:
        for host in hosts:
            host.stop_agent()
            host.set_bento(keep_previous_s=keep)
            host.start_agent()

    restart(keep_previous_s)
    try:
        yield
    finally:
        restart(0)


@pytest.mark.usefixtures("on_v1")
def test_a_bake_breach_on_one_host_rolls_the_fleet_back(
    workstation: tuple[Context, dict[str, str]], hosts: list[Host]
) -> None:
    """v2 is promoted to the fleet and every agent bakes it while v1 stays warm. The model's
    policy asks of the Bento a p99 of 0.1 ms, which no real answer meets (its own time is
    about a millisecond): v2 breaches the latency rule wherever enough clients come (a
    version slow on a class of rows is the sidecar test's; here the fleet is under test).
    The rollout completes without clients (health checks alone are under
    bake_min_requests); then clients come to h1 and h2 at once: one automatic rollback in
    the DB, the other host's refused or never needed, and every host, h3 too, serves v1."""
    ctx, versions = workstation
    current, target = versions["v1"], versions["v2"]
    before = gating.gate_policy(ctx, MODEL).p99_ms
    ports = _ports(hosts, ctx)
    try:
        with _baking_agents(hosts, 120):
            gating.set_gate_policy(ctx, MODEL, {"p99_ms": 0.1}, actor=ACTORS.release)
            done = _settled(ctx, _promote(ctx, target))
            assert done.status == "complete", (done.outcome, _dump(hosts))
            assert _serving(hosts, ctx) == [target] * 3
            with Load(ports[:2]) as load:
                started = time.monotonic()
                wait_for(lambda: _production(ctx) == current, 30, "the automatic rollback", 0.05)
                rolled = time.monotonic()
                wait_for(lambda: _all_serve(hosts, ctx, current), 30, "every host on v1", 0.05)
                back = time.monotonic()
            wait_for(lambda: all(_single_deployment(ctx, h) for h in hosts), 30, "v2 stopped")
        rollbacks = [e for e in ctx.registry.audit(MODEL) if e.action == "rollback"
                     and e.actor == bake.WATCHER and e.payload.get("evidence")]  # fmt: skip
        attempts = [(e.outcome, e.payload["evidence"]["host"]) for e in rollbacks]
        print(f"\nfleet bake: rolled back {rolled - started:.2f} s after clients came, every "
              f"host on {current} {back - rolled:.2f} s later; {load.total} requests; "
              f"automatic rollbacks (outcome, host): {attempts}")  # fmt: skip
        assert load.errors == [], load.errors[:10]
        [done_once] = [e for e in rollbacks if e.outcome == "ok"]
        evidence = done_once.payload["evidence"]
        assert evidence["host"] in ("h1", "h2") and evidence["version"] == target, evidence
        assert evidence["breach"].startswith("server p99 > 0.1 ms (p99_ms): "), evidence
        assert evidence["server_answers"] >= 20 and evidence["server_over_limit"] >= 20
        assert done_once.reason.startswith(
            f"automatic rollback of {MODEL}:{target} (bake breach on {evidence['host']}): "
        )
        refused = [e for e in rollbacks if e.outcome != "ok"]
        assert all(e.payload["error"] == "ConcurrentChange" for e in refused), refused
        breached = next(h for h in hosts if h.name == evidence["host"])
        assert "rolling back to" in breached.log_path.read_text()
        assert ctx.registry.get_version(MODEL, target).bake_failed_at is not None
    finally:
        gating.set_gate_policy(ctx, MODEL, {"p99_ms": before}, actor=ACTORS.release)
        _regate(ctx, target)  # a failed bake needs a newer passed gate (for the next tests)


def _production(ctx: Context) -> str | None:
    live = ctx.registry.production_version(MODEL)
    return live.version if live is not None else None


def _regate(ctx: Context, version: str) -> None:
    """Record a newer passed gate for ``version`` if it failed its bake (the gate itself is
    tested elsewhere)."""
    info = ctx.registry.get_version(MODEL, version)
    if info.bake_failed_at is None or info.state != "gated":
        return
    ctx.registry.record_gate(
        MODEL,
        version,
        actor=ACTORS.release,
        policy={"rate": 100},
        results={"note": "fleet test: gated again after its failed bake"},
        verdict="pass",
        report_path="-",
        compared_with=None,
    )


def _all_serve(hosts: list[Host], ctx: Context, version: str) -> bool:
    try:
        return _serving(hosts, ctx) == [version] * 3
    except (AssertionError, OSError):
        return False
