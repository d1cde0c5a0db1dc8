"""Which of BentoML's layers wrap a Bento (serving/stack.py), and the requests the app counts
in their place (serving/metrics.py's RequestMetrics)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from serving import RequestMetrics
from serving.stack import DirectRoutes

PROJECT_DIR = Path(__file__).resolve().parents[3]


def test_the_lean_stack_leaves_out_only_bentomls_four_per_request_layers() -> None:
    # In a process of its own: installing changes BentoML for the process.
    check = textwrap.dedent(
        """
        import bentoml
        from starlette.middleware.gzip import GZipMiddleware
        import serving
        from serving.stack import DirectRoutes, left_out

        @bentoml.service(http={"cors": {"enabled": True, "access_control_allow_origins": ["*"]}},
                         traffic={"timeout": 2, "max_concurrency": 8})
        class Probe:
            @bentoml.api
            def ping(self) -> str:
                return "pong"

        Probe.add_asgi_middleware(GZipMiddleware)

        def layers():
            return [m.cls.__name__ for m in Probe.to_asgi(is_main=True).user_middleware]

        full = layers()
        serving.install_lean_stack()
        serving.install_lean_stack()  # idempotent
        lean = layers()
        dropped = sorted(cls.__name__ for cls in left_out())
        assert sorted(set(full) - set(lean)) == dropped, (full, lean)
        assert lean == [name for name in full if name not in dropped], (full, lean)
        assert {"MaxConcurrencyMiddleware", "GZipMiddleware", "CORSMiddleware"} <= set(lean), lean
        # Direct routes: innermost, inside every layer a user configures; once however
        # often installed.
        serving.install_lean_stack(direct={("POST", "/ping"): object()})
        serving.install_lean_stack(direct={("POST", "/ping"): object()})
        assert layers() == [*lean, DirectRoutes.__name__], layers()
        """
    )
    subprocess.run([sys.executable, "-c", check], cwd=PROJECT_DIR, check=True, timeout=120)


class _Recorded(RequestMetrics):
    """RequestMetrics whose answers are listed instead of sent to prometheus_client."""

    answers: list[tuple[str, int]]

    def record(self, path: str, status: int, seconds: float) -> None:
        assert 0.0 <= seconds < 5.0
        self.answers.append((path, status))


def _call(app: Any, path: str, messages: list[dict[str, Any]], method: str = "GET") -> None:
    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(app(scope, receive, send))


@pytest.mark.parametrize(("path", "status"), [("/ok", 200), ("/bad", 400), ("/nowhere", 404)])
def test_each_answer_is_counted_once_with_its_status_after_its_last_body(
    path: str, status: int
) -> None:
    async def ok(request: Any) -> Response:
        return Response(b"{}", status_code=200)

    async def bad(request: Any) -> Response:
        return Response(b"{}", status_code=400)

    app = _Recorded(
        Starlette(routes=[Route("/ok", ok), Route("/bad", bad)]),
        namespace="test",
        buckets=(0.001, 1.0),
    )
    app.answers = []
    sent: list[dict[str, Any]] = []
    _call(app, path, sent)
    assert sent[0]["status"] == status
    assert app.answers == [(path, status)]


async def _ok(request: Any) -> Response:
    return Response(b"{}")


def _counted_ok(registry: prometheus_client.CollectorRegistry) -> RequestMetrics:
    """RequestMetrics (namespace "ns") over an app whose one route, ``/ok``, answers 200."""
    app = Starlette(routes=[Route("/ok", _ok)])
    return RequestMetrics(app, namespace="ns", buckets=(1.0,), registry=registry)


def _samples(registry: prometheus_client.CollectorRegistry) -> list[Any]:
    return [sample for family in registry.collect() for sample in family.samples]


def test_paths_no_route_serves_share_one_series_under_bentomls_names() -> None:
    registry = prometheus_client.CollectorRegistry()
    app = _counted_ok(registry)
    for path in ("/ok", "/a", "/b", "/ok", "/c"):
        _call(app, path, [])
    samples = _samples(registry)
    counts = {
        (s.labels["endpoint"], s.labels["http_response_code"]): s.value
        for s in samples
        if s.name == "ns_request_total"
    }
    assert counts == {("/ok", "200"): 2.0, (RequestMetrics.UNROUTED, "404"): 3.0}
    timed = sum(s.value for s in samples if s.name == "ns_request_duration_seconds_count")
    assert timed == 5.0
    assert any(s.name == "ns_last_request_timestamp_seconds" and s.value > 0 for s in samples)


def test_an_answer_is_recorded_once_its_last_body_is_sent_and_also_if_sending_fails() -> None:
    registry = prometheus_client.CollectorRegistry()
    app = _counted_ok(registry)

    def answered() -> float:
        return sum(s.value for s in _samples(registry) if s.name == "ns_request_total")

    scope = {"type": "http", "method": "GET", "path": "/ok", "headers": [], "query_string": b""}
    seen_while_sending: list[float] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            seen_while_sending.append(answered())
            raise OSError("the client went away")

    with pytest.raises(OSError):
        asyncio.run(app(scope, receive, send))
    assert seen_while_sending == [0.0]  # not yet counted while the answer was being sent
    assert answered() == 1.0


class _Endpoint:
    """A plain ASGI endpoint (Starlette calls it as it is), answering 201."""

    calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def test_direct_routes_are_the_plain_asgi_endpoints_by_method_and_path() -> None:
    async def info(request: Any) -> Response:
        return Response(b"{}")

    endpoint = _Endpoint()
    app = _Recorded(
        Starlette(routes=[Route("/score", endpoint, methods=["POST"]), Route("/info", info),
                          Route("/items/{item}", _Endpoint(), methods=["POST"])]),
        namespace="test", buckets=(1.0,),
    )  # fmt: skip
    # A function endpoint needs Starlette's Request and exception handlers; a path with
    # parameters needs the router: neither is direct.
    assert set(app.direct_routes()) == {("POST", "/score")}


@pytest.mark.parametrize(
    ("method", "path", "status", "direct"),
    [("POST", "/score", 201, True), ("GET", "/score", 405, False), ("POST", "/other", 404, False)],
)
def test_a_direct_route_skips_routing_and_is_counted_as_a_routed_request_is(
    method: str, path: str, status: int, direct: bool
) -> None:
    endpoint = _Endpoint()
    app = _Recorded(
        Starlette(routes=[Route("/score", endpoint, methods=["POST"])]),
        namespace="test", buckets=(1.0,),
    )  # fmt: skip
    app.answers = []
    routed: list[str] = []

    async def router(scope: Any, receive: Any, send: Any) -> None:
        routed.append(scope["path"])
        await app(scope, receive, send)

    sent: list[dict[str, Any]] = []
    _call(DirectRoutes(router, app.direct_routes()), path, sent, method)
    assert sent[0]["status"] == status
    assert app.answers == [(path, status)]
    assert endpoint.calls == (1 if status == 201 else 0)
    assert routed == ([] if direct else [path])
