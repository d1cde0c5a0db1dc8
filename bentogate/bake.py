"""The watched bake: after a cutover the new live version is watched through its warm window
(``bento.keep_previous_s``, while the previous version still runs); a breach of the model's
bake policy rolls production back at once to that warm version.

What is watched, every :data:`POLL_S`, over the last ``bake_window_s`` (once at least
``bake_min_requests`` answers came), in this order (the first breach decides):
- the production port's answers (HAProxy's frontend counters): more than
  ``bake_max_error_ratio`` of them 5xx (errors of the Bento, a score that is not a
  probability, no server up) — :func:`error_breach`;
- the Bento's own time (BentoML's request-duration histogram, from each replica's
  ``/_latency``, :mod:`bentogate.latency`; one GET per replica every other look): the policy's
  ``p99_ms`` is broken when more than 1 % of the window's successful ``/predict`` answers
  certainly took longer than it *inside the Bento* — judged, like the shadow's flip share,
  on a ``confidence`` Wilson interval whose whole range is over 1 %
  (:func:`bentogate.latency.latency_breach`). The server's time is a part of every client's
  latency, so this never blames a version for the proxy's or the network's share; a
  histogram only brackets a quantile, so the rule counts answers over the lowest bucket
  bound at or above the limit (exact when the limit is a bound, as the default 25 ms is),
  and the reading shows the window's server p99 as its bucket's *upper* bound;
- the new version's scores on the rows its clients sent since the cutover, as it answered
  them (its Bentos keep each row with its score, ``serving/recent.py``: the live Bentos
  score nothing for the bake), against the warm previous version's scores of the same rows
  on its own port: the shadow limits of the policy (loadtest/shadow.py) failing on them.
  Every row while a replica answers fewer than :data:`ROWS_PER_READ` requests a look
  (≈ 500 a second); above that, each look's newest: a sample of the rest.
The limits are the model's gate policy as stored now (``bentogate policy``), the one its
gate judged it by unless it was changed since.

On a breach: an automatic rollback to the warm version, audited with the figures that caused
it (the :class:`Reading`); the governance DB marks the version so that it needs a new passed
gate before it can take production again, and it stops (no warm time: nothing may return to
it). The rollback names the version it judged (``replacing``): if production already moved
(another watcher, anyone), the DB refuses it, audited, and nothing changes. The last reading
of each model is kept in ``run/bake/<model>.json`` for ``bentogate status``.

Who watches (each calls :func:`look` every :data:`POLL_S`):
- on a single host, the detached expirer (:mod:`bentogate.expirer`) that every cutover schedules
  (:mod:`bentogate.warm`) runs :func:`watch_then_expire`: it bakes while a previous version
  is warm, rolls back with :func:`roll_back` (one ``set map`` to the warm version), and stops
  each warm version when its time is over;
- on a fleet host (``bento.expire_warm = "agent"``), the agent between two reconciliations
  (:mod:`bentogate.agent`), with :func:`roll_back_fleet`: production goes back in the shared
  DB and every agent, this one first, cuts its host back.
"""

from __future__ import annotations

import itertools
import math
import os
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from bentogate import fleet, gating, host, latency, release, warm
from bentogate.context import Context, Progress, Ref
from bentogate.errors import BentogateError
from bentogate.governance import Action, Outcome, State, Verdict
from bentogate.latency import Histogram, latency_breach
from bentogate.loadtest import GatePolicy, Target
from bentogate.loadtest.shadow import Scored, compare, judge, score_rows

WATCHER = "bake-watcher"  # the actor of an automatic rollback
POLL_S = 0.25  # between two looks
# The newest rows a look reads from each live replica. Reading every row was most of what
# the bake cost clients once a replica answered hundreds of requests a look (the Bento's
# event loop gathers and sends them, the watcher parses and hashes them); measured with
# bench.bake_cost, p99 at 3,000 req/s with the bake running and paused: 2.3-3.3 against
# 1.5-1.6 ms reading every row, 1.7 against 1.6 ms reading none.
ROWS_PER_READ = 128
COMPARED_ROWS = 5000  # the newest rows the score comparison judges (a bounded cost per look)
SEEN_ROWS = 4 * COMPARED_ROWS  # remembered to recognise repeats (bounded memory)
METRICS_TIMEOUT_S = 0.5  # a replica's /_latency slower than this is left out of the look
# A GET /_latency costs the Bento ~1 ms of its own time (one series of its histogram files;
# BentoML's /metrics, every metric merged and formatted, ~7 ms, during which it answers no
# prediction; measured on 2 cores): read every 0.5 s, a window still has 5.
METRICS_EVERY_S = 0.5
# Between two reads of the host's bakes from the governance DB (which versions are warm and
# which replaced them: the expirer's looks; each bake's replicas and threshold: every look's).
# A rollback names the version it judged, so a look on a state up to this old is refused by
# the DB, audited, if production moved meanwhile. Read every look, the queries took a third
# of the expirer's CPU (py-spy, under serial load), from the cores the Bentos and HAProxy
# serve clients on. (A fleet agent's looks read them every look: it reconciles from the DB.)
STATE_EVERY_S = 2.0


