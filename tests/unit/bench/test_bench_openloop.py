"""The open-loop generator against a tiny local HTTP server (no timing asserted)."""

from __future__ import annotations

import asyncio

from bench.openloop import OpenLoop
from bench.wire import predict_request


async def _serve(status: int, *, answer: bool = True) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if answer:
                    writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\n{{}}".encode())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _load(status: int, *, answer: bool = True, rate: float = 400) -> dict[str, object]:
    server = await _serve(status, answer=answer)
    port = server.sockets[0].getsockname()[1]
    try:
        generator = OpenLoop(
            port,
            [predict_request("/predict", b'{"features":[1]}')],
            rate=rate,
            duration=0.25,
            warmup=0.05,
            connections=4,
        )
        return await generator.run(drain_timeout=0.5)
    finally:
        server.close()
        await server.wait_closed()


def test_every_scheduled_request_is_measured_after_the_warmup() -> None:
    result = asyncio.run(_load(200))
    assert result["scheduled"] == 100  # 400/s for 0.25 s
    assert result["measured"] == 100
    assert result["errors"] == 0
    latencies = result["latencies_us"]
    assert isinstance(latencies, list) and min(latencies) >= 0


def test_error_answers_are_counted() -> None:
    result = asyncio.run(_load(503))
    assert result["errors"] == result["measured"] == 100


def test_unanswered_requests_are_errors_not_missing_samples() -> None:
    result = asyncio.run(_load(200, answer=False, rate=200))
    assert result["measured"] == 0
    assert result["errors"] == 60  # warm-up included: none of the 0.3 s were answered
