"""A fleet agent's heartbeat: each reconciliation's report, and keep-alives while it waits.

The agent sends the report of each pass (:meth:`Heartbeat.send`). A pass can take long: a
Bento starting, a cutover waiting for HAProxy's checks, the wait before a retry. Meanwhile a
thread of the heartbeat's own sends a keep-alive whenever the pass has run and no heartbeat
went out for ``agent.interval_s``, so a slow start never makes the host look stale (a quick
pass sends none: its report follows). A
keep-alive repeats the last report with ``busy`` (what the agent is doing) and without its
``failed`` versions: those were judged when they were sent, and a later rollout of the same
version must not read them again. The thread writes through a registry of its own (its own
connections: a SQLAlchemy session is never shared between threads); the DB stamps every
heartbeat with its own clock.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import Any

from bentogate.context import Context
from bentogate.errors import BentogateError
from bentogate.governance import Registry

log = logging.getLogger("bentogate.agent")


class Heartbeat:
    """This host's heartbeat. ``stop`` is the agent's: :meth:`wait` ends early when it is set.
    Keep-alives are sent only inside ``with heartbeat:`` (the thread's lifetime)."""

    def __init__(self, ctx: Context, stop: threading.Event) -> None:
        self._ctx, self._stop = ctx, stop
        self._lock = threading.Lock()
        settings = ctx.settings
        self._report: dict[str, Any] = {
            "host": settings.host,
            "address": settings.address,
            "pid": os.getpid(),
            "models": {},
        }
        self._busy: str | None = "starting"
        self._busy_since = self._sent_at = -math.inf  # time.monotonic() of each
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._keep_alive, name="heartbeat", daemon=True)

    def doing(self, what: str) -> None:
        """Say what the agent is busy with (shown in keep-alives until the next report)."""
        with self._lock:
            if self._busy is None:
                self._busy_since = time.monotonic()
            self._busy = what

    def wait(self, seconds: float) -> bool:
        """Wait ``seconds`` (keep-alives go on); True if the agent was told to stop."""
        return self._stop.wait(seconds)

    def send(self, report: dict[str, Any]) -> None:
        """Send a pass's ``report`` as the heartbeat (the agent is idle until the next pass).
        Raises what ``Registry.heartbeat`` raises."""
        with self._lock:
            self._ctx.registry.heartbeat(self._ctx.settings.host, report)
            self._report, self._busy, self._sent_at = report, None, time.monotonic()

    def keep_alive(self, registry: Registry) -> bool:
        """Send a keep-alive through ``registry`` if the agent has been busy and without a
        heartbeat for ``agent.interval_s``; True if one was sent. Raises what
        ``Registry.heartbeat`` raises."""
        with self._lock:
            since = time.monotonic() - max(self._sent_at, self._busy_since)
            if self._busy is None or since < self._ctx.settings.agent.interval_s:
                return False
            models = {
                name: {**entry, "failed": None} for name, entry in self._report["models"].items()
            }
            registry.heartbeat(
                self._ctx.settings.host, {**self._report, "models": models, "busy": self._busy}
            )
            self._sent_at = time.monotonic()
            return True

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=30)

    def _keep_alive(self) -> None:
        settings = self._ctx.settings
        failing = False
        with Registry(settings.database_url, environment=settings.environment) as registry:
            while not self._done.wait(settings.agent.interval_s / 2):
                try:
                    self.keep_alive(registry)
                    failing = False
                except BentogateError as err:  # the DB is away: the next pass says so too
                    if not failing:
                        log.warning("keep-alive heartbeat failed: %s", str(err).splitlines()[0])
                    failing = True
