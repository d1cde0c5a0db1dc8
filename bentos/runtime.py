"""Running a Bento on a port: one interface, and the process backend (the container backend
is :mod:`bentogate.bentos.container`).

A runtime starts a built Bento on ``127.0.0.1:<port>``, waits until its ``/readyz`` answers
200 (failing early, with the log's tail, if the process dies), and stops it gracefully with a
deadline, then by force. Handles are plain data so the workflow can record them (pid in the
governance DB, pid file on disk) and adopt a running Bento later.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bentogate.bentos._cli import bentoml_command, bentoml_env
from bentogate.bentos.build import served_sha256
from bentogate.errors import RuntimeBackendError

_POLL_S = 0.1
SERVICE_NAME = "bentogate_model"  # the name in service.py's @bentoml.service
# What uvicorn logs when the service's __init__ raises (e.g. the model's sha256 differs from
# the approved one). BentoML's arbiter then respawns the worker every few seconds and the
# server process never exits, so this line is the only sign of a start that cannot succeed.
_STARTUP_FAILED = b"Application startup failed"


@dataclass(frozen=True)
class Handle:
    """A running Bento: what it serves, where, and how to find it again."""

    tag: str
    port: int
    pid: int | None
    log_path: Path
    container: str | None = None
    log_offset: int = 0  # where this start's output begins in log_path (it is appended to)


class Runtime(Protocol):
    """What the release workflow needs from a way of running Bentos."""

    def model_sha256(self, tag: str) -> tuple[str, str]: ...

    def start(self, tag: str, port: int) -> Handle: ...

    def wait_ready(self, handle: Handle, timeout: float) -> None: ...

    def is_alive(self, handle: Handle) -> bool: ...

    def stop(self, handle: Handle, timeout: float) -> None: ...


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """Status of ``GET http://127.0.0.1:<port><path>``, or None if no HTTP server answers.

    Not an HTTP answer counts as none: on a port of the ephemeral range with no listener,
    Linux can connect the client to itself (TCP simultaneous open), and it reads back its
    own request.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def log_path(logs_dir: Path, tag: str, port: int) -> Path:
    """The log of ``tag`` served on ``port`` by the process backend: its output, every start
    of it appended (one file per version and port)."""
    return logs_dir / f"{tag.replace(':', '-')}-{port}.log"


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _startup_failed(handle: Handle) -> bool:
    try:
        with handle.log_path.open("rb") as log:
            log.seek(handle.log_offset)
            return _STARTUP_FAILED in log.read()
    except OSError:
        return False


