"""The HTTP/1.1 bytes the load clients send and the minimal parsing of what comes back.

The clients talk raw sockets (no http.client, no asyncio streams): their own overhead must
stay small next to a 0.2 ms server, and the same bytes go to every target.
"""

from __future__ import annotations

_HEADER_END = b"\r\n\r\n"
_LENGTH = b"\r\ncontent-length:"


def predict_request(path: str, body: bytes) -> bytes:
    """A keep-alive ``POST <path>`` carrying a JSON ``body``."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def split_response(buffer: bytes | bytearray) -> tuple[int, int] | None:
    """``(status, total length)`` of the first complete response in ``buffer``, or None.

    Only responses with a Content-Length are understood (every target sends one).
    """
    end = buffer.find(_HEADER_END)
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    at = head.find(_LENGTH)
    if at < 0:
        raise ValueError(f"response without content-length: {head[:200]!r}")
    line_end = head.find(b"\r\n", at + 2)
    length = int(head[at + len(_LENGTH) : line_end if line_end >= 0 else len(head)])
    total = end + len(_HEADER_END) + length
    if len(buffer) < total:
        return None
    return int(buffer[9:12]), total
