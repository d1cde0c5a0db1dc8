"""Three API hosts with addresses of their own, one PostgreSQL: agents converge, promote under
load, and keep their promises through real faults — a host cut off from the DB before,
during and after a rollout, a host cut off from its clients, PostgreSQL stopped mid-rollout,
an agent killed mid-cutover, a host that returns after the fleet moved on; a failed start is
retried, the heartbeat goes on while a Bento is slow, a bake breach rolls the fleet back.

One module-scoped fleet: a release workstation (this process, the root namespace) builds v1
and v2 into the shared archive directory; three hosts, each in a network namespace of its
own (``bentogate.netns``: an address on a bridge, the DB through a relay there), each run
``python -m bentogate.cli agent`` as a real subprocess inside it, which serves the model's
production port — the same on every host — at the host's address. Client load
(``bentogate.fleetload.Load``) hits every host's address during each fault. Each test first
brings the fleet to the state it needs (every cut undone, PostgreSQL up, every agent running, the
fleet consistent, serving the version named by the fixture, by a fleet promotion when it
does not), so the tests pass in any order and one at a time. The gate itself is exercised in
tests/integration/e2e and loadtest; here its passing verdict is recorded directly so that
the fleet is what is under test. Where network namespaces cannot be created (no privilege),
the module skips, saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from fleet_support import (
    DIES_AFTER_SWITCH,
    PG_DEFAULT,
    Host,
    Load,
    PostgresHold,
    RouteWatch,
    client_load,
    make_host,
    pg_problem,
    pg_schema,
    pg_start,
    pg_stop,
    predict,
    wait_for,
)
from hosts import ACTORS, Models, host_lifetime, host_settings, register

from bentogate import bake, fleet, fleetstatus, gating, release
from bentogate.bentos import pid_alive, process_tree
from bentogate.cli import main
from bentogate.context import Context, Ref
from bentogate.errors import BentogateError, GovernanceError
from bentogate.governance import DeploymentInfo, RolloutInfo
from bentogate.haproxy import backend_name
from bentogate.netns import Network, netns_problem

pytestmark = pytest.mark.integration

MODEL = "fraud"
NAMES = ("h1", "h2", "h3")
#: The workstation's "recent heartbeat" (agents send one every 0.5 s): a host cut off this
#: long is left out of the next rollout. Short, so a test waits little for it; long enough
#: that a host busy starting a Bento on 2 shared cores never looks stale (its heartbeat's
#: age stayed under 1.1 s in test_fleet_agent_retries_…, four runs, one at load average 14).
STALE_S = 6.0


def _pg_base() -> str:
    return os.environ.get("BENTOGATE_TEST_PG_URL") or PG_DEFAULT


@pytest.fixture(scope="module")
def net() -> Iterator[Network]:
    """The fleet's network: a bridge, a namespace per host, the DB relay."""
    problem = netns_problem()
    if problem is not None:
        pytest.skip(f"the fleet tests need network namespaces, which cannot be made: {problem}")
    url = sa.make_url(_pg_base())
    with Network.create(list(NAMES), (url.host or "127.0.0.1", url.port or 5432)) as network:
        yield network


