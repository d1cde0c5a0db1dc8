"""The one-write uvicorn protocol: each response in one ``send()``, with its server time."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving import OneWriteHttpProtocol

PROJECT_DIR = Path(__file__).resolve().parents[3]


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


def test_a_response_leaves_in_one_write() -> None:
    [write] = _exchange(OneWriteHttpProtocol, _json_app, _POST).writes
    assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b"\r\n\r\n{}")
    # The control: uvicorn's own protocol sends the head and the body apart.
    assert len(_exchange(HttpToolsProtocol, _json_app, _POST).writes) == 2


def test_a_head_without_a_body_write_still_leaves() -> None:
    head = b"HEAD /predict HTTP/1.1\r\nHost: x\r\n\r\n"
    [write] = _exchange(OneWriteHttpProtocol, _json_app, head).writes
    assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b"\r\n\r\n")


def test_a_closing_response_is_whole_before_the_close() -> None:
    closing = _POST.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    transport = _exchange(OneWriteHttpProtocol, _json_app, closing)
    assert transport.closed
    [write] = transport.writes
    assert b"connection: close\r\n" in write and write.endswith(b"{}")


def test_a_streamed_body_is_not_held_back() -> None:
    async def stream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0)  # the first chunk comes later: the head goes first
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    writes = _exchange(OneWriteHttpProtocol, stream, _POST).writes
    assert writes[0].endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert b"".join(writes[1:]) == b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n"


def test_a_response_carries_the_servers_own_time() -> None:
    """Server-Timing covers the app's work: an app that spends 20 ms reports >= 20 ms."""

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        time.sleep(0.02)  # CPU held like a slow model, not an await
        await _json_app(scope, receive, send)

    [fast] = _exchange(OneWriteHttpProtocol, _json_app, _POST).writes
    [timed] = _exchange(OneWriteHttpProtocol, slow, _POST).writes
    durations = [
        float(re.search(rb"\r\nserver-timing: svc;dur=([0-9.]+)\r\n\r\n", w).group(1))  # type: ignore[union-attr]
        for w in (fast, timed)
    ]
    assert 0 <= durations[0] < 20 <= durations[1] < 1000, durations
    assert timed.endswith(b"\r\n\r\n{}")  # the header sits in the head, the body is intact


def test_importing_the_package_leaves_uvicorn_as_it_is() -> None:
    """Only an explicit install_one_write_protocol() changes uvicorn's "auto" protocol (a
    fresh interpreter: this one may have imported service.py, which installs it)."""
    check = (
        "import serving, serving.protocol\n"
        "from uvicorn.protocols.http import auto\n"
        "assert auto.AutoHTTPProtocol is not serving.OneWriteHttpProtocol\n"
        "serving.install_one_write_protocol()\n"
        "assert auto.AutoHTTPProtocol is serving.OneWriteHttpProtocol\n"
    )
    subprocess.run([sys.executable, "-c", check], cwd=PROJECT_DIR, check=True, timeout=120)
