"""The prediction endpoints' raw ASGI path: what a request gets sent, and what it reads."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette

from bentogate.modelimport import Artifact
from serving import Scorer, prediction_app

Message = MutableMapping[str, Any]
LIMIT = 16384  # a few rows of the 220-feature schema (about 4 KiB each) fit


@dataclass
class _Running:
    """What BentoML's service instance offers the endpoints (serving.Serving)."""

    scorer: Scorer
    ready: bool = True
    refusal: bytes = b'{"error":"not ready"}'


@pytest.fixture(scope="module")
def running(artifact: Artifact) -> _Running:
    scorer = Scorer(artifact.directory, name="fraud", version="1", expected_sha256=artifact.sha256)
    return _Running(scorer)


@pytest.fixture
def app(running: _Running) -> Starlette:
    return prediction_app(lambda: running, max_body_bytes=LIMIT, max_batch_rows=2)


def _post(
    app: Starlette, path: str, messages: list[Message], length: int | None = None
) -> tuple[list[Message], int]:
    """POST to ``path``, the request arriving as ``messages``; what the app sent, and how
    many messages it received."""
    received = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal received
        received += 1
        return messages[received - 1]

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [] if length is None else [(b"content-length", str(length).encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": headers,
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    return sent, received


def _body(document: Any) -> list[Message]:
    return [{"type": "http.request", "body": orjson.dumps(document), "more_body": False}]


def _answer(sent: list[Message]) -> tuple[int, list[tuple[bytes, bytes]], Any]:
    start, body = sent
    return start["status"], start["headers"], orjson.loads(body["body"])


def test_a_prediction_is_one_json_answer_with_its_length(
    app: Starlette, running: _Running, artifact: Artifact
) -> None:
    sent, _ = _post(app, "/predict", _body({"features": artifact.canary_row}))
    status, headers, answer = _answer(sent)
    score = running.scorer.score_one(artifact.canary_row)
    expected = {"score": score, "label": int(score >= 0.5), "model": "fraud", "model_version": "1"}
    assert (status, answer) == (200, expected)
    assert headers == [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(sent[1]["body"])).encode()),
    ]


def test_a_body_past_the_limit_is_413_and_read_no_further(app: Starlette) -> None:
    declared, received = _post(app, "/predict", _body({}), length=LIMIT + 1)
    assert (_answer(declared)[0], received) == (413, 0)  # refused on its Content-Length
    chunk = {"type": "http.request", "body": b" " * (LIMIT // 2 + 1), "more_body": True}
    streamed, received = _post(app, "/predict", [chunk, chunk, chunk])
    status, _, answer = _answer(streamed)
    assert (status, received) == (413, 2)  # refused at the chunk that crossed the limit
    assert answer == {"error": f"request body larger than {LIMIT} bytes"}


def test_a_client_gone_before_its_body_gets_no_answer(app: Starlette) -> None:
    sent, _ = _post(app, "/predict", [{"type": "http.disconnect"}])
    assert sent == []


@pytest.mark.parametrize("path", ["/predict", "/predict_batch"])
def test_an_unready_service_refuses_without_reading(
    app: Starlette, running: _Running, path: str
) -> None:
    running.ready = False
    try:
        sent, received = _post(app, path, _body({"features": []}))
    finally:
        running.ready = True
    assert (_answer(sent)[0], sent[1]["body"], received) == (503, running.refusal, 0)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (lambda row: [row, row[:3]], "features[1]: expected 220 features, got 3"),
        (lambda row: [row, row, row], "features: at most 2 rows, got 3"),
        (lambda row: [], "features: expected a non-empty list of rows"),
    ],
)
def test_a_bad_batch_is_400_naming_the_row(
    app: Starlette, artifact: Artifact, rows: Any, message: str
) -> None:
    sent, _ = _post(app, "/predict_batch", _body({"features": rows(artifact.canary_row)}))
    assert _answer(sent)[::2] == (400, {"error": message})


class _Broken(Scorer):
    """A model that scores ``value`` whatever the input (a fault the contract must name)."""

    value = float("nan")

    def score_one(self, row: Any) -> float:
        return self.value

    def score_rows(self, rows: Any) -> Any:
        scores = super().score_rows(rows)
        scores[-1] = self.value
        return scores


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.5, 1.5])
def test_a_score_that_is_not_a_probability_is_a_500_naming_it(
    artifact: Artifact, value: float
) -> None:
    broken = _Broken(artifact.directory, name="fraud", version="1", expected_sha256=artifact.sha256)
    broken.value = value
    app = prediction_app(lambda: _Running(broken), max_body_bytes=LIMIT, max_batch_rows=2)
    status, _, answer = _answer(_post(app, "/predict", _body({"features": artifact.canary_row}))[0])
    assert status == 500
    assert answer == {"error": f"the model scored {value} for this row: not a probability"}
    rows = [artifact.canary_row, artifact.canary_row]
    status, _, answer = _answer(_post(app, "/predict_batch", _body({"features": rows}))[0])
    assert status == 500
    assert answer["error"].startswith(f"the model scored {value} for row 1 (1 of 2 rows)")