@pytest.fixture(autouse=True)
def postgres() -> Iterator[PostgresHold]:
    """A test that stops PostgreSQL takes the machine first (``fleet_support.PostgresHold``)."""
    hold = PostgresHold()
    try:
        yield hold
    finally:
        hold.release()


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
    tmp_path_factory: pytest.TempPathFactory, pg_url: str, trained_models: Models
) -> Iterator[tuple[Context, dict[str, str]]]:
    """The release workstation: v1 and v2 registered, approved, built (archives in the
    shared directory) and gated, v3 approved and built only; nothing served here. The model
    gets the default production port (10000): every host serves it there, at its own
    address."""
    root = tmp_path_factory.mktemp("fleet")
    settings = host_settings(
        root / "rel",
        None,
        db_url=pg_url,
        host="workstation",
        shared_bentos_dir=root / "shared",
        agent={"stale_after_s": STALE_S},
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
        _record_passed_gate(ctx, ref.version, "fleet test: the gate is exercised in e2e")
        versions[name] = ref.version
    # v3: approved and built (its archive beside the others), never gated nor promoted: no
    # host may ever serve it (_routes_follow_the_db)
    ref = register(ctx, MODEL, trained_models.b, holdout)
    release.validate(ctx, ref, holdout, actor=ACTORS.validator)
    release.approve(ctx, ref, actor=ACTORS.approver)
    release.build(ctx, ref, actor=ACTORS.release)
    versions["v3"] = ref.version
    try:
        yield ctx, versions
    finally:
        ctx.close()


def _record_passed_gate(ctx: Context, version: str, note: str) -> None:
    ctx.registry.record_gate(
        MODEL,
        version,
        actor=ACTORS.release,
        policy={"rate": 100},
        results={"note": note},
        verdict="pass",
        report_path="-",
        compared_with=None,
    )


@pytest.fixture(scope="module")
def hosts(
    tmp_path_factory: pytest.TempPathFactory,
    net: Network,
    pg_url: str,
    workstation: tuple[Context, dict[str, str]],
) -> Iterator[list[Host]]:
    ctx, _ = workstation
    shared = ctx.settings.bentos_dir
    fleet_hosts = [
        make_host(name, tmp_path_factory.mktemp(name), pg_url, shared, net) for name in NAMES
    ]
    with contextlib.ExitStack() as stack:
        # At the end, in this order: cuts undone, PostgreSQL up, agents stopped, hosts shut
        # down (then the network fixture deletes the namespaces).
        for host in fleet_hosts:
            stack.enter_context(host_lifetime(host.settings))
        for host in fleet_hosts:
            stack.callback(host.stop_agent)
        stack.callback(pg_start, _pg_base())
        stack.callback(net.restore_all)
        for host in fleet_hosts:
            host.start_agent()
        yield fleet_hosts


#: How long after the DB stopped naming a version production a host may still switch to it:
#: the agent reads production just before its ``set map`` (milliseconds apart), plus the
#: watch's poll. Generous; a host that switched to a version seconds after it left
#: production would break it.
SWITCH_LAG_S = 2.0


@pytest.fixture(autouse=True)
def _routes_follow_the_db(
    workstation: tuple[Context, dict[str, str]], hosts: list[Host]
) -> Iterator[RouteWatch]:
    """During every test, every host's production route is watched (its HAProxy map, every
    50 ms): a host switches only to a version the governance DB made production before, and
    not more than SWITCH_LAG_S after it stopped being production (a rolled-back version is
    never switched to again); v3 (approved and built, never promoted) is never routed. At
    the end, every host routes the DB's production version."""
    ctx, versions = workstation
    with RouteWatch(hosts, MODEL) as watch:
        yield watch
    assert not [c for c in watch.changes if c[1] == backend_name(MODEL, versions["v3"])], watch
    production = _production_intervals(ctx)
    backends = {backend_name(MODEL, v): v for v in versions.values()}
    seen: set[str] = set()
    for name, backend, at in watch.changes:
        switched, first = backend is not None, name not in seen
        seen.add(name)
        if not switched:
            continue
        version = backends.get(backend)
        assert version is not None, f"{name} routed {backend}, no version of {MODEL}"
        spans = production.get(version, [])
        assert spans, f"{name} routed {version}, which the DB never made production"
        if first:  # what the host routed when the test began (switched to before)
            continue
        assert any(
            start <= at + 0.5 and (end is None or at <= end + SWITCH_LAG_S) for start, end in spans
        ), f"{name} switched to {version} at {at:.2f}, outside its production spans {spans}"
    live = _production(ctx)
    if live is not None:
        wait_for(lambda: _routed(hosts) == [backend_name(MODEL, live)] * len(hosts), 60,
                 f"every host routing the DB's production version {live}")  # fmt: skip


def _routed(hosts: list[Host]) -> list[str | None]:
    routes = []
    for host in hosts:
        context = host.context()
        try:
            routes.append(context.sidecar.routes().get(MODEL))
        except BentogateError:
            routes.append(None)
        finally:
            context.close()
    return routes


def _production_intervals(ctx: Context) -> dict[str, list[tuple[float, float | None]]]:
    """Each version's spans as the DB's production version (epoch seconds; end None: it still
    is), from the audit trail's state changes."""
    spans: dict[str, list[tuple[float, float | None]]] = {}
    for entry in ctx.registry.audit(MODEL):
        if entry.outcome != "ok" or entry.version is None:
            continue
        at = _epoch(entry.at)
        mine = spans.setdefault(entry.version, [])
        if entry.to_state == "production" and entry.from_state != "production":
            mine.append((at, None))
        elif entry.from_state == "production" and entry.to_state != "production" and mine:
            mine[-1] = (mine[-1][0], at)
    return {v: s for v, s in spans.items() if s}


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _converge(ctx: Context, net: Network, hosts: list[Host], version: str | None) -> None:
    """Every cut undone, PostgreSQL up, every agent running with a recent heartbeat; with
    ``version``, the fleet consistent and every host serving it (a fleet promotion first if
    it is not production). (Without a production version the fleet is not "consistent":
    each host reports the model unhealthy, as it serves nothing.)"""
    net.restore_all()
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
        wait_for(lambda: fleetstatus.consistent(_rows(ctx)), 60, "a consistent fleet")
        wait_for(lambda: _all_serve(hosts, ctx, version), 60, f"every host serving {version}")
        wait_for(lambda: all(_single_deployment(ctx, h) for h in hosts), 30, "old versions gone")


@pytest.fixture
def on_v1(workstation: tuple[Context, dict[str, str]], net: Network, hosts: list[Host]) -> None:
    """Every host serves v1."""
    ctx, versions = workstation
    _converge(ctx, net, hosts, versions["v1"])


@pytest.fixture
def on_v2(workstation: tuple[Context, dict[str, str]], net: Network, hosts: list[Host]) -> None:
    """Every host serves v2."""
    ctx, versions = workstation
    _converge(ctx, net, hosts, versions["v2"])


@pytest.fixture
def not_on_v1(workstation: tuple[Context, dict[str, str]], net: Network, hosts: list[Host]) -> None:
    """v1 is not production: none is yet (a fresh fleet), or v2 is, on every host."""
    ctx, versions = workstation
    live = ctx.registry.production_version(MODEL)
    _converge(ctx, net, hosts, versions["v2"] if live is not None else None)


def _port(ctx: Context) -> int:
    return ctx.registry.get_model(MODEL).production_port


def _load(ctx: Context, net: Network, hosts: list[Host]) -> Load:
    return client_load([h.address for h in hosts], _port(ctx), net.client_address)


def _serving(hosts: list[Host], ctx: Context) -> list[str]:
    return [predict(h.address, _port(ctx)) for h in hosts]


def _rows(ctx: Context) -> list[dict[str, Any]]:
    return fleetstatus.fleet_rows(ctx)


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


def _status_json(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]]]:
    """``bentogate status --fleet --json`` in this process: its exit code and rows."""
    code = 0
    try:
        main(["status", "--fleet", "--json"])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    rows, _ = json.JSONDecoder().raw_decode(capsys.readouterr().out)
    return code, rows


