"""What runs where on this host: the DB's record joined with HAProxy's live view."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bentogate.bake import Reading, last_reading
from bentogate.context import Context
from bentogate.inventory import table
from bentogate.warm import warm_versions
from haproxy import backend_name, server_name


def status_rows(ctx: Context) -> list[dict[str, Any]]:
    """One row per deployed server: port, model, version, role, state, HAProxy health."""
    health = {}
    if ctx.sidecar.is_running():
        health = {(s.backend, s.server): s for s in ctx.sidecar.server_status()}
    warm_until = {(w.ref.model, w.ref.version): w.until for w in warm_versions(ctx)}
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
)


def _bake_text(reading: Reading | None) -> str | None:
    """ "baking until 12:05:00 UTC: 0 of 412 5xx over 2.0 s; 380 rows compared: pass" (or
    the breach that rolled it back)."""
    if reading is None:
        return None
    if reading.breach is not None:
        return f"rolled back at {reading.at}: {reading.breach}"
    done = _past(reading.until)
    return (
        f"{'baked' if done else 'baking'} until {reading.until}: {reading.errors} of "
        f"{reading.requests} 5xx over "
        f"{reading.window_s:g} s; {reading.compared_rows} rows compared: "
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
