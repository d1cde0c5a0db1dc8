"""Which of BentoML's per-request layers wrap a bentogate Bento.

BentoML wraps every service's ASGI app in the same stack of middleware, whatever the
service needs. Four of its layers cost a fraud-scoring request more than the service's own
work (parse, check 220 values, score: ≈ 30 µs) and buy it nothing; measured in-process, one
``POST /predict`` through BentoML's whole app, each layer left out alone (bench/README.md,
"The framework tax"):

- ``TimeoutMiddleware`` (a task, a future and a timer per request): it cannot interrupt a
  synchronous score, and HAProxy's ``timeout server`` answers the client and closes the
  Bento's connection first;
- ``RunnerTrafficMetricsMiddleware`` (request count, duration, last request): recorded by
  :class:`serving.metrics.RequestMetrics` under the same names and labels, each series made
  once instead of looked up three times per request;
- ``ContextMiddleware`` (a Starlette ``Request`` and BentoML's request context per
  request): no endpoint of this service reads ``bentoml.Context``;
- ``OpenTelemetryMiddleware`` (a tracing span per request; the prediction paths were
  already excluded): no exporter is configured for a Bento.

What BentoML serves besides the app (``/livez``, ``/readyz``, ``/metrics``), its lifespan
(the service's creation and the model's load) and every layer a user configures (CORS,
``max_concurrency``, middleware added to the service) stay as they are.

Routing itself costs a prediction more than it needs: BentoML's router tries its own routes
(``/livez``, ``/metrics``, ...) before the mount that holds the service's app, whose own
Starlette app then routes again, each app behind its own error and exception layers.
:class:`DirectRoutes`, the innermost layer (inside every layer a user configures), sends a
request whose method and path name a prediction endpoint (or the host's own ``/_recent``
and ``/_latency``) straight to it; everything else goes on to BentoML's router as before
(a wrong method, ``/predict/``, any other path).

Nothing here changes BentoML on import: :func:`install_lean_stack` does, called by
service.py where BentoML's worker imports it, before the worker builds the app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


def left_out() -> frozenset[type]:
    """BentoML's layers a bentogate Bento is served without (see the module docstring).
    Imported here, not at the top: importing ``serving`` stays light (≈ 0.7 s of BentoML's
    server modules otherwise) for whatever uses its scorer outside a Bento."""
    from _bentoml_impl.server.app import ContextMiddleware
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
    from bentoml._internal.server.http.traffic import TimeoutMiddleware
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    layers = (TimeoutMiddleware, RunnerTrafficMetricsMiddleware, ContextMiddleware)
    return frozenset({*layers, OpenTelemetryMiddleware})


class DirectRoutes:
    """A layer sending an HTTP request for one of ``routes`` (method, path) straight to its
    ASGI app, any other request on to ``app``. The paths are the ones BentoML's app sees: the
    service's app is mounted at ``/`` (service.py)."""

    __slots__ = ("_app", "_routes")

    def __init__(self, app: ASGIApp, routes: Mapping[tuple[str, str], ASGIApp]) -> None:
        self._app = app
        self._routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self._routes.get((scope["method"], scope["path"]))
            if endpoint is not None:
                return await endpoint(scope, receive, send)
        await self._app(scope, receive, send)


def install_lean_stack(direct: Mapping[tuple[str, str], ASGIApp] | None = None) -> None:
    """Serve every service this process builds without :func:`left_out`'s layers and with
    ``direct`` routes (:class:`DirectRoutes`) innermost; idempotent: the stack is always
    made from BentoML's own list."""
    from _bentoml_impl.server.app import ServiceAppFactory
    from starlette.middleware import Middleware

    bentoml_stack = getattr(ServiceAppFactory, "_bentoml_middlewares", None)
    if bentoml_stack is None:
        bentoml_stack = ServiceAppFactory.middlewares
        ServiceAppFactory._bentoml_middlewares = bentoml_stack  # type: ignore[attr-defined]
    dropped = left_out()

    innermost = [Middleware(DirectRoutes, routes=direct)] if direct else []

    def lean_stack(factory: ServiceAppFactory) -> list[Any]:
        kept = [layer for layer in bentoml_stack.fget(factory) if layer.cls not in dropped]
        return kept + innermost

    ServiceAppFactory.middlewares = property(lean_stack)  # type: ignore[method-assign,assignment]
