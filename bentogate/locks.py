"""An exclusive lock shared by processes on this host: a ``flock`` on a file."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

from bentogate.errors import BentogateError

_POLL_S = 0.05


@contextlib.contextmanager
def file_lock(
    path: Path, timeout: float = 30.0, *, error: type[BentogateError] = BentogateError
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block.

    Waits at most ``timeout`` seconds for another holder, then raises ``error``. The lock
    belongs to the open file: a holder that dies releases it.
    """
    deadline = time.monotonic() + timeout
    with open(path, "a") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise error(f"another change holds {path} since {timeout:g} s") from None
                time.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
