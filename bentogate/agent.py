"""``bentogate agent --host NAME``: the reconciler that makes one API host serve what the
governance DB says, and reports back.

One pass (:func:`reconcile_once`) per interval:

1. recorded deployments of this host whose process died are ended; on the first pass after
   a start, those alive but not answering ``/readyz`` are stopped too (adoption: what is
   alive and ready is kept, whoever started it);
2. for every model with a production version: bring that version up on this host (import
   its Bento from the shared store, start it, wait until ready) and cut the model's port
   over to it the way :mod:`bentogate.release` does (HAProxy health check passed → the DB
   still names it production → one ``set map`` → drain and stop the old version, once its
   warm time is over). An agent cut off from the DB keeps its port where it is: it never
   switches to a version without reading, just before, that the DB makes it production. A
   failed start is retried up to ``agent.start_attempts`` times, after ``agent.start_retry_s``,
   doubling (:func:`retry_delays`); every failed start is audited (``start_failed``: the
   host, the try, the error, the rollout it was for); a refusal of the governance DB is
   not retried (it would be refused again);
3. the report (what is live and healthy, what failed after its retries) goes to the DB as
   a heartbeat, and rollouts in progress are judged (:func:`bentogate.fleet.settle`) by
   the DB's clock.

While a pass waits (a Bento starting, a cutover, a retry's wait), keep-alive heartbeats go
on every ``agent.interval_s`` (:mod:`bentogate.heartbeat`): a slow start never makes the host
look stale.

Between two passes, with ``bento.expire_warm = "agent"``, the agent bakes the version it cut
over to while the previous one is warm (:func:`bake_until`, the rules of
:mod:`bentogate.bake`): a breach rolls the fleet back in the DB, and the next pass, at once,
cuts this host back; another host's rollback ends the wait too.

The agent is not in the data path: HAProxy and the Bentos keep serving while it is stopped,
killed or cut off from the DB. Any error (the DB unreachable, above all) leaves what runs
alone; the loop logs it and retries with exponential backoff.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bentogate import bake, fleet, host, warm
from bentogate.context import Context, Ref
from bentogate.errors import (
    BentogateError,
    ConcurrentChange,
    DatabaseUnavailable,
    GovernanceError,
)
from bentogate.governance import ModelInfo, Role
from bentogate.haproxy import backend_name
from bentogate.heartbeat import Heartbeat
from bentogate.settings import AgentSettings

log = logging.getLogger("bentogate.agent")


@dataclass
class ModelReport:
    """What this host does for one model (the shape stored in the heartbeat)."""

    port: int
    desired: str | None
    live: str | None = None
    healthy: bool = False
    versions: list[str] = field(default_factory=list)
    failed: str | None = None  # the version this host could not bring up
    error: str | None = None


@dataclass
class Report:
    """The outcome of one reconciliation: per model, and the actions taken."""

    host: str
    address: str
    models: dict[str, ModelReport] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "address": self.address,
            "pid": os.getpid(),
            "models": {name: vars(m) for name, m in self.models.items()},
            "actions": self.actions,
        }


def reconcile_once(ctx: Context, *, adopt: bool = False, beat: Heartbeat | None = None) -> Report:
    """Converge this host on the DB's desired state once; returns what it found and did.
    ``beat``: the agent's heartbeat (told what the pass waits for; its :meth:`Heartbeat.wait`
    spaces the retries), by default one without keep-alives.

    Errors of one model are caught into its report (the version it failed to bring up, after
    its retries, is named in ``failed``); :class:`DatabaseUnavailable` raises at once, as
    does reading the DB's desired state (what runs is left as it is).
    """
    beat = beat or Heartbeat(ctx, threading.Event())
    beat.doing("reconciling")
    report = Report(ctx.settings.host, ctx.settings.address)
    models = ctx.registry.models()
    # Every model named: the agent routes what it has switched to, never the DB's word.
    routed: dict[str, str | None] = {m.name: None for m in models}
    routed.update(host.routed(ctx))
    me = ctx.registry.acting_as(ctx.settings.host)
    report.actions += host.adopt(ctx, routed, actor=me, check_ready=adopt)
    # After a restart, render once what the DB records (HAProxy refuses an empty spec).
    changed = adopt and bool(ctx.registry.deployments(host=ctx.settings.host))
    for model in models:
        production = ctx.registry.production_version(model.name)
        entry = ModelReport(
            port=model.production_port,
            desired=production.version if production is not None else None,
        )
        report.models[model.name] = entry
        if entry.desired is None:
            continue
        try:
            changed |= _converge(ctx, model, entry.desired, routed, report, beat)
        except DatabaseUnavailable:
            # Nothing more can be decided or reported: the pass ends here, what runs stays
            # (each further DB call would wait out the network bounds again).
            raise
        except BentogateError as err:
            log.warning("%s: could not serve %s:%s: %s", ctx.settings.host, model.name,
                        entry.desired, err)  # fmt: skip
            entry.error = str(err).splitlines()[0]
            if routed.get(model.name) != entry.desired:
                entry.failed = entry.desired
    if changed:
        host.apply_routes(ctx, live=routed)
    _describe(ctx, report, routed)
    return report


def _converge(
    ctx: Context,
    model: ModelInfo,
    desired: str,
    routed: dict[str, str | None],
    report: Report,
    beat: Heartbeat,
) -> bool:
    """Serve ``desired`` live for ``model``; stop its other versions once they are neither a
    candidate nor still warm. True if HAProxy's config must be re-rendered."""
    ref, actor = Ref(model.name, desired), ctx.settings.host
    deployments = ctx.registry.deployments(host=ctx.settings.host, model=model.name)
    changed = False
    if not any(d.version == desired for d in deployments):
        host.ensure_bento(ctx, ref)
        tries = _start(ctx, ref, beat)
        report.actions.append(f"started {ref}" + (f" (try {tries})" if tries > 1 else ""))
        # Where the port routes the version already (a dead live replica replaced on another
        # backend port), its new servers join HAProxy when the pass re-renders; elsewhere
        # the cutover adds them.
        changed = routed.get(model.name) == desired
    if routed.get(model.name) != desired:
        # Its backend joins HAProxy (also one adopted after a restart); the live route
        # stays where it is until the switch.
        beat.doing(f"cutting {model.name} over to {desired}")
        host.apply_routes(ctx, live=routed)
        host.wait_healthy(ctx, ref)
        # The start and the checks took seconds: switch only to what the DB says is
        # production now (a rollout rolled back meanwhile, or the DB out of reach, keeps
        # the port where it is).
        production = ctx.registry.production_version(model.name)
        if production is None or production.version != desired:
            report.actions.append(f"not switching {model.name} to {desired}: production moved")
            return changed
        host.cut_over(ctx, ref, leaving=routed.get(model.name), actor=actor, live=routed)
        report.actions.append(f"switched {model.name} to {desired}")
    others = {d.version for d in deployments if d.version != desired and d.role != Role.CANDIDATE}
    # A previous production version stays until its warm time is over (instant rollback).
    now = ctx.registry.db_now()
    others -= {
        w.ref.version
        for w in warm.warm_versions(ctx)
        if w.ref.model == model.name and w.until > now
    }
    for version in sorted(others):
        host.stop(ctx, Ref(model.name, version), actor=actor)
        report.actions.append(f"stopped {model.name}:{version}")
        changed = True
    return changed


