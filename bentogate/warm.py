"""Previous production versions kept warm for an instant rollback.

After a cutover the version that left production keeps running on this host, unrouted but
still health-checked by HAProxy, for ``bento.keep_previous_s`` from the moment it was
demoted (the governance DB's ``demoted_at``): a rollback in that time is one ``set map``
to servers already passing their canary check. When the time is over it is drained and
stopped like any other version. A version taken out of production by an automatic rollback
(it failed its bake) has no warm time: nothing may return to it without a new gate. Whatever
changes this host (promote, rollback, expiry) holds the host lock, so an expiry never stops a
version a rollback is taking back.

Who stops it: on a fleet host its agent; elsewhere the detached expirer
(:mod:`bentogate.expirer`, what ``bentogate expire --wait`` does) that every cutover
schedules (:func:`schedule_expiry`, called by the release workflow, so
any caller of ``release.promote`` gets it) and ``bentogate shutdown`` cancels; while it
waits it watches the bake of the version that replaced it (:mod:`bentogate.bake`), as the
agent does between its reconciliations.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bentogate import host
from bentogate.bentos import pid_alive
from bentogate.context import Context, Ref
from bentogate.errors import BentogateError
from bentogate.governance import SYSTEM_ACTOR, Role, State
from bentogate.locks import file_lock


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
            # Taken out by an automatic rollback: no rollback may return to it (the bake
            # rule), so it has no warm time left and stops with the next expiry.
            failed = info.bake_failed_at is not None and info.bake_failed_at >= info.demoted_at
            found[ref] = Warm(ref, info.demoted_at if failed else info.demoted_at + keep)
    return sorted(found.values(), key=lambda warm: warm.until)


def stop_expired(
    ctx: Context, *, now: datetime | None = None, actor: str | None = None
) -> list[Ref]:
    """Drain and stop every warm version whose time is over (at ``now``, default the
    current time); returns them. ``actor``: default bentogate's own (as the registry accepts
    it, :meth:`bentogate.governance.Registry.acting_as`). Holds the host lock (ConcurrentChange if
    it is held longer than the lock's timeout)."""
    actor = actor or ctx.registry.acting_as(SYSTEM_ACTOR)
    with ctx.host_lock():
        moment = now or datetime.now(UTC)
        expired = [warm.ref for warm in warm_versions(ctx) if warm.until <= moment]
        for ref in expired:
            host.stop(ctx, ref, actor=actor)
        if expired:
            host.apply_routes(ctx)
    return expired


def _expirers_dir(ctx: Context) -> Path:
    directory = ctx.settings.run_dir / "expirers"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def expirer_lock(ctx: Context) -> Path:
    """The lock the one running expirer of this host holds (:mod:`bentogate.expirer`)."""
    return _expirers_dir(ctx) / "running.lock"


def expirer_runs(ctx: Context) -> bool:
    """True if an expirer holds :func:`expirer_lock` now."""
    try:
        with file_lock(expirer_lock(ctx), 0):
            return False
    except BentogateError:
        return True


def schedule_expiry(ctx: Context) -> list[Warm]:
    """Leave the detached expirer (:mod:`bentogate.expirer`) running (with this context's settings,
    whatever their source) that stops the warm versions of this host when their time is
    over; returns them. Nothing is started when none is warm, when ``bento.expire_warm``
    gives the job to the agent or to the user, or when an expirer runs already: one per
    host, whatever the number of cutovers in its window. It re-reads the DB, so a rollback
    or another cutover meanwhile is respected; log: ``logs/expire.log``."""
    pending = warm_versions(ctx)
    if not pending or ctx.settings.bento.expire_warm != "detached" or expirer_runs(ctx):
        return pending  # one that runs sees these (it reads the DB again before it leaves)
    directory = _expirers_dir(ctx)
    settings_file = directory / "settings.json"
    settings_file.write_text(ctx.settings.model_dump_json())
    # The child's settings are exactly these: no BENTOGATE_* variable may override them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENTOGATE_")}
    env["BENTOGATE_CONFIG"] = str(settings_file)
    with open(ctx.settings.logs_dir / "expire.log", "a") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "bentogate.expirer"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the command that scheduled it
        )
    (directory / f"{child.pid}.pid").write_text(f"{child.pid}\n")
    # Reaped when it ends, if this process is still there then (no zombie, no Popen left
    # to be collected while its child runs); a daemon thread never holds this process up.
    threading.Thread(target=child.wait, name=f"expirer-{child.pid}", daemon=True).start()
    return pending


def expirer_pids(ctx: Context) -> list[int]:
    """The pids of this host's scheduled expirers that still run (the lock of
    :func:`expirer_runs` is let go a moment before an expirer leaves)."""
    pids = (int(pid_file.stem) for pid_file in sorted(_expirers_dir(ctx).glob("*.pid")))
    return [pid for pid in pids if pid_alive(pid) and _is_expirer(pid)]


def cancel_expiry(ctx: Context, timeout: float = 5.0) -> list[int]:
    """Stop this host's scheduled expirers (e.g. at shutdown, when nothing is left to
    expire); returns their pids."""
    pid_files = sorted(_expirers_dir(ctx).glob("*.pid"))
    stopped = expirer_pids(ctx)
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    for pid_file in pid_files:  # not one an expirer started meanwhile wrote
        pid_file.unlink(missing_ok=True)
    return stopped


def _is_expirer(pid: int) -> bool:
    """True if ``pid`` still runs the expirer (not a recycled pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"bentogate.expirer" in argv