@dataclass
class Reading:
    """The watcher's latest view of one model's new live version."""

    model: str
    version: str
    previous: str
    until: str
    at: str = ""
    requests: int = 0  # over the window
    errors: int = 0
    window_s: float = 0.0
    compared_rows: int = 0
    score_verdict: str = ""
    breach: str | None = None
    host: str = ""
    server_answers: int = 0  # successful /predict answers the Bentos timed over the window
    server_p99_le_ms: float | None = None  # the server p99 is at most this (its bucket's top)
    server_over_limit: int = 0  # of them, certainly slower than the policy's p99_ms


@dataclass
class Watch:
    """The state of one model's bake (one new live version against its warm previous)."""

    live: Ref
    previous: Ref
    until: datetime
    policy: GatePolicy
    counts: deque[tuple[float, int, int]] = field(default_factory=deque)
    # (time, replica URL → its histogram): the Bentos' own latency figures.
    histograms: deque[tuple[float, dict[str, Histogram]]] = field(default_factory=deque)
    live_scores: list[np.ndarray] = field(default_factory=list)
    previous_scores: list[np.ndarray] = field(default_factory=list)
    # Rows kept up to here are compared. From 0: every row the new version kept is a
    # client's (health checks, gate and shadow requests are not kept), also those that
    # came before the watcher started.
    compared_until_ns: int = 0
    # Hashes of the rows compared lately (oldest first, at most SEEN_ROWS): a row clients
    # send again is no new evidence (as in bentogate.loadtest.shadow.distinct).
    seen: dict[int, None] = field(default_factory=dict)
    ended: bool = False  # a breach was acted on: no more looks, whatever the rollback did
    # Each version's replicas on this host and the live version's threshold, read from the
    # governance DB at most every STATE_EVERY_S.
    live_urls: list[str] = field(default_factory=list)
    previous_urls: list[str] = field(default_factory=list)
    threshold: float = 0.5
    urls_at: float = -math.inf
    # The scores' last judgement (breach, rows compared, verdict): the same until new rows
    # are compared (a look with none judges nothing again).
    scores_judged: tuple[str | None, int, str] | None = None


Rollback = Callable[[Context, Watch, Reading], object]
_Sample = TypeVar("_Sample", bound=tuple[Any, ...])


def error_breach(
    counts: deque[tuple[float, int, int]], policy: GatePolicy
) -> tuple[str | None, int, int, float]:
    """``(breach, requests, errors, seconds)`` over the samples ``counts`` holds, oldest to
    newest, each (time, requests so far, 5xx so far): a breach names the measured ratio and
    the rule (pure)."""
    if len(counts) < 2:
        return None, 0, 0, 0.0
    (t0, r0, e0), (t1, r1, e1) = counts[0], counts[-1]
    requests, errors = r1 - r0, e1 - e0
    if requests < policy.bake_min_requests or errors <= policy.bake_max_error_ratio * requests:
        return None, requests, errors, t1 - t0
    breach = (
        f"error ratio {errors / requests:.1%} ({errors} of {requests} requests answered 5xx) "
        f"> {policy.bake_max_error_ratio:.1%} over {t1 - t0:.1f} s (bake_max_error_ratio)"
    )
    return breach, requests, errors, t1 - t0


def _trim(samples: deque[_Sample], now: float, window_s: float) -> None:
    """Keep the samples of the last ``window_s``: the newest at least that old starts it."""
    while len(samples) > 2 and now - samples[1][0] >= window_s:
        samples.popleft()


