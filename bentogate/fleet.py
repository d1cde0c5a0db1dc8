"""The fleet: many API hosts, one governance DB. Promotion and rollout judgement (what the
fleet serves: :mod:`bentogate.fleetstatus`).

Every host runs ``bentogate agent`` (:mod:`bentogate.agent`), which makes the host serve each
model's production version on the model's port and reports back in a heartbeat. A fleet
promotion only *records* the new desired state (a promotion plus a rollout naming the hosts
and a deadline); each agent performs its local blue-green cutover. Whoever looks next (an
agent after its heartbeat, or ``promote --fleet`` while it waits) judges the rollout from the
hosts' reports: complete once every host serves the version live and healthy, rolled back on
every host as soon as one reports that it failed (after its bounded retries), or when the
deadline passes. Every age and deadline is judged by the database's clock
(``Registry.db_now``), which also stamps heartbeats and rollouts: a host or workstation whose
clock is off changes no verdict. After a
cutover, while the previous version is warm, each agent also bakes the new one
(:mod:`bentogate.bake`): a breach on any host rolls the whole fleet back (:func:`roll_back`).
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bentogate import host as this_host
from bentogate.context import Context, Progress, Ref
from bentogate.errors import GovernanceError, IntegrityError
from bentogate.governance import HostInfo, RolloutInfo, RolloutStatus, VersionInfo


class Judged(enum.StrEnum):
    """What the hosts' reports say about a rollout in progress."""

    PENDING = "pending"
    COMPLETE = "complete"
    FAILED = "failed"


def live_hosts(ctx: Context, now: datetime | None = None) -> list[HostInfo]:
    """The fleet: hosts whose last heartbeat is younger than ``agent.stale_after_s`` (at
    ``now``, by default the DB's clock)."""
    now = now or ctx.registry.db_now()
    limit = ctx.settings.agent.stale_after_s
    return [h for h in ctx.registry.hosts() if (now - h.last_heartbeat).total_seconds() < limit]


def promote(ctx: Context, ref: Ref, *, actor: str, deadline_s: float | None = None) -> RolloutInfo:
    """Record a fleet promotion of ``ref``: production in the DB (every promotion rule
    applies) and a rollout every live host must carry out before the deadline.

    Returns the rollout (in progress). Raises :class:`GovernanceError` when no host is live
    or the promotion is refused, :class:`ConcurrentChange` while another rollout of the
    model runs, :class:`NotFoundError` when the Bento archive is missing.
    """
    this_host.ensure_bento(ctx, ref)
    hosts = [h.name for h in live_hosts(ctx)]
    if not hosts:
        raise GovernanceError(
            f"refused: fleet promote {ref} — no host has sent a heartbeat in the last "
            f"{ctx.settings.agent.stale_after_s:g} s (is `bentogate agent` running?)"
        )
    return ctx.registry.start_rollout(
        ref.model,
        ref.version,
        actor=actor,
        sha256=this_host.served_sha256(ctx, ref),
        hosts=hosts,
        deadline_s=deadline_s or ctx.settings.agent.rollout_deadline_s,
    )


@dataclass(frozen=True)
class Judgement:
    """What the hosts' reports say about a rollout: pending, complete or failed (and why)."""

    verdict: Judged
    reason: str
    hosts: dict[str, str]


def judge(rollout: RolloutInfo, hosts: Iterable[HostInfo], now: datetime) -> Judgement:
    """Judge ``rollout`` from the hosts' latest reports (pure).

    A host counts as done when a heartbeat sent after the rollout started reports the
    version live and healthy, and as failed when such a heartbeat reports it could not
    bring the version up. One failed host fails the rollout; so does the deadline.
    """
    reports = {h.name: h for h in hosts}
    results: dict[str, str] = {}
    for name in rollout.hosts:
        host = reports.get(name)
        fresh = host is not None and host.last_heartbeat >= rollout.started_at
        served = model_report(host, rollout.model) if fresh else {}
        if served.get("live") == rollout.version and served.get("healthy"):
            results[name] = "live"
        elif served.get("failed") == rollout.version:
            results[name] = f"failed: {served.get('error')}"
        else:
            results[name] = f"pending (serving {served.get('live')})" if fresh else "no report"
    failed = {n: r for n, r in results.items() if r.startswith("failed")}
    if all(r == "live" for r in results.values()):
        return Judgement(Judged.COMPLETE, "live and healthy on every host", results)
    if failed:
        return Judgement(Judged.FAILED, "; ".join(f"{n} {r}" for n, r in failed.items()), results)
    if now > rollout.deadline:
        waiting = ", ".join(n for n, r in results.items() if r != "live")
        return Judgement(Judged.FAILED, f"deadline passed; not live on {waiting}", results)
    return Judgement(Judged.PENDING, "waiting for hosts", results)


