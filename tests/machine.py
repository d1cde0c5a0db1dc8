"""The machine the suite's workers (and other test runs on it) share, as one file lock (here,
beside ``hosts.py``: conftest puts ``tests/`` on sys.path). Every running test holds it shared,
its fixtures' set-up and tear-down included (conftest's ``pytest_runtest_protocol``). A part of
a test that must run as on a quiet host takes it whole (:meth:`Machine.alone`, :func:`alone`),
the other workers' tests waiting: every gate (:func:`gates_run_alone`), the wheel's demo, the
bake's reaction times under load (tests/integration/sidecar/test_sidecar_bake.py), and a
fleet test's PostgreSQL outage (nobody else's test may find the server down).

One lock, so no two holds can wait for each other: taking it whole first gives up this
test's shared hold (flock converts a lock by releasing it first). flock favours no one, so
a turnstile in front of it keeps a part that waits to run alone from starving: it holds
the turnstile while it waits, and a test passes the turnstile before it takes its shared
hold, so no new test starts meanwhile. A part that waits gives up its test's hold before
the turnstile: two waiting at once never wait for each other. Without it a gate test's
set-up waited up to 400 s for a moment when no other worker ran a test, and once past
pytest-timeout's 600 s (CI of 2026-12-07, red); with it the gate tests waited 20-30 s. It
does not shorten the suite (14:33 against 14:24 min, one run each): the waiting moves to
the tests held at the turnstile.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: held shared by every running test of every worker; exclusively by a part of a test that
#: must run alone (:meth:`Machine.alone`)
MACHINE_LOCK = Path(tempfile.gettempdir()) / "bentogate-tests-machine.lock"
#: passed (taken shared for a moment) by every test before it holds the machine; held
#: exclusively by a part that waits to take the machine whole
TURNSTILE = Path(tempfile.gettempdir()) / "bentogate-tests-turnstile.lock"


def _take(handle: IO[str], op: int) -> None:
    """Take the machine ``op`` (LOCK_SH or LOCK_EX) through the turnstile: shared, pass it;
    whole, hold it while waiting, so that no new test starts meanwhile."""
    with TURNSTILE.open("a") as turnstile:
        fcntl.flock(turnstile, op)
        try:
            fcntl.flock(handle, op)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)


class Machine:
    """This test's hold on the machine, shared with the other workers' tests."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        """Wait until no test of another worker runs, and keep them waiting for the block:
        for what must be measured as a quiet host would (the default gate policy)."""
        fcntl.flock(self._handle, fcntl.LOCK_UN)  # not held while waiting at the turnstile
        _take(self._handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._handle, fcntl.LOCK_SH)


_current: Machine | None = None  # this process's running test's hold, if a test runs


@contextlib.contextmanager
def held() -> Iterator[Machine]:
    """Hold the machine shared for the block (a test)."""
    global _current
    with MACHINE_LOCK.open("a") as handle:
        _take(handle, fcntl.LOCK_SH)
        _current = Machine(handle)
        try:
            yield _current
        finally:
            _current = None
            fcntl.flock(handle, fcntl.LOCK_UN)


def current() -> Machine:
    """The running test's hold (every test has one: conftest's ``pytest_runtest_protocol``)."""
    assert _current is not None, "no test of this process holds the machine"
    return _current


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """:meth:`Machine.alone` from anywhere: in a test, its own hold taken whole; in a module
    fixture's set-up (no test of this process runs), the machine taken whole outright."""
    if _current is not None:
        with _current.alone():
            yield
        return
    with MACHINE_LOCK.open("a") as handle:
        _take(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def gates_run_alone() -> None:
    """Every gate this process runs (``bentogate.gating.run_gate``: the load test of a
    ``gate``, whether a test, a fixture or the release workflow calls it) runs alone: a gate
    measures latency, and another worker's load would make it inconclusive ("host stalls"),
    as it would on any busy host. Its few seconds are all that is kept from running side by
    side."""
    from bentogate import gating

    if getattr(gating.run_gate, "runs_alone", False):
        return
    measure = gating.run_gate

    @functools.wraps(measure)
    def run_gate_alone(*args: Any, **kwargs: Any) -> Any:
        with alone():
            return measure(*args, **kwargs)

    run_gate_alone.runs_alone = True  # type: ignore[attr-defined]
    gating.run_gate = run_gate_alone
