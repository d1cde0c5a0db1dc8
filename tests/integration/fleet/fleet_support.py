"""Helpers for the fleet tests: PostgreSQL schemas, simulated hosts, agents, load.

Three hosts share this machine: each has its own BENTOGATE_HOME, backend port range, stats
port and HAProxy, and serves each model on the model's production port + its host offset
(no network namespaces: a per-host port offset stands in for a per-host address).
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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import governance_support
from governance_support import PG_DEFAULT as PG_DEFAULT  # re-exported for the fleet tests
from governance_support import pg_problem, postgres_lock
from hosts import host_settings, settings_env

from bentogate.context import Context
from bentogate.settings import Settings

FEATURES = 220
HOST_SPAN = 10  # ports per host: production, candidate, stats, 7 backends


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


_outage = contextlib.ExitStack()  # holds PostgreSQL exclusively from pg_stop to pg_start


def pg_stop() -> None:
    """Stop the local cluster, once every other test using it is done (and none starts until
    :func:`pg_start`: governance_support.postgres_lock)."""
    _outage.enter_context(postgres_lock(exclusive=True))
    _pg_cluster("stop")


def pg_start(url: str, timeout: float = 60.0) -> None:
    """Start the local cluster (if it is down), wait until ``url`` answers, and let the other
    tests have it again."""
    try:
        if pg_problem(url) is None:
            return
        _pg_cluster("start")
        deadline = time.monotonic() + timeout
        while pg_problem(url) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not come back: {pg_problem(url)}")
            time.sleep(0.2)
    finally:
        _outage.close()


@dataclass
class Host:
    """A simulated API host: its settings, and its agent as a real subprocess."""

    name: str
    settings: Settings
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def port_offset(self) -> int:
        return self.settings.ports.host_offset

    def start_agent(self) -> None:
        assert self.process is None or self.process.poll() is not None
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bentogate.cli", "agent", "--host", self.name],
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

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- agent {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])

    def set_bento(self, **bento: Any) -> None:
        """Change these ``bento`` settings (e.g. ``keep_previous_s``); the agent takes them
        at its next start."""
        changed = self.settings.bento.model_copy(update=bento)
        self.settings = self.settings.model_copy(update={"bento": changed})
        self.env = settings_env(self.settings) | {"PYTHONUNBUFFERED": "1"}


def make_host(
    name: str, index: int, base: int, home: Path, db_url: str, shared: Path, **agent: Any
) -> Host:
    """Host ``index`` of a fleet whose models' production ports start at ``base``: its
    ports are the block ``base + HOST_SPAN * (index + 1)`` (``hosts.port_layout``)."""
    agent_settings = {"interval_s": 0.5, "max_backoff_s": 2.0, "stale_after_s": 20.0, **agent}
    settings = host_settings(
        home,
        base,
        size=HOST_SPAN,
        models=1,
        host_offset=HOST_SPAN * (index + 1),
        db_url=db_url,
        host=name,
        shared_bentos_dir=shared,
        agent=agent_settings,
        # Versions stop as soon as they leave production: these tests count what runs
        # (warm previous versions: tests/unit/fleet/test_fleet_warm.py, e2e, sidecar).
        bento={"ready_timeout_s": 120, "keep_previous_s": 0, "expire_warm": "agent"},
    )
    env = settings_env(settings) | {"PYTHONUNBUFFERED": "1"}
    return Host(name, settings, env, home / "agent.log")


def predict(port: int, timeout: float = 5.0) -> str:
    """POST one prediction to 127.0.0.1:``port``; returns the model_version that answered."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
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
    """Steady client traffic on several ports (keep-alive), counting answers per version;
    ``first``: when (``time.monotonic()``) each port first answered with each version."""

    ports: list[int]
    pause_s: float = 0.01
    versions: Counter[tuple[int, str]] = field(default_factory=Counter)
    first: dict[tuple[int, str], float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for port in self.ports:
            thread = threading.Thread(target=self._drive, args=(port,), daemon=True)
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

    def _drive(self, port: int) -> None:
        body = json.dumps({"features": [0.0] * FEATURES})
        headers = {"Content-Type": "application/json"}
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not self._stop.is_set():
            try:
                connection.request("POST", "/predict", body, headers)
                response = connection.getresponse()
                payload = response.read()
                if response.status != 200:
                    self.errors.append(f"{port}: {response.status} {payload[:120]!r}")
                else:
                    key = (port, str(json.loads(payload)["model_version"]))
                    self.first.setdefault(key, time.monotonic())
                    self.versions[key] += 1
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
            except (OSError, http.client.HTTPException, ValueError) as err:
                self.errors.append(f"{port}: {type(err).__name__}: {err}")
                connection.close()
            time.sleep(self.pause_s)
        connection.close()


def wait_for(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.25) -> None:
    """Poll ``check`` until it is true; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