def retry_delays(settings: AgentSettings) -> list[float]:
    """The waits before each retry of a failed start: ``start_retry_s``, doubling, at most
    ``max_backoff_s``; one fewer than ``start_attempts``."""
    first, ceiling = settings.start_retry_s, settings.max_backoff_s
    return [min(first * 2**i, ceiling) for i in range(settings.start_attempts - 1)]


def _start(ctx: Context, ref: Ref, beat: Heartbeat) -> int:
    """Start ``bento.replicas`` live replicas of ``ref``, retrying a failed start after each of
    :func:`retry_delays`; returns the try that succeeded. Every failed try is audited.
    Raises the last try's error when every try failed or the agent is stopping; a refusal of
    the DB (but a lost race: :class:`ConcurrentChange`) and :class:`DatabaseUnavailable` at
    once."""
    delays, tries = retry_delays(ctx.settings.agent), 0
    while True:
        tries += 1
        beat.doing(f"starting {ref} (try {tries} of {len(delays) + 1})")
        try:
            host.start(ctx, ref, role=Role.LIVE, actor=ctx.settings.host)
            return tries
        except BentogateError as err:
            refused = isinstance(err, GovernanceError) and not isinstance(err, ConcurrentChange)
            if refused or isinstance(err, DatabaseUnavailable):
                raise
            delay = delays[tries - 1] if tries <= len(delays) else None
            error = (str(err) or repr(err)).splitlines()[0]
            log.warning("start %d of %s failed: %s", tries, ref, error)
            ctx.registry.record_start_failure(
                ref.model, ref.version, host=ctx.settings.host, tries=tries,
                of=len(delays) + 1, error=error, retry_in_s=delay,
            )  # fmt: skip
            if delay is None or beat.wait(delay):
                raise


