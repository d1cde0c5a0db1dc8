"""Time to deploy and time to cut over, through bentogate's own release workflow.

*Deploy* is build (``bentoml build`` of the version's Bento) plus deploy (``bentoml serve``
on its own port, added to HAProxy as the candidate, healthy: its canary check passed).
*Cutover* is ``promote``: the candidate takes the production port, the old version drains
and stays warm. *Rollback* is timed twice: to the warm previous version (one ``set map``)
and to one that had been stopped (``bentoml serve`` again first). A probe sends one
request after another to the production port meanwhile, to show when the target version
answered first and that no request failed.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import orjson

from bench.stack import ACTORS, MODEL, production_port
from bentogate import gating, release, warm
from bentogate.context import Context, Ref

Progress = Callable[[str], None]


def _timed(steps: dict[str, float], name: str, action: Callable[[], object]) -> None:
    started = time.perf_counter()
    action()
    steps[name] = time.perf_counter() - started


def release_to_gate(
    ctx: Context,
    model_file: Path,
    holdout: Path,
    *,
    progress: Progress,
    replicas: int | None = None,
) -> tuple[Ref, dict[str, float]]:
    """register → validate → approve → build → deploy (``replicas`` Bentos, default the
    settings') → gate, each timed (seconds)."""
    steps: dict[str, float] = {}
    started = time.perf_counter()
    info = release.register(ctx, MODEL, model_file, holdout, developer=ACTORS.developer)
    steps["register"] = time.perf_counter() - started
    ref = Ref(MODEL, info.version)
    work: list[tuple[str, Callable[[], object]]] = [
        ("validate", lambda: release.validate(ctx, ref, holdout, actor=ACTORS.validator)),
        ("approve", lambda: release.approve(ctx, ref, actor=ACTORS.approver)),
        ("build", lambda: release.build(ctx, ref, actor=ACTORS.release)),
        ("deploy", lambda: release.deploy(ctx, ref, actor=ACTORS.release, replicas=replicas)),
        ("gate", lambda: gating.gate(ctx, ref, actor=ACTORS.release)),
    ]
    for name, action in work:
        progress(f"{ref}: {name}")
        _timed(steps, name, action)
    return ref, steps


def first_promotion(ctx: Context, ref: Ref) -> float:
    """``promote`` the first version (no traffic to switch yet); seconds it took."""
    started = time.perf_counter()
    release.promote(ctx, ref, actor=ACTORS.release)
    return time.perf_counter() - started


@dataclass
class Probe:
    """Serial requests to a port from a thread: when each version answered, what failed."""

    port: int
    body: bytes
    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cutover-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set():
            now = time.perf_counter()
            try:
                connection.request("POST", "/predict", self.body, headers)
                response = connection.getresponse()
                payload = response.read()
                if response.status == 200:
                    self.answers.append((now, str(orjson.loads(payload)["model_version"])))
                else:
                    self.failures.append((now, f"HTTP {response.status}"))
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append((now, type(exc).__name__))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            time.sleep(0.002)
        connection.close()


def switch_under_probe(
    ctx: Context, switch: Callable[[], object], target: str, body: bytes
) -> dict[str, float | int | str]:
    """Run ``switch`` (a promote or rollback to version ``target``) under a probe on the
    production port; the figures of the switch."""
    probe = Probe(production_port(ctx), body)
    probe.start()
    time.sleep(0.5)
    started = time.perf_counter()
    switch()
    switched = time.perf_counter()
    time.sleep(0.5)
    probe.stop()
    first_new = next((t for t, version in probe.answers if version == target), None)
    last_old = max((t for t, version in probe.answers if version != target), default=None)
    return {
        "switch_s": switched - started,
        "first_new_answer_s": (first_new - started) if first_new is not None else float("nan"),
        "last_old_answer_s": (last_old - started) if last_old is not None else float("nan"),
        "probe_requests": len(probe.answers) + len(probe.failures),
        "probe_failures": len(probe.failures),
        "failure_kinds": ", ".join(sorted({kind for _, kind in probe.failures})),
    }


def cutover(ctx: Context, ref: Ref, body: bytes) -> dict[str, float | int | str]:
    """``promote`` ``ref`` under a probe (the version it replaces stays warm)."""
    promote = partial(release.promote, ctx, ref, actor=ACTORS.release)
    return switch_under_probe(ctx, promote, ref.version, body)


def rollbacks(ctx: Context, ref: Ref, body: bytes) -> dict[str, dict[str, float | int | str]]:
    """With ``ref`` live and its predecessor warm: roll back to the warm predecessor, promote
    ``ref`` again (warm too), stop the predecessor, roll back to it once more (restarted).
    Each switch under a probe; ``ref`` is live again at the end."""
    previous = ctx.registry.previous_version(ref.model)
    assert previous is not None, "rollbacks() needs a previous production version"
    back = partial(release.rollback, ctx, ref.model, actor=ACTORS.release)
    again = partial(release.promote, ctx, ref, actor=ACTORS.release)
    figures = {"warm": switch_under_probe(ctx, back, previous.version, body)}
    switch_under_probe(ctx, again, ref.version, body)
    warm.stop_expired(ctx, now=datetime.now(UTC) + timedelta(days=1))
    figures["restarted"] = switch_under_probe(ctx, back, previous.version, body)
    switch_under_probe(ctx, again, ref.version, body)
    return figures
