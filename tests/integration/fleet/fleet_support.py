"""Helpers for the fleet tests: PostgreSQL schemas, hosts in network namespaces, their
agents, client load on every host's address.

Each host has a network namespace of its own (``network.py``): its address on a bridge, its
HAProxy serving the model's production port there (the same port on every host), its
Bentos on its own 127.0.0.1, its agent (run with ``ip netns exec``), and the governance DB
through the relay on the bridge. Its state (BENTOGATE_HOME) is a directory of this machine.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import governance_support
import sqlalchemy as sa
from governance_support import PG_DEFAULT as PG_DEFAULT  # re-exported for the fleet tests
from governance_support import pg_problem
from hosts import host_settings, settings_env
from machine import alone
from network import Network

from bentogate.context import Context
from bentogate.settings import Settings

FEATURES = 220


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
    """A fleet host: its settings (its address among them), the argv prefix that runs a
    process in its namespace, and its agent as a real subprocess there."""

    name: str
    settings: Settings
    env: dict[str, str]
    prefix: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return self.settings.address

    def start_agent(self) -> None:
        assert self.process is None or self.process.poll() is not None
        log = self.log_path.open("ab")
        # `ip netns exec` execs the agent: the process is the agent itself (a kill hits it)
        self.process = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "bentogate.cli", "agent", "--host", self.name],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill_agent(self) -> None:
        """SIGKILL: no clean-up of any kind, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop_agent(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def agent_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

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
        self.settings = self.settings.model_copy(update={"bento": changed})
        self.env = settings_env(self.settings) | {"PYTHONUNBUFFERED": "1"}


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
    env = settings_env(settings) | {"PYTHONUNBUFFERED": "1"}
    return Host(name, settings, env, net.exec_prefix(name), home / "agent.log")


def predict(address: str, port: int, timeout: float = 5.0) -> str:
    """POST one prediction to ``address:port``; returns the model_version that answered."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        body = json.dumps({"features": [0.0] * FEATURES})
        connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise AssertionError(f"{response.status}: {payload[:200]!r}")
        return str(json.loads(payload)["model_version"])
    finally:
        connection.close()


@dataclass
class Load:
    """Steady client traffic on ``port`` of every address (keep-alive, one client each,
    connecting from ``source``), counted per address: answers per version, when each version
    first answered (``time.monotonic()``), and each failure with its time. A request gets
    ``timeout_s`` to answer: a host that cannot be reached fails a request every
    ``timeout_s``."""

    addresses: list[str]
    port: int
    source: str
    pause_s: float = 0.01
    timeout_s: float = 2.0
    versions: Counter[tuple[str, str]] = field(default_factory=Counter)
    first: dict[tuple[str, str], float] = field(default_factory=dict)
    failures: defaultdict[str, list[tuple[float, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for address in self.addresses:
            thread = threading.Thread(target=self._drive, args=(address,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    @property
    def total(self) -> int:
        return sum(self.versions.values())

    def answered(self, address: str) -> int:
        return sum(n for (where, _), n in self.versions.items() if where == address)

    def failed(self, *addresses: str) -> list[str]:
        """The failures on these addresses (all, if none named), with their times."""
        named = addresses or tuple(self.failures)
        return [f"{a} at {t:.1f}: {text}" for a in named for t, text in self.failures[a]]

    def _connect(self, address: str) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(
            address, self.port, timeout=self.timeout_s, source_address=(self.source, 0)
        )

    def _drive(self, address: str) -> None:
        body = json.dumps({"features": [0.0] * FEATURES})
        headers = {"Content-Type": "application/json"}
        connection = self._connect(address)
        while not self._stop.is_set():
            try:
                connection.request("POST", "/predict", body, headers)
                response = connection.getresponse()
                payload = response.read()
                if response.status != 200:
                    self._fail(address, f"{response.status} {payload[:120]!r}")
                else:
                    key = (address, str(json.loads(payload)["model_version"]))
                    self.first.setdefault(key, time.monotonic())
                    self.versions[key] += 1
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
            except (OSError, http.client.HTTPException, ValueError) as err:
                self._fail(address, f"{type(err).__name__}: {err}")
                connection.close()
                connection = self._connect(address)
            time.sleep(self.pause_s)
        connection.close()

    def _fail(self, address: str, text: str) -> None:
        self.failures[address].append((time.monotonic(), text))


def wait_for(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.25) -> None:
    """Poll ``check`` until it is true; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
