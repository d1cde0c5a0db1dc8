"""The BentoML service every governed model version is built into.

One file serves any version: the model to load is a Bento argument given at build time
(``bentoml build --arg model_tag=fraud:3``), so the Bento carries its own model store entry
(ONNX model + ``meta.json``) and nothing here is edited per version. The hot path is a lean
Starlette app mounted on the BentoML service (BentoML still builds, serves and containerizes
it, and still answers ``/livez``, ``/readyz`` and ``/metrics``); it never touches the
governance database.

Prediction contract (DESIGN.md): ``POST /predict`` takes ``{"features": [f1..fn]}`` in schema
order or ``{"features": {"name": value, ...}}`` and answers
``{"score": 0.93, "label": 1, "model": "fraud", "model_version": "3"}``. Every malformed
request is a 400 naming the problem; bodies over the limit are a 413; a Bento whose model
does not score its canary row as recorded answers every prediction with a 503. Each
response leaves in one write (OneWriteHttpProtocol).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import math
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import bentoml
import numpy as np
import onnxruntime as ort
import orjson
from bentoml import get_current_service  # bound once: bentoml.<name> is a lazy lookup
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http import auto as uvicorn_auto
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBER_TYPES = (int, float)
_NUMBERS = frozenset(_NUMBER_TYPES)
_NON_FINITE = re.compile(rb"NaN|Infinity|\d[eE]\+?\d{3,}")


class BentoArgs(BaseModel):
    """Values fixed when a version's Bento is built."""

    model_tag: str
    max_body_bytes: int = 1_048_576
    max_batch_rows: int = 1024


class InputError(ValueError):
    """A request the model cannot score; the message names the field and the problem."""


class Scorer:
    """An ONNX model plus its schema: validates inputs and scores them with onnxruntime."""

    def __init__(self, model_dir: Path, *, name: str, version: str, expected_sha256: str) -> None:
        onnx_path = model_dir / "model.onnx"
        self.sha256 = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
        if self.sha256 != expected_sha256:
            raise RuntimeError(
                f"refusing to serve {name}:{version}: model sha256 {self.sha256[:12]} differs "
                f"from the approved {expected_sha256[:12]}"
            )
        meta = json.loads((model_dir / "meta.json").read_text())
        self.name = name
        self.version = version
        self.feature_names: list[str] = meta["feature_names"]
        self.threshold = float(meta["threshold"])
        self._index = {feature: i for i, feature in enumerate(self.feature_names)}
        self._canary = (meta["reference_rows"][0], float(meta["reference_scores"][0]))
        options = ort.SessionOptions()
        # One row at a time: thread pools cost more in hand-offs than they gain.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._outputs = ["probabilities"]
        # The one-row input, refilled in place by every /predict (the event loop runs one
        # handler at a time, and scoring never awaits).
        self._one = np.zeros((1, len(self.feature_names)), dtype=np.float32)
        self._one_feed = {self._input: self._one}
        self._identity = {"model": name, "model_version": version}

    def canary_ok(self, tolerance: float = 1e-5) -> bool:
        """Score the recorded canary row; True if it matches the score recorded at import."""
        row, expected = self._canary
        return abs(self.score_rows(np.asarray([row], dtype=np.float32))[0] - expected) <= tolerance

    def row(self, features: Any, where: str = "features") -> list[float]:
        """One row in schema order from a list or a name→value mapping; InputError if bad."""
        if isinstance(features, list):
            if len(features) != len(self.feature_names):
                raise InputError(
                    f"{where}: expected {len(self.feature_names)} features, got {len(features)}"
                )
            values = features
        elif isinstance(features, dict):
            values = self._ordered(features, where)
        else:
            raise InputError(f"{where}: expected a list or an object of feature values")
        # Fast path, C loops only: every value an int or float (not bool: type() is exact),
        # all within float32's finite range (a NaN fails the comparison).
        if _NUMBERS.issuperset(map(type, values)) and (
            np.abs(np.array(values, dtype=np.float64)).max() <= _FLOAT32_MAX
        ):
            return values
        # Slow path: find the first bad value and name it.
        for i, value in enumerate(values):
            if type(value) not in _NUMBER_TYPES:
                raise InputError(
                    f"{where}: {self._label(i)} must be a number, got {_json_type(value)}"
                )
            if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
                raise InputError(
                    f"{where}: {self._label(i)} must be a finite number within float32 range "
                    f"(|x| <= {_FLOAT32_MAX:.7g})"
                )
        return values

    def _ordered(self, features: dict[str, Any], where: str) -> list[Any]:
        unknown = [name for name in features if name not in self._index]
        if unknown:
            raise InputError(f"{where}: unknown feature(s): {', '.join(sorted(unknown)[:10])}")
        if len(features) != len(self.feature_names):
            missing = [name for name in self.feature_names if name not in features]
            raise InputError(f"{where}: missing feature(s): {', '.join(missing[:10])}")
        return [features[name] for name in self.feature_names]

    def _label(self, i: int) -> str:
        return f"feature {i} ({self.feature_names[i]})"

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        """Fraud probabilities for a float32 matrix of rows in schema order."""
        return self._session.run(self._outputs, {self._input: rows})[0][:, 1]

    def score_one(self, row: list[float]) -> float:
        """The fraud probability of one checked row (see :meth:`row`), without allocating
        the input: the row is copied into a buffer the session reads."""
        self._one[0] = row
        return float(self._session.run(self._outputs, self._one_feed)[0][0, 1])

    def identity(self) -> dict[str, Any]:
        """``model`` and ``model_version`` of every answer (one dict, spread into each)."""
        return self._identity

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "threshold": self.threshold,
            "feature_names": self.feature_names,
        }


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )


