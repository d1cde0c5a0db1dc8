"""CPU per request: read from /proc around each run, per process group, interleaved."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.capacity import PASS, LoadSpec, Step
from bench.cpu import Target, cpu_per_request, cpu_seconds, fixed_rate
from bentogate.bentos import process_tree

SPEC = LoadSpec(bodies=Path("unused.json"), warmup_s=0.5, duration_s=1.5)
SENT_AT_100 = 200  # requests one run sends at 100 req/s: 0.5 s warm-up + 1.5 s measured


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_group_counts_its_processes_children() -> None:
    """A Bento is an arbiter and its worker: the group names the arbiter, the worker's CPU
    counts. The child burns 0.3 s of CPU, then sleeps until killed (a child that has exited
    is no longer in the tree: its time would be gone); ticks are 10 ms."""
    burn = ("import time\nend = time.process_time() + 0.3\n"
            "while time.process_time() < end: pass\ntime.sleep(60)\n")  # fmt: skip
    parent = subprocess.Popen(
        [sys.executable, "-c",
         f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burn!r}])"]
    )  # fmt: skip
    try:
        before = cpu_seconds([parent.pid])
        deadline = time.monotonic() + 30  # a busy machine starts and runs them slowly
        while cpu_seconds([parent.pid]) - before < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        used = cpu_seconds([parent.pid]) - before
        tree = process_tree(parent.pid)
    finally:
        for pid in process_tree(parent.pid)[::-1]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait(timeout=10)
    assert len(tree) == 2 and used >= 0.28


def test_cpu_per_request_divides_each_groups_time_by_the_requests_sent() -> None:
    """This process burns 0.4 s during each run of target a and nothing during b's: a's
    group used 2,000 µs per request (0.4 s over 200 requests), b's about nothing; 10 %
    covers 10 ms ticks and the test's own CPU around the burn."""
    order: list[int] = []

    def runner(port: int, rate: float, spec: LoadSpec) -> Step:
        order.append(port)
        if port == 1:
            _burn(0.4)
        return Step(rate, PASS, 0.5, 1.5, 2.0, 0, 150, 150, 0.25, 0.1)

    me = [os.getpid()]
    targets = {"a": Target(1, SPEC, {"me": me}), "b": Target(2, SPEC, {"me": me})}
    found = cpu_per_request(targets, 100.0, rounds=3, step_runner=runner)
    assert order == [1, 2, 2, 1, 1, 2]  # the order reversed every other round
    assert found["a"]["us"]["me"] == pytest.approx(0.4e6 / SENT_AT_100, rel=0.1)
    assert found["b"]["total_us"] < 0.1 * found["a"]["total_us"]
    assert found["a"]["generator_us"] == pytest.approx(0.25 * 1e6 / 100)
    assert len(found["a"]["rounds"]) == 3 and found["a"]["p99_ms"] == 1.5


@pytest.mark.parametrize(
    ("capacities", "rate"),
    [((9000, 15500, 6500), 3250), ((1100, 4000), 500), ((0, 4000), 250), ((300,), 250)],
)
def test_the_fixed_rate_is_half_the_lowest_capacity_in_steps(
    capacities: tuple[float, ...], rate: float
) -> None:
    assert fixed_rate(capacities) == rate