@pytest.mark.usefixtures("not_on_v1")
def test_fleet_agents_converge_and_status_reaches_every_host_at_its_address(
    workstation: tuple[Context, dict[str, str]],
    net: Network,
    hosts: list[Host],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx, versions = workstation
    rollout = _promote(ctx, versions["v1"])
    assert set(rollout.hosts) == set(NAMES)
    done = _settled(ctx, rollout)
    assert done.status == "complete", (done.outcome, _dump(hosts))
    # one port, every host at its own address
    assert _serving(hosts, ctx) == [versions["v1"]] * 3
    monkeypatch.setenv("BENTOGATE_HOME", str(ctx.settings.home))
    monkeypatch.setenv("BENTOGATE_DB_URL", str(ctx.settings.db_url))
    code, rows = _status_json(capsys)
    assert code == 0, rows
    port = _port(ctx)
    assert {
        (r["host"], r["address"], r["port"], r["version"], r["answers"], r["reachable"])
        for r in rows
    } == {(h.name, h.address, port, versions["v1"], versions["v1"], True) for h in hosts}
    assert all(r["healthy"] and r["flags"] == [] for r in rows), rows
    assert all(r["heartbeat_age_s"] < STALE_S for r in rows), rows
    # h3's cable pulled: its port does not answer, and status says so (exit 1)
    net.cut_link("h3")
    try:
        code, rows = _status_json(capsys)
    finally:
        net.restore_link("h3")
    assert code == 1
    [cut] = [r for r in rows if r["host"] == "h3"]
    assert cut["reachable"] is False and "UNREACHABLE" in cut["flags"], cut
    assert all(r["flags"] == [] for r in rows if r["host"] != "h3"), rows
    main(["status", "--fleet"])  # the table; returns (exit 0): h3 answers again
    table = capsys.readouterr().out
    assert all(h.address in table for h in hosts) and "UNREACHABLE" not in table


@pytest.mark.usefixtures("on_v1")
def test_fleet_promotion_under_load_loses_no_request_on_any_host(
    workstation: tuple[Context, dict[str, str]], net: Network, hosts: list[Host]
) -> None:
    ctx, versions = workstation
    with _load(ctx, net, hosts) as load:
        wait_for(lambda: load.total > 100, 30, "load to start")
        started = time.monotonic()
        done = _settled(ctx, _promote(ctx, versions["v2"]))
        took = time.monotonic() - started
        before = load.total
        wait_for(lambda: load.total > before + 100, 30, "load after the rollout")
    assert done.status == "complete", (done.outcome, _dump(hosts))
    assert load.failed() == [], load.failed()[:10]
    for host in hosts:
        assert {v for (a, v) in load.versions if a == host.address} == {
            versions["v1"],
            versions["v2"],
        }
    assert _serving(hosts, ctx) == [versions["v2"]] * 3
    for host in hosts:
        _records_match_processes(host)
    # Governance: who, when, which hosts; the outcome per host.
    promoted = [e for e in ctx.registry.audit(MODEL, versions["v2"]) if e.action == "promote"]
    assert promoted[-1].actor == ACTORS.release
    assert promoted[-1].payload["hosts"] == list(NAMES)
    settled = [e for e in ctx.registry.audit(MODEL) if e.action == "rollout"]
    assert "complete on h1, h2, h3" in settled[-1].reason
    assert settled[-1].payload["results"] == {name: "live" for name in NAMES}
    per_host = {h.name: round(load.first[(h.address, versions["v2"])] - started, 2) for h in hosts}
    figures = {"wall_s": round(took, 2), "first_answer_s": per_host, "requests": load.total}
    print(f"\nfleet promotion: {json.dumps(figures)}, 0 failed")


def _starting(ctx: Context, host: Host, version: str) -> DeploymentInfo:
    """The first deployment of ``version`` on ``host``, waited for (recorded as soon as its
    process exists, before it is ready)."""
    found: list[DeploymentInfo] = []

    def recorded() -> bool:
        found[:] = [d for d in ctx.registry.deployments(host=host.name) if d.version == version]
        return bool(found)

    wait_for(recorded, 60, f"{host.name} to start {version}", poll=0.05)
    assert found[0].pid is not None
    return found[0]


#: What an agent logs when a pass failed and it keeps what runs (agent._loop).
KEEPING = "reconcile failed, keeping what runs"


@pytest.mark.usefixtures("on_v2")
def test_fleet_rollout_through_db_cuts_and_an_agent_killed_mid_cutover(
    workstation: tuple[Context, dict[str, str]], net: Network, hosts: list[Host]
) -> None:
    """v1 goes out under load on every address. h2 is cut off from the DB before the
    promotion (its packets to it dropped), h3 as soon as it has started v1, and h1's agent
    is SIGKILLed once it has started v1, restarted, and killed again the instant HAProxy
    confirmed its switch (before it records anything: the DB still has h1 on v2), then
    restarted: it adopts what runs, ends v2 and reports v1. Both cut hosts hit the DB's
    network bounds (libpq's timeouts, not minutes of TCP retries), keep serving v2
    untouched, and once reconnected cut over; the rollout completes with no failed request
    anywhere, recorded per host."""
    ctx, versions = workstation
    target, current = versions["v1"], versions["v2"]
    h1, h2, h3 = hosts
    marks = {h.name: h.log_size() for h in hosts}
    cut: dict[str, datetime] = {}
    with _load(ctx, net, hosts) as load:
        net.cut_db("h2")
        cut["h2"] = datetime.now()  # naive local time, as the agents' log lines
        rollout = _promote(ctx, target)
        assert set(rollout.hosts) == set(NAMES)  # h2's heartbeat is still recent
        _starting(ctx, h3, target)
        net.cut_db("h3")
        cut["h3"] = datetime.now()
        _starting(ctx, h1, target)
        h1.kill_agent()
        # Restarted, it adopts v1 and switches; it dies the instant HAProxy confirmed the
        # switch, before it records anything. Restarted again, it converges.
        h1.start_agent(DIES_AFTER_SWITCH)
        wait_for(lambda: not h1.agent_alive(), 60, "h1's agent to die after its switch")
        assert h1.agent.process is not None and h1.agent.process.returncode == -signal.SIGKILL
        assert "dying before recording it" in h1.log_since(marks["h1"]), _dump(hosts)
        assert predict(h1.address, _port(ctx)) == target  # HAProxy switched...
        [beat] = [h for h in ctx.registry.hosts() if h.name == "h1"]
        assert fleet.model_report(beat, MODEL).get("live") != target  # ...the DB never heard
        assert {d.version for d in ctx.registry.deployments(host="h1")} == {current, target}
        h1.start_agent()
        # Bounded by libpq's connect_timeout and tcp_user_timeout (5 s each, PG_NETWORK_BOUNDS),
        # after h3's Bento start (seconds, no DB call): without them, minutes of TCP retries.
        for host in (h2, h3):
            wait_for(lambda h=host: KEEPING in h.log_since(marks[h.name]), 40,  # type: ignore[misc]
                     f"{host.name} to give up on the DB and keep what runs")  # fmt: skip
        noticed = {h.name: _logged_at(h, marks[h.name], KEEPING) - cut[h.name] for h in (h2, h3)}
        # cut off, h2 and h3 serve what they served: no switch without the DB's word
        assert predict(h2.address, _port(ctx)) == current
        assert predict(h3.address, _port(ctx)) == current
        net.restore_db("h2")
        net.restore_db("h3")
        done = _settled(ctx, rollout)
        before = load.total
        wait_for(lambda: load.total > before + 100, 30, "load after the rollout")
    assert done.status == "complete", (done.outcome, _dump(hosts))
    assert load.failed() == [], load.failed()[:10]
    assert _serving(hosts, ctx) == [target] * 3
    wait_for(lambda: all(_single_deployment(ctx, h) for h in hosts), 30, "v2 stopped")
    for host in hosts:
        _records_match_processes(host)
    settled = [e for e in ctx.registry.audit(MODEL) if e.action == "rollout"]
    assert settled[-1].payload["results"] == {name: "live" for name in NAMES}
    gave_up = ", ".join(f"{n} {t.total_seconds():.1f} s" for n, t in noticed.items())
    print(f"\nDB cut: gave up on the DB after its cut: {gave_up}; {load.total} requests, 0 failed")


def _logged_at(host: Host, offset: int, text: str) -> datetime:
    """When (the log line's own time) ``host``'s agent first logged ``text`` after ``offset``."""
    line = next(line for line in host.log_since(offset).splitlines() if text in line)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


@pytest.mark.usefixtures("on_v1")
def test_fleet_rollout_survives_postgres_stopping_midway(
    workstation: tuple[Context, dict[str, str]],
    net: Network,
    hosts: list[Host],
    postgres: PostgresHold,
) -> None:
    """PostgreSQL is stopped once every host has started v2 and started again 8 s later:
    HAProxy and the Bentos serve on, every agent backs off and resumes, the rollout
    completes; no request fails on any host."""
    ctx, versions = workstation
    target = versions["v2"]
    marks = {h.name: h.log_size() for h in hosts}
    postgres.take_whole()
    with _load(ctx, net, hosts) as load:
        rollout = _promote(ctx, target)
        for host in hosts:
            _starting(ctx, host, target)
        pg_stop()
        try:
            stopped = time.monotonic()
            served = load.total
            # long enough for several failed passes and a backoff at its ceiling (2 s)
            wait_for(lambda: time.monotonic() - stopped > 8, 30, "an outage of 8 s")
            assert load.total > served + 100, "no load while PostgreSQL was down"
            assert all(h.agent_alive() for h in hosts), _dump(hosts)
        finally:
            pg_start(_pg_base())
        done = _settled(ctx, rollout)
        wait_for(
            lambda: all(
                (ctx.registry.db_now() - h.last_heartbeat).total_seconds() < 3
                for h in ctx.registry.hosts()
            ),
            60,
            "heartbeats after PostgreSQL returned",
        )
    assert done.status == "complete", (done.outcome, _dump(hosts))
    assert load.failed() == [], load.failed()[:10]
    assert _serving(hosts, ctx) == [target] * 3
    assert all(KEEPING in h.log_since(marks[h.name]) for h in hosts), _dump(hosts)
    wait_for(lambda: fleetstatus.consistent(_rows(ctx)), 30, "a consistent fleet")


@pytest.mark.usefixtures("on_v2")
def test_hosts_late_or_cut_off_mid_rollout_never_switch_to_the_version_the_fleet_rolled_back(
    workstation: tuple[Context, dict[str, str]], net: Network, hosts: list[Host]
) -> None:
    """v1 goes out with a 12 s deadline. h3 is cut off from the DB once it has started v1
    and stays cut past the deadline; h2's Bento of v1 is frozen while it starts (SIGSTOP),
    so h2 is late. The rollout is rolled back (not live on h2, h3) and h1 is on v2 again.
    h2's Bento, thawed, becomes ready after the rollback: its agent reads production again
    before the switch and does not switch. Neither h2 nor h3 ever answers with v1; both end
    on v2 with v1 stopped, no request failed anywhere."""
    ctx, versions = workstation
    current, target = versions["v2"], versions["v1"]
    h2, h3 = hosts[1], hosts[2]
    mark = h2.log_size()
    with _load(ctx, net, hosts) as load:
        rollout = _promote(ctx, target, deadline_s=12)
        frozen = _starting(ctx, h2, target).pid or 0
        _signal_tree(frozen, signal.SIGSTOP)
        try:
            _starting(ctx, h3, target)
            net.cut_db("h3")
            done = _settled(ctx, rollout)
        finally:
            _signal_tree(frozen, signal.SIGCONT)
        assert done.status == "rolled_back", done
        assert done.outcome["reason"].startswith("deadline passed; not live on"), done.outcome
        # h1, with the two cores to itself meanwhile, may or may not have made it in time
        assert all(done.outcome["hosts"][h] != "live" for h in ("h2", "h3")), done.outcome
        refused = f"not switching {MODEL} to {target}: production moved"
        wait_for(lambda: refused in h2.log_since(mark), 60, "h2's agent to refuse the switch")
        wait_for(lambda: _single_deployment(ctx, h2), 60, f"h2 to stop {target}")
        net.restore_db("h3")
        wait_for(lambda: _single_deployment(ctx, h3), 60, f"h3 to stop {target}")
        wait_for(lambda: _serving(hosts, ctx) == [current] * 3, 60, "every host on the old version")
    assert load.failed() == [], load.failed()[:10]
    for host in (h2, h3):
        assert load.versions[(host.address, target)] == 0, load.versions
        assert load.answered(host.address) > 100
    assert ctx.registry.production_version(MODEL).version == current  # type: ignore[union-attr]
    wait_for(lambda: fleetstatus.consistent(_rows(ctx)), 60, "a consistent fleet")
    actions = [e.action for e in ctx.registry.audit(MODEL)]
    assert "rollback" in actions


@pytest.mark.usefixtures("on_v2")
def test_a_host_cut_off_from_its_clients_returns_after_the_fleet_moved_on(
    workstation: tuple[Context, dict[str, str]], net: Network, hosts: list[Host]
) -> None:
    """h3's cable is pulled until it is out of the fleet (no heartbeat for STALE_S); v1 goes
    out to h1 and h2 under load; the cable back, h3 converges on v1. Requests fail only on
    h3 and only while it was cut off; h3 answers v1 only after it returned."""
    ctx, versions = workstation
    target, current = versions["v1"], versions["v2"]
    h3 = hosts[2]
    with _load(ctx, net, hosts) as load:
        wait_for(lambda: load.answered(h3.address) > 20, 30, "load on h3")
        net.cut_link("h3")
        cut = time.monotonic()
        wait_for(lambda: "h3" not in {h.name for h in fleet.live_hosts(ctx)}, 30, "h3 stale")
        [row] = [r for r in _rows(ctx) if r["host"] == "h3"]
        assert {"STALE", "UNREACHABLE"} <= set(row["flags"]), row
        rollout = _promote(ctx, target)
        assert list(rollout.hosts) == ["h1", "h2"]
        done = _settled(ctx, rollout)
        assert done.status == "complete", (done.outcome, _dump(hosts))
        net.restore_link("h3")
        back = time.monotonic()
        wait_for(lambda: load.versions[(h3.address, target)] > 20, 60, "h3 serving v1")
        converged = load.first[(h3.address, target)] - back
        wait_for(lambda: fleetstatus.consistent(_rows(ctx)), 60, "a consistent fleet")
    assert load.failed(hosts[0].address, hosts[1].address) == []
    failures = load.failures[h3.address]
    assert failures, "h3 answered while its cable was pulled"
    # a request sent just before the cable came back fails up to the client's timeout later
    assert all(cut <= t <= back + load.timeout_s for t, _ in failures), load.failed(h3.address)
    assert load.first[(h3.address, target)] > back
    assert load.versions[(h3.address, current)] > 0
    assert _serving(hosts, ctx) == [target] * 3
    wait_for(lambda: _single_deployment(ctx, h3), 30, f"h3 to stop {current}")
    print(f"\nh3 cut off {back - cut:.1f} s; back on the production version {converged:.1f} s "
          f"after its cable returned; {len(failures)} requests to it failed meanwhile")  # fmt: skip


@pytest.mark.usefixtures("on_v1")
def test_a_host_cut_off_after_a_completed_rollout_serves_on_and_returns_unchanged(
    workstation: tuple[Context, dict[str, str]], net: Network, hosts: list[Host]
) -> None:
    """v2 goes out to the fleet under load and completes; then h3's cable is pulled (cut off
    from PostgreSQL and its clients) for longer than libpq's network bounds, so its agent's
    pooled connections die and it drops out of the fleet (STALE, UNREACHABLE). The cable
    back, h3 answers v2 again from the very Bento it ran before (no restart, no switch),
    reports again, and the fleet is consistent. Requests fail only on h3 and only while it
    was cut; the rollout's audit row names every host live."""
    ctx, versions = workstation
    target = versions["v2"]
    h3 = hosts[2]
    with _load(ctx, net, hosts) as load:
        rollout = _promote(ctx, target)
        done = _settled(ctx, rollout)
        assert done.status == "complete", (done.outcome, _dump(hosts))
        wait_for(lambda: _single_deployment(ctx, h3), 30, "h3 to stop v1")
        [before] = ctx.registry.deployments(host=h3.name)
        mark = h3.log_size()
        wait_for(lambda: load.versions[(h3.address, target)] > 20, 30, "load on h3's v2")
        net.cut_link("h3")
        cut = time.monotonic()
        wait_for(lambda: "h3" not in {h.name for h in fleet.live_hosts(ctx)}, 30, "h3 stale")
        # its agent's passes fail on the DB (libpq's bounds: 5 s), and it keeps what runs
        wait_for(lambda: KEEPING in h3.log_since(mark), 40, "h3 to keep what runs")
        [row] = [r for r in _rows(ctx) if r["host"] == "h3"]
        assert {"STALE", "UNREACHABLE"} <= set(row["flags"]), row
        net.restore_link("h3")
        back = time.monotonic()
        served = load.versions[(h3.address, target)]
        wait_for(lambda: load.versions[(h3.address, target)] > served + 20, 30, "h3 answering")
        wait_for(lambda: "h3" in {h.name for h in fleet.live_hosts(ctx)}, 60, "h3's heartbeat")
        wait_for(lambda: fleetstatus.consistent(_rows(ctx)), 60, "a consistent fleet")
    assert load.failed(hosts[0].address, hosts[1].address) == []
    failures = load.failures[h3.address]
    assert failures, "h3 answered while its cable was pulled"
    assert all(cut <= t <= back + load.timeout_s for t, _ in failures), load.failed(h3.address)
    assert {v for (a, v) in load.versions if a == h3.address} == {versions["v1"], target}
    [after] = ctx.registry.deployments(host=h3.name)
    assert (after.id, after.pid, after.version) == (before.id, before.pid, target)
    assert _serving(hosts, ctx) == [target] * 3
    [settled] = [e for e in ctx.registry.audit(MODEL) if e.action == "rollout"
                 and e.payload.get("rollout_id") == rollout.id]  # fmt: skip
    assert settled.payload["results"] == {name: "live" for name in NAMES}, settled
    print(f"\nh3 cut off {back - cut:.1f} s after the rollout; {len(failures)} requests to it "
          f"failed meanwhile, none elsewhere; back with the same Bento")  # fmt: skip


def _signal_tree(pid: int, signum: int) -> None:
    for each in process_tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signum)


