"""service.py's input contract and integrity checks, on a real ONNX artifact."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from bentogate.data import make_transactions, train_xgboost
from bentogate.modelimport import Artifact, import_xgboost

PROJECT_DIR = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def service() -> ModuleType:
    from bentoml._internal.configuration.containers import BentoMLContainer

    # What `bentoml serve` sets from the Bento's build arguments before importing service.py.
    BentoMLContainer.bento_arguments.set({"model_tag": "fraud:1"})
    spec = importlib.util.spec_from_file_location("bentogate_service", PROJECT_DIR / "service.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bentogate_service"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    data = make_transactions(2000, seed=5)
    path = tmp_path_factory.mktemp("m") / "m.json"
    train_xgboost(data, n_estimators=10, max_depth=3).save_model(str(path))  # type: ignore[attr-defined]
    return import_xgboost(path, data, tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="module")
def scorer(service: ModuleType, artifact: Artifact) -> Any:
    return service.Scorer(
        artifact.directory, name="fraud", version="1", expected_sha256=artifact.sha256
    )


def test_canary_scores_as_recorded(scorer: Any, artifact: Artifact) -> None:
    assert scorer.canary_ok()
    rows = artifact.reference_rows[:5]
    assert np.allclose(scorer.score_rows(rows), artifact.reference_scores[:5], atol=1e-5)


def test_named_and_ordered_inputs_score_the_same(scorer: Any, artifact: Artifact) -> None:
    row = artifact.canary_row
    named = dict(zip(artifact.feature_names, row, strict=True))
    assert scorer.row(named) == row
    assert scorer.row(list(reversed(row))) != row


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([1.0, 2.0], "expected 220 features, got 2"),
        ({"amount": 1.0}, "missing feature(s): amount_log"),
        ({"bogus": 1.0}, "unknown feature(s): bogus"),
        ("x", "expected a list or an object"),
        (["x"] + [0.0] * 219, "feature 0 (amount) must be a number, got a string"),
        ([None] + [0.0] * 219, "must be a number, got null"),
        ([True] + [0.0] * 219, "must be a number, got a boolean"),
        ([math.nan] + [0.0] * 219, "feature 0 (amount) must be a finite number"),
        ([0.0, math.inf] + [0.0] * 218, "feature 1 (amount_log) must be a finite number"),
        ([1e39] + [0.0] * 219, "must be a finite number"),
    ],
)
def test_bad_rows_are_refused_naming_the_problem(
    service: ModuleType, scorer: Any, features: Any, message: str
) -> None:
    with pytest.raises(service.InputError) as caught:
        scorer.row(features)
    assert message in str(caught.value)


def test_a_model_file_changed_after_approval_refuses_to_load(
    service: ModuleType, artifact: Artifact
) -> None:
    with pytest.raises(RuntimeError, match="differs from the approved"):
        service.Scorer(artifact.directory, name="fraud", version="1", expected_sha256="0" * 64)


def test_a_model_scoring_unlike_its_record_is_not_ready(
    service: ModuleType, artifact: Artifact, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(artifact.onnx_path.read_bytes())
    meta = json.loads((artifact.directory / "meta.json").read_text())
    meta["reference_scores"][0] += 0.01
    (broken / "meta.json").write_text(json.dumps(meta))
    scorer = service.Scorer(broken, name="fraud", version="1", expected_sha256=artifact.sha256)
    assert not scorer.canary_ok()


class _RecordingTransport(asyncio.Transport):
    """What a socket would be sent, one entry per ``write`` (one ``send()`` each)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 3001), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _exchange(protocol_class: type, app: Any, request: bytes) -> _RecordingTransport:
    """Feed ``request`` to a uvicorn protocol of ``protocol_class`` serving ``app``."""
    import uvicorn
    from uvicorn.server import ServerState

    async def run() -> _RecordingTransport:
        config = uvicorn.Config(app=app, lifespan="off", log_config=None)
        config.load()
        transport = _RecordingTransport()
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        protocol.connection_made(transport)
        protocol.data_received(request)
        for _ in range(20):  # the app's task, then the end of its pass of the loop
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport

    return asyncio.run(run())


async def _json_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", b"2")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b"{}"})


_POST = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


def test_a_response_leaves_in_one_write(service: ModuleType) -> None:
    [write] = _exchange(service.OneWriteHttpProtocol, _json_app, _POST).writes
    assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b"\r\n\r\n{}")
    # The control: uvicorn's own protocol sends the head and the body apart.
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert len(_exchange(HttpToolsProtocol, _json_app, _POST).writes) == 2


def test_a_head_without_a_body_write_still_leaves(service: ModuleType) -> None:
    head = b"HEAD /predict HTTP/1.1\r\nHost: x\r\n\r\n"
    [write] = _exchange(service.OneWriteHttpProtocol, _json_app, head).writes
    assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b"\r\n\r\n")


def test_a_closing_response_is_whole_before_the_close(service: ModuleType) -> None:
    closing = _POST.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    transport = _exchange(service.OneWriteHttpProtocol, _json_app, closing)
    assert transport.closed
    [write] = transport.writes
    assert b"connection: close\r\n" in write and write.endswith(b"{}")


def test_a_streamed_body_is_not_held_back(service: ModuleType) -> None:
    async def stream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0)  # the first chunk comes later: the head goes first
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    writes = _exchange(service.OneWriteHttpProtocol, stream, _POST).writes
    assert writes[0].endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert b"".join(writes[1:]) == b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n"


def test_bentos_uvicorn_serves_with_the_one_write_protocol(service: ModuleType) -> None:
    """BentoML's worker asks uvicorn for its "auto" protocol after importing service.py."""
    import uvicorn

    config = uvicorn.Config(app=_json_app, log_config=None)
    config.load()
    assert config.http_protocol_class is service.OneWriteHttpProtocol


def test_a_response_carries_the_servers_own_time(service: ModuleType) -> None:
    """Server-Timing covers the app's work: an app that spends 20 ms reports >= 20 ms."""
    import re
    import time

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        time.sleep(0.02)  # CPU held like a slow model, not an await
        await _json_app(scope, receive, send)

    [fast] = _exchange(service.OneWriteHttpProtocol, _json_app, _POST).writes
    [timed] = _exchange(service.OneWriteHttpProtocol, slow, _POST).writes
    durations = [
        float(re.search(rb"\r\nserver-timing: svc;dur=([0-9.]+)\r\n\r\n", w).group(1))  # type: ignore[union-attr]
        for w in (fast, timed)
    ]
    assert 0 <= durations[0] < 20 <= durations[1] < 1000, durations
    assert timed.endswith(b"\r\n\r\n{}")  # the header sits in the head, the body is intact
