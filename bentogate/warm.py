"""Previous production versions kept warm for an instant rollback.

After a cutover the version that left production keeps running on this host, unrouted but
still health-checked by HAProxy, for ``bento.keep_previous_s`` from the moment it was
demoted (the governance DB's ``demoted_at``): a rollback in that time is one ``set map``
to servers already passing their canary check. When the time is over it is drained and
stopped like any other version. Whatever changes this host (promote, rollback, expiry)
holds the host lock, so an expiry never stops a version a rollback is taking back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bentogate import release
from bentogate.context import Context, Ref
from governance import SYSTEM_ACTOR, Role, State


@dataclass(frozen=True)
class Warm:
    """A previous production version running on this host until ``until``."""

    ref: Ref
    until: datetime


def warm_versions(ctx: Context) -> list[Warm]:
    """Previous production versions running on this host, soonest to expire first."""
    keep = timedelta(seconds=ctx.settings.bento.keep_previous_s)
    found: dict[Ref, Warm] = {}
    for deployment in ctx.registry.deployments(host=ctx.settings.host):
        ref = Ref(deployment.model, deployment.version)
        if deployment.role != Role.PREVIOUS or ref in found:
            continue
        info = ctx.registry.get_version(ref.model, ref.version)
        if info.state != State.PRODUCTION and info.demoted_at is not None:
            found[ref] = Warm(ref, info.demoted_at + keep)
    return sorted(found.values(), key=lambda warm: warm.until)


def stop_expired(
    ctx: Context, *, now: datetime | None = None, actor: str = SYSTEM_ACTOR
) -> list[Ref]:
    """Drain and stop every warm version whose time is over (at ``now``, default the
    current time); returns them. Holds the host lock (ConcurrentChange if it is held longer
    than the lock's timeout)."""
    with ctx.host_lock():
        moment = now or datetime.now(UTC)
        expired = [warm.ref for warm in warm_versions(ctx) if warm.until <= moment]
        for ref in expired:
            release.stop_version(ctx, ref, actor=actor)
        if expired:
            release.apply_routes(ctx)
    return expired


def stop_when_expired(
    ctx: Context, progress: release.Progress, *, poll_s: float = 30.0
) -> list[Ref]:
    """Wait until every warm version on this host has reached its time, stopping each then;
    returns what was stopped. The DB is read again at least every ``poll_s``: a rollback
    meanwhile (the version is production again) or a later promotion is taken into account."""
    stopped: list[Ref] = []
    while pending := warm_versions(ctx):
        delay = (pending[0].until - datetime.now(UTC)).total_seconds()
        if delay > 0:
            progress(f"{pending[0].ref} stays warm until {pending[0].until:%H:%M:%S} UTC")
            time.sleep(min(delay, poll_s))
            continue
        for ref in stop_expired(ctx):
            progress(f"{ref}: warm time over, stopped")
            stopped.append(ref)
    return stopped
