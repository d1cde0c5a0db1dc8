"""The watched bake: after a cutover the new live version is watched through its warm window
(``bento.keep_previous_s``, while the previous version still runs); a breach of the model's
bake policy rolls production back at once to that warm version.

What is watched, every ``poll_s``:
- the production port's answers (HAProxy's frontend counters): more than
  ``bake_max_error_ratio`` of its requests answered 5xx over the last ``bake_window_s``
  (errors of the Bento, a score that is not a probability, no server up) once at least
  ``bake_min_requests`` came;
- the new version's scores on the rows its clients sent since the cutover (kept by its
  Bentos, ``serving/recent.py``), scored again by the warm previous version on its own
  port: the shadow limits of the policy (loadtest/shadow.py) failing on them.
On a breach: an automatic rollback (one ``set map`` to the warm version), audited with the
figures that caused it; the governance DB marks the version so that it needs a new passed
gate before it can take production again. The last reading of each model is kept in
``run/bake/<model>.json`` for ``bentogate status``.

The detached ``bentogate expire --wait`` that every cutover schedules (:mod:`bentogate.warm`)
runs :func:`watch_then_expire`: it bakes while a previous version is warm and stops that
version when its time is over.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson

from bentogate import gating, host, release, warm
from bentogate.context import Context, Progress, Ref
from bentogate.errors import BentogateError
from governance import Action, Outcome, State, Verdict
from loadtest import GatePolicy, Target
from loadtest.shadow import Scored, compare, distinct, judge, score_rows

WATCHER = "bake-watcher"  # the actor of an automatic rollback
COMPARED_ROWS = 5000  # the newest rows the score comparison judges (a bounded cost per look)
SEEN_ROWS = 4 * COMPARED_ROWS  # remembered to recognise repeats (bounded memory)


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


@dataclass
class _Watch:
    """The state of one model's bake (one new live version against its warm previous)."""

    live: Ref
    previous: Ref
    until: datetime
    policy: GatePolicy
    counts: deque[tuple[float, int, int]] = field(default_factory=deque)
    live_scores: list[np.ndarray] = field(default_factory=list)
    previous_scores: list[np.ndarray] = field(default_factory=list)
    # Rows kept up to here are compared. From 0: every row the new version kept is a
    # client's (health checks, gate and shadow requests are not kept), also those that
    # came before the watcher started.
    compared_until_ns: int = 0
    # Hashes of the rows compared lately (oldest first, at most SEEN_ROWS): a row clients
    # send again is no new evidence (loadtest.shadow.distinct).
    seen: dict[int, None] = field(default_factory=dict)


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


def _count(ctx: Context, watch: _Watch, now: float) -> None:
    """Add the production port's counters; keep the last ``bake_window_s`` of them."""
    counts = ctx.sidecar.port_counts(watch.live.model)
    if watch.counts and counts.requests < watch.counts[-1][1]:
        watch.counts.clear()  # a reload started a new worker: its counters start at 0
    watch.counts.append((now, counts.requests, counts.errors))
    while len(watch.counts) > 2 and now - watch.counts[1][0] >= watch.policy.bake_window_s:
        watch.counts.popleft()


def _scores_breach(ctx: Context, watch: _Watch) -> tuple[str | None, int, str]:
    """Score the rows clients sent the new version since the last look on the warm previous
    version (and on the new one again, the same way); judge everything compared so far."""
    until_ns = time.monotonic_ns()
    kept = host.recent_rows(ctx, watch.live, since_ns=watch.compared_until_ns)
    rows = [row for row in distinct([row for found in kept.values() for row in found])
            if hash(tuple(row)) not in watch.seen]  # fmt: skip
    watch.seen.update((hash(tuple(row)), None) for row in rows)
    for old in list(itertools.islice(watch.seen, max(0, len(watch.seen) - SEEN_ROWS))):
        del watch.seen[old]
    watch.compared_until_ns = until_ns
    urls = {
        "live": host.backend_urls(ctx, watch.live),
        "previous": host.backend_urls(ctx, watch.previous),
    }
    if rows and urls["live"] and urls["previous"]:
        live = score_rows(Target("live", urls["live"][0], watch.live.version), rows)
        previous = score_rows(Target("previous", urls["previous"][0], watch.previous.version), rows)
        watch.live_scores = _newest([*watch.live_scores, live.scores])
        watch.previous_scores = _newest([*watch.previous_scores, previous.scores])
    if not watch.live_scores:
        return None, 0, ""
    comparison = compare(
        _joined(watch.live_scores), _joined(watch.previous_scores), _threshold(ctx, watch.live)
    )
    verdict, reasons = judge(comparison, watch.policy)
    breach = None
    if verdict == Verdict.FAIL:
        breach = f"scores on clients' rows vs {watch.previous}: " + "; ".join(reasons)
    return breach, comparison.rows, verdict


