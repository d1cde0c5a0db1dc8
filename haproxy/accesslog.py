"""HAProxy's request log on disk: one line per request, in files bounded by rotation.

HAProxy keeps the newest lines in its own memory (:mod:`bentogate.haproxy.ring`); they are
saved here, each line once, by whoever reloads or stops it and by ``bentogate logs``
(:class:`LogFile`): appended to ``haproxy.log`` and rotated by size (``haproxy.log`` →
``haproxy.log.1`` … ``.<keep>``). Nothing on the way of a request waits for the file.

A line is HAProxy's ``option httplog`` behind the ISO time it was written
(:class:`RequestLine`)::

    2026-12-06T02:22:12.993181+00:00 127.0.0.1:37250 [06/Dec/2026:02:22:12.992] fe_fraud
    be_fraud_2/v2_3005 0/0/0/1/1 200 187 - - ---- 2/1/0/0/0 0/0 "POST /predict HTTP/1.1"

Server state changes (``Server be_fraud_2/v2_3005 is DOWN, reason: …``) come in the same
file, each with its time. This module writes and reads it: save, parse, pick a model's
lines, the last lines (rotated copies included).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

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


def rotate(path: Path, keep: int) -> None:
    """``path`` → ``path.1``, each older copy one up, at most ``keep`` kept (0: dropped)."""
    if keep <= 0:
        path.unlink(missing_ok=True)
        return
    for number in range(keep - 1, 0, -1):
        if rotation(path, number).exists():
            os.replace(rotation(path, number), rotation(path, number + 1))
    if path.exists():
        os.replace(path, rotation(path, 1))


class LogFile:
    """The request log's files: ``path`` and its rotated copies, ``path`` rotated once it is
    larger than ``max_bytes``, ``keep`` copies kept. Which worker's lines were saved up to
    which line is kept beside it (``<path>.mark``), so that saving the same ring twice
    appends each line once. The caller makes sure one saves at a time (the sidecar's lock)."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep

    @property
    def _mark(self) -> Path:
        return self.path.with_name(f"{self.path.name}.mark")

    def save(self, lines: Sequence[str], worker: int | None) -> int:
        """Append the lines of ``worker``'s ring not saved yet (``lines``: what it holds,
        oldest first); returns how many were new."""
        try:
            mark = json.loads(self._mark.read_text())
        except (OSError, ValueError):
            mark = {}
        # The last line saved of this worker's ring; None: none of it saved yet.
        saved = mark.get("last") if mark.get("worker") == worker else None
        new = after(lines, saved)
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as out:
                out.write("\n".join(new) + "\n")
            if self.path.stat().st_size > self.max_bytes:
                rotate(self.path, self.keep)
        self._mark.write_text(json.dumps({"worker": worker, "last": new[-1] if new else saved}))
        return len(new)


def after(lines: Sequence[str], last: str | None) -> list[str]:
    """The lines that follow the last occurrence of ``last`` (all of them when it is None
    or not there any more: a ring that went round since)."""
    if last is not None:
        for index in range(len(lines) - 1, -1, -1):
            if lines[index] == last:
                return list(lines[index + 1 :])
    return list(lines)