def wait_until_ready(runtime: Runtime, handle: Handle, timeout: float) -> None:
    """Return once ``handle``'s ``/readyz`` is 200; RuntimeBackendError, with its log's tail,
    if it stops, its service fails to load, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not runtime.is_alive(handle):
            raise RuntimeBackendError(
                f"{handle.tag} on port {handle.port} exited before it was ready; log "
                f"{handle.log_path}:\n{_log_tail(handle.log_path)}"
            )
        if _startup_failed(handle):
            raise RuntimeBackendError(
                f"{handle.tag} on port {handle.port} failed to start (its service raised "
                f"while loading); log {handle.log_path}:\n{_log_tail(handle.log_path)}"
            )
        if http_status(handle.port, "/readyz") == 200:
            return
        time.sleep(_POLL_S)
    raise RuntimeBackendError(
        f"{handle.tag} on port {handle.port} not ready after {timeout:.0f} s (a model whose "
        f"canary score differs from its record never is); log {handle.log_path}:\n"
        f"{_log_tail(handle.log_path)}"
    )


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().split(") ", 1)[1][0] != "Z"
    return True


class ProcessBackend:
    """``bentoml serve <tag>`` as a child process in its own session (outlives the CLI)."""

    def __init__(self, bentoml_home: Path, logs_dir: Path, *, workers: int = 1) -> None:
        self._home = bentoml_home
        self._logs = logs_dir
        self._workers = workers
        # Children started here, kept to reap them; Bentos started by an earlier bentogate
        # process are found by pid alone.
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def model_sha256(self, tag: str) -> tuple[str, str]:
        """sha256 of the model ``tag``'s Bento would serve from the store, and what was
        measured. NotFoundError if the store has no such model."""
        return served_sha256(self._home, tag), f"model of {tag} in the Bento store"

    def start(self, tag: str, port: int) -> Handle:
        """Start serving ``tag`` on 127.0.0.1:``port``; does not wait for readiness."""
        self._reap()
        if http_status(port, "/livez") is not None:
            raise RuntimeBackendError(f"port {port} is already in use")
        self._logs.mkdir(parents=True, exist_ok=True)
        log = log_path(self._logs, tag, port)
        offset = log.stat().st_size if log.exists() else 0
        command = [
            *bentoml_command(),
            "serve",
            tag,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        env = bentoml_env(self._home)
        env["BENTOML_HOME"] = str(self._instance_home(tag, port))
        env["BENTOML_CONFIG_OPTIONS"] = f"services.{SERVICE_NAME}.workers={self._workers}"
        with log.open("ab") as output:
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[process.pid] = process
        return Handle(tag=tag, port=port, pid=process.pid, log_path=log, log_offset=offset)

    def _instance_home(self, tag: str, port: int) -> Path:
        """A BENTOML_HOME of this server's own that shares the store's Bentos and models.

        BentoML keeps its Prometheus multiprocess files in ``$BENTOML_HOME/
        prometheus_multiproc_dir`` and empties that directory at every start: with one home,
        each Bento's /metrics reported every Bento on the host, and each start erased the
        running ones' figures.
        """
        home = self._home.resolve() / "instances" / f"{tag.replace(':', '-')}-{port}"
        home.mkdir(parents=True, exist_ok=True)
        for store in ("bentos", "models"):
            link = home / store
            if not link.is_symlink():
                link.symlink_to(Path("..", "..", store))
        return home

    def wait_ready(self, handle: Handle, timeout: float) -> None:
        """Return once ``/readyz`` is 200; RuntimeBackendError if it dies or times out."""
        wait_until_ready(self, handle, timeout)

    def _reap(self) -> None:
        """Collect children that died without a stop() (killed, crashed): no zombies."""
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[pid]

    def is_alive(self, handle: Handle) -> bool:
        if handle.pid is None:
            return False
        child = self._children.get(handle.pid)
        if child is not None:
            return child.poll() is None
        return pid_alive(handle.pid)

    def stop(self, handle: Handle, timeout: float) -> None:
        """SIGTERM the Bento's server, wait up to ``timeout``, then SIGKILL its whole tree."""
        if handle.pid is None:
            return
        # BentoML's workers run in sessions of their own: find them while their parent lives.
        tree = process_tree(handle.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(handle.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(pid_alive(pid) for pid in tree):
            time.sleep(_POLL_S)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        child = self._children.pop(handle.pid, None)
        if child is not None:
            child.wait(timeout=5)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc), parents first."""
    return _tree(pid, _children())


def _children() -> dict[int, list[int]]:
    """Every process's children, read from /proc once."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(") ", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def _tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    tree, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        tree.append(current)
        queue.extend(children.get(current, []))
    return tree


def resident_bytes(pids: Iterable[int]) -> dict[int, int | None]:
    """The resident memory of each of ``pids`` with its descendants (a Bento: BentoML's
    arbiter and its workers), summed over their ``VmRSS``; None for a pid that is gone.
    Pages two of them share count twice: what ``ps`` shows for each, added up. /proc's
    process list is read once for all of them."""
    children = _children()
    return {pid: _rss_sum(_tree(pid, children)) for pid in pids}


def _rss_sum(members: list[int]) -> int | None:
    total, found = 0, False
    for member in members:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    found = True
                    break
    return total if found else None