@pytest.mark.usefixtures("on_v1")
def test_fleet_agent_retries_a_failed_start_and_keeps_its_heartbeat_while_it_waits(
    workstation: tuple[Context, dict[str, str]], net: Network, hosts: list[Host]
) -> None:
    """v2 goes out under load. h1's first start of it crashes (its Bento killed before it
    is ready): h1 retries, audited, and the rollout completes. h2's Bento is slow to start
    (frozen for 4 s): h2's heartbeat goes on meanwhile (interval 0.5 s)."""
    ctx, versions = workstation
    target = versions["v2"]
    crashed, slow = hosts[0], hosts[1]
    ages: list[float] = []
    with _load(ctx, net, hosts) as load:
        started = time.monotonic()
        rollout = _promote(ctx, target)
        _signal_tree(_starting(ctx, crashed, target).pid or 0, signal.SIGKILL)
        frozen = _starting(ctx, slow, target).pid or 0
        _signal_tree(frozen, signal.SIGSTOP)
        try:
            until = time.monotonic() + 4
            while time.monotonic() < until:
                [beat] = [h for h in ctx.registry.hosts() if h.name == slow.name]
                ages.append((ctx.registry.db_now() - beat.last_heartbeat).total_seconds())
                time.sleep(0.2)
        finally:
            _signal_tree(frozen, signal.SIGCONT)
        done = _settled(ctx, rollout)
        took = time.monotonic() - started
    assert done.status == "complete", (done.outcome, _dump(hosts))
    assert load.failed() == [], load.failed()[:10]
    assert _serving(hosts, ctx) == [target] * 3
    # keep-alives are at most ~2.5 intervals apart (an idle wait, the pass's first interval,
    # half an interval's poll): 1.25 s; without them the age would grow past 4 s
    assert max(ages) < 2.0, ages
    failures = [e for e in ctx.registry.audit(MODEL, target) if e.action == "start_failed"]
    mine = [e for e in failures if e.payload["rollout_id"] == rollout.id]
    assert [(e.actor, e.payload["tries"], e.payload["retry_in_s"]) for e in mine] == [
        (crashed.name, 1, crashed.settings.agent.start_retry_s)
    ], mine
    assert f"started {MODEL}:{target} (try 2)" in crashed.log_path.read_text()
    settled = [e for e in ctx.registry.audit(MODEL) if e.action == "rollout"]
    assert settled[-1].payload["rollout_id"] == rollout.id
    assert settled[-1].payload["results"] == {name: "live" for name in NAMES}
    wait_for(lambda: all(_single_deployment(ctx, h) for h in hosts), 30, "v1 stopped")
    for host in hosts:
        _records_match_processes(host)
    print(f"\nfleet promotion with a retried start and a slow one: {took:.1f} s; "
          f"h2's heartbeat age while its Bento was frozen: max {max(ages):.2f} s")  # fmt: skip