def _count(ctx: Context, watch: Watch, now: float) -> None:
    """Add the production port's counters; keep the last ``bake_window_s`` of them."""
    counts = ctx.sidecar.port_counts(watch.live.model)
    if watch.counts and counts.requests < watch.counts[-1][1]:
        watch.counts.clear()  # a reload started a new worker: its counters start at 0
    watch.counts.append((now, counts.requests, counts.errors))
    _trim(watch.counts, now, watch.policy.bake_window_s)


def _time(ctx: Context, watch: Watch, now: float) -> None:
    """Add each replica's latency histogram (its own ``/_latency``, never through HAProxy),
    at most every :data:`METRICS_EVERY_S`; keep the last ``bake_window_s`` of them. A replica
    that does not answer within :data:`METRICS_TIMEOUT_S` is left out of this reading (and
    so of the windows it bounds)."""
    if watch.histograms and now - watch.histograms[-1][0] < METRICS_EVERY_S:
        return
    found: dict[str, Histogram] = {}
    for url in watch.live_urls:
        try:
            with urllib.request.urlopen(f"{url}/_latency", timeout=METRICS_TIMEOUT_S) as response:
                found[url] = latency.parse(response.read().decode())
        except (OSError, UnicodeDecodeError, ValueError, KeyError):
            continue
    watch.histograms.append((now, found))
    _trim(watch.histograms, now, watch.policy.bake_window_s)


def _server_window(watch: Watch) -> tuple[Histogram, float]:
    """The answers the Bentos timed over the window held, and its length in seconds."""
    if len(watch.histograms) < 2:
        return Histogram(), 0.0
    (t0, first), (t1, last) = watch.histograms[0], watch.histograms[-1]
    return latency.window(first, last), t1 - t0


def _scores_breach(watch: Watch) -> tuple[str | None, int, str]:
    """Score the rows clients sent the new version since the last look on the warm previous
    version and compare with the scores the new version answered them (kept beside each
    row: the live Bentos score nothing more); judge everything compared so far."""
    until_ns = time.monotonic_ns()
    kept = host.kept_rows(watch.live_urls, since_ns=watch.compared_until_ns, limit=ROWS_PER_READ)
    rows, answered = [], []
    for found in kept.values():
        for row, score in zip(found.rows, found.scores, strict=True):
            key = hash(row.tobytes())  # a repeat, here or since an earlier look, is no new row
            if key not in watch.seen:
                watch.seen[key] = None
                rows.append(row)
                answered.append(score)
    for old in list(itertools.islice(watch.seen, max(0, len(watch.seen) - SEEN_ROWS))):
        del watch.seen[old]
    watch.compared_until_ns = until_ns
    if rows and watch.previous_urls:
        target = Target("previous", watch.previous_urls[0], watch.previous.version)
        previous = score_rows(target, np.asarray(rows).tolist())
        watch.live_scores = _newest([*watch.live_scores, np.asarray(answered, dtype=float)])
        watch.previous_scores = _newest([*watch.previous_scores, previous.scores])
        watch.scores_judged = None  # new evidence: judged again below
    if not watch.live_scores:
        return None, 0, ""
    if watch.scores_judged is None:
        comparison = compare(
            _joined(watch.live_scores),
            _joined(watch.previous_scores),
            watch.threshold,
            watch.policy,
        )
        verdict, reasons = judge(comparison, watch.policy)
        breach = None
        if verdict == Verdict.FAIL:
            breach = f"scores on clients' rows vs {watch.previous}: " + "; ".join(reasons)
        watch.scores_judged = (breach, comparison.rows, verdict)
    return watch.scores_judged


def _newest(parts: list[np.ndarray]) -> list[np.ndarray]:
    """The newest :data:`COMPARED_ROWS` scores, as one array."""
    return [np.concatenate(parts)[-COMPARED_ROWS:]]


def _joined(parts: list[np.ndarray]) -> Scored:
    scores = np.concatenate(parts)
    return Scored(scores, int(np.isnan(scores).sum()), (), np.array([]))


def _locate(ctx: Context, watch: Watch, now: float) -> None:
    """Read the bake's replicas and threshold from the governance DB, at most every
    :data:`STATE_EVERY_S` (a replica replaced meanwhile is missed until the next read)."""
    if now - watch.urls_at < STATE_EVERY_S:
        return
    watch.live_urls = host.backend_urls(ctx, watch.live)
    watch.previous_urls = host.backend_urls(ctx, watch.previous)
    watch.threshold = ctx.registry.get_version(watch.live.model, watch.live.version).threshold
    watch.urls_at = now