def _describe(ctx: Context, report: Report, routed: dict[str, str | None]) -> None:
    """Fill in what is live and whether all its servers pass HAProxy's health check."""
    health: dict[str, bool] = {}
    if ctx.sidecar.is_running():
        for server in ctx.sidecar.server_status():
            health[server.backend] = health.get(server.backend, True) and server.healthy
    for deployment in ctx.registry.deployments(host=ctx.settings.host):
        entry = report.models.get(deployment.model)
        if entry is not None and deployment.version not in entry.versions:
            entry.versions.append(deployment.version)
    for name, entry in report.models.items():
        entry.live = routed.get(name)
        if entry.live is not None:
            entry.healthy = health.get(backend_name(name, entry.live), False)


def run(ctx: Context, stop: threading.Event | None = None) -> None:
    """Reconcile every ``agent.interval_s`` until ``stop`` is set, each pass's report sent as
    the heartbeat, keep-alives in between while a pass waits. A failed pass (DB
    unreachable, HAProxy refusing, …) changes nothing more, is logged, and is retried after
    a doubling backoff up to ``agent.max_backoff_s``. A pass cut short by ``stop`` (in a
    retry's wait) reports nothing: its failure is not the version's."""
    stop = stop or threading.Event()
    log.info("agent %s: reconciling every %g s", ctx.settings.host, ctx.settings.agent.interval_s)
    with Heartbeat(ctx, stop) as beat:
        _loop(ctx, stop, beat)


def _loop(ctx: Context, stop: threading.Event, beat: Heartbeat) -> None:
    settings = ctx.settings.agent
    adopt, delay = True, settings.interval_s
    watches: dict[str, bake.Watch] = {}
    while not stop.is_set():
        try:
            report = reconcile_once(ctx, adopt=adopt, beat=beat)
            if stop.is_set():  # cut short: the next agent starts over
                return
            beat.send(report.to_json())
            for rollout in fleet.settle(ctx, actor=ctx.registry.acting_as(ctx.settings.host)):
                log.info("rollout %d of %s:%s %s", rollout.id, rollout.model, rollout.version,
                         rollout.status)  # fmt: skip
            for action in report.actions:
                log.info("%s", action)
            adopt, delay = False, settings.interval_s
        except Exception as err:  # a long-running loop must outlive any error
            if isinstance(err, BentogateError):
                log.warning("reconcile failed, keeping what runs: %s", str(err).splitlines()[0])
            else:
                log.exception("reconcile failed unexpectedly, keeping what runs")
            log.info("retrying in %.1f s", delay)
            stop.wait(delay)
            delay = min(delay * 2, settings.max_backoff_s)
            continue
        if ctx.settings.bento.expire_warm == "agent":
            serving = {name: entry.live for name, entry in report.models.items()}
            watches = bake_until(ctx, watches, stop, delay, serving=serving)
        else:
            stop.wait(delay)


def bake_until(
    ctx: Context,
    watches: dict[str, bake.Watch],
    stop: threading.Event,
    seconds: float,
    *,
    serving: Mapping[str, str | None],
) -> dict[str, bake.Watch]:
    """Between two reconciliations (``seconds``): bake this host's new live versions while
    their previous version is warm (:func:`bentogate.bake.look` every ``bake.POLL_S``; models
    whose port ``serving`` routes their production version). Returns early, for a
    reconciliation at once, when ``stop`` is set or a bake ended: a breach here rolled the
    fleet back in the DB, another host's did (production moved), or the warm time is over.
    Returns the bakes for the next call; an error is logged and ends the wait plainly."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        before = {model: watch.live for model, watch in watches.items() if not watch.ended}
        try:
            watches = bake.look(
                ctx, watches, roll=bake.roll_back_fleet, progress=log.info, serving=serving
            )
        except Exception as err:  # the agent outlives any error of its watcher
            log.warning("bake: look failed: %s", (str(err) or repr(err)).splitlines()[0])
            watches = {}
        now = {model: watch.live for model, watch in watches.items() if not watch.ended}
        if any(now.get(model) != live for model, live in before.items()):
            return watches  # a bake ended: reconcile at once
        left = deadline - time.monotonic()
        if not now:  # nothing to bake until a reconciliation cuts over
            stop.wait(max(0.0, left))
            return watches
        if left <= 0:
            return watches
        stop.wait(min(bake.POLL_S, left))
    return watches