def _ok(payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


_JSON_HEADERS = ((b"content-type", b"application/json"),)


async def _respond(send: Send, status: int, body: bytes) -> None:
    """Send a whole JSON response (what Starlette's Response would, minus the object)."""
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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


async def _read_json(scope: Scope, receive: Receive, limit: int) -> Any:
    """The ``features`` of a JSON request body; InputError or _TooLarge if there are none."""
    body = await _read_body(scope, receive, limit)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        hint = " (NaN and Infinity are not numbers in JSON)" if _NON_FINITE.search(body) else ""
        raise InputError(f"malformed JSON: {exc}{hint}") from None
    if not isinstance(document, dict) or "features" not in document:
        raise InputError('body must be a JSON object with a "features" field')
    return document["features"]


class _TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")


class _Disconnected(Exception):
    """The client went away before its body arrived: nobody to answer."""


def _scorer() -> Scorer:
    return get_current_service().scorer


def _serving_scorer() -> Scorer | None:
    """The scorer, or None if this Bento failed its canary check (it must not predict)."""
    service = get_current_service()
    return service.scorer if service.ready else None


async def _refuse_unready(send: Send) -> None:
    await _respond(send, 503, get_current_service().refusal)


class _Endpoint:
    """A plain ASGI function as a Starlette route endpoint: routed (404/405 as before), but
    without a Request, a Response and their exception wrappers per call. (Starlette takes a
    bare function for a request handler, hence the class.)"""

    def __init__(self, handler: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler(scope, receive, send)


async def predict(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /predict``: one row. An _Endpoint: it answers thousands of times a second."""
    scorer = _serving_scorer()
    if scorer is None:
        return await _refuse_unready(send)
    try:
        row = scorer.row(await _read_json(scope, receive, ARGS.max_body_bytes))
    except InputError as exc:
        return await _respond(send, 400, orjson.dumps({"error": str(exc)}))
    except _TooLarge as exc:
        return await _respond(send, 413, orjson.dumps({"error": str(exc)}))
    except _Disconnected:
        return None
    score = scorer.score_one(row)
    answer = {"score": score, "label": int(score >= scorer.threshold), **scorer.identity()}
    await _respond(send, 200, orjson.dumps(answer))


async def predict_batch(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /predict_batch``: up to ``max_batch_rows`` rows scored in one session run."""
    scorer = _serving_scorer()
    if scorer is None:
        return await _refuse_unready(send)
    try:
        features = await _read_json(scope, receive, ARGS.max_body_bytes)
        if not isinstance(features, list) or not features:
            raise InputError("features: expected a non-empty list of rows")
        if len(features) > ARGS.max_batch_rows:
            raise InputError(f"features: at most {ARGS.max_batch_rows} rows, got {len(features)}")
        rows = [scorer.row(item, f"features[{i}]") for i, item in enumerate(features)]
    except InputError as exc:
        return await _respond(send, 400, orjson.dumps({"error": str(exc)}))
    except _TooLarge as exc:
        return await _respond(send, 413, orjson.dumps({"error": str(exc)}))
    except _Disconnected:
        return None
    scores = scorer.score_rows(np.asarray(rows, dtype=np.float32)).astype(float)
    answer = {
        "scores": scores.tolist(),
        "labels": (scores >= scorer.threshold).astype(int).tolist(),
        **scorer.identity(),
    }
    await _respond(send, 200, orjson.dumps(answer))


async def model_info(request: Request) -> Response:
    return _ok(_scorer().describe())


async def openapi(request: Request) -> Response:
    return _ok(openapi_document(_scorer(), ARGS.max_batch_rows))


def openapi_document(scorer: Scorer, max_batch_rows: int) -> dict[str, Any]:
    """The OpenAPI 3 description of this version's prediction API (its exact schema)."""
    n = len(scorer.feature_names)
    number = {"type": "number"}
    # What the model takes: a float32 (the service refuses larger magnitudes).
    feature = {"type": "number", "minimum": -_FLOAT32_MAX, "maximum": _FLOAT32_MAX}
    row = {
        "oneOf": [
            {"type": "array", "items": feature, "minItems": n, "maxItems": n},
            {
                "type": "object",
                "properties": {name: feature for name in scorer.feature_names},
                "required": scorer.feature_names,
                "additionalProperties": False,
            },
        ]
    }
    error = {
        "description": "What is wrong: the request (400, 413), or this Bento, which failed "
        "its canary check at start-up and predicts nothing (503)",
        "content": _json_body(
            {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
        ),
    }
    identity = {"model": {"type": "string"}, "model_version": {"type": "string"}}
    return {
        "openapi": "3.0.3",
        "info": {"title": f"{scorer.name} model", "version": scorer.version},
        "paths": {
            "/predict": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": _json_body(
                            {
                                "type": "object",
                                "properties": {"features": row},
                                "required": ["features"],
                            }
                        ),
                    },
                    "responses": {
                        "200": {
                            "description": "The score",
                            "content": _json_body(
                                {
                                    "type": "object",
                                    "properties": {
                                        "score": number,
                                        "label": {"type": "integer"},
                                        **identity,
                                    },
                                    "required": ["score", "label", "model", "model_version"],
                                }
                            ),
                        },
                        "400": error,
                        "413": error,
                        "503": error,
                    },
                }
            },
            "/predict_batch": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": _json_body(
                            {
                                "type": "object",
                                "properties": {
                                    "features": {
                                        "type": "array",
                                        "items": row,
                                        "minItems": 1,
                                        "maxItems": max_batch_rows,
                                    }
                                },
                                "required": ["features"],
                            }
                        ),
                    },
                    "responses": {
                        "200": {
                            "description": "The scores",
                            "content": _json_body(
                                {
                                    "type": "object",
                                    "properties": {
                                        "scores": {"type": "array", "items": number},
                                        "labels": {"type": "array", "items": {"type": "integer"}},
                                        **identity,
                                    },
                                    "required": ["scores", "labels", "model", "model_version"],
                                }
                            ),
                        },
                        "400": error,
                        "413": error,
                        "503": error,
                    },
                }
            },
            "/model": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "Name, version, sha256, features, threshold",
                            "content": _json_body({"type": "object"}),
                        }
                    }
                }
            },
        },
    }


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


