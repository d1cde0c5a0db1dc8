"""Recent requests, kept on the host for shadow scoring: the feature rows of the last
predictions this worker answered, bounded in rows and in age.

What is kept is the row exactly as the model saw it: schema order, float32, as raw bytes
(no client address, no header, no other field of the body: nothing the model does not
see), in this process's memory only: it leaves the process only through the host's own
``GET /_recent``, which HAProxy does not route (``haproxy/config.py``), and dies with it.
Requests marked as not from clients by a query string (HAProxy's health check, the gate's
load) are not kept.

Beside each row, the score the model answered for it (float32, what it computed), so that
a reader compares what clients were answered without scoring the rows again on the Bento
that serves them (the bake, ``bentogate/bake.py``).

The cost on the prediction path is one copy of the model's 880-byte input (bytes: nothing
for the garbage collector to traverse), one clock read and one append to a bounded deque;
formatting is left to the reader (``bench/recent_cost.py`` measures the cost side by side:
formatting 220 floats on every request cost more than all the rest). ``GET /_recent``
answers in NumPy's ``.npy`` format (``numpy.save``, no pickles): one float32 matrix, a row
per kept request, its features in schema order and the answered score last (2,000 rows:
9.8 ms of the Bento's time, against 26 ms as JSON, during which it answers no prediction;
a reader asks for the rows since its last read, at most the newest ``limit`` of them, and
they are gathered newest first).
"""

from __future__ import annotations

import io
from collections import deque
from time import monotonic_ns
from urllib.parse import parse_qs

import numpy as np

from serving.contract import InputError


class RecentRequests:
    """The last ``rows`` kept rows; those older than ``max_age_s`` are left out when read."""

    __slots__ = ("_kept", "_max_age_ns")

    def __init__(self, rows: int, max_age_s: float) -> None:
        self._kept: deque[tuple[int, bytes, float]] = deque(maxlen=max(rows, 0))
        self._max_age_ns = int(max_age_s * 1e9)

    def keep(self, row: bytes, score: float) -> None:
        """Remember one answered row, the model's float32 input bytes, and the score it was
        answered (the oldest goes once ``rows`` are kept)."""
        self._kept.append((monotonic_ns(), row, score))

    def recent(self, since_ns: int = 0, limit: int | None = None) -> bytes:
        """The kept rows younger than ``max_age_s`` and kept at or after ``since_ns`` (this
        host's monotonic clock, the same in every process), at most the newest ``limit`` of
        them, oldest first, each with its score in the last column: one float32 matrix in
        ``.npy`` format (the host reads it with ``bentogate.host.read_kept``)."""
        oldest = max(monotonic_ns() - self._max_age_ns, since_ns)
        wanted = len(self._kept) if limit is None else limit
        kept: list[tuple[bytes, float]] = []
        for at, row, score in reversed(self._kept):  # newest first: the deque is in time order
            if at < oldest or len(kept) >= wanted:
                break
            kept.append((row, score))
        kept.reverse()
        matrix = np.empty((0, 1), dtype=np.float32)  # no row: the score column alone
        if kept:
            rows = np.frombuffer(b"".join(row for row, _ in kept), dtype=np.float32)
            scores = np.fromiter((score for _, score in kept), np.float32, count=len(kept))
            matrix = np.column_stack((rows.reshape(len(kept), -1), scores))
        answer = io.BytesIO()
        np.save(answer, matrix, allow_pickle=False)
        return answer.getvalue()

    def answer(self, query: bytes) -> bytes:
        """``GET /_recent``'s answer to its query string: :meth:`recent` of ``since`` (default
        0) and ``limit`` (default none); InputError naming a value that is not a count."""
        asked = parse_qs(query.decode("latin-1"))
        since = asked.get("since", ["0"])[-1]
        if not since.isdigit():
            raise InputError("since: nanoseconds of the host's monotonic clock")
        limit = asked.get("limit", [None])[-1]
        if limit is not None and not limit.isdigit():
            raise InputError("limit: the most rows to answer, the newest")
        return self.recent(int(since), None if limit is None else int(limit))

    def __len__(self) -> int:
        return len(self._kept)
