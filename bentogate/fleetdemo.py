"""``bentogate demo --fleet``: the fleet story on this machine, three API hosts with addresses
of their own, one PostgreSQL governance DB.

Each host is a Linux network namespace (:mod:`bentogate.netns`, as root): its own address
on a bridge, its HAProxy serving the model's production port there (the same port on every
host), its Bentos on its own 127.0.0.1, its agent (``bentogate agent``, an
:class:`AgentProcess` run with ``ip netns exec``), and the governance DB (a fresh schema of
the machine's PostgreSQL) through a relay on the bridge. The release workstation is this
process, in the machine's own namespace: it registers, validates, approves and builds each
version (the archives go to a shared directory the agents import from), serves it as the
candidate on its own 127.0.0.1 and gates it there for real (v2 beside v1, as a workstation
of a real fleet would), then promotes it to the fleet; the agents cut over. v2's promotion
runs under client load on every host's address (:class:`bentogate.fleetload.Load`): the
demo fails if a request fails, the rollout does not complete or the fleet does not end
consistent.

    with FleetDemo.up(base, workdir, db_url=..., progress=progress) as demo:
        result = demo.run()          the story; result.rows: `status --fleet`'s rows
    (everything stopped, the namespaces deleted)
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from bentogate import fleet, fleetstatus, host, release
from bentogate.context import Context, Progress, Ref, artifact_dir
from bentogate.data import make_demo_files
from bentogate.errors import (
    ConfigError,
    DatabaseUnavailable,
    FleetDiverged,
    RolloutFailed,
)
from bentogate.fleetload import Load
from bentogate.gating import gate
from bentogate.governance import RolloutInfo, RolloutStatus
from bentogate.modelimport import load_artifact
from bentogate.netns import AgentProcess, Network, netns_problem
from bentogate.settings import Settings

MODEL = "fraud"
HOSTS = ("h1", "h2", "h3")
#: The machine's PostgreSQL, as `./run` finds it on these machines (trust auth for postgres).
LOCAL_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
#: The schema the demo owns on that server: made afresh at every start.
SCHEMA = "bentogate_fleet_demo"
ACTORS = release.Actors(
    developer="dana.dev", validator="vic.validator", approver="ana.approver", release="rel"
)
#: How long the demo waits for what its agents do (a rollout has its own deadline).
WAIT_S = 120.0


def schema_url(base: str, schema: str) -> str:
    """Make ``schema`` afresh on the PostgreSQL at ``base`` (dropped with everything in it if
    it exists); returns the URL that selects it (``search_path``). Raises ConfigError for a
    URL that is not PostgreSQL, DatabaseUnavailable when the server does not answer."""
    url = sa.make_url(base)
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            f"the fleet demo needs PostgreSQL (its hosts share one governance DB), got "
            f"{url.get_backend_name()}: set BENTOGATE_DB_URL or --db-url"
        )
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.DBAPIError as err:
        first = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
        raise DatabaseUnavailable(f"PostgreSQL at {url.render_as_string()}: {first}") from err
    finally:
        engine.dispose()
    selected = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return selected.render_as_string(hide_password=False)


@dataclass(frozen=True)
class HostFigures:
    """What clients of one host saw during v2's promotion."""

    address: str
    requests: int
    failed: int
    first_answer_s: float | None  # from the promotion's start to the host's first v2 answer


@dataclass(frozen=True)
class Result:
    """The end of the fleet demo: `status --fleet`'s rows, the rollouts, and v2's promotion
    as clients saw it (its wall time, and per host)."""

    rows: list[dict[str, Any]]
    rollouts: list[RolloutInfo]
    wall_s: float
    hosts: dict[str, HostFigures]
    port: int
    example: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.rows,
            "rollouts": self.rollouts,
            "promotion": {
                "wall_s": round(self.wall_s, 2),
                "hosts": {name: vars(h) for name, h in self.hosts.items()},
            },
            "port": self.port,
            "example": self.example,
        }


