"""Time to deploy and time to cut over, through bentogate's own release workflow.

*Deploy* is build (``bentoml build`` of the version's Bento) plus deploy (``bentoml serve``
on its own port, added to HAProxy as the candidate, healthy: its canary check passed).
*Cutover* is ``promote``: the candidate takes the production port, the old version drains
and stops. A probe sends one request after another to the production port meanwhile, to
show when the new version answered first and that no request failed.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.stack import ACTORS, MODEL, production_port
from bentogate import release
from bentogate.context import Context, Ref

Progress = Callable[[str], None]


def _timed(steps: dict[str, float], name: str, action: Callable[[], object]) -> None:
    started = time.perf_counter()
    action()
    steps[name] = time.perf_counter() - started


def release_to_gate(
    ctx: Context, model_file: Path, holdout: Path, *, progress: Progress, replicas: int = 1
) -> tuple[Ref, dict[str, float]]:
    """register → validate → approve → build → deploy (``replicas`` Bentos) → gate, each
    timed (seconds)."""
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
        ("gate", lambda: release.gate(ctx, ref, actor=ACTORS.release)),
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


def cutover(ctx: Context, ref: Ref, body: bytes) -> dict[str, float | int | str]:
    """``promote`` ``ref`` under a probe; the figures of the switch."""
    probe = Probe(production_port(ctx), body)
    probe.start()
    time.sleep(0.5)
    started = time.perf_counter()
    release.promote(ctx, ref, actor=ACTORS.release)
    promoted = time.perf_counter()
    time.sleep(0.5)
    probe.stop()
    first_new = next((t for t, version in probe.answers if version == ref.version), None)
    last_old = max((t for t, version in probe.answers if version != ref.version), default=None)
    return {
        "promote_s": promoted - started,
        "first_new_answer_s": (first_new - started) if first_new is not None else float("nan"),
        "last_old_answer_s": (last_old - started) if last_old is not None else float("nan"),
        "probe_requests": len(probe.answers) + len(probe.failures),
        "probe_failures": len(probe.failures),
        "failure_kinds": ", ".join(sorted({kind for _, kind in probe.failures})),
    }
