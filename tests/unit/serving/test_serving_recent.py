"""Recent client rows kept for shadow scoring: bounded in rows and age, clients' rows only."""

from __future__ import annotations

import asyncio
import io
from collections.abc import MutableMapping
from typing import Any

import numpy as np
import orjson
import pytest

from bentogate.host import read_kept
from bentogate.modelimport import Artifact
from serving import RecentRequests, Scorer, prediction_app
from serving import recent as recent_module

Message = MutableMapping[str, Any]


def _row(*values: float) -> bytes:
    return np.asarray(values, dtype=np.float32).tobytes()


def _npy(matrix: np.ndarray) -> bytes:
    answer = io.BytesIO()
    np.save(answer, matrix)
    return answer.getvalue()


def _read(answer: bytes) -> list[list[float]]:
    """GET /_recent's answer as the host reads it: each row's values, its score last."""
    kept = read_kept(answer)
    assert len(kept.scores) == len(kept)
    return [
        [*map(float, row), float(score)] for row, score in zip(kept.rows, kept.scores, strict=True)
    ]


@pytest.mark.parametrize(
    "answer",
    [b"[]", b"", np.zeros(3, dtype=np.float32).tobytes(), _npy(np.zeros((2, 3))),
     _npy(np.zeros((2, 0), dtype=np.float32)), _npy(np.array(["a"]))],
)  # fmt: skip
def test_an_answer_that_is_not_rows_with_scores_is_refused(answer: bytes) -> None:
    with pytest.raises(ValueError):
        read_kept(answer)


def test_only_the_last_rows_are_kept_each_with_its_answered_score() -> None:
    kept = RecentRequests(rows=3, max_age_s=60)
    for i in range(5):
        kept.keep(_row(i, 0.5), i / 8)
    assert _read(kept.recent()) == [[2, 0.5, 0.25], [3, 0.5, 0.375], [4, 0.5, 0.5]]
    assert len(kept) == 3


def test_a_kept_row_reads_back_as_the_same_float32_values() -> None:
    """What shadow scoring replays is exactly what the model saw, and its score as answered."""
    values = np.random.default_rng(3).normal(0, 1e4, 220).astype(np.float32)
    kept = RecentRequests(rows=1, max_age_s=60)
    kept.keep(values.tobytes(), 0.123456789)
    [back] = _read(kept.recent())
    assert np.array_equal(np.asarray(back[:-1], dtype=np.float32), values)
    assert back[-1] == float(np.float32(0.123456789))


def test_rows_older_than_the_age_limit_are_not_handed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0]
    monkeypatch.setattr(recent_module, "monotonic_ns", lambda: clock[0])
    kept = RecentRequests(rows=10, max_age_s=2)
    kept.keep(_row(1), 0.25)
    clock[0] = 1_500_000_000
    kept.keep(_row(2), 0.5)
    clock[0] = 2_500_000_000  # [1] is 2.5 s old, [2] 1 s
    assert _read(kept.recent()) == [[2, 0.5]]
    assert _read(kept.recent(since_ns=1_600_000_000)) == []  # kept before that
    assert _read(kept.recent(since_ns=1_500_000_000)) == [[2, 0.5]]
    assert _read(RecentRequests(rows=0, max_age_s=1).recent()) == []


class _Running:
    ready = True
    refusal = b""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer


def _call(app: Any, method: str, path: str, body: bytes = b"", query: bytes = b"") -> Any:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query, "headers": [],
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_client_row_is_kept_in_schema_order_marked_or_batch_requests_are_not(
    artifact: Artifact,
) -> None:
    scorer = Scorer(artifact.directory, name="fraud", version="1", expected_sha256=artifact.sha256)
    kept = RecentRequests(rows=10, max_age_s=60)
    app = prediction_app(lambda: _Running(scorer), max_body_bytes=1 << 16, max_batch_rows=4,
                         recent=kept)  # fmt: skip
    row = [float(v) for v in artifact.canary_row]
    named = dict(zip(scorer.feature_names, row, strict=True))
    client = orjson.dumps({"features": named, "customer": "4111-1111"})  # extra field: not kept
    status, answer = _call(app, "POST", "/predict", client)
    assert status == 200
    assert _call(app, "POST", "/predict", client, query=b"from=check")[0] == 200
    assert _call(app, "POST", "/predict_batch", orjson.dumps({"features": [row]}))[0] == 200
    assert _call(app, "POST", "/predict", b'{"features": [1]}')[0] == 400  # refused: not kept
    status, kept_rows = _call(app, "GET", "/_recent")
    rows = _read(kept_rows)
    assert status == 200 and len(rows) == 1  # once, in schema order, nothing but the features
    assert np.array_equal(np.float32(rows[0][:-1]), np.float32(row))  # as the model read it
    assert rows[0][-1] == orjson.loads(answer)["score"]  # the score it was answered


@pytest.mark.parametrize(("query", "status"), [(b"since=0", 200), (b"", 200), (b"since=-1", 400),
                                               (b"since=soon", 400)])  # fmt: skip
def test_recent_rows_since_a_moment_of_the_hosts_monotonic_clock(
    artifact: Artifact, query: bytes, status: int
) -> None:
    scorer = Scorer(artifact.directory, name="fraud", version="1", expected_sha256=artifact.sha256)
    app = prediction_app(lambda: _Running(scorer), max_body_bytes=1 << 16, max_batch_rows=4,
                         recent=RecentRequests(rows=10, max_age_s=60))  # fmt: skip
    answered, body = _call(app, "GET", "/_recent", query=query)
    assert answered == status
    if status == 400:
        assert b"monotonic clock" in body
    else:
        assert _read(body) == []


def test_a_reader_may_take_only_the_newest_rows() -> None:
    """What the bake reads each look: at most ``limit`` rows, the newest, oldest first."""
    kept = RecentRequests(rows=10, max_age_s=60)
    for i in range(5):
        kept.keep(_row(i), i / 8)
    assert [r[0] for r in _read(kept.recent(limit=2))] == [3, 4]
    assert [r[0] for r in _read(kept.recent(limit=9))] == [0, 1, 2, 3, 4]
    assert _read(kept.recent(limit=0)) == []


@pytest.mark.parametrize(
    ("query", "status"),
    [(b"limit=1", 200), (b"since=0&limit=0", 200), (b"limit=-1", 400), (b"limit=all", 400)],
)
def test_recent_rows_at_most_a_limit(artifact: Artifact, query: bytes, status: int) -> None:
    scorer = Scorer(artifact.directory, name="fraud", version="1", expected_sha256=artifact.sha256)
    app = prediction_app(lambda: _Running(scorer), max_body_bytes=1 << 16, max_batch_rows=4,
                         recent=RecentRequests(rows=10, max_age_s=60))  # fmt: skip
    row = orjson.dumps({"features": [float(v) for v in artifact.canary_row]})
    for _ in range(3):
        assert _call(app, "POST", "/predict", row)[0] == 200
    answered, body = _call(app, "GET", "/_recent", query=query)
    assert answered == status
    if status == 400:
        assert b"the most rows to answer" in body
    else:
        assert len(_read(body)) == int(query.decode().rpartition("=")[2])