def poll(ctx: Context, watch: Watch) -> Reading:
    """One look at ``watch``'s new live version; a reading with ``breach`` set when its
    policy is broken."""
    now = time.monotonic()
    _locate(ctx, watch, now)
    _count(ctx, watch, now)
    _time(ctx, watch, now)
    breach, requests, errors, seconds = error_breach(watch.counts, watch.policy)
    slow, tail = latency_breach(*_server_window(watch), watch.policy)
    breach = breach or slow
    scores_breach, compared, verdict = (None, 0, "") if breach else _scores_breach(watch)
    p99_le = tail.p99_bucket_ms[1] if tail.p99_bucket_ms is not None else math.inf
    return Reading(
        model=watch.live.model,
        version=watch.live.version,
        previous=watch.previous.version,
        until=watch.until.isoformat(timespec="seconds"),
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        requests=requests,
        errors=errors,
        window_s=round(seconds, 2),
        compared_rows=compared,
        score_verdict=verdict,
        breach=breach or scores_breach,
        host=ctx.settings.host,
        server_answers=tail.answers,
        server_p99_le_ms=round(p99_le, 4) if math.isfinite(p99_le) else None,
        server_over_limit=tail.over,
    )


def roll_back(ctx: Context, watch: Watch, reading: Reading) -> None:
    """The automatic rollback of a single host: production back to the warm previous version
    at once (``release.rollback``, one ``set map``), audited with the reading that caused
    it; the failed version then stops (it is no rollback target, and a watcher must not
    bake the restored version against it). Raises what ``release.rollback`` raises
    (ConcurrentChange when production already moved: nothing changed)."""
    release.rollback(
        ctx,
        watch.live.model,
        actor=ctx.registry.acting_as(WATCHER),
        reason=f"automatic rollback of {watch.live}: {reading.breach}",
        evidence=asdict(reading),
        replacing=watch.live.version,
    )
    with ctx.host_lock():
        if host.stop(ctx, watch.live, actor=ctx.registry.acting_as(WATCHER)):
            host.apply_routes(ctx)


def roll_back_fleet(ctx: Context, watch: Watch, reading: Reading) -> None:
    """The automatic rollback of a fleet host: production back in the shared governance DB
    (:func:`bentogate.fleet.roll_back`, audited with the reading); the agents, this host's
    first, then cut over and stop the failed version. Raises ConcurrentChange when another
    host's watcher (or anyone) moved production first: nothing changed."""
    fleet.roll_back(
        ctx,
        watch.live,
        actor=ctx.registry.acting_as(WATCHER),
        reason=f"automatic rollback of {watch.live} (bake breach on {reading.host}): "
        f"{reading.breach}",
        evidence=asdict(reading),
    )


def reading_path(ctx: Context, model: str) -> Path:
    """Where the watcher keeps ``model``'s last reading."""
    return ctx.settings.run_dir / "bake" / f"{model}.json"


def last_reading(ctx: Context, model: str) -> Reading | None:
    """``model``'s last reading, if a watcher left one."""
    path = reading_path(ctx, model)
    try:
        return Reading(**orjson.loads(path.read_bytes()))
    except (OSError, orjson.JSONDecodeError, TypeError):
        return None


