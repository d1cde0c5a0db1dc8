"""What the Bento puts on BentoML's ``/metrics``: its requests, counted and timed in latency
buckets that fit a prediction, and the identity of the model version it serves; and on its
own ``/_latency``, the request-duration histogram alone, for the bake watcher.

BentoML's ``/metrics`` merges every metric of every worker and formats it: ≈ 7 ms during
which the Bento answers no prediction (measured on 2 cores). The bake reads each replica's
latency every half second through its warm window, so on ``/metrics`` it stalled every
live replica twice a second; :func:`latency_page` reads the one series it needs from the
histogram files and answers it in the same format.
"""

from __future__ import annotations

import json
import math
import os
from functools import partial
from pathlib import Path
from time import perf_counter
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.scorer import Scorer

# Request-latency histogram bounds (seconds). A prediction takes tens of microseconds inside
# the app (parse + check + score ≈ 30 µs); BentoML's default buckets start at 5 ms and would
# put every request in the first one.
LATENCY_BUCKETS_S = (
    0.00001, 0.000025, 0.00005,
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


#: The content type of a Prometheus text page.
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def latency_page(namespace: str, endpoint: str = "/predict") -> bytes:
    """``endpoint``'s successful (2xx) answers in ``<namespace>_request_duration_seconds``
    (RequestMetrics' histogram), every worker's summed, its buckets cumulative as on
    ``/metrics``, and nothing else: Prometheus text, one line per bucket.

    Read straight from the histogram files of prometheus_client's multiprocess directory
    (which BentoML sets in each worker; a worker adds 1 to one bucket per answer), skipping
    every other series without parsing it: 0.35 ms in-process where merging every histogram
    and formatting it, as ``/metrics`` does, took 2.3 ms.
    """
    from prometheus_client.mmap_dict import MmapedDict

    bucket = f"{namespace}_request_duration_seconds_bucket"
    wanted = f'"endpoint": {json.dumps(endpoint)}'
    per_bound: dict[float, float] = {}
    for path in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("histogram_*.db"):
        for entry in MmapedDict.read_all_values_from_file(str(path)):
            key, value = entry[0], entry[1]
            if bucket not in key or wanted not in key:
                continue
            labels = json.loads(key)[2]
            if labels["endpoint"] == endpoint and labels["http_response_code"].startswith("2"):
                bound = float(labels["le"])
                per_bound[bound] = per_bound.get(bound, 0.0) + value
    lines, total = [], 0.0
    for bound in sorted(per_bound):
        total += per_bound[bound]
        le = "+Inf" if bound == math.inf else repr(bound)
        lines.append(
            f'{bucket}{{endpoint="{endpoint}",http_response_code="2xx",le="{le}"}} {total:.1f}\n'
        )
    return "".join(lines).encode()


def publish_identity(scorer: Scorer) -> None:
    """Expose ``bentogate_model_info{model, version, sha256} 1`` on ``/metrics``."""
    # Imported here, not at the top: BentoML sets PROMETHEUS_MULTIPROC_DIR in the worker
    # after importing this module, and prometheus_client chooses its storage at import.
    import prometheus_client

    info = prometheus_client.Gauge(
        "bentogate_model_info",
        "The model version this Bento serves (always 1).",
        labelnames=("model", "version", "sha256"),
        multiprocess_mode="livemax",  # one sample however many workers
        registry=None,  # BentoML's /metrics reads every worker's values from its files
    )
    info.labels(model=scorer.name, version=scorer.version, sha256=scorer.sha256).set(1)


class RequestMetrics:
    """The app's requests counted and timed under BentoML's own metric names and labels
    (``<namespace>_request_total``, ``_request_duration_seconds``,
    ``_last_request_timestamp_seconds``), which BentoML's traffic middleware recorded before
    it was left out (serving/stack.py); what ``/metrics`` readers (the bake watcher's
    latency reading, dashboards) rely on reads the same.

    Cheaper than the middleware: a series is made once per endpoint and response code and
    kept (the middleware looked up five labels three times per request), and a path no
    route serves is counted as :data:`UNROUTED`, so requests for random paths cannot grow
    ``/metrics`` without bound. The duration runs from the app's call to its last body
    message: the service's own time, as BentoML measured it; it is recorded once that
    message is sent, off the client's wait.

    The series are made at the first request: BentoML chooses where prometheus_client
    stores values (its multiprocess directory) after importing service.py.
    """

    UNROUTED = "(unrouted)"

    __slots__ = (
        "_app", "_buckets", "_duration", "_endpoints", "_last", "_namespace", "_registry",
        "_series", "_service", "_total",
    )  # fmt: skip

    def __init__(
        self,
        app: Starlette,
        *,
        namespace: str,
        buckets: tuple[float, ...],
        registry: Any = None,  # None: BentoML's /metrics reads every worker's files
    ) -> None:
        self._app = app
        self._namespace = namespace
        self._buckets = buckets
        self._registry = registry
        self._endpoints = frozenset(getattr(route, "path", "") for route in app.routes)
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._last: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self._app(scope, receive, send)
        await self.timed(self._app, scope, receive, send)

    def direct_routes(self) -> dict[tuple[str, str], ASGIApp]:
        """The app's routes whose endpoint Starlette calls as it is (a plain ASGI app: no
        Request, no exception handlers, nothing read from the router's scope), by method and
        path, each counted and timed as a request through the app is: what
        :class:`serving.stack.DirectRoutes` sends such a request to without routing it."""
        return {
            (method, route.path): partial(self.timed, route.endpoint)
            for route in self._app.routes
            if isinstance(route, Route) and route.app is route.endpoint
            and not route.param_convertors
            for method in route.methods or ()
        }  # fmt: skip

    async def timed(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Call ``app`` with one HTTP request, counted and timed."""
        started = perf_counter()
        status = 0

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif not message.get("more_body", False):
                # Timed up to the last body message, as before; recorded once it is sent,
                # so the client does not wait for the metrics' four writes (4-7 µs).
                took = perf_counter() - started
                try:
                    await send(message)
                finally:
                    self.record(scope["path"], status, took)
                return
            await send(message)

        await app(scope, receive, timed_send)

    def record(self, path: str, status: int, seconds: float) -> None:
        """Count one answer to ``path`` with ``status`` that took ``seconds``."""
        series = self._series.get((path, status))
        if series is None:
            series = self._make(path, status)
        total, duration = series
        total.inc()
        duration.observe(seconds)
        self._last.set_to_current_time()

    def _make(self, path: str, status: int) -> tuple[Any, Any]:
        if self._last is None:
            self._define()
        endpoint = path if path in self._endpoints else self.UNROUTED
        labels = {"endpoint": endpoint, "http_response_code": str(status), **self._service}
        series = (self._total.labels(**labels), self._duration.labels(**labels))
        self._series[(path, status)] = series
        return series

    def _define(self) -> None:
        # Imported here: prometheus_client picks its storage at import (see above).
        import prometheus_client
        from bentoml._internal.context import server_context

        names = ["endpoint", "service_name", "service_version", "http_response_code", "runner_name"]
        self._service = {
            "service_name": server_context.bento_name,
            "service_version": server_context.bento_version,
            "runner_name": str(server_context.service_name),
        }
        self._total = prometheus_client.Counter(
            "request_total", "Total number of runner RPC",
            labelnames=names, namespace=self._namespace, registry=self._registry,
        )  # fmt: skip
        self._duration = prometheus_client.Histogram(
            "request_duration_seconds", "runner RPC duration in seconds",
            labelnames=names, namespace=self._namespace, buckets=self._buckets,
            registry=self._registry,
        )  # fmt: skip
        self._last = prometheus_client.Gauge(
            "last_request_timestamp_seconds", "Timestamp of the last received request",
            labelnames=["service_name", "service_version", "runner_name"],
            namespace=self._namespace, registry=self._registry,
        ).labels(**self._service)  # fmt: skip
