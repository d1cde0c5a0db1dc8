"""The machine the suite's workers share (here, beside ``hosts.py``: conftest puts ``tests/``
on sys.path). Every running test holds it shared (conftest's autouse ``machine`` fixture); a
part of a test that must be measured as on a quiet host takes it whole (:meth:`Machine.alone`),
the other worker's tests waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

#: held shared by every running test of every worker; exclusively by a part of a test that
#: must run alone (:meth:`Machine.alone`)
MACHINE_LOCK = Path(tempfile.gettempdir()) / "bentogate-tests-machine.lock"


class Machine:
    """This test's hold on the machine, shared with the other workers' tests."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        """Wait until no test of another worker runs, and keep them waiting for the block:
        for what must be measured as a quiet host would (the default gate policy)."""
        fcntl.flock(self._handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._handle, fcntl.LOCK_SH)


@contextlib.contextmanager
def held() -> Iterator[Machine]:
    """Hold the machine shared for the block."""
    with MACHINE_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        try:
            yield Machine(handle)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
