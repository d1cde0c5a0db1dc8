"""Recent requests, kept on the host for shadow scoring: the feature rows of the last
predictions this worker answered, bounded in rows and in age.

What is kept is the row exactly as the model saw it: schema order, float32, as raw bytes
(no client address, no header, no other field of the body: nothing the model does not
see), in this process's memory only: it leaves the process only through the host's own
``GET /_recent``, which HAProxy does not route (``haproxy/config.py``), and dies with it.
Requests marked as not from clients by a query string (HAProxy's health check, the gate's
load) are not kept.

The cost on the prediction path is one copy of the model's 880-byte input (bytes: nothing
for the garbage collector to traverse), one clock read and one append to a bounded deque;
turning rows into JSON is left to the reader (``bench/recent_cost.py`` measures the cost
side by side: formatting 220 floats on every request cost more than all the rest).
"""

from __future__ import annotations

from collections import deque
from time import monotonic_ns

import numpy as np
import orjson


class RecentRequests:
    """The last ``rows`` kept rows; those older than ``max_age_s`` are left out when read."""

    __slots__ = ("_kept", "_max_age_ns")

    def __init__(self, rows: int, max_age_s: float) -> None:
        self._kept: deque[tuple[int, bytes]] = deque(maxlen=max(rows, 0))
        self._max_age_ns = int(max_age_s * 1e9)

    def keep(self, row: bytes) -> None:
        """Remember one answered row, the model's float32 input bytes (the oldest goes once
        ``rows`` are kept)."""
        self._kept.append((monotonic_ns(), row))

    def recent(self, since_ns: int = 0) -> bytes:
        """The kept rows younger than ``max_age_s`` and kept at or after ``since_ns`` (this
        host's monotonic clock, the same in every process), oldest first, as one JSON array
        of rows (each float32 value written so that it reads back as the same float32)."""
        oldest = max(monotonic_ns() - self._max_age_ns, since_ns)
        rows = [row for at, row in self._kept if at >= oldest]
        if not rows:
            return b"[]"
        matrix = np.frombuffer(b"".join(rows), dtype=np.float32).reshape(len(rows), -1)
        return orjson.dumps(matrix, option=orjson.OPT_SERIALIZE_NUMPY)

    def __len__(self) -> int:
        return len(self._kept)