def _newest(parts: list[np.ndarray]) -> list[np.ndarray]:
    """The newest :data:`COMPARED_ROWS` scores, as one array."""
    return [np.concatenate(parts)[-COMPARED_ROWS:]]


def _joined(parts: list[np.ndarray]) -> Scored:
    scores = np.concatenate(parts)
    return Scored(scores, int(np.isnan(scores).sum()), (), np.array([]))


def _threshold(ctx: Context, ref: Ref) -> float:
    return ctx.registry.get_version(ref.model, ref.version).threshold


def poll(ctx: Context, watch: _Watch) -> Reading:
    """One look at ``watch``'s new live version; a reading with ``breach`` set when its
    policy is broken."""
    now = time.monotonic()
    _count(ctx, watch, now)
    breach, requests, errors, seconds = error_breach(watch.counts, watch.policy)
    scores_breach, compared, verdict = (None, 0, "") if breach else _scores_breach(ctx, watch)
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
    )


def roll_back(ctx: Context, watch: _Watch, reading: Reading) -> None:
    """The automatic rollback: production back to the warm previous version at once,
    audited with the reading that caused it; the failed version then stops (it is no
    rollback target, and a watcher must not bake the restored version against it)."""
    release.rollback(
        ctx,
        watch.live.model,
        actor=WATCHER,
        reason=f"automatic rollback of {watch.live}: {reading.breach}",
        evidence=asdict(reading),
    )
    with ctx.host_lock():
        if host.stop(ctx, watch.live, actor=WATCHER):
            host.apply_routes(ctx)


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


def _watches(ctx: Context, current: dict[str, _Watch]) -> dict[str, _Watch]:
    """One watch per model whose production version was *promoted* over a version still
    warm on this host (kept where it already runs, new ones started, ended ones dropped).
    A version rolled back to is not baked against the one it replaced: a comparison says
    the two differ, not which one is right."""
    wanted: dict[str, _Watch] = {}
    latest = {entry.ref.model: entry for entry in warm.warm_versions(ctx)}  # soonest first
    for entry in latest.values():  # per model, the version demoted last
        live = ctx.registry.production_version(entry.ref.model)
        if live is None or live.version == entry.ref.version:
            continue
        ref = Ref(entry.ref.model, live.version)
        known = current.get(ref.model)
        if known is not None and known.live == ref and known.previous == entry.ref:
            wanted[ref.model] = known
        elif ref.model not in wanted and _promoted(ctx, ref):
            policy = gating.gate_policy(ctx, ref.model)
            wanted[ref.model] = _Watch(ref, entry.ref, entry.until, policy)
    return wanted


def _promoted(ctx: Context, ref: Ref) -> bool:
    """True if ``ref`` took production by a promotion (its latest audited way there)."""
    moves = [
        e.action
        for e in ctx.registry.audit(ref.model, ref.version)
        if e.to_state == State.PRODUCTION and e.outcome == Outcome.OK
    ]
    return bool(moves) and moves[-1] == Action.PROMOTE


def watch_then_expire(ctx: Context, progress: Progress, *, poll_s: float = 0.25) -> list[Ref]:
    """Bake every new live version of this host while its previous version is warm, rolling
    back on a breach; stop each warm version when its time is over. Returns once nothing is
    warm; what was stopped."""
    stopped: list[Ref] = []
    watches: dict[str, _Watch] = {}
    while warm.warm_versions(ctx):
        watches = _watches(ctx, watches)
        for model, watch in list(watches.items()):
            try:
                reading = poll(ctx, watch)
            except BentogateError as err:  # HAProxy or a Bento busy: the next look decides
                progress(f"{watch.live}: bake reading failed: {err}")
                continue
            _keep(ctx, reading)
            if reading.breach is not None:
                progress(f"{watch.live}: {reading.breach}: rolling back to {watch.previous}")
                roll_back(ctx, watch, reading)
                del watches[model]
        for ref in warm.stop_expired(ctx):
            progress(f"{ref}: warm time over, stopped")
            stopped.append(ref)
        time.sleep(poll_s)
    return stopped
