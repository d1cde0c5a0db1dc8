"""The locustfile used by hand: plain CLI arguments, master/worker, and the web UI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from free_ports import free_port

from bentogate.loadtest import Target
from bentogate.loadtest.figures import all_figures
from bentogate.loadtest.runner import LOCUSTFILE, stop_process_group
from bentogate.loadtest.samples import load_samples

pytestmark = pytest.mark.integration

StandIn = Callable[..., Target]
Locust = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def locust(tmp_path: Path) -> Iterator[Locust]:
    """``locust(*args)`` starts ``python -m locust -f locustfile.py *args``; all are stopped."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"locust-{len(procs)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args],
                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_process_group(proc)


def gate_args(tmp_path: Path, target: Target, out: Path) -> list[str]:
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([[0.1 * i, 0.2, 0.3] for i in range(50)]))
    return ["--host", target.url, "--gate-rows", str(rows), "--gate-version", "3",
            "--gate-rate", "300", "--gate-warmup", "1", "--gate-duration", "2",
            "--gate-out", str(out), "-u", "8", "-r", "8"]  # fmt: skip


def test_master_and_two_workers_share_one_schedule(
    standin: StandIn, locust: Locust, tmp_path: Path
) -> None:
    out, port = tmp_path / "out", str(free_port())
    master = locust("--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
                    "--expect-workers", "2", "--headless", "--run-time", "40s",
                    *gate_args(tmp_path, standin(), out))  # fmt: skip
    for _ in range(2):
        locust("--worker", "--master-host", "127.0.0.1", "--master-port", port)
    assert master.wait(timeout=60) == 0
    assert len(list(out.glob("samples-w*.npz"))) == 2
    samples = load_samples(out)
    fig = all_figures(samples)["candidate"]
    assert fig.samples == pytest.approx(600, abs=2) and fig.errors == {}
    assert fig.achieved_rate == pytest.approx(300, rel=0.03)
    # the workers took alternate slots of one schedule: no slot twice, none missing
    slots = np.round(samples.intended * 300).astype(int)
    assert len(np.unique(slots)) == len(slots) == 900


def test_web_ui_autostart_runs_and_writes_samples(
    standin: StandIn, locust: Locust, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = locust("--autostart", "--autoquit", "0", "--web-host", "127.0.0.1", "--web-port", "0",
                  *gate_args(tmp_path, standin(), out))  # fmt: skip
    assert proc.wait(timeout=60) == 0
    fig = all_figures(load_samples(out))["candidate"]
    assert fig.samples == pytest.approx(600, abs=2) and fig.errors == {}
