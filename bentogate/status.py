"""What runs where on this host: the DB's record joined with HAProxy's live view."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bentogate.bake import Reading, last_reading
from bentogate.bentos import resident_bytes
from bentogate.context import Context
from bentogate.errors import NotFoundError
from bentogate.haproxy import backend_name, route_key, server_name
from bentogate.inventory import table
from bentogate.warm import warm_versions


@dataclass(frozen=True)
class Problem:
    """What makes ``bentogate status`` exit non-zero: a server HAProxy routes a port's
    traffic to that is not UP, or no HAProxy running where the DB routes versions."""

    text: str


@dataclass(frozen=True)
class Status:
    """This host's servers (:func:`status_rows`) and its :class:`Problem` s."""

    rows: list[dict[str, Any]]
    problems: list[Problem]

    @property
    def healthy(self) -> bool:
        return not self.problems


def host_status(ctx: Context) -> Status:
    """This host's servers and what is wrong with the ones taking traffic."""
    rows = status_rows(ctx)
    return Status(rows, find_problems(rows, _routes(ctx)))


def _routes(ctx: Context) -> dict[str, str] | None:
    """What the running HAProxy routes (route key → backend); None if none runs."""
    if not ctx.sidecar.is_running():
        return None
    try:
        return ctx.sidecar.routes()
    except NotFoundError:  # no model routed yet: no map
        return {}


def find_problems(
    rows: Sequence[dict[str, Any]], routes: Mapping[str, str] | None
) -> list[Problem]:
    """The servers of ``rows`` whose backend a port routes to (``routes``, HAProxy's map:
    route key → backend) that are not UP, each with HAProxy's check and reason. With no
    HAProxy running (``routes`` None), one problem if the DB routes any deployed version
    (a live or candidate role): nothing reaches it."""
    if routes is None:
        expected = sorted({f"{r['model']}:{r['version']}" for r in rows if _routable(r)})
        if not expected:
            return []
        return [Problem(f"HAProxy is not running: no request reaches {', '.join(expected)}")]
    ports_of: dict[str, list[str]] = {}
    for key, backend in routes.items():
        ports_of.setdefault(backend, []).append(key)
    problems = []
    for row in rows:
        keys = ports_of.get(backend_name(row["model"], row["version"]))
        if not keys or row["health"] == "UP":
            continue
        ports = ", ".join(_port_label(row, key) for key in sorted(keys))
        check = " ".join(str(x) for x in (row["check"], row["last_check"]) if x)
        health = "not in HAProxy" if row["health"] == "unknown" else row["health"]
        problems.append(
            Problem(
                f"{row['model']}:{row['version']} on :{row['backend_port']} takes the traffic "
                f"of {ports} but is {health}: {check or 'no check result yet'}"
            )
        )
    return problems


def _routable(row: dict[str, Any]) -> bool:
    return row["role"] in ("live", "candidate")


def _port_label(row: dict[str, Any], key: str) -> str:
    if key == route_key(row["model"], "live"):
        return f"production :{row['production_port']}"
    return f"candidate :{row['candidate_port']}"


def status_rows(ctx: Context) -> list[dict[str, Any]]:
    """One row per deployed server: port, model, version, role, state, HAProxy health."""
    health = {}
    if ctx.sidecar.is_running():
        health = {(s.backend, s.server): s for s in ctx.sidecar.server_status()}
    warm_until = {(w.ref.model, w.ref.version): w.until for w in warm_versions(ctx)}
    here = ctx.registry.deployments(host=ctx.settings.host)
    sizes = resident_bytes(d.pid for d in here if d.pid is not None)  # one look at /proc
    rows: list[dict[str, Any]] = []
    for model in ctx.registry.models():
        live = ctx.registry.production_version(model.name)
        for deployment in ctx.registry.deployments(host=ctx.settings.host, model=model.name):
            version = ctx.registry.get_version(model.name, deployment.version)
            server = health.get(
                (
                    backend_name(model.name, deployment.version),
                    server_name(deployment.version, deployment.port),
                )
            )
            is_live = live is not None and live.version == deployment.version
            # A previous production version runs until then, for an instant rollback.
            until = warm_until.get((model.name, deployment.version))
            reading = last_reading(ctx, model.name) if is_live else None
            if reading is not None and reading.version != deployment.version:
                reading = None  # the watcher's reading of another cutover
            rows.append(
                {
                    "model": model.name,
                    "version": deployment.version,
                    "state": str(version.state),
                    "role": "live" if is_live else str(deployment.role),
                    "warm_until": until.isoformat(timespec="seconds") if until else None,
                    "bake": _bake_text(reading),
                    "production_port": model.production_port,
                    "candidate_port": ctx.candidate_port(model.production_port),
                    "backend_port": deployment.port,
                    "health": server.status if server else "unknown",
                    "check": server.check_status if server else "",
                    "check_ms": server.check_duration_ms if server else None,
                    "last_check": server.last_chk if server else "",
                    "sessions": server.scur if server else None,
                    "req_per_s": server.rate if server else None,
                    "5xx": server.hrsp_5xx if server else None,
                    "rtime_ms": server.rtime_ms if server else None,
                    "ttime_ms": server.ttime_ms if server else None,
                    "memory_mb": _mb(sizes.get(deployment.pid) if deployment.pid else None),
                }
            )
    return rows


_COLUMNS = (
    "production_port",
    "model",
    "version",
    "role",
    "state",
    "warm_until",
    "bake",
    "backend_port",
    "health",
    "check",
    "memory_mb",
)


def _mb(size: int | None) -> float | None:
    """A replica's resident memory (its process tree's RSS) in MB; None if it is not
    running here."""
    return round(size / 1e6, 1) if size is not None else None


def _bake_text(reading: Reading | None) -> str | None:
    """ "baking until 12:05:00 UTC: 0 of 412 5xx over 2.0 s; server p99 <= 1.5 ms (of 405
    answers); 380 rows compared: pass" (or the breach that rolled it back). The server p99
    is its histogram bucket's upper bound."""
    if reading is None:
        return None
    if reading.breach is not None:
        return f"rolled back at {reading.at}: {reading.breach}"
    done = _past(reading.until)
    answers = reading.server_answers
    if reading.server_p99_le_ms is not None:
        tail = f"server p99 <= {reading.server_p99_le_ms:g} ms (of {answers} answers)"
    else:
        tail = "server p99 over the last bucket" if answers else "no server p99 yet"
    return (
        f"{'baked' if done else 'baking'} until {reading.until}: {reading.errors} of "
        f"{reading.requests} 5xx over "
        f"{reading.window_s:g} s; {tail}; {reading.compared_rows} rows compared: "
        f"{reading.score_verdict or 'none yet'} (at {reading.at})"
    )


def _past(moment: str) -> bool:
    try:
        return datetime.fromisoformat(moment) <= datetime.now(UTC)
    except ValueError:
        return False


def status_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`status_rows`."""
    return table(rows, _COLUMNS) if rows else "nothing deployed on this host"
