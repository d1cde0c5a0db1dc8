"""HAProxy's request log as HAProxy keeps it: a ring buffer in the worker's memory.

HAProxy writes every request line into a ring of its own (``ring requests`` in the config,
``log ring@requests``): no descriptor, no file, no process beside it, and nothing on the way
of a request ever waits for a reader. The ring holds the newest ``access_log_memory_bytes``
of lines and belongs to one worker: a reload starts the new worker on an empty ring and the
old one's lines go with it when it exits. So whoever changes HAProxy saves them first
(:meth:`bentogate.haproxy.process.HAProxyProcess.reload` and ``stop``, through a
:class:`Tap` opened before the signal and read until the old worker has nothing in flight),
and ``bentogate logs`` saves what the ring holds before it reads the files
(:mod:`bentogate.haproxy.accesslog`: appended, rotated by size, each line once).

Two Runtime API commands on the admin socket: ``show events requests`` (the ring's lines) and
``show events requests -w [-n]`` (the same, then each new line as it is written, until the
client goes; ``-n``: only new ones). A ``-w`` reader keeps an old worker alive after a
reload (measured: 20 s, until it left), so a :class:`Tap` is closed as soon as its worker is
done.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bentogate.errors import HAProxyError

from .accesslog import after
from .runtime import RuntimeAPI

#: The ring's name in the config.
RING = "requests"
_NO_RING = "No such event sink"


def ring_lines(admin: RuntimeAPI) -> list[str]:
    """What the worker answering on ``admin`` holds in its ring, oldest first; empty if its
    config has no ring (the request log is off). ``HAProxyError`` if it does not answer."""
    return _lines(admin.execute(f"show events {RING}"))


def _lines(text: str) -> list[str]:
    if text.startswith(_NO_RING):
        return []
    return [line for line in text.split("\n") if line]


class Tap:
    """``show events requests -w`` on one admin socket connection: the lines the ring
    held, then each new one (``only_new``: only those), as :meth:`read` collects them."""

    def __init__(self, admin_socket: Path, *, only_new: bool = False, timeout: float = 5.0):
        self.ended = False  # haproxy closed the connection (its worker left, or no ring)
        self._pending = b""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(str(admin_socket))
            # No shutdown of our side: haproxy ends a -w dump when its client stops sending.
            self._sock.sendall(f"show events {RING} -w{' -n' if only_new else ''}\n".encode())
            self._sock.setblocking(False)
        except OSError as exc:
            self._sock.close()
            raise HAProxyError(f"runtime API {admin_socket}: show events: {exc}") from exc

    def read(self, wait_s: float) -> list[str]:
        """The complete lines that came, waiting up to ``wait_s`` for the first."""
        if self.ended:
            return []
        ready, _, _ = select.select([self._sock], [], [], wait_s)
        if not ready:
            return []
        chunks = [self._pending]
        while True:
            try:
                chunk = self._sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.ended = True
                break
            chunks.append(chunk)
        head, _, self._pending = b"".join(chunks).rpartition(b"\n")
        return _lines(head.decode(errors="replace"))

    def drain(self, quiet_s: float = 0.05, limit_s: float = 2.0) -> list[str]:
        """Every line until none came for ``quiet_s`` (or haproxy closed, or ``limit_s``)."""
        lines: list[str] = []
        deadline = time.monotonic() + limit_s
        while not self.ended and time.monotonic() < deadline:
            got = self.read(quiet_s)
            if not got and not self._pending:  # nothing, not even a line's beginning
                break
            lines += got
        return lines

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_to_the_end(
    tap: Tap, master: RuntimeAPI, worker: int, *, limit_s: float, quiet_s: float = 0.1
) -> list[str]:
    """Every line ``tap`` brings until ``worker`` (an old or stopping one, reached through
    the master CLI) is done, bounded by ``limit_s``: done once it holds no client
    connection or is gone, or once it has no request in flight and wrote no line for
    ``quiet_s``. The last rule is for idle keep-alive connections: ``option
    idle-close-on-response`` keeps them open on the old worker until their next request,
    which may never come; one that comes after the worker was let go is answered and
    logged by it, and that line is not kept."""
    lines: list[str] = []
    deadline = time.monotonic() + limit_s
    last_line = time.monotonic()
    while time.monotonic() < deadline and not tap.ended:
        got = tap.read(0.02)
        if got:
            lines += got
            last_line = time.monotonic()
        connections, in_flight = _activity(master, worker)
        if connections == 0:
            break
        if in_flight == 0 and time.monotonic() - last_line >= quiet_s:
            break
    return lines + tap.drain()


def _activity(master: RuntimeAPI, worker: int) -> tuple[int, int]:
    """``worker``'s client connections (``CurrConns``) and requests in flight (``show
    sess`` streams of any frontend but the CLI's); (0, 0) once it is gone."""
    try:
        current = master.show_info(worker).get("CurrConns", "0")  # none: no such process
        sessions = master.execute(f"@!{worker} show sess")
    except HAProxyError:
        return 0, 0  # the master left: its workers with it
    in_flight = sum(
        1 for line in sessions.splitlines() if " fe=" in line and " fe=GLOBAL " not in line
    )
    return int(current) if current.isdigit() else 0, in_flight


def follow(
    admin_socket: Path,
    worker_pid: Callable[[], int | None],
    keep: Callable[[str], bool] | None = None,
    *,
    stop: Callable[[], bool] = lambda: False,
    poll_s: float = 0.2,
) -> Iterator[str]:
    """The request lines written from now on (those ``keep`` keeps), across reloads and
    restarts, until ``stop()`` is true (checked at least every ``poll_s``); ``worker_pid``:
    the pid of the worker answering on ``admin_socket`` now, None if none. After a reload
    the old worker's last lines are read to the end, then the new worker's from its first; a
    connection haproxy closed is opened again without repeating a line; while no haproxy
    runs, nothing comes."""
    worker = worker_pid()
    tap: Tap | None = Tap(admin_socket, only_new=True) if worker is not None else None
    last: str | None = None  # the newest line seen, of ``worker``
    try:
        while not stop():
            lines = tap.read(poll_s) if tap is not None else []
            now = worker_pid()
            if tap is not None and (now != worker or tap.ended):
                if not tap.ended:  # reloaded: the old worker's last lines first
                    lines += tap.drain()
                tap.close()
                tap = None
            if tap is None and now is not None:
                with contextlib.suppress(HAProxyError):  # between two workers: next time
                    tap = Tap(admin_socket)
                    if now == worker:  # the same ring again: only what was not seen
                        again = tap.drain()
                        lines += after(again, last) if last is not None else []
                    worker = now
            if tap is None:
                time.sleep(poll_s)
            for line in lines:
                last = line
                if keep is None or keep(line):
                    yield line
    finally:
        if tap is not None:
            tap.close()
