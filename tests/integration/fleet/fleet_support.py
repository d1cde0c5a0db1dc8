"""Helpers for the fleet tests: PostgreSQL schemas, hosts in network namespaces, their
agents, client load on every host's address.

Each host has a network namespace of its own (``bentogate.netns``): its address on a bridge,
its HAProxy serving the model's production port there (the same port on every host), its
Bentos on its own 127.0.0.1, its agent (``bentogate.netns.AgentProcess``, run with ``ip
netns exec``), and the governance DB through the relay on the bridge. Its state
(BENTOGATE_HOME) is a directory of this machine.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import governance_support
import sqlalchemy as sa
from governance_support import PG_DEFAULT as PG_DEFAULT  # re-exported for the fleet tests
from governance_support import pg_problem
from hosts import host_settings
from machine import alone

from bentogate.context import Context
from bentogate.errors import BentogateError
from bentogate.fleetload import Load
from bentogate.netns import AgentProcess, Network
from bentogate.settings import Settings

FEATURES = 220
BODY = json.dumps({"features": [0.0] * FEATURES}).encode()
#: An agent that is SIGKILLed by itself the moment HAProxy confirmed its switch of a production
#: port, before it records anything (``agent_dies_after_switch.py``).
DIES_AFTER_SWITCH = [sys.executable, str(Path(__file__).with_name("agent_dies_after_switch.py"))]


def pg_schema(base: str) -> tuple[str, Callable[[], None]]:
    """A fresh ``fleet_…`` schema on ``base`` (selected by ``search_path``) and its dropper."""
    return governance_support.pg_schema(base, "fleet")


def _pg_cluster(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action, "-m", "fast"]
        if action == "stop"
        else ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


class PostgresHold:
    """A fleet test's claim on the machine's PostgreSQL: :meth:`take_whole` takes the machine
    (tests/machine.py: no other test runs, in this run or another, until :meth:`release`), for
    a test that stops PostgreSQL itself (before its rollout, so the stop comes when the test
    means it, not when the others are done)."""

    def __init__(self) -> None:
        self._held = contextlib.ExitStack()

    def take_whole(self) -> None:
        self._held.enter_context(alone())

    def release(self) -> None:
        self._held.close()


def pg_stop() -> None:
    """Stop the local cluster (the caller holds it whole: :meth:`PostgresHold.take_whole`)."""
    _pg_cluster("stop")


def pg_start(url: str, timeout: float = 60.0) -> None:
    """Start the local cluster (if it is down) and wait until ``url`` answers."""
    if pg_problem(url) is None:
        return
    _pg_cluster("start")
    deadline = time.monotonic() + timeout
    while pg_problem(url) is not None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not come back: {pg_problem(url)}")
        time.sleep(0.2)


@dataclass
class Host:
    """A fleet host: its settings (its address among them) and its agent, a real subprocess
    in its namespace (``bentogate.netns.AgentProcess``, as the fleet demo runs them)."""

    name: str
    agent: AgentProcess

    @property
    def settings(self) -> Settings:
        return self.agent.settings

    @property
    def address(self) -> str:
        return self.settings.address

    @property
    def log_path(self) -> Path:
        return self.agent.log_path

    def start_agent(self, program: list[str] | None = None) -> None:
        """Start the agent: ``bentogate agent``, or ``program`` (e.g. :data:`DIES_AFTER_SWITCH`)."""
        self.agent.start(program)

    def kill_agent(self) -> None:
        """SIGKILL: no clean-up of any kind, as a crash would."""
        self.agent.kill()

    def stop_agent(self) -> None:
        self.agent.stop()

    def agent_alive(self) -> bool:
        return self.agent.alive()

    def context(self) -> Context:
        return Context(self.settings)

    def log_size(self) -> int:
        """Where the agent's log ends now (for :meth:`log_since`)."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        """What the agent logged after ``offset`` (:meth:`log_size`)."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- agent {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])

    def set_bento(self, **bento: Any) -> None:
        """Change these ``bento`` settings (e.g. ``keep_previous_s``); the agent takes them
        at its next start."""
        changed = self.settings.bento.model_copy(update=bento)
        self.agent.settings = self.settings.model_copy(update={"bento": changed})


def make_host(name: str, home: Path, db_url: str, shared: Path, net: Network) -> Host:
    """Host ``name`` of ``net``: the default ports (its network is its own), its address,
    the governance DB at ``db_url`` reached through the relay on the bridge."""
    relayed = sa.make_url(db_url).set(host=net.db_address, port=net.upstream[1])
    settings = host_settings(
        home,
        None,
        db_url=relayed.render_as_string(hide_password=False),
        host=name,
        address=net.address(name),
        shared_bentos_dir=shared,
        agent={"interval_s": 0.5, "max_backoff_s": 2.0},
        # Versions stop as soon as they leave production: these tests count what runs
        # (warm previous versions: tests/unit/fleet/test_fleet_warm.py, e2e, sidecar).
        bento={"ready_timeout_s": 120, "keep_previous_s": 0, "expire_warm": "agent"},
    )
    return Host(name, AgentProcess(settings, net.exec_prefix(name)))


def predict(address: str, port: int, timeout: float = 5.0) -> str:
    """POST one prediction to ``address:port``; returns the model_version that answered."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("POST", "/predict", BODY, {"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise AssertionError(f"{response.status}: {payload[:200]!r}")
        return str(json.loads(payload)["model_version"])
    finally:
        connection.close()


def client_load(addresses: list[str], port: int, source: str) -> Load:
    """Client load on ``port`` of every address (``bentogate.fleetload.Load``), each request
    the all-zero row of :data:`FEATURES` features."""
    return Load(addresses, port, source, BODY)


@dataclass
class RouteWatch:
    """Every host's production route of ``model`` (its HAProxy's map, read on its admin
    socket, a file of this machine: readable while the host is cut off), every ``poll_s``
    while open, recorded at each change: ``changes`` holds (host, backend or None, the
    ``time.time()`` it was first seen), the first reading of each host included."""

    hosts: list[Host]
    model: str
    poll_s: float = 0.05
    changes: list[tuple[str, str | None, float]] = field(default_factory=list)
    unread: Counter[str] = field(default_factory=Counter)  # readings that failed (a reload)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RouteWatch:
        self._thread = threading.Thread(target=self._watch, name="route-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _watch(self) -> None:
        contexts = {h.name: h.context() for h in self.hosts}
        last: dict[str, str | None] = {}
        try:
            while not self._stop.is_set():
                for name, ctx in contexts.items():
                    try:
                        backend = ctx.sidecar.routes().get(self.model)
                    except BentogateError:  # reloading, or not running: not a route
                        self.unread[name] += 1
                        continue
                    if name not in last or last[name] != backend:
                        last[name] = backend
                        self.changes.append((name, backend, time.time()))
                self._stop.wait(self.poll_s)
        finally:
            for ctx in contexts.values():
                ctx.close()


def wait_for(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.25) -> None:
    """Poll ``check`` until it is true; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