def _replaced(ctx: Context, host: Host, old: int) -> bool:
    return [d.id for d in ctx.registry.deployments(host=host.name)] not in ([], [old])


def _single_deployment(ctx: Context, host: Host) -> bool:
    return len(ctx.registry.deployments(host=host.name)) == 1


@pytest.mark.usefixtures("on_v2")
def test_fleet_agent_repairs_a_dead_live_bento(
    workstation: tuple[Context, dict[str, str]], hosts: list[Host]
) -> None:
    ctx, versions = workstation
    victim = hosts[0]
    [deployment] = ctx.registry.deployments(host=victim.name)
    assert deployment.pid is not None
    for pid in process_tree(deployment.pid):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _replaced(ctx, victim, deployment.id), 60, "a replacement deployment")
    wait_for(lambda: _all_serve(hosts, ctx, versions["v2"]), 90, "the repaired host serving")
    wait_for(lambda: fleetstatus.consistent(_rows(ctx)), 30, "a consistent fleet")


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


@pytest.mark.usefixtures("on_v2")
def test_a_bake_breach_on_one_host_rolls_the_fleet_back(
    workstation: tuple[Context, dict[str, str]], net: Network, hosts: list[Host]
) -> None:
    """v1 is promoted to the fleet and every agent bakes it while v2 stays warm. The model's
    policy asks of the Bento a p99 of 0.01 ms (the histogram's lowest bound), which no real
    answer meets (its own work alone, parse + check + score, takes ≈ 30 µs in-process:
    bench/README.md, "The framework tax"): v1 breaches the latency rule wherever enough
    clients come (a version slow on a class of rows is the sidecar test's; here the fleet is
    under test).
    The rollout completes without clients (health checks alone are under
    bake_min_requests); then clients come to h1 and h2 at once: one automatic rollback in
    the DB, the other host's refused or never needed, and every host, h3 too, serves v2."""
    ctx, versions = workstation
    current, target = versions["v2"], versions["v1"]
    before = gating.gate_policy(ctx, MODEL).p99_ms
    try:
        with _baking_agents(hosts, 120):
            gating.set_gate_policy(ctx, MODEL, {"p99_ms": 0.01}, actor=ACTORS.release)
            done = _settled(ctx, _promote(ctx, target))
            assert done.status == "complete", (done.outcome, _dump(hosts))
            assert _serving(hosts, ctx) == [target] * 3
            two = [h.address for h in hosts[:2]]
            with client_load(two, _port(ctx), net.client_address) as load:
                started = time.monotonic()
                wait_for(lambda: _production(ctx) == current, 30, "the automatic rollback", 0.05)
                rolled = time.monotonic()
                wait_for(lambda: _all_serve(hosts, ctx, current), 30, "every host on v2", 0.05)
                back = time.monotonic()
            wait_for(lambda: all(_single_deployment(ctx, h) for h in hosts), 30, "v1 stopped")
        rollbacks = [e for e in ctx.registry.audit(MODEL) if e.action == "rollback"
                     and e.actor == bake.WATCHER and e.payload.get("evidence")]  # fmt: skip
        attempts = [(e.outcome, e.payload["evidence"]["host"]) for e in rollbacks]
        print(f"\nfleet bake: rolled back {rolled - started:.2f} s after clients came, every "
              f"host on {current} {back - rolled:.2f} s later; {load.total} requests; "
              f"automatic rollbacks (outcome, host): {attempts}")  # fmt: skip
        assert load.failed() == [], load.failed()[:10]
        [done_once] = [e for e in rollbacks if e.outcome == "ok"]
        evidence = done_once.payload["evidence"]
        assert evidence["host"] in ("h1", "h2") and evidence["version"] == target, evidence
        assert evidence["breach"].startswith("server p99 > 0.01 ms (p99_ms): "), evidence
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
    _record_passed_gate(ctx, version, "fleet test: gated again after its failed bake")


