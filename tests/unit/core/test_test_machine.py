"""The suite's own machine lock (tests/machine.py): a part waiting to run alone is let in
once the tests running finish, however busy the other workers keep the machine."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import machine
import pytest

HOLD_S = 0.05  # each stand-in test holds the machine this long, the next one right after


def _back_to_back_tests(stop: threading.Event, started: threading.Event) -> None:
    """A worker running one short test after another, each holding the machine shared."""
    while not stop.is_set():
        with machine.MACHINE_LOCK.open("a") as handle:
            machine._take(handle, fcntl.LOCK_SH)
            started.set()
            time.sleep(HOLD_S)
            fcntl.flock(handle, fcntl.LOCK_UN)


def test_a_part_waiting_to_run_alone_is_not_starved_by_back_to_back_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine, "MACHINE_LOCK", tmp_path / "machine.lock")
    monkeypatch.setattr(machine, "TURNSTILE", tmp_path / "turnstile.lock")
    monkeypatch.setattr(machine, "_current", None)  # as in a module fixture's set-up
    stop = threading.Event()
    workers = []
    for _ in range(2):  # two other workers, their tests overlapping: always one running
        started = threading.Event()
        worker = threading.Thread(target=_back_to_back_tests, args=(stop, started))
        worker.start()
        workers.append(worker)
        assert started.wait(5)
        time.sleep(HOLD_S / 2)
    alone = threading.Event()

    def run_alone() -> None:
        with machine.alone():
            alone.set()

    waiting = threading.Thread(target=run_alone)
    waiting.start()
    try:
        # Let in once the two running tests end (about HOLD_S); without the turnstile it
        # waited as long as the workers ran (flock favours no one). 5 s: 100 x HOLD_S.
        assert alone.wait(5)
    finally:
        stop.set()
        for thread in [*workers, waiting]:
            thread.join(10)
