"""The host lock: one step that moves a host's traffic at a time, across processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bentogate.context import Context
from bentogate.errors import ConcurrentChange
from bentogate.locks import file_lock
from bentogate.settings import Settings


def test_a_held_lock_makes_the_next_holder_wait_then_fail_with_the_given_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "host.lock"
    with (
        file_lock(path),
        pytest.raises(ConcurrentChange, match="another change holds"),
        file_lock(path, timeout=0.2, error=ConcurrentChange),
    ):
        pass
    with file_lock(path, timeout=0.2):  # released: taken at once
        pass


# Another process takes the lock, says so, holds it a while and leaves a mark on release.
_HOLDER = """
import sys, time
from pathlib import Path
from bentogate.locks import file_lock
with file_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(0.5)
    Path(sys.argv[2]).touch()
"""


def test_the_host_lock_waits_for_another_process(tmp_path: Path) -> None:
    ctx = Context(Settings(home=tmp_path / "home"))
    released = tmp_path / "released"
    command = [sys.executable, "-c", _HOLDER, str(ctx.settings.run_dir / "host.lock"), released]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with ctx.host_lock():
            assert released.exists()  # taken only after the other process let go
        assert holder.wait(10) == 0
