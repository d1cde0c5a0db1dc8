"""Typed server rows from ``show stat`` (same 128 columns as ``/stats;csv``)."""

from __future__ import annotations

from dataclasses import dataclass

SERVER_TYPE = "2"  # show stat "type": 0 frontend, 1 backend, 2 server, 3 listener


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


@dataclass(frozen=True)
class ServerStatus:
    """One server's state and counters. Times are HAProxy's averages over 1024 requests."""

    backend: str
    server: str
    status: str  # UP, DOWN, DRAIN, MAINT, "UP 1/2" (going down), "DOWN 1/2" (going up), …
    check_status: str  # L7OK, L7STS, L7RSP, L4CON, L4TOUT, INI, "" (in maintenance), …
    check_duration_ms: int | None
    last_chk: str  # the failing expect's comment, or HAProxy's reason
    check_desc: str
    scur: int
    qcur: int
    stot: int
    rate: int
    hrsp_2xx: int
    hrsp_5xx: int
    wretr: int
    wredis: int
    rtime_ms: int | None
    ttime_ms: int | None
    qtime_ms: int | None
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
        return cls(
            backend=row["pxname"],
            server=row["svname"],
            status=row.get("status", ""),
            check_status=row.get("check_status", "").lstrip("* "),
            check_duration_ms=_int(row.get("check_duration")),
            last_chk=row.get("last_chk", ""),
            check_desc=row.get("check_desc", ""),
            scur=_int(row.get("scur")) or 0,
            qcur=_int(row.get("qcur")) or 0,
            stot=_int(row.get("stot")) or 0,
            rate=_int(row.get("rate")) or 0,
            hrsp_2xx=_int(row.get("hrsp_2xx")) or 0,
            hrsp_5xx=_int(row.get("hrsp_5xx")) or 0,
            wretr=_int(row.get("wretr")) or 0,
            wredis=_int(row.get("wredis")) or 0,
            rtime_ms=_int(row.get("rtime")),
            ttime_ms=_int(row.get("ttime")),
            qtime_ms=_int(row.get("qtime")),
            address=row.get("addr", ""),
        )


def server_statuses(rows: list[dict[str, str]]) -> list[ServerStatus]:
    """The server rows of a parsed ``show stat``."""
    return [ServerStatus.from_row(r) for r in rows if r.get("type") == SERVER_TYPE]


def backend_names(rows: list[dict[str, str]]) -> set[str]:
    """Names of the backends present in a parsed ``show stat``."""
    return {r["pxname"] for r in rows if r.get("svname") == "BACKEND"}
