"""uvicorn's httptools protocol with every response sent in one write, stamped with the
server's own time for the request (``Server-Timing``).

Nothing here changes uvicorn on import: :func:`install_one_write_protocol` does, called by
service.py where BentoML's worker imports it.
"""

from __future__ import annotations

import asyncio
from time import perf_counter_ns
from typing import Any

from uvicorn.protocols.http import auto as uvicorn_auto
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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


def install_one_write_protocol() -> None:
    """Make :class:`OneWriteHttpProtocol` the protocol of every uvicorn server this process
    starts with ``http="auto"`` (idempotent).

    BentoML 1.4 builds its uvicorn.Config itself (``http="auto"``) and offers no hook for the
    protocol class; uvicorn resolves "auto" to this attribute when the worker starts
    serving, after it has imported service.py (which calls this).
    """
    uvicorn_auto.AutoHTTPProtocol = OneWriteHttpProtocol