class FleetDemo:
    """Three namespaced hosts with their agents, the DB relay, the workstation (see the
    module docstring). Made by :meth:`up`; everything ends with its ``with`` block."""

    def __init__(
        self, base: Settings, workdir: Path, db_url: str, net: Network, progress: Progress
    ) -> None:
        self.workdir, self.net, self.progress = workdir, net, progress
        self.shared = workdir / "shared"
        relayed = sa.make_url(db_url).set(host=net.db_address, port=net.upstream[1])
        self.ws = Context(
            _settings(
                base, workdir / "workstation", db_url, "workstation", "127.0.0.1", self.shared
            )
        )
        self.agents = {
            name: AgentProcess(
                _settings(
                    base,
                    workdir / name,
                    relayed.render_as_string(hide_password=False),
                    name,
                    net.address(name),
                    self.shared,
                    agent=True,
                ),
                net.exec_prefix(name),
            )
            for name in net.hosts
        }

    @classmethod
    @contextlib.contextmanager
    def up(
        cls,
        base: Settings,
        workdir: Path,
        *,
        db_url: str,
        schema: str = SCHEMA,
        progress: Progress,
    ) -> Iterator[FleetDemo]:
        """Make the network, the schema and the hosts, start every agent and wait for their
        heartbeats; at the end of the block stop everything and delete the namespaces.
        Raises ConfigError where namespaces cannot be made (no privilege: the reason),
        DatabaseUnavailable without PostgreSQL."""
        problem = netns_problem()
        if problem is not None:
            raise ConfigError(f"the fleet demo needs network namespaces (as root): {problem}")
        workdir = workdir.resolve()
        progress(f"a fresh schema {schema} for the governance DB")
        url = schema_url(db_url, schema)
        parsed = sa.make_url(url)
        progress(f"three hosts {', '.join(HOSTS)}: a network namespace each, on one bridge")
        try:
            net = Network.create(list(HOSTS), (parsed.host or "127.0.0.1", parsed.port or 5432))
        except (subprocess.CalledProcessError, RuntimeError, OSError) as err:
            detail = getattr(err, "stderr", "") or str(err)
            raise ConfigError(f"the fleet demo's network could not be made: {detail}") from err
        demo = cls(base, workdir, url, net, progress)
        try:
            demo._start()
            yield demo
        finally:
            demo._down()

    def _start(self) -> None:
        release.init(self.ws)  # the schema first: agents find their tables at once
        for name, agent in self.agents.items():
            self.progress(f"{name} at {self.net.address(name)}: starting its agent")
            agent.start()
        self.progress("waiting for every agent's heartbeat")
        _wait(
            lambda: len(fleet.live_hosts(self.ws)) == len(self.agents),
            "every heartbeat",
            self._agent_logs,
        )

    def _down(self) -> None:
        """Agents first (they would restart what stops), then each host's Bentos and HAProxy,
        the workstation's, and the namespaces with whatever still runs in them."""
        self.progress("stopping the agents, every host's Bentos and HAProxy, the namespaces")
        with contextlib.ExitStack() as stack:
            stack.callback(self.net.close)
            stack.callback(self.ws.close)
            stack.callback(release.shutdown, self.ws, actor=ACTORS.release)
            for agent in self.agents.values():
                stack.callback(_shut_down, agent.settings)
            for agent in self.agents.values():
                stack.callback(agent.stop)

    def _agent_logs(self) -> str:
        tails = []
        for name, agent in self.agents.items():
            lines = agent.log_path.read_text(errors="replace").splitlines()[-15:]
            tails.append(f"--- agent {name} ({agent.log_path}) ---\n" + "\n".join(lines))
        return "\n".join(tails)

    def run(self) -> Result:
        """The story: v1 and v2 through register, validate, approve, build, deploy and gate
        on the workstation; v1 rolled out to the fleet, then v2 under load on every host's
        address. Raises what a step raises, RolloutFailed if a rollout did not complete,
        FleetDiverged if a request failed or the fleet did not end consistent."""
        say, ws = self.progress, self.ws
        say("training the reference models v1 and v2 on synthetic transactions")
        files = make_demo_files(self.workdir / "data")
        say(
            f"one machine plays four people ({ACTORS.developer}, {ACTORS.validator}, "
            f"{ACTORS.approver}, {ACTORS.release}): named, not authenticated, and recorded so"
        )
        v1 = self._gated(files["v1"], files["holdout"])
        rollouts = [self._roll_out(v1)]
        with ws.host_lock():  # the workstation's live too: v2's gate runs beside v1
            host.cut_over(ws, v1, leaving=None, actor=ACTORS.release, progress=say)
        v2 = self._gated(files["v2"], files["holdout"])
        port = ws.registry.get_model(MODEL).production_port
        say("the workstation stops what it served for the gates: the fleet serves the model")
        release.shutdown(ws, actor=ACTORS.release)
        uri = ws.registry.get_version(MODEL, v2.version).artifact_uri
        canary = load_artifact(artifact_dir(uri)).canary_row
        example = self.workdir / "example.json"
        example.write_text(orjson.dumps({"features": canary}).decode())
        addresses = {name: self.net.address(name) for name in self.agents}
        body = orjson.dumps({"features": canary})
        with Load(list(addresses.values()), port, self.net.client_address, body) as load:
            _wait(
                lambda: all(load.answered(a) > 20 for a in addresses.values()),
                "load on every host",
                self._agent_logs,
            )
            started = time.monotonic()
            rollouts.append(self._roll_out(v2))
            wall = time.monotonic() - started
            say(f"{v2}'s fleet promotion took {wall:.1f} s (promote to rollout complete)")
            after = {a: load.answered(a) for a in addresses.values()}
            _wait(
                lambda: all(load.answered(a) > after[a] + 20 for a in addresses.values()),
                "load after the rollout",
                self._agent_logs,
            )
        figures = {
            name: HostFigures(
                address=address,
                requests=load.answered(address),
                failed=len(load.failures[address]),
                first_answer_s=_since(load.first.get((address, v2.version)), started),
            )
            for name, address in addresses.items()
        }
        for name, figure in figures.items():
            say(
                f"{name} ({figure.address}): first answer of {v2} {figure.first_answer_s} s "
                f"after the promotion; {figure.requests} requests, {figure.failed} failed"
            )
        if load.failed():
            raise FleetDiverged(
                f"requests failed during {v2}'s rollout: " + "; ".join(load.failed()[:5])
            )
        say("waiting until every host reports and answers " + v2.version)
        _wait(
            lambda: fleetstatus.consistent(fleetstatus.fleet_rows(ws)),
            "a consistent fleet",
            lambda: fleetstatus.fleet_table(fleetstatus.fleet_rows(ws)),
        )
        rows = fleetstatus.fleet_rows(ws)
        if any(r["answers"] != v2.version for r in rows):
            raise FleetDiverged(f"a host does not answer {v2}: {fleetstatus.fleet_table(rows)}")
        return Result(rows, rollouts, wall, figures, port, example)

    def _gated(self, model_file: Path, holdout: Path) -> Ref:
        """Register, validate, approve, build, deploy on the workstation and gate one
        version; returns it."""
        ws, say = self.ws, self.progress
        info = release.register(
            ws, MODEL, model_file, holdout, developer=ACTORS.developer, purpose="card fraud scoring"
        )
        ref = Ref(MODEL, info.version)
        say(f"registered {ref} (sha256 {info.sha256[:12]})")
        release.validate(ws, ref, holdout, actor=ACTORS.validator)
        release.approve(ws, ref, actor=ACTORS.approver)
        _, archive = release.build(ws, ref, actor=ACTORS.release, progress=say)
        say(f"{ref}: archive {archive.name} in the shared directory {self.shared}")
        release.deploy(ws, ref, actor=ACTORS.release, progress=say)
        gate(ws, ref, actor=ACTORS.release, progress=say)
        return ref

    def _roll_out(self, ref: Ref) -> RolloutInfo:
        """Promote ``ref`` to the fleet and wait until the rollout is settled; RolloutFailed
        unless it completed."""
        rollout = fleet.promote(self.ws, ref, actor=ACTORS.release)
        self.progress(f"rollout {rollout.id}: {ref} on {', '.join(rollout.hosts)}")
        done = fleet.wait_rollout(self.ws, rollout, actor=ACTORS.release, progress=self.progress)
        if done.status != RolloutStatus.COMPLETE:
            reason = done.outcome.get("reason", "")
            raise RolloutFailed(
                f"rollout {done.id} of {ref}: {done.status} ({reason})\n" + self._agent_logs()
            )
        self.progress(f"rollout {done.id}: {ref} live and healthy on every host")
        return done

    def hold(self, stop: threading.Event | None = None) -> None:
        """Keep everything running until SIGINT or SIGTERM (or ``stop``)."""
        stop = stop or threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        stop.wait()


