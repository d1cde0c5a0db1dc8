"""The real haproxy process: check a config, start it, reload it seamlessly, stop it.

HAProxy runs in master-worker mode (``-W``), daemonized (``-D``) so it outlives the command
that started it; the master's pid is in ``paths.pid_file`` and its CLI on
``paths.master_socket``. A reload is ``SIGUSR2`` to the master: the new worker takes over the
listening sockets (``expose-fd listeners``) while old workers finish their requests (bounded
by ``hard-stop-after``). A reload is confirmed when the admin socket answers from a new pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bentogate.errors import HAProxyError

from .runtime import RuntimeAPI
from .spec import ProxyPaths

_POLL_S = 0.05


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 30.0) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``: one change to the sidecar at a time.

    Raises ``HAProxyError`` if another process holds it longer than ``timeout``.
    """
    deadline = time.monotonic() + timeout
    with open(path, "a") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise HAProxyError(f"another change holds {path} since {timeout}s") from None
                time.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
    """The daemonized master-worker haproxy of one sidecar directory."""

    def __init__(self, paths: ProxyPaths, binary: str = "haproxy", timeout: float = 5.0) -> None:
        self.paths = paths
        self.binary = binary
        self.admin = RuntimeAPI(paths.admin_socket, timeout)
        self.master = RuntimeAPI(paths.master_socket, timeout)

    def master_pid(self) -> int | None:
        """The running master's pid, or None if there is none (stale pid files ignored)."""
        try:
            pid = int(self.paths.pid_file.read_text().split()[0])
            proc = Path(f"/proc/{pid}")
            if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return None
            cmdline = proc.joinpath("cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        # cmdline reads empty while the master re-executes itself on reload.
        ours = b"haproxy" in cmdline and str(self.paths.config).encode() in cmdline
        return pid if ours or not cmdline else None

    def is_running(self) -> bool:
        """True if this directory's master process is alive."""
        return self.master_pid() is not None

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

        Confirmed when the admin socket answers from a pid other than the old worker's.
        Raises ``HAProxyError`` if not running or the new worker does not take over.
        """
        pid = self.master_pid()
        if pid is None:
            raise HAProxyError(f"haproxy does not run for {self.paths.directory}")
        old = self.worker_pid()
        failed_before = self._failed_reloads()
        os.kill(pid, signal.SIGUSR2)
        return self._wait_new_worker(old, timeout, failed_before)

    def _failed_reloads(self) -> int | None:
        """The master's ``[failed: N]`` reload counter (``show proc``), None if unknown.

        The master re-executes itself on reload and drops CLI connections meanwhile, hence
        the short timeout.
        """
        try:
            text = RuntimeAPI(self.paths.master_socket, 0.3).execute("show proc")
        except HAProxyError:
            return None
        _, _, rest = text.partition("[failed: ")
        return int(rest.split("]")[0]) if rest else None

    def _wait_new_worker(self, old: int | None, timeout: float, failed: int | None = None) -> int:
        deadline = time.monotonic() + timeout
        next_master_check = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if not self.is_running():
                raise HAProxyError(f"haproxy exited:\n{self.log_tail()}")
            pid = self.worker_pid()
            if pid is not None and pid != old:
                return pid
            if old is not None and failed is not None and time.monotonic() > next_master_check:
                next_master_check = time.monotonic() + 0.5
                now = self._failed_reloads()
                if now is not None and now > failed:
                    raise HAProxyError(
                        f"haproxy reload failed; the old worker keeps serving\n{self.log_tail()}"
                    )
            time.sleep(_POLL_S)
        raise HAProxyError(f"no new haproxy worker answered within {timeout}s\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Soft-stop (``SIGUSR1``: in-flight requests finish), ``SIGTERM`` then ``SIGKILL``
        if it outlives ``timeout``. Does nothing if not running."""
        pid = self.master_pid()
        if pid is None:
            return
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
