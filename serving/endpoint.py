"""The prediction API as one Starlette app: ``POST /predict`` and ``POST /predict_batch`` on
a raw ASGI fast path, ``GET /model`` and ``GET /openapi.json`` as ordinary routes.

``/predict`` answers thousands of times a second: a request costs the body's parse, the
input check, one session run and one ``orjson.dumps``, and as little else as can be: no
Request or Response object, no exception wrappers, and what it needs (the running service,
the body limit) bound on its endpoint when the app is made.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from serving.contract import InputError, parse_features
from serving.metrics import PROMETHEUS_TEXT
from serving.openapi import openapi_document
from serving.recent import RecentRequests
from serving.scorer import Scorer

_Checked = TypeVar("_Checked")


class Serving(Protocol):
    """What the endpoints need of the running service (the BentoML service instance)."""

    scorer: Scorer
    ready: bool  # False: the model failed its canary check and must not predict
    refusal: bytes  # the 503 body it answers then (see canary_refusal)


def prediction_app(
    current: Callable[[], Serving],
    *,
    max_body_bytes: int,
    max_batch_rows: int,
    recent: RecentRequests | None = None,
    latency: Callable[[], bytes] | None = None,
) -> Starlette:
    """The service's ASGI app. ``current`` returns the running service: the app is made at
    import, before BentoML creates the service (and loads the model). With ``recent``, the
    rows of client ``/predict`` requests are kept there and ``GET /_recent`` answers them
    (``?since=`` a moment of the host's monotonic clock, ``&limit=`` the newest rows);
    with ``latency``, ``GET /_latency`` answers what it returns (a Prometheus text page:
    serving.metrics.latency_page)."""

    async def model_info(request: Request) -> Response:
        return _ok(current().scorer.describe())

    async def openapi(request: Request) -> Response:
        return _ok(openapi_document(current().scorer, max_batch_rows))

    one = _Prediction(current, max_body_bytes, Scorer.row, _answer_one, recent)
    check_batch = partial(Scorer.rows, max_rows=max_batch_rows)
    batch = _Prediction(current, max_body_bytes, check_batch, _answer_batch, None)
    routes = [
        Route("/predict", one, methods=["POST"]),
        Route("/predict_batch", batch, methods=["POST"]),
        Route("/model", model_info, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    if recent is not None:
        answer_recent = _HostRead(recent.answer, b"application/octet-stream")
        routes.append(Route("/_recent", answer_recent, methods=["GET"]))
    if latency is not None:
        latency_histogram = _HostRead(lambda query: latency(), PROMETHEUS_TEXT.encode())
        routes.append(Route("/_latency", latency_histogram, methods=["GET"]))
    return Starlette(routes=routes)


def canary_refusal(scorer: Scorer) -> bytes:
    """The 503 body of a Bento whose model does not score its canary row as recorded."""
    return orjson.dumps(
        {
            "error": f"{scorer.name}:{scorer.version} does not score its canary "
            "row as recorded at registration: it serves no prediction"
        }
    )


class _Prediction(Generic[_Checked]):
    """One prediction endpoint: refuse if unready, read the body, ``check`` its features
    (400 naming the problem), score and ``answer`` them.

    A plain ASGI callable as a Starlette route endpoint: routed (404/405 as before), but
    without a Request, a Response and their exception wrappers per call. (Starlette takes a
    bare function for a request handler, hence the class.)
    """

    __slots__ = ("_answer", "_check", "_current", "_keep", "_limit")

    def __init__(
        self,
        current: Callable[[], Serving],
        limit: int,
        check: Callable[[Scorer, Any], _Checked],
        answer: Callable[[Scorer, _Checked], dict[str, Any]],
        recent: RecentRequests | None,
    ) -> None:
        self._current = current
        self._limit = limit
        self._check = check
        self._answer = answer
        self._keep = recent.keep if recent is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = self._current()
        if not service.ready:
            return await _respond(send, 503, service.refusal)
        scorer = service.scorer
        try:
            body = await _read_body(scope, receive, self._limit)
            checked = self._check(scorer, parse_features(body))
        except InputError as exc:
            return await _respond(send, 400, orjson.dumps({"error": str(exc)}))
        except _TooLarge as exc:
            return await _respond(send, 413, orjson.dumps({"error": str(exc)}))
        except _Disconnected:
            return None
        try:
            answer = self._answer(scorer, checked)
        except NotAProbability as exc:
            # 500, never retried by the sidecar: the same input would fail on every replica.
            return await _respond(send, 500, orjson.dumps({"error": str(exc)}))
        # A client's row (only /predict keeps; marked requests are not clients'), taken
        # before the next await lets another request refill the scorer's input.
        keep = None if scope["query_string"] else self._keep
        row = scorer.last_row() if keep is not None else b""
        await _respond(send, 200, orjson.dumps(answer))
        if keep is not None:
            keep(row, answer["score"])


class _HostRead:
    """A ``GET`` for this host's own readers (``/_recent``, ``/_latency``): ``answer`` of the
    query string, or a 400 naming an InputError. A plain ASGI endpoint like _Prediction, so
    serving.stack.DirectRoutes reaches it without routing: a routed GET cost the Bento
    ≈ 0.4 ms, and the bake reads every live replica several times a second."""

    __slots__ = ("_answer", "_content_type")

    def __init__(self, answer: Callable[[bytes], bytes], content_type: bytes) -> None:
        self._answer = answer
        self._content_type = content_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = self._answer(scope["query_string"])
        except InputError as exc:
            return await _respond(send, 400, orjson.dumps({"error": str(exc)}))
        await _respond(send, 200, body, self._content_type)


def _answer_one(scorer: Scorer, row: np.ndarray) -> dict[str, Any]:
    """``POST /predict``: one checked row's score and label."""
    score = scorer.score_one(row)
    if not 0.0 <= score <= 1.0:  # NaN fails it too
        raise NotAProbability(f"the model scored {score} for this row: not a probability")
    return {"score": score, "label": int(score >= scorer.threshold), **scorer.identity()}


def _answer_batch(scorer: Scorer, rows: list[np.ndarray]) -> dict[str, Any]:
    """``POST /predict_batch``: up to ``max_batch_rows`` rows scored in one session run."""
    scores = scorer.score_rows(np.asarray(rows, dtype=np.float32)).astype(float)
    bad = np.flatnonzero(~((scores >= 0.0) & (scores <= 1.0)))  # NaN included
    if bad.size:
        raise NotAProbability(
            f"the model scored {scores[bad[0]]} for row {bad[0]} ({bad.size} of {scores.size} "
            "rows): not a probability"
        )
    return {
        "scores": scores.tolist(),
        "labels": (scores >= scorer.threshold).astype(int).tolist(),
        **scorer.identity(),
    }


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes = b"application/json"
) -> None:
    """Send a whole response (what Starlette's Response would, minus the object)."""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _ok(payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, refused (_TooLarge) past ``limit`` bytes, declared or streamed.

    Most bodies arrive in one message: that one is used as is, no copy.
    """
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise _TooLarge(limit)
            break
    message = await receive()
    body: bytes = message.get("body", b"")
    if message.get("more_body", False):
        chunks = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge(limit)
            chunks.append(chunk)
        body = b"".join(chunks)
    if message["type"] == "http.disconnect":
        raise _Disconnected
    if len(body) > limit:
        raise _TooLarge(limit)
    return body


class NotAProbability(RuntimeError):
    """The model returned a score outside [0, 1] (or NaN): a fault of the model, answered
    500 naming it, never ``"score": null`` with a 200."""


class _TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")


class _Disconnected(Exception):
    """The client went away before its body arrived: nobody to answer."""
