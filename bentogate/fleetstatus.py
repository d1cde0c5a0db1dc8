"""``bentogate status --fleet``: per model and host, what the agents report and what each
host's production port answers over the network.

The governance DB says what each host's agent last reported (the version live on a model's
port, its health) and when (the heartbeat's age, by the DB's clock). That is the agent's
word: a host cut off from the DB keeps serving and reports nothing, and a host cut off from
its clients still looks fine in its last report. So each host is also asked, at the address
its heartbeat names, what its production port serves (``GET /model`` through its HAProxy,
:func:`reach`, within ``agent.reach_timeout_s``): the version that answered, or why none did.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from bentogate.context import Context
from bentogate.fleet import model_report
from bentogate.governance import HostInfo, RolloutInfo
from bentogate.inventory import table


@dataclass(frozen=True)
class Reach:
    """What a host's production port answered over the network: ``version`` (the model
    version its ``GET /model`` named; None if no version answered) or ``error`` (why not:
    unreachable, or an answer that was not a model's)."""

    reachable: bool
    version: str | None = None
    error: str | None = None


Reacher = Callable[[str, int, float], Reach]
"""``reach(address, port, timeout)``: what the port answers (:func:`reach`)."""


def reach(address: str, port: int, timeout: float) -> Reach:
    """``GET /model`` on ``address:port`` (a host's production port, through its HAProxy)
    within ``timeout`` s. Unreachable when no HTTP answer came (refused, timed out, cut);
    reachable with ``version`` None when the port answered without a model (e.g. 503: no
    version routed)."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", "/model")
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as err:
        return Reach(False, error=f"{type(err).__name__}: {err}")
    finally:
        connection.close()
    if response.status != 200:
        return Reach(True, error=f"{response.status}: {body[:120].decode(errors='replace')}")
    try:
        version = orjson.loads(body)["version"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return Reach(True, error=f"not a model's answer: {body[:120].decode(errors='replace')}")
    return Reach(True, version=str(version))


def fleet_rows(
    ctx: Context, now: datetime | None = None, *, reacher: Reacher = reach
) -> list[dict[str, Any]]:
    """One row per model and host: the host's address, the version it reports live on the
    model's port, its health and heartbeat age (at ``now``, by default the DB's clock), what
    the port answered over the network (``reacher``, every host at once), and flags where
    the fleet breaks "one port, one version"."""
    now = now or ctx.registry.db_now()
    hosts = ctx.registry.hosts()
    models = ctx.registry.models()
    timeout = ctx.settings.agent.reach_timeout_s
    asked = [
        (h.name, address, m.production_port)
        for h in hosts
        if (address := _address(h)) is not None
        for m in models
    ]
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(asked)))) as pool:  # all at once
        found = pool.map(lambda each: reacher(each[1], each[2], timeout), asked)
        answers = {(name, port): got for (name, _, port), got in zip(asked, found, strict=True)}
    active = {r.model: r for r in ctx.registry.rollouts(active_only=True)}
    rows: list[dict[str, Any]] = []
    for model in models:
        production = ctx.registry.production_version(model.name)
        desired = production.version if production is not None else None
        model_rows = [
            _row(
                model.name,
                model.production_port,
                host,
                desired,
                answers.get((host.name, model.production_port)),
                age=(now - host.last_heartbeat).total_seconds(),
                stale_s=ctx.settings.agent.stale_after_s,
                rollout=_rollout_text(active.get(model.name), now),
            )
            for host in hosts
        ]
        live = {r["version"] for r in model_rows if "STALE" not in r["flags"]}
        if len(live) > 1:  # the fleet itself serves two versions on one port
            for row in model_rows:
                if "STALE" not in row["flags"] and "DIVERGED" not in row["flags"]:
                    row["flags"].append("DIVERGED")
        rows.extend(model_rows)
    return rows


def _address(host: HostInfo) -> str | None:
    address = host.report.get("address")
    return address if isinstance(address, str) else None


def _row(
    model: str,
    port: int,
    host: HostInfo,
    desired: str | None,
    answer: Reach | None,
    *,
    age: float,
    stale_s: float,
    rollout: str,
) -> dict[str, Any]:
    served = model_report(host, model)
    flags = []
    if age >= stale_s:
        flags.append("STALE")
    elif served.get("live") != desired:
        flags.append("DIVERGED")
    if answer is not None and not answer.reachable:
        flags.append("UNREACHABLE")
    elif answer is not None and answer.version != desired and "DIVERGED" not in flags:
        flags.append("DIVERGED")  # what clients get, whatever the last report said
    if served and not served.get("healthy"):
        flags.append("UNHEALTHY")
    if served.get("error"):
        flags.append("ERROR")
    return {
        "model": model,
        "port": port,
        "host": host.name,
        "address": _address(host),
        "desired": desired,
        "version": served.get("live"),
        "answers": answer.version if answer is not None else None,
        "reachable": answer.reachable if answer is not None else None,
        "reach_error": answer.error if answer is not None else None,
        "healthy": bool(served.get("healthy")),
        "heartbeat_age_s": round(age, 1),
        "flags": flags,
        "error": served.get("error"),
        "rollout": rollout,
    }


def _rollout_text(rollout: RolloutInfo | None, now: datetime) -> str:
    if rollout is None:
        return ""
    left = (rollout.deadline - now).total_seconds()
    return f"→ {rollout.version} by {rollout.actor} ({left:.0f} s left)"


_COLUMNS = (
    "port", "model", "host", "address", "reachable", "desired", "version", "answers",
    "healthy", "heartbeat_age_s", "flags", "rollout",
)  # fmt: skip


def fleet_table(rows: Iterable[dict[str, Any]]) -> str:
    """A plain-text table of :func:`fleet_rows`; ``ok`` when nothing is flagged, ``?`` for
    what was not asked (a host whose heartbeat names no address)."""
    shown = [
        {
            **r,
            "flags": ",".join(r["flags"]) or "ok",
            "address": r["address"] or "?",
            "reachable": "?" if r["reachable"] is None else ("yes" if r["reachable"] else "no"),
        }
        for r in rows
    ]
    if not shown:
        return "no host has sent a heartbeat (start `bentogate agent --host NAME`)"
    return table(shown, _COLUMNS)


def consistent(rows: Iterable[dict[str, Any]]) -> bool:
    """True if no row of :func:`fleet_rows` is flagged."""
    return not any(r["flags"] for r in rows)
