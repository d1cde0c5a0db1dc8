"""The real haproxy process: check a config, start it, reload it seamlessly, stop it.

HAProxy runs in master-worker mode (``-W``), daemonized (``-D``) so it outlives the command
that started it; the master's pid is in ``paths.pid_file`` and its CLI on
``paths.master_socket``. A reload is ``SIGUSR2`` to the master: the new worker takes
over the listening sockets (``expose-fd listeners``) while old workers finish their requests
(bounded by ``hard-stop-after``). A reload is confirmed when the admin socket answers from a new
pid. The request log lives in each worker's memory (:mod:`bentogate.haproxy.ring`): a reload
and a stop save the leaving worker's lines to ``paths.access_log`` first, to its last request.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from bentogate.errors import HAProxyError

from .accesslog import LogFile
from .ring import Tap, read_to_the_end, ring_lines
from .runtime import RuntimeAPI
from .spec import ProxyPaths

_POLL_S = 0.05
#: How long a leaving worker may take to finish its requests before its ring is read out
#: (its later lines are lost; hard-stop-after still bounds the worker itself).
_LAST_REQUESTS_S = 2.0
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


def _alerts(output: str) -> str:
    lines = [ln for ln in output.splitlines() if "[NOTICE]" not in ln]
    return "\n".join(lines[-20:])


class HAProxyProcess:
    """The daemonized master-worker haproxy of one sidecar directory; its request log saved
    to ``paths.access_log``, rotated past ``log_max_bytes``, ``log_keep`` copies kept."""

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
        self.requests = LogFile(paths.access_log, log_max_bytes, log_keep)
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

    def save_request_log(self) -> int:
        """Save what the running worker's ring holds and is not saved yet; returns how many
        lines (0 if none runs). The caller holds the sidecar's lock."""
        worker = self.worker_pid()
        if worker is None:
            return 0
        try:
            lines = ring_lines(self.admin)
        except HAProxyError:
            return 0  # it left meanwhile: whoever stopped it saved its lines
        return self.requests.save(lines, worker)

    def _tap(self) -> tuple[Tap, int] | None:
        """A :class:`Tap` on the worker answering now, and its pid (None if none answers):
        opened before a reload or stop, it keeps every line to the worker's last."""
        worker = self.worker_pid()
        if worker is None:
            return None
        try:
            return Tap(self.paths.admin_socket), worker
        except HAProxyError:
            return None

    def _save_tapped(self, tapped: tuple[Tap, int] | None) -> None:
        """Once the tapped worker is leaving: read its ring until it is done (bounded:
        :func:`~bentogate.haproxy.ring.read_to_the_end`), let it go, save the lines."""
        if tapped is None:
            return
        tap, worker = tapped
        with tap:
            lines = read_to_the_end(tap, self.master, worker, limit_s=_LAST_REQUESTS_S)
        self.requests.save(lines, worker)

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
        argv = [
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
        tapped = self._tap()
        old = tapped[1] if tapped is not None else self.worker_pid()
        os.kill(pid, signal.SIGUSR2)
        try:
            return self._wait_new_worker(old, max(0.1, deadline - time.monotonic()), before)
        finally:
            self._save_tapped(tapped)

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
        """Soft-stop (``SIGUSR1``: in-flight requests finish, their lines saved), ``SIGTERM``
        then ``SIGKILL`` if it outlives ``timeout``; its sockets go with it, and their own
        directory under the temporary directory if it has one (a deep state directory's,
        :attr:`ProxyPaths.sockets`). With none running, only sockets an earlier one left go."""
        pid = self.master_pid()
        if pid is not None:
            self._stop_master(pid, timeout)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        sockets = self.paths.sockets
        if sockets == self.paths.directory:
            return  # the state directory's own: its files stay where its state is
        for path in (self.paths.admin_socket, self.paths.master_socket):
            path.unlink(missing_ok=True)
        if sockets.is_dir() and not any(sockets.iterdir()):
            sockets.rmdir()

    def _stop_master(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        tapped = self._tap()
        for sig, share in ((signal.SIGUSR1, 0.7), (signal.SIGTERM, 0.3), (signal.SIGKILL, 0.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if tapped is not None:  # the soft stop: its last requests, then its lines
                self._save_tapped(tapped)
                tapped = None
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