def _settings(
    base: Settings,
    home: Path,
    db_url: str,
    name: str,
    address: str,
    shared: Path,
    *,
    agent: bool = False,
) -> Settings:
    """A demo host's settings: ``base`` (the user's: gate policy and the rest) with its home,
    DB, name, address, the shared archives and audit checkpoint key; one replica per version
    (three hosts and the workstation share this machine's cores); on a fleet host, the agent
    reconciles every second and stops a version as soon as it left production (no warm
    window, no bake)."""
    bento: dict[str, Any] = {"replicas": 1}
    if agent:
        bento |= {"keep_previous_s": 0, "expire_warm": "agent"}
    else:
        bento |= {"expire_warm": "manual"}
    values = base.model_dump() | {
        "home": home,
        "db_url": db_url,
        "host": name,
        "address": address,
        "shared_bentos_dir": shared,
        # one machine plays every person, named: allowed on PostgreSQL too, recorded so
        "require_authenticated": False,
    }
    values["bento"] = values["bento"] | bento
    # every writer of a shared governance DB signs its checkpoints with the same key
    values["audit"] = values["audit"] | {
        "checkpoint_key": shared.parent / "audit-checkpoint.pem",
        "checkpoint_log": shared.parent / "audit-checkpoints.jsonl",
    }
    values["agent"] = values["agent"] | {"interval_s": 1.0}
    return Settings(**values)


def _shut_down(settings: Settings) -> None:
    """Stop a host's Bentos and HAProxy (the DB records them as stopped)."""
    ctx = Context(settings)
    try:
        release.shutdown(ctx, actor=settings.host)
    finally:
        ctx.close()


def _since(moment: float | None, start: float) -> float | None:
    return None if moment is None else round(moment - start, 2)


def _wait(
    check: Callable[[], bool], what: str, explain: Callable[[], str], timeout: float = WAIT_S
) -> None:
    """Poll ``check()`` until true; FleetDiverged naming ``what`` (and ``explain()``) after
    ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise FleetDiverged(f"timed out after {timeout:g} s waiting for {what}\n{explain()}")
        time.sleep(0.25)
