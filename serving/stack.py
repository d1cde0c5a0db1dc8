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

Nothing here changes BentoML on import: :func:`install_lean_stack` does, called by
service.py where BentoML's worker imports it, before the worker builds the app.
"""

from __future__ import annotations

from typing import Any


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


def install_lean_stack() -> None:
    """Serve every service this process builds without :func:`left_out`'s layers
    (idempotent: the filter always starts from BentoML's own list)."""
    from _bentoml_impl.server.app import ServiceAppFactory

    bentoml_stack = getattr(ServiceAppFactory, "_bentoml_middlewares", None)
    if bentoml_stack is None:
        bentoml_stack = ServiceAppFactory.middlewares
        ServiceAppFactory._bentoml_middlewares = bentoml_stack  # type: ignore[attr-defined]
    dropped = left_out()

    def lean_stack(factory: ServiceAppFactory) -> list[Any]:
        return [layer for layer in bentoml_stack.fget(factory) if layer.cls not in dropped]

    ServiceAppFactory.middlewares = property(lean_stack)  # type: ignore[method-assign,assignment]
