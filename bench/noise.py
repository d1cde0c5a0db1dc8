"""A noisy neighbour: another process that burns one core in bursts while a block runs.

The burner is a separate interpreter (``python -c``), so it competes with the benchmark's
processes for the CPUs the way another tenant's job would, and holds no state of ours.
It busy-loops for ``on_s``, sleeps ``off_s``, and so on until it is told to stop (SIGTERM);
then it prints the CPU seconds it used, which tells how much it really burned.
"""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

# SIGTERM becomes SystemExit, so the finally clause reports the CPU time used.
_BURNER = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
on_s, off_s = float(sys.argv[1]), float(sys.argv[2])
print("ready", flush=True)
try:
    while True:
        until = time.monotonic() + on_s
        while time.monotonic() < until:
            pass
        time.sleep(off_s)
finally:
    print(time.process_time(), flush=True)
"""


@dataclass
class Noise:
    """One burner's bursts (``on_s`` busy, ``off_s`` asleep) and, once it has stopped, the
    wall seconds it ran and the CPU seconds it used (nan until then)."""

    on_s: float
    off_s: float
    wall_s: float = float("nan")
    cpu_s: float = float("nan")

    @property
    def duty(self) -> float:
        """The share of one core it was meant to use: ``on_s / (on_s + off_s)``."""
        return self.on_s / (self.on_s + self.off_s)

    @property
    def cpu_share(self) -> float:
        """The share of one core it used (nan while it runs)."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else float("nan")

    def to_dict(self) -> dict[str, float | None]:
        values = {"on_s": self.on_s, "off_s": self.off_s, "wall_s": self.wall_s,
                  "cpu_s": self.cpu_s, "cpu_share": self.cpu_share}  # fmt: skip
        return {k: (v if v == v else None) for k, v in values.items()}


@contextlib.contextmanager
def noisy_neighbour(
    on_s: float = 0.2, off_s: float = 0.8, *, timeout: float = 10.0
) -> Iterator[Noise]:
    """Burn one core in bursts (``on_s`` busy, then ``off_s`` asleep) while the block runs;
    the burner is stopped and reaped on exit. Yields the :class:`Noise`, whose figures are
    filled in on exit. Raises ValueError for a negative or all-zero duty cycle,
    RuntimeError if the burner does not start within ``timeout`` s."""
    if on_s < 0 or off_s < 0 or on_s + off_s <= 0:
        raise ValueError(f"bursts need on_s, off_s >= 0 and a positive sum ({on_s}, {off_s})")
    noise = Noise(on_s, off_s)
    command = [sys.executable, "-c", _BURNER, repr(on_s), repr(off_s)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    started = time.monotonic()
    try:
        _wait_ready(process, timeout)
        yield noise
    finally:
        noise.wall_s = time.monotonic() - started
        noise.cpu_s = _stop(process, timeout)


def _wait_ready(process: subprocess.Popen[str], timeout: float) -> None:
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    # A burner that failed closes its stdout: readline returns "" at once.
    line = process.stdout.readline() if readable else ""
    if line.strip() != "ready":
        raise RuntimeError(
            f"the noise burner did not start within {timeout:g} s (exit code {process.poll()})"
        )


def _stop(process: subprocess.Popen[str], timeout: float) -> float:
    """SIGTERM the burner, SIGKILL it after ``timeout``; the CPU seconds it reported."""
    process.terminate()
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    try:
        return float(out.split()[-1])
    except (IndexError, ValueError):
        return float("nan")