app = Starlette(
    routes=[
        Route("/predict", _Endpoint(predict), methods=["POST"]),
        Route("/predict_batch", _Endpoint(predict_batch), methods=["POST"]),
        Route("/model", model_info, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
)

ARGS = bentoml.use_arguments(BentoArgs)

# Request-latency histogram bounds (seconds). A prediction takes well under a millisecond;
# BentoML's default buckets start at 5 ms and would put every request in the first one.
LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


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


class _HeadWithBody:
    """A transport that sends an HTTP response head in the same ``send()`` as its body, with
    the server's own time for the request in a ``Server-Timing`` header.

    uvicorn writes a response in two calls, head then body, with BentoML's metrics code in
    between. A replica killed between the two has already sent HAProxy a response head:
    HAProxy has forwarded it and cannot retry, so the client reads a cut response. Held
    back until the body's write, the head leaves with it: a replica killed at any instant
    has sent the whole response or nothing (which HAProxy retries on another replica), for
    every response the socket takes in one ``send()`` (a prediction's few hundred bytes; a
    large batch answer can still be split by the kernel). A head that no write follows
    (HEAD, 204, a stream's late first chunk) leaves at the end of this pass of the loop.

    ``Server-Timing: svc;dur=<ms>`` is the time from the moment the request's first bytes
    were parsed (``started_ns``, set by the protocol) to this write: BentoML's stack, the
    body's parse, the input check, the score and the answer's serialization; not the time
    the request waited in the socket before the event loop read it. The gate judges
    regressions on it (loadtest/): it is what the service costs, without the load
    generator's or the proxy's share.
    """

    __slots__ = ("_head", "_loop", "_transport", "started_ns")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None
        self.started_ns = 0

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._timed(self._head) + data, None
        elif data.startswith(b"HTTP/") and data.endswith(b"\r\n\r\n"):
            self._head = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def _timed(self, head: bytes) -> bytes:
        """``head`` with the Server-Timing header (its blank line moved after it)."""
        dur_ms = (perf_counter_ns() - self.started_ns) / 1e6
        return head[:-2] + b"server-timing: svc;dur=%.3f\r\n\r\n" % dur_ms

    def writelines(self, lines: list[bytes]) -> None:
        self.write(b"".join(lines))

    def flush(self) -> None:
        """Send a held head now (no-op if none)."""
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._head = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, get_extra_info, pause_reading, ...) is the socket's.
        return getattr(self._transport, name)


class OneWriteHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, each response sent in one write with its server time
    (see _HeadWithBody)."""

    transport: _HeadWithBody  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_HeadWithBody(transport, self.loop))  # type: ignore[arg-type]

    def on_message_begin(self) -> None:
        self.transport.started_ns = perf_counter_ns()
        super().on_message_begin()


# BentoML 1.4 builds its uvicorn.Config itself (``http="auto"``) and offers no hook for the
# protocol class; uvicorn resolves "auto" to this attribute when the worker starts serving,
# after it has imported this module.
uvicorn_auto.AutoHTTPProtocol = OneWriteHttpProtocol


@bentoml.asgi_app(app, path="/")
@bentoml.service(
    name="bentogate_model",
    # BentoML's timeout keeps a timer (and a future) per request alive this long; under
    # load they fill the oldest GC generation, and full collections grew to tens of ms at
    # 10 s (bench/README.md). 2 s is still far above any prediction, and below HAProxy's
    # `timeout server`, which answers the client first anyway.
    traffic={"timeout": 2},
    metrics={
        "enabled": True,
        "namespace": "bentoml_service",
        "duration": {"buckets": list(LATENCY_BUCKETS_S)},
    },
    # Per-request costs that buy nothing here (measured in-process, bench/README.md): an
    # OpenTelemetry span per prediction (~200 us of CPU; no exporter is configured) and an
    # access-log line (~20-40 us). HAProxy in front counts and times every request.
    tracing={"excluded_urls": ["/predict"]},  # a regex: /predict_batch too
    logging={"access": {"enabled": False}},
)
class ModelService:
    """Serves the one model version this Bento was built for."""

    model_ref = bentoml.models.BentoModel(ARGS.model_tag)

    def __init__(self) -> None:
        stored = self.model_ref
        metadata = stored.info.metadata
        self.scorer = Scorer(
            Path(stored.path),
            name=str(metadata["model"]),
            version=str(metadata["version"]),
            expected_sha256=str(metadata["sha256"]),
        )
        # Ready only once the canary row scores as recorded at import: a broken or altered
        # model never reports ready, refuses every prediction (503, also on its own port),
        # and HAProxy's check (the same row) never marks it UP.
        self.ready = self.scorer.canary_ok()
        self.refusal = orjson.dumps(
            {
                "error": f"{self.scorer.name}:{self.scorer.version} does not score its canary "
                "row as recorded at registration: it serves no prediction"
            }
        )
        publish_identity(self.scorer)
        # Everything loaded so far lives as long as the process: move it out of the
        # collector's reach, so full collections stay short (tail latency).
        gc.collect()
        gc.freeze()

    def __is_ready__(self) -> bool:
        return self.ready
