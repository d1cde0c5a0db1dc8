"""Typed server rows from ``show stat`` (same 128 columns as ``/stats;csv``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SERVER_TYPE = "2"  # show stat "type": 0 frontend, 1 backend, 2 server, 3 listener


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


@dataclass(frozen=True)
class ServerStatus:
    """One server's state and counters, as a status view shows them.

    Counters (``stot``, ``hrsp_*``, ``econ``, ``eresp``, ``srv_abrt``, ``wretr``, ``wredis``)
    count since haproxy's worker started (a reload resets them). In HTTP mode one request is
    one server session, so ``scur`` is requests in flight and ``rate``/``rate_max`` are
    requests per second (over the last second / the highest seen). Health checks are not
    counted. ``*_ms`` times are HAProxy's averages over the last 1024 requests; ``rtime_ms``
    (until the response headers) is the Bento's latency, ``ttime_ms`` spans the whole stream
    and includes a keep-alive client's idle time before its request.
    """

    backend: str
    server: str
    status: str  # UP, DOWN, DRAIN, MAINT, "UP 1/2" (going down), "DOWN 1/2" (going up), …
    check_status: str  # L7OK, L7STS, L7RSP, L4CON, L4TOUT, INI, "" (in maintenance), …
    check_duration_ms: int | None
    check_code: int | None  # HTTP status of the last check; None at layer 4 or body mismatch
    last_chk: str  # the failing expect's comment, or HAProxy's reason
    check_desc: str
    scur: int
    qcur: int
    stot: int
    rate: int
    rate_max: int
    hrsp_2xx: int
    hrsp_4xx: int
    hrsp_5xx: int
    econ: int  # connections to the server that failed
    eresp: int  # responses that failed (server closed, reset, timed out)
    srv_abrt: int  # transfers the server aborted
    wretr: int  # retries (hidden from the client)
    wredis: int  # redispatches to another server (hidden from the client)
    qtime_ms: int | None
    ctime_ms: int | None
    rtime_ms: int | None
    ttime_ms: int | None
    lastchg_s: int | None  # seconds since the last UP/DOWN change
    downtime_s: int | None  # total time DOWN
    address: str

    @property
    def healthy(self) -> bool:
        """UP (fully, not going down) with a passed layer-7 check."""
        return self.status == "UP" and self.check_status == "L7OK"

    @property
    def reason(self) -> str:
        """Why the server is not healthy, in HAProxy's words."""
        detail = self.last_chk or self.check_desc or "no check result yet"
        return f"{self.backend}/{self.server}: {self.status} {self.check_status}: {detail}"

    @classmethod
    def from_row(cls, row: dict[str, str]) -> ServerStatus:
        """Build from one ``show stat`` row of type server."""
        # Any: each value goes to its own field, int or int | None as the tables below say.
        measured: dict[str, Any] = {name: _int(row.get(col)) for name, col in _MEASURED.items()}
        return cls(
            backend=row["pxname"],
            server=row["svname"],
            status=row.get("status", ""),
            check_status=row.get("check_status", "").lstrip("* "),
            last_chk=row.get("last_chk", ""),
            check_desc=row.get("check_desc", ""),
            address=row.get("addr", ""),
            **{name: _int(row.get(name)) or 0 for name in _COUNTERS},
            **measured,
        )


# Columns of ``show stat`` read as counters, under their own names: an empty one is 0.
_COUNTERS = (
    "scur", "qcur", "stot", "rate", "rate_max", "hrsp_2xx", "hrsp_4xx", "hrsp_5xx", "econ",
    "eresp", "srv_abrt", "wretr", "wredis",
)  # fmt: skip

# Fields read from a column that may be empty (not measured yet): None then.
_MEASURED = {
    "check_duration_ms": "check_duration", "check_code": "check_code", "qtime_ms": "qtime",
    "ctime_ms": "ctime", "rtime_ms": "rtime", "ttime_ms": "ttime", "lastchg_s": "lastchg",
    "downtime_s": "downtime",
}  # fmt: skip


@dataclass(frozen=True)
class PortCounts:
    """What one frontend (a model's port) answered since haproxy's worker started (a reload
    resets it): HTTP ``requests`` received and ``errors`` (5xx, the Bentos' and HAProxy's
    own, e.g. 503 when no server of the routed version is up)."""

    requests: int
    errors: int


def port_counts(rows: list[dict[str, str]], frontend: str) -> PortCounts | None:
    """The counts of ``frontend`` in a parsed ``show stat``; None if it is not there."""
    for row in rows:
        if row.get("pxname") == frontend and row.get("svname") == "FRONTEND":
            return PortCounts(_int(row.get("req_tot")) or 0, _int(row.get("hrsp_5xx")) or 0)
    return None


def server_statuses(rows: list[dict[str, str]]) -> list[ServerStatus]:
    """The server rows of a parsed ``show stat``."""
    return [ServerStatus.from_row(r) for r in rows if r.get("type") == SERVER_TYPE]


def backend_names(rows: list[dict[str, str]]) -> set[str]:
    """Names of the backends present in a parsed ``show stat``."""
    return {r["pxname"] for r in rows if r.get("svname") == "BACKEND"}
