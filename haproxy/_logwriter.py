"""The request log's writer: drains HAProxy's log FIFO into a file, rotated by size.

Run as a script of its own (standard library only, ``python -I``), one per sidecar, next to
the haproxy master it serves: ``_logwriter.py <fifo> <file> <max_bytes> <keep> <pid_file>``.

Why a writer at all: HAProxy 2.6 makes its log descriptor non-blocking with
``fcntl(F_SETFL, O_NONBLOCK)``, which clears ``O_APPEND``, and never reopens it; a file it
wrote itself could not be rotated (after a truncate it writes on at its old offset, behind a
hole of NULs: measured). So HAProxy writes each line into a FIFO instead (one non-blocking
``writev`` per request, dropped and counted in ``DroppedLogs`` if the FIFO is ever full, never
waited for), and this process, the file's only writer, appends what it finds there at most
every ``BATCH_S`` and rotates by rename: ``<file>`` → ``<file>.1`` → … → ``<file>.<keep>``.
It wakes only when there are lines (≤ 1/``BATCH_S`` a second, whatever the request rate) and
exits when no HAProxy holds the FIFO any more.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import sys
import time
from pathlib import Path

BATCH_S = 0.1  # lines wait at most this long in the FIFO: one wake-up per batch
PIPE_BYTES = 1 << 20  # the FIFO's capacity: 10 MB/s of lines between two batches
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Python ≥ 3.10 on Linux), spelled for older ones


def rotate(path: Path, keep: int) -> None:
    """``path`` → ``path.1``, each older copy one up, at most ``keep`` kept (0: dropped)."""
    if keep <= 0:
        path.unlink(missing_ok=True)
        return
    for number in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{number}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{number + 1}"))
    if path.exists():
        os.replace(path, path.with_name(f"{path.name}.1"))


def _drain(fd: int) -> bytes | None:
    """What the FIFO holds now; None once no writer holds it (HAProxy stopped)."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, PIPE_BYTES)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks) if chunks else None
        chunks.append(chunk)


def run(fifo: Path, path: Path, max_bytes: int, keep: int, batch_s: float = BATCH_S) -> None:
    """Append the FIFO's lines to ``path`` until no writer holds the FIFO; rotate ``path``
    once it is larger than ``max_bytes``."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    with contextlib.suppress(OSError):  # a smaller FIFO only means fewer lines per batch
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = open(path, "ab")  # noqa: SIM115 (reopened at each rotation)
    try:
        while True:
            select.select([fd], [], [])  # lines, or no writer left
            time.sleep(batch_s)  # let a batch gather: one wake-up for many lines
            data = _drain(fd)
            if data is None:
                return
            out.write(data)
            out.flush()
            if out.tell() > max_bytes:
                out.close()
                rotate(path, keep)
                out = open(path, "ab")  # noqa: SIM115
    finally:
        out.close()
        os.close(fd)


def main(argv: list[str]) -> int:
    fifo, path, max_bytes, keep, pid_file = argv
    Path(pid_file).write_text(f"{os.getpid()}\n")
    try:
        run(Path(fifo), Path(path), int(max_bytes), int(keep))
    finally:
        with contextlib.suppress(OSError):
            if Path(pid_file).read_text().strip() == str(os.getpid()):
                Path(pid_file).unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
