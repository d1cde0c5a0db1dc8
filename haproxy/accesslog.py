"""HAProxy's request log: one line per request in a file of its own, bounded by rotation.

HAProxy formats every line itself and writes it, one non-blocking ``writev`` per request
after the response went out, to descriptor :data:`LOG_FD` (``log fd@9``): a FIFO the master
is started with (opened read-write, so neither opening nor writing ever waits for a reader),
inherited by each worker and across seamless reloads. A small writer process
(:mod:`bentogate.haproxy._logwriter`) drains the FIFO into the file every 0.1 s at most and rotates
it by size (``haproxy.log`` → ``haproxy.log.1`` … ``.<keep>``); it exits with HAProxy. Why a
writer: HAProxy 2.6 makes the descriptor non-blocking with ``F_SETFL``, which clears
``O_APPEND``, and never reopens it, so a file HAProxy wrote itself could not be rotated (after
a truncate it writes on at its old offset, behind a hole of NULs: measured). Nothing on the
way of a request waits for the writer: a full FIFO (1 MiB) drops lines, counted in HAProxy's
``DroppedLogs``, never a request.

A line is HAProxy's ``option httplog`` behind the ISO time it was written
(:class:`RequestLine`)::

    2026-12-06T02:22:12.993181+00:00 127.0.0.1:37250 [06/Dec/2026:02:22:12.992] fe_fraud
    be_fraud_2/v2_3005 0/0/0/1/1 200 187 - - ---- 2/1/0/0/0 0/0 "POST /predict HTTP/1.1"

Server state changes (``Server be_fraud_2/v2_3005 is DOWN, reason: …``) come in the same
file, each with its time. This module reads it: parse, pick a model's lines, the last lines
(rotated copies included), follow.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

#: The request log's descriptor in haproxy. A POSIX shell (what hands it over at start)
#: redirects only descriptors 0-9; haproxy takes the lowest free ones for its own files.
LOG_FD = 9

_REQUEST = re.compile(
    r"(?P<at>\S+) (?P<client>\S+) \[(?P<accepted>[^\]]+)\] (?P<frontend>\S+) "
    r"(?P<backend>[^/\s]+)/(?P<server>\S+) "
    r"(?P<timers>-?\d+/-?\d+/-?\d+/-?\d+/\+?-?\d+) (?P<status>-?\d+) \+?(?P<bytes>\d+) "
    r"\S+ \S+ (?P<termination>\S{4}) \d+/\d+/\d+/\d+/\+?(?P<retries>\d+) \d+/\d+"
    r"(?: (?P<request>.*))?$"
)


@dataclass(frozen=True)
class RequestLine:
    """One request as HAProxy logged it.

    ``timers_ms`` are HAProxy's ``TR/Tw/Tc/Tr/Ta``: receiving the request, waiting in a
    queue, connecting to the server, the server's response time (to its headers) and the
    whole request; -1 for a phase never reached (e.g. ``Tc``/``Tr`` when HAProxy answered
    itself). ``server`` is ``<NOSRV>`` then (a 503 of an unrouted port, a 404, a 413).
    ``termination`` is the four-letter session state (``----`` for a normal end; the
    first letter says who ended it abnormally: ``C`` client, ``S`` server, ``s``
    server-side timeout…).
    """

    at: str
    client: str
    frontend: str
    backend: str
    server: str
    timers_ms: tuple[int, int, int, int, int]
    status: int
    bytes_read: int
    termination: str
    retries: int
    request: str

    @classmethod
    def parse(cls, line: str) -> RequestLine | None:
        """The request in ``line``; None for any other line (a server state change)."""
        match = _REQUEST.match(line.rstrip("\n"))
        if match is None:
            return None
        tr, tw, tc, tresp, ta = (int(t.lstrip("+")) for t in match["timers"].split("/"))
        return cls(
            at=match["at"],
            client=match["client"],
            frontend=match["frontend"],
            backend=match["backend"],
            server=match["server"],
            timers_ms=(tr, tw, tc, tresp, ta),
            status=int(match["status"]),
            bytes_read=int(match["bytes"]),
            termination=match["termination"],
            retries=int(match["retries"]),
            request=(match["request"] or "").strip('"'),
        )


def rotation(path: Path, number: int) -> Path:
    """The ``number``-th older copy of ``path`` (``haproxy.log.1`` is the newest)."""
    return path.with_name(f"{path.name}.{number}")


LineFilter = Callable[[str], bool]


def lines_about(frontends: Collection[str], backends: Collection[str]) -> LineFilter:
    """A filter keeping the lines about these frontends or backends: requests received by
    one of the frontends or sent to one of the backends, and state changes of their
    servers (``be_x/server``) or of the backends themselves."""
    names = set(frontends) | set(backends)
    prefixes = tuple(f"{backend}/" for backend in backends)

    def keep(line: str) -> bool:
        for word in line.split():
            word = word.rstrip(",:")
            if word in names or (prefixes and word.startswith(prefixes)):
                return True
        return False

    return keep


def tail_log(path: Path, lines: int, keep: LineFilter | None = None) -> list[str]:
    """The last ``lines`` lines of the log that ``keep`` keeps (all without it), oldest
    first, read from ``path`` and, while more are needed, its rotated copies. Lines have
    no newline. A missing file counts as empty."""
    if lines <= 0:
        return []
    found: list[str] = []
    number = 0
    while len(found) < lines:
        current = path if number == 0 else rotation(path, number)
        if number > 0 and not current.exists():
            break
        found = [ln for ln in _read_lines(current) if keep is None or keep(ln)] + found
        number += 1
    return found[-lines:]


def _read_lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return data.decode(errors="replace").splitlines()


def follow_log(
    path: Path,
    keep: LineFilter | None = None,
    *,
    stop: Callable[[], bool] = lambda: False,
    poll_s: float = 0.2,
) -> Iterator[str]:
    """The lines appended to ``path`` from now on (as ``tail -F``), those ``keep`` keeps,
    until ``stop()`` is true (checked at least every ``poll_s``). A rotation (the file
    renamed away and a new one started) is followed: reading goes on from the new start."""
    reader = _Follower(path)
    try:
        while not stop():
            lines = reader.read()
            if not lines:
                time.sleep(poll_s)
            for line in lines:
                if keep is None or keep(line):
                    yield line
    finally:
        reader.close()


class _Follower:
    """Reads the complete lines appended to a file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: BinaryIO | None = None
        self.pending = b""  # a line not complete yet
        self.from_end = True  # the file there at the start: only what comes next

    def read(self) -> list[str]:
        if self.handle is None:
            try:
                self.handle = open(self.path, "rb")  # noqa: SIM115 (kept open between reads)
            except FileNotFoundError:
                self.from_end = False  # a file that appears later is read whole
                return []
            if self.from_end:
                self.handle.seek(0, os.SEEK_END)
            self.from_end = False
        if os.fstat(self.handle.fileno()).st_size < self.handle.tell():  # emptied: rotated
            self.handle.seek(0)
            self.pending = b""
        chunk = self.handle.read()
        if not chunk:
            if self._replaced():
                self.close()
            return []
        head, newline, self.pending = (self.pending + chunk).rpartition(b"\n")
        if not newline:
            return []
        return head.decode(errors="replace").split("\n")

    def _replaced(self) -> bool:
        assert self.handle is not None
        try:
            return os.stat(self.path).st_ino != os.fstat(self.handle.fileno()).st_ino
        except FileNotFoundError:
            return False

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