def _all_serve(hosts: list[Host], ctx: Context, version: str) -> bool:
    try:
        return _serving(hosts, ctx) == [version] * 3
    except (AssertionError, OSError):
        return False


@pytest.mark.usefixtures("on_v2")
def test_no_host_serves_a_version_the_db_has_not_made_production(
    workstation: tuple[Context, dict[str, str]], net: Network, hosts: list[Host]
) -> None:
    """v3 is approved and built (its archive in the shared directory) but never gated: its
    fleet promotion is refused by the DB and records no rollout. Under load, through a few
    agent passes and a restart of every agent (which adopts what runs), no host starts or
    routes v3 (the route watch of every test checks every host's map every 50 ms, and that
    no host ever switched to a version the DB had not made production or had rolled back),
    and every client answer is v2's."""
    ctx, versions = workstation
    current, unpromoted = versions["v2"], versions["v3"]
    rollouts = len(ctx.registry.rollouts(MODEL))
    with _load(ctx, net, hosts) as load:
        with pytest.raises(GovernanceError):
            _promote(ctx, unpromoted)
        assert len(ctx.registry.rollouts(MODEL)) == rollouts
        for host in hosts:
            host.stop_agent()
            host.start_agent()
        for host in hosts:
            wait_for(lambda h=host: _passed(ctx, h), 60, f"{host.name}'s first pass")  # type: ignore[misc]
        # what must not happen has a few more passes (every 0.5 s) to happen in
        watched = time.monotonic()
        wait_for(lambda: time.monotonic() - watched > 3, 10, "3 s more of agent passes")
        wait_for(lambda: fleetstatus.consistent(_rows(ctx)), 30, "a consistent fleet")
    assert load.failed() == [], load.failed()[:10]
    assert {v for (_, v) in load.versions} == {current}, load.versions
    assert all(load.answered(h.address) > 20 for h in hosts), load.versions
    for host in hosts:
        assert {d.version for d in ctx.registry.deployments(host=host.name)} == {current}
    assert _production(ctx) == current
    refused = [e for e in ctx.registry.audit(MODEL, unpromoted) if e.outcome != "ok"]
    assert refused, "the refused promotion of v3 is not in the audit trail"


def _passed(ctx: Context, host: Host) -> bool:
    """True once ``host``'s running agent has reported a whole pass (its pid in the heartbeat,
    which is a pass's report, not a keep-alive: no ``busy``)."""
    [beat] = [h for h in ctx.registry.hosts() if h.name == host.name]
    process = host.agent.process
    return (
        process is not None and beat.report.get("pid") == process.pid and "busy" not in beat.report
    )
