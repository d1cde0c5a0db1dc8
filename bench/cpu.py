"""CPU time per request of every process behind a target, at one offered rate each holds.

Capacity at a p99 limit is where the CPUs run out, and one search's result moves by
10-30 % from the next on a shared VM (bench/README.md). What each request costs each
process is steadier, and says where the capacity goes: a ``bench.openloop`` run at a fixed
rate, the user and system CPU time of each process group (``/proc/<pid>/stat``, each
process with its descendants: a Bento's arbiter and its worker) read before and after it,
divided by the requests sent; the generator's own cost from its report. Interleaved
rounds, the median of each figure.
"""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.capacity import LoadSpec, Step, run_step
from bentogate.bentos import process_tree

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Target:
    """A port, what to send it, and the processes that serve it, by name (each a list of
    pids counted with their descendants): e.g. ``{"haproxy": [...], "replica 1": [...]}``."""

    port: int
    spec: LoadSpec
    groups: Mapping[str, Sequence[int]]


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` and their descendants (a process
    gone while read counts 0)."""
    ticks = 0
    for top in pids:
        for pid in process_tree(top):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks * _TICK_S


def one_round(
    target: Target, rate: float, step_runner: Callable[[int, float, LoadSpec], Step] = run_step
) -> dict[str, Any]:
    """One fixed-rate run: µs of CPU per request of each group, the groups' total, the
    generator's, and the run's p99 and errors."""
    groups = {name: list(pids) for name, pids in target.groups.items()}
    before = {name: cpu_seconds(pids) for name, pids in groups.items()}
    step = step_runner(target.port, rate, target.spec)
    sent = int(rate * (target.spec.warmup_s + target.spec.duration_s))
    used = {name: (cpu_seconds(pids) - before[name]) * 1e6 / sent for name, pids in groups.items()}
    return {
        "us": used,
        "total_us": sum(used.values()),
        "generator_us": step.generator_cpu * 1e6 / rate,
        "p99_ms": step.p99_ms,
        "errors": step.errors,
        "verdict": step.verdict,
    }


def cpu_per_request(
    targets: Mapping[str, Target],
    rate: float,
    rounds: int,
    *,
    progress: Callable[[str], None] = lambda _: None,
    step_runner: Callable[[int, float, LoadSpec], Step] = run_step,
) -> dict[str, dict[str, Any]]:
    """``rounds`` runs of every target at ``rate``, the targets' order reversed every other
    round. Per target: the median µs per request of each group (``us``), of their total,
    of the generator; the median p99; errors summed; every round's figures."""
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in targets}
    keys = list(targets)
    for number in range(rounds):
        for key in keys if number % 2 == 0 else keys[::-1]:
            progress(f"CPU per request at {rate:.0f} req/s, round {number + 1} of {rounds}: {key}")
            runs[key].append(one_round(targets[key], rate, step_runner))
    results: dict[str, dict[str, Any]] = {}
    for key, done in runs.items():
        results[key] = {
            "us": {name: statistics.median(r["us"][name] for r in done) for name in done[0]["us"]},
            "total_us": statistics.median(r["total_us"] for r in done),
            "generator_us": statistics.median(r["generator_us"] for r in done),
            "p99_ms": statistics.median(r["p99_ms"] for r in done),
            "errors": sum(r["errors"] for r in done),
            "rounds": done,
        }
    return results


def fixed_rate(capacities: Iterable[float], share: float = 0.5, step: float = 250.0) -> float:
    """A rate every target holds with room: ``share`` of the lowest capacity measured,
    rounded down to ``step`` (at least ``step``)."""
    lowest = min(capacities)
    return max(step, (lowest * share) // step * step)
