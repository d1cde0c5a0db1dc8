"""Fixtures: stand-in prediction servers (the instrument) and a clean-up for every process."""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bentogate.loadtest import Target
from bentogate.loadtest.runner import stop_process_group

SERVER = Path(__file__).with_name("standin_server.py")

StandIn = Callable[..., Target]


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StandIn]:
    """``standin(name, version, delay_ms=0, error_fraction=0)`` starts a server -> Target."""
    procs: list[subprocess.Popen[str]] = []

    def start(name: str = "candidate", version: str = "3", **opts: float | bool) -> Target:
        args = [f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}")
                for k, v in opts.items()]  # fmt: skip
        log = tmp_path / f"standin-{len(procs)}.log"
        with log.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, str(SERVER), "--version", version, *args],
                stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True,
            )  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20.0)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("PORT "):
            pytest.fail(f"stand-in server did not start: {line!r}\n{log.read_text()}")
        return Target(name, f"http://127.0.0.1:{int(line.split()[1])}", version)

    yield start
    for proc in procs:
        stop_process_group(proc)  # type: ignore[arg-type]
        if proc.stdout is not None:
            proc.stdout.close()