def _keep(ctx: Context, reading: Reading) -> None:
    path = reading_path(ctx, reading.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_bytes(orjson.dumps(asdict(reading)))
    os.replace(partial, path)


def _watches(
    ctx: Context,
    current: dict[str, Watch],
    serving: Mapping[str, str | None] | None = None,
    warm_now: list[warm.Warm] | None = None,
) -> dict[str, Watch]:
    """One watch per model whose production version was *promoted* over a version still
    warm on this host (kept where it already runs, new ones started, ended ones dropped);
    with ``serving`` (model → the version its port routes), only models whose port routes
    their production version. A version rolled back to is not baked against the one it
    replaced: a comparison says the two differ, not which one is right. ``warm_now``: the
    host's warm versions if just read (warm.warm_versions)."""
    wanted: dict[str, Watch] = {}
    if warm_now is None:
        warm_now = warm.warm_versions(ctx)
    latest = {entry.ref.model: entry for entry in warm_now}  # soonest first
    for entry in latest.values():  # per model, the version demoted last
        live = ctx.registry.production_version(entry.ref.model)
        if live is None or live.version == entry.ref.version:
            continue
        if serving is not None and serving.get(entry.ref.model) != live.version:
            continue  # not cut over here (yet): the port's figures are another version's
        ref = Ref(entry.ref.model, live.version)
        known = current.get(ref.model)
        if known is not None and known.live == ref and known.previous == entry.ref:
            wanted[ref.model] = known
        elif ref.model not in wanted and _promoted(ctx, ref):
            policy = gating.gate_policy(ctx, ref.model)
            wanted[ref.model] = Watch(ref, entry.ref, entry.until, policy)
    return wanted


def _promoted(ctx: Context, ref: Ref) -> bool:
    """True if ``ref`` took production by a promotion (its latest audited way there). Only
    promotions and rollbacks count: a replica started for it in production (an agent's, a
    ``deploy --replicas``) is audited in that state too, but moves nothing."""
    moves = [
        e.action
        for e in ctx.registry.audit(ref.model, ref.version)
        if e.to_state == State.PRODUCTION and e.outcome == Outcome.OK
        and e.action in (Action.PROMOTE, Action.ROLLBACK)
    ]  # fmt: skip
    return bool(moves) and moves[-1] == Action.PROMOTE


def look(
    ctx: Context,
    watches: dict[str, Watch],
    *,
    roll: Rollback,
    progress: Progress,
    serving: Mapping[str, str | None] | None = None,
    warm_now: list[warm.Warm] | None = None,
    refresh: bool = True,
) -> dict[str, Watch]:
    """One look at every bake of this host (``serving`` and ``warm_now`` as in
    :func:`_watches`): each new live version is polled and its reading kept for ``bentogate
    status``; a breach is rolled back by ``roll`` (once per bake: a refused or failed
    rollback is reported, kept in the reading, and not retried). ``refresh=False``: the
    bakes as ``watches`` holds them, not read again from the governance DB. Returns the
    bakes for the next look. Raises what reading the governance DB raises."""
    known = {id(watch) for watch in watches.values()}
    if refresh:
        watches = _watches(ctx, watches, serving, warm_now)
    for watch in watches.values():
        if id(watch) not in known:
            until = watch.until.isoformat(timespec="seconds")
            progress(f"{watch.live}: baking against the warm {watch.previous} until {until}")
        if watch.ended:
            continue
        try:
            reading = poll(ctx, watch)
        except BentogateError as err:  # HAProxy or a Bento busy: the next look decides
            progress(f"{watch.live}: bake reading failed: {err}")
            continue
        _keep(ctx, reading)
        if reading.breach is None:
            continue
        watch.ended = True
        progress(f"{watch.live}: {reading.breach}: rolling back to {watch.previous}")
        try:
            roll(ctx, watch, reading)
        except BentogateError as err:
            first = str(err).splitlines()[0]
            progress(f"{watch.live}: automatic rollback not done: {first}")
            _keep(ctx, replace(reading, breach=f"{reading.breach} (rollback not done: {first})"))
    return watches


def watch_then_expire(ctx: Context, progress: Progress, *, poll_s: float = POLL_S) -> list[Ref]:
    """Bake every new live version of this host while its previous version is warm, rolling
    back on a breach; stop each warm version when its time is over. The host's warm
    versions and bakes are read from the governance DB every :data:`STATE_EVERY_S` (and at
    once after an expiry), the bakes looked at every ``poll_s``. Returns once nothing is
    warm; what was stopped."""
    stopped: list[Ref] = []
    watches: dict[str, Watch] = {}
    read_at = -math.inf
    while True:
        refresh = time.monotonic() - read_at >= STATE_EVERY_S
        if refresh:
            pending = warm.warm_versions(ctx)  # soonest to expire first
            read_at = time.monotonic()
            if not pending:
                return stopped
        watches = look(ctx, watches, roll=roll_back, progress=progress, warm_now=pending,
                       refresh=refresh)  # fmt: skip
        if pending[0].until <= datetime.now(UTC):
            for ref in warm.stop_expired(ctx):
                progress(f"{ref}: warm time over, stopped")
                stopped.append(ref)
            read_at = -math.inf  # what is warm now: read at once
        time.sleep(poll_s)