def model_report(host: HostInfo | None, model: str) -> dict[str, Any]:
    """What ``host``'s last heartbeat says of ``model`` (empty if nothing)."""
    if host is None:
        return {}
    found = host.report.get("models", {}).get(model)
    return found if isinstance(found, dict) else {}


def settle(ctx: Context, *, actor: str, now: datetime | None = None) -> list[RolloutInfo]:
    """Judge every rollout in progress at ``now`` (by default the DB's clock) and settle those
    that are decided (idempotent: the first settler wins, the DB serializes). Returns the
    rollouts settled now."""
    settled = []
    rollouts = ctx.registry.rollouts(active_only=True)
    if not rollouts:
        return []
    hosts = ctx.registry.hosts()
    now = now or ctx.registry.db_now()
    for rollout in rollouts:
        judgement = judge(rollout, hosts, now)
        if judgement.verdict == Judged.PENDING:
            continue
        settled.append(
            ctx.registry.settle_rollout(
                rollout.model,
                rollout.id,
                actor=actor,
                complete=judgement.verdict == Judged.COMPLETE,
                reason=judgement.reason,
                results=judgement.hosts,
            )
        )
    return settled


def roll_back(
    ctx: Context, ref: Ref, *, actor: str, reason: str, evidence: dict[str, Any]
) -> VersionInfo:
    """The fleet's automatic rollback, by a host whose bake watcher saw ``ref`` fail: in the
    governance DB, ``ref.model``'s production goes back to the version ``ref`` replaced
    (audited with ``reason`` and ``evidence``; ``ref`` then needs a new passed gate), and a
    rollout of ``ref`` still in progress is settled as failed with ``reason``. Every agent,
    this host's first, then cuts its host back. Returns the restored version.

    Raises :class:`ConcurrentChange` when ``ref`` is no longer production (another host's
    watcher, or anyone, moved it first: nothing is changed, the refusal is audited), the
    errors of ``Registry.rollback`` otherwise.
    """
    previous = ctx.registry.previous_version(ref.model)
    sha256 = None
    if previous is not None:  # the bytes this host is about to serve again, when it has them
        with contextlib.suppress(IntegrityError):
            sha256 = this_host.served_sha256(ctx, Ref(ref.model, previous.version))
    restored = ctx.registry.rollback(
        ref.model, actor=actor, sha256=sha256, reason=reason, evidence=evidence,
        replacing=ref.version,
    )  # fmt: skip
    for rollout in ctx.registry.rollouts(ref.model, active_only=True):
        if rollout.version == ref.version:
            ctx.registry.settle_rollout(
                ref.model, rollout.id, actor=actor, complete=False, reason=reason,
                results={ctx.settings.host: "bake breach"},
            )  # fmt: skip
    return restored


def wait_rollout(
    ctx: Context,
    rollout: RolloutInfo,
    *,
    actor: str,
    poll_s: float = 0.5,
    progress: Progress | None = None,
) -> RolloutInfo:
    """Wait until ``rollout`` is settled (judging it too, so it ends even if no agent is
    left to do so); returns it. Bounded by the rollout's deadline."""
    last = ""
    while True:
        settle(ctx, actor=actor)
        [current] = [r for r in ctx.registry.rollouts(rollout.model) if r.id == rollout.id]
        if current.status != RolloutStatus.IN_PROGRESS:
            return current
        if progress is not None:
            state = judge(current, ctx.registry.hosts(), ctx.registry.db_now()).hosts
            line = ", ".join(f"{h}: {s}" for h, s in sorted(state.items()))
            if line != last:
                progress(line)
                last = line
        time.sleep(poll_s)
