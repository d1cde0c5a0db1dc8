"""Capacity at a p99 limit: the highest open-loop rate a target holds with p99 within the
limit and no errors, found by doubling then bisecting (each step a ``bench.openloop`` run
in its own process); repeated, interleaved searches over several targets give each its
spread."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.stats import percentiles_ms
from bentogate.loadtest import FAIL, INCONCLUSIVE, MAX_GENERATOR_CPU, PASS, highest_passing_rate


@dataclass(frozen=True)
class Step:
    """One constant-rate run: offered rate, figures of the measured window, verdict."""

    rate: float
    verdict: str
    p50_ms: float
    p99_ms: float
    p99_9_ms: float
    errors: int
    measured: int
    scheduled: int
    generator_cpu: float
    late_p99_ms: float


@dataclass(frozen=True)
class Capacity:
    """``rate``: highest passing rate (0 if none); ``limited_by``: "target" (a higher rate
    failed), "generator" (a higher rate was inconclusive) or "ceiling"; every step run."""

    rate: float
    limited_by: str
    steps: tuple[Step, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "rate": self.rate,
            "limited_by": self.limited_by,
            "steps": [asdict(step) for step in self.steps],
        }


@dataclass(frozen=True)
class LoadSpec:
    """What every step sends (``bodies`` to ``path``) and for how long."""

    bodies: Path
    path: str = "/predict"
    p99_limit_ms: float = 5.0
    duration_s: float = 4.0
    warmup_s: float = 1.0
    connections: int = 32
    pause_s: float = 0.5


def run_step(port: int, rate: float, spec: LoadSpec) -> Step:
    """One open-loop run of ``bench.openloop`` at ``rate`` against ``port``.

    Raises subprocess.CalledProcessError if the generator fails.
    """
    command = [
        sys.executable, "-m", "bench.openloop",
        "--port", str(port), "--path", spec.path, "--bodies", str(spec.bodies),
        "--rate", f"{rate:.3f}",
        "--duration", str(spec.duration_s), "--warmup", str(spec.warmup_s),
        "--connections", str(spec.connections),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        timeout=spec.warmup_s + spec.duration_s + 60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    result = json.loads(done.stdout)
    figures = percentiles_ms(result["latencies_us"])
    late = result["late_us"]
    step = Step(
        rate=rate,
        verdict=PASS,
        p50_ms=figures["p50_ms"],
        p99_ms=figures["p99_ms"],
        p99_9_ms=figures["p99_9_ms"],
        errors=int(result["errors"]),
        measured=int(result["measured"]),
        scheduled=int(result["scheduled"]),
        generator_cpu=float(result["generator_cpu"]),
        late_p99_ms=float(np.percentile(late, 99)) / 1000.0 if late else 0.0,
    )
    return _judged(step, spec.p99_limit_ms)


def _judged(step: Step, p99_limit_ms: float) -> Step:
    verdict = PASS
    if step.errors or step.measured < step.scheduled or not step.p99_ms <= p99_limit_ms:
        verdict = FAIL
    # A generator short of CPU, or stalled longer than the limit itself, cannot tell whether
    # the target could have held the rate.
    behind = step.late_p99_ms > p99_limit_ms
    if (verdict == FAIL and step.generator_cpu >= MAX_GENERATOR_CPU) or behind:
        verdict = INCONCLUSIVE
    return Step(**{**asdict(step), "verdict": verdict})


def find_capacity(
    port: int,
    spec: LoadSpec,
    *,
    start_rate: float = 250.0,
    max_rate: float = 64_000.0,
    min_rate: float = 30.0,
    resolution: float = 0.05,
    progress: Callable[[str], None] = lambda _: None,
    step_runner: Callable[[int, float, LoadSpec], Step] = run_step,
) -> Capacity:
    """The highest rate ``port`` holds (:func:`bentogate.loadtest.highest_passing_rate`: double from
    ``start_rate``, halving to ``min_rate`` first on a busy machine, then bisect to
    ``resolution``), each step a ``bench.openloop`` run judged against ``spec``."""
    steps: list[Step] = []

    def verdict_at(rate: float) -> str:
        step = step_runner(port, rate, spec)
        steps.append(step)
        progress(
            f"{rate:7.0f} req/s -> {step.verdict:12} p99 {step.p99_ms:7.2f} ms"
            f"  errors {step.errors}  generator cpu {step.generator_cpu:.0%}"
        )
        time.sleep(spec.pause_s)  # let the target drain what an overloaded step left
        return step.verdict

    rate, limited_by = highest_passing_rate(
        verdict_at,
        start_rate=start_rate,
        max_rate=max_rate,
        resolution=resolution,
        min_rate=min_rate,
    )
    return Capacity(rate, limited_by, tuple(steps))


def interleaved_capacities(
    targets: Mapping[str, tuple[int, LoadSpec]],
    rounds: int,
    *,
    progress: Callable[[str], None] = lambda _: None,
    search: Callable[..., Capacity] = find_capacity,
) -> dict[str, dict[str, object]]:
    """``rounds`` capacity searches of every target (port, spec), the targets' order
    reversed every other round so drift hits all alike. Per target: ``rate``, the median
    of its searches' rates; ``rates``, each search's; ``limited_by`` of the median search
    (the lower middle one for an even count); ``steps``, every step of every search."""
    searches: dict[str, list[Capacity]] = {key: [] for key in targets}
    keys = list(targets)
    for number in range(rounds):
        for key in keys if number % 2 == 0 else keys[::-1]:
            port, spec = targets[key]
            progress(f"capacity search {number + 1} of {rounds}: {key}")

            def step(message: str, key: str = key) -> None:
                progress(f"  {key}: {message}")

            searches[key].append(search(port, spec, progress=step))
    results: dict[str, dict[str, object]] = {}
    for key, found in searches.items():
        rates = [capacity.rate for capacity in found]
        middle = sorted(found, key=lambda capacity: capacity.rate)[(len(found) - 1) // 2]
        results[key] = {
            "rate": statistics.median(rates),
            "rates": rates,
            "limited_by": middle.limited_by,
            "steps": [asdict(step) for capacity in found for step in capacity.steps],
        }
    return results
