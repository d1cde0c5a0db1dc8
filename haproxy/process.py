"""The real haproxy process: check a config, start it, reload it seamlessly, stop it.

HAProxy runs in master-worker mode (``-W``), daemonized (``-D``) so it outlives the command
that started it; the master's pid is in ``paths.pid_file`` and its CLI on
``paths.master_socket``. It is started with the request log's FIFO (``paths.log_fifo``)
open as descriptor :data:`~bentogate.haproxy.accesslog.LOG_FD` (a daemon closes its standard
output), which the master keeps across reloads and hands to every worker; the FIFO's writer
(:mod:`bentogate.haproxy._logwriter`) runs beside it and exits with it
(:mod:`bentogate.haproxy.accesslog`). A reload is ``SIGUSR2`` to the master: the new worker takes
over the listening sockets (``expose-fd listeners``) while old workers finish their requests
(bounded by ``hard-stop-after``). A reload is confirmed when the admin socket answers from a new
pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from bentogate.errors import HAProxyError

from .accesslog import LOG_FD
from .runtime import RuntimeAPI
from .spec import ProxyPaths

_POLL_S = 0.05
_LOG_WRITER = Path(str(resources.files("bentogate.haproxy") / "_logwriter.py"))
_MIB = 1 << 20


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def check_config(binary: str, config: Path, timeout: float = 30.0) -> None:
    """Run ``haproxy -c -dW`` (warnings are errors) on ``config``.

    Raises ``HAProxyError`` carrying HAProxy's own messages if the config is refused.
    """
    out = _run([binary, "-c", "-dW", "-f", str(config)], timeout)
    if out.returncode != 0:
        raise HAProxyError(f"haproxy -c refused {config}:\n{_alerts(out.stdout + out.stderr)}")


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HAProxyError(f"cannot run {argv[0]}: {exc}") from exc


def _running(pid: int) -> bool:
    """True if ``pid`` is a process that has not exited (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _stop_log_writer(pid: int, timeout: float = 3.0) -> None:
    """Wait for the log writer ``pid`` to drain the FIFO and exit (it does once no haproxy
    holds the FIFO); SIGTERM, then SIGKILL it if it outlives ``timeout``."""
    for sig, seconds in ((None, timeout), (signal.SIGTERM, 1.0), (signal.SIGKILL, 1.0)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if _exits_within(pid, seconds):
            return


def _exits_within(pid: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``pid`` to exit; True if it did."""
    deadline = time.monotonic() + seconds
    while _running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _alerts(output: str) -> str:
    lines = [ln for ln in output.splitlines() if "[NOTICE]" not in ln]
    return "\n".join(lines[-20:])


class HAProxyProcess:
    """The daemonized master-worker haproxy of one sidecar directory (and its request log's
    writer, which keeps ``paths.access_log`` under ``log_max_bytes``, ``log_keep`` copies)."""

    def __init__(
        self,
        paths: ProxyPaths,
        binary: str = "haproxy",
        timeout: float = 5.0,
        *,
        log_max_bytes: int = 20 * _MIB,
        log_keep: int = 3,
    ) -> None:
        self.paths = paths
        self.binary = binary
        self.log_max_bytes = log_max_bytes
        self.log_keep = log_keep
        self.admin = RuntimeAPI(paths.admin_socket, timeout)
        self.master = RuntimeAPI(paths.master_socket, timeout)
        self._last_master: int | None = None

    def master_pid(self) -> int | None:
        """The running master's pid, or None if there is none (stale pid files ignored).

        The master keeps its pid across reloads, but each time it re-executes itself it
        removes or empties the pid file for a moment (seen live): then the pid read last is
        used, rather than taking haproxy for stopped (which would fail a reload in progress,
        or start a second haproxy).
        """
        pid = _read_pid(self.paths.pid_file)
        if pid is None:
            pid = self._last_master
        if pid is None or not self._is_master(pid):
            self._last_master = None
            return None
        self._last_master = pid
        return pid

    def _is_master(self, pid: int) -> bool:
        """True if ``pid`` is alive and is this directory's haproxy."""
        proc = Path(f"/proc/{pid}")
        try:
            comm, rest = proc.joinpath("stat").read_text().split("(", 1)[1].rsplit(")", 1)
            cmdline = proc.joinpath("cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return False
        if rest.split()[0] in ("Z", "X") or "haproxy" not in comm:
            return False
        # cmdline reads empty while the master re-executes itself on reload.
        return not cmdline or str(self.paths.config).encode() in cmdline

    def is_running(self) -> bool:
        """True if this directory's master process is alive."""
        return self.master_pid() is not None

    def logs_to(self) -> Path | None:
        """What the running master's :data:`LOG_FD` is open on (where its workers write the
        request log's lines), or None if none runs or it has no such descriptor (started
        before bentogate logged requests: a restart gives it one)."""
        pid = self.master_pid()
        if pid is None:
            return None
        try:
            return Path(os.readlink(f"/proc/{pid}/fd/{LOG_FD}"))
        except OSError:
            return None

    def log_writer_pid(self) -> int | None:
        """The pid of this sidecar's request-log writer, or None if none runs."""
        pid = _read_pid(self.paths.log_writer_pid_file)
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        ours = str(self.paths.log_fifo).encode() in cmdline
        return pid if ours and _running(pid) else None

    def ensure_log_writer(self, timeout: float = 5.0) -> int | None:
        """Start the request log's writer unless one runs; returns its pid, or None if the
        running haproxy holds no log FIFO (then nothing is logged). A writer that does not
        come up within ``timeout`` leaves lines in the FIFO (and then drops them, never a
        request): the next call tries again."""
        if self.logs_to() != self.paths.log_fifo.resolve():
            return None
        pid = self.log_writer_pid()
        if pid is not None:
            return pid
        self.paths.access_log.parent.mkdir(parents=True, exist_ok=True)
        writer = [
            sys.executable, "-I", str(_LOG_WRITER), str(self.paths.log_fifo),
            str(self.paths.access_log), str(self.log_max_bytes), str(self.log_keep),
            str(self.paths.log_writer_pid_file),
        ]  # fmt: skip
        with open(self.paths.log, "a") as log:
            # Through a shell that exits at once: the writer is nobody's child (no zombie,
            # no Popen left running) and, in a session of its own, gets no terminal's Ctrl-C.
            subprocess.run(
                ["/bin/sh", "-c", '"$@" &', "sh", *writer],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True, timeout=timeout, check=False,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while (pid := self.log_writer_pid()) is None and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        return pid

    def worker_pid(self) -> int | None:
        """The pid of the worker now answering on the admin socket, or None."""
        try:
            return int(self.admin.show_info()["Pid"])
        except (HAProxyError, KeyError, ValueError):
            return None

    def start(self, timeout: float = 10.0) -> int:
        """Start haproxy on ``paths.config``; returns the worker pid once it answers.

        Raises ``HAProxyError`` with the log tail if it does not start.
        """
        if self.is_running():
            raise HAProxyError(f"haproxy already runs for {self.paths.directory}")
        fifo = self.paths.log_fifo
        if not fifo.is_fifo():
            fifo.unlink(missing_ok=True)
            os.mkfifo(fifo, 0o600)
        argv = [
            # The shell opens the FIFO as LOG_FD, then becomes haproxy. Read-write: the open
            # never waits for a reader, and a write never fails for want of one.
            "/bin/sh", "-c", f'fifo=$1; shift; exec "$@" {LOG_FD}<>"$fifo"', "sh", str(fifo),
            self.binary, "-W", "-D",
            "-S", f"{self.paths.master_socket},mode,600",
            "-p", str(self.paths.pid_file),
            "-f", str(self.paths.config),
        ]  # fmt: skip
        with open(self.paths.log, "a") as log:
            try:
                code = subprocess.run(
                    argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, timeout=timeout
                ).returncode
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise HAProxyError(f"cannot start haproxy: {exc}") from exc
        if code != 0:
            raise HAProxyError(f"haproxy exited {code} at start:\n{self.log_tail()}")
        deadline = time.monotonic() + timeout
        while not self.is_running():  # the daemonized master writes its pid file a bit later
            if time.monotonic() > deadline:
                raise HAProxyError(f"haproxy wrote no live pid file:\n{self.log_tail()}")
            time.sleep(_POLL_S)
        return self._wait_new_worker(None, max(0.1, deadline - time.monotonic()))

    def reload(self, timeout: float = 10.0) -> int:
        """Seamless reload (``SIGUSR2`` to the master); returns the new worker's pid.

        Waits first until the master answers on its CLI: right after a reload it is still
        re-executing itself and a ``SIGUSR2`` then is lost (measured: 9 of 30 back-to-back
        reloads never happened). Confirmed when the master counts one more reload and the
        admin socket answers from a pid other than the old worker's. Raises
        ``HAProxyError`` if not running, the master reports a failed reload, or the new
        worker does not take over in time.
        """
        deadline = time.monotonic() + timeout
        pid = self.master_pid()
        if pid is None:
            raise HAProxyError(f"haproxy does not run for {self.paths.directory}")
        before = self._wait_master(deadline)
        old = self.worker_pid()
        os.kill(pid, signal.SIGUSR2)
        return self._wait_new_worker(old, max(0.1, deadline - time.monotonic()), before)

    def _master_counts(self) -> tuple[int, int] | None:
        """``(reloads, failed reloads)`` from the master CLI's ``show proc``; None if the
        master does not answer (it drops CLI connections while re-executing itself)."""
        try:
            text = RuntimeAPI(self.paths.master_socket, 0.3).execute("show proc")
        except HAProxyError:
            return None
        for line in text.splitlines():
            fields = line.split()
            if len(fields) >= 5 and fields[1] == "master" and fields[3] == "[failed:":
                with contextlib.suppress(ValueError):
                    return int(fields[2]), int(fields[4].rstrip("]"))
        return None

    def _wait_master(self, deadline: float) -> tuple[int, int]:
        while (counts := self._master_counts()) is None:
            if not self.is_running():
                raise HAProxyError(f"haproxy exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise HAProxyError(f"the haproxy master CLI does not answer\n{self.log_tail()}")
            time.sleep(_POLL_S)
        return counts

    def _wait_new_worker(
        self, old: int | None, timeout: float, before: tuple[int, int] | None = None
    ) -> int:
        """Wait until a worker other than ``old`` answers (and, given the master's counts
        ``before`` a reload, until the master counts that reload)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                raise HAProxyError(f"haproxy exited:\n{self.log_tail()}")
            counts = self._master_counts() if before is not None else None
            if before is not None and counts is not None and counts[1] > before[1]:
                raise HAProxyError(
                    f"haproxy reload failed; the old worker keeps serving\n{self.log_tail()}"
                )
            reloaded = before is None or (counts is not None and counts[0] > before[0])
            pid = self.worker_pid()
            if reloaded and pid is not None and pid != old:
                return pid
            time.sleep(_POLL_S)
        raise HAProxyError(f"no new haproxy worker answered within {timeout}s\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Soft-stop (``SIGUSR1``: in-flight requests finish), ``SIGTERM`` then ``SIGKILL``
        if it outlives ``timeout``; then wait for the request log's writer to drain the
        FIFO and exit. Does nothing if neither runs."""
        writer = self.log_writer_pid()
        pid = self.master_pid()
        if pid is not None:
            self._stop_master(pid, timeout)
        if writer is not None:
            _stop_log_writer(writer)

    def _stop_master(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for sig, share in ((signal.SIGUSR1, 0.7), (signal.SIGTERM, 0.3), (signal.SIGKILL, 0.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            until = time.monotonic() + share * max(0.0, deadline - time.monotonic()) + 0.5
            while time.monotonic() < until and self.master_pid() == pid:
                time.sleep(_POLL_S)
            if self.master_pid() != pid:
                return
        raise HAProxyError(f"haproxy master {pid} survived SIGKILL")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of haproxy's start-up log (for error messages)."""
        try:
            return "\n".join(self.paths.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
