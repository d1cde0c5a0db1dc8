"""``python -m bench.bake_cost``: what the watched bake costs live traffic, side by side.

After every cutover the previous version stays warm (``bento.keep_previous_s``, 5 minutes
by default) and the expirer bakes the new live version: every look (0.25 s) it reads the
production port's counters from HAProxy, each live replica's latency histogram
(``/_latency``) and the rows its clients sent (``/_recent``), has the warm previous version
score the new ones, and judges. Clients meet all of that on the production port.

One ``bentogate demo --keep-running`` from this checkout (its default settings, but a warm
window long enough for the whole measurement and its own ports and state), then rounds
that alternate the expirer running and paused (``SIGSTOP``: the same processes, the same
ports, nothing else changed), the order reversed every other round. Each round: serial
latency (``bench.serial``) and open-loop steps at fixed rates (``bench.capacity.run_step``:
p99 counted from when each request was due) on the production port.

The bodies are the demo's own rows (64 of them): the bake compares a row once, so after
the first round it reads and judges but has no new rows to score on the previous version;
with clients' distinct rows the previous version would also score each new one (a
``/predict_batch`` on its own replica, not a live one).

Writes ``bench/results/bake_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.capacity import LoadSpec, run_step
from bench.machine import cpu_busy, describe
from bench.run import PROJECT_DIR, RESULTS_DIR, Progress, wait_for_quiet
from bench.stats import ratio
from bench.versions import _bodies, _environment
from bentogate import warm
from bentogate.context import Context
from bentogate.settings import Settings

PORT_BASE = 23000
STATES = ("bake running", "bake paused")


@contextmanager
def demo(work: Path, progress: Progress) -> Iterator[tuple[int, Context]]:
    """This checkout's demo, kept running (warm versions for a day): its production port
    and a context on its state; shut down at the end."""
    env = _environment(work / "home", PORT_BASE)
    bentogate = str(PROJECT_DIR / ".venv" / "bin" / "bentogate")
    progress("bentogate demo --keep-running (default settings; warm window: a day)")
    command = [bentogate, "demo", "--keep-running", "--workdir", str(work / "demo")]
    try:
        subprocess.run(command, cwd=PROJECT_DIR, env=env, check=True, stdout=sys.stderr,
                       timeout=900)  # fmt: skip
        ctx = Context(Settings(home=work / "home"))  # the demo's state: its expirer's pid
        yield PORT_BASE, ctx
        ctx.close()
    finally:
        progress("bentogate shutdown")
        subprocess.run([bentogate, "shutdown"], cwd=PROJECT_DIR, env=env, stdout=sys.stderr,
                       timeout=300, check=False)  # fmt: skip


def _serial(port: int, bodies: Path, count: int) -> list[float]:
    command = [sys.executable, "-m", "bench.serial", "--port", str(port), "--bodies",
               str(bodies), "--count", str(count), "--warmup", "300"]  # fmt: skip
    done = subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, text=True, check=True,
                          timeout=600)  # fmt: skip
    latencies: list[float] = json.loads(done.stdout)["latencies_us"]
    return latencies


def measure(
    port: int, expirer: int, spec: LoadSpec, rates: list[float], rounds: int, serial_count: int,
    progress: Progress,
) -> dict[str, Any]:  # fmt: skip
    """Interleaved rounds, the expirer running and paused in turn."""
    serial: dict[str, list[float]] = {state: [] for state in STATES}
    steps: dict[str, dict[str, list[dict[str, float]]]] = {
        state: {f"{rate:g}": [] for rate in rates} for state in STATES
    }
    try:
        for number in range(rounds):
            for state in STATES if number % 2 == 0 else STATES[::-1]:
                os.kill(expirer, signal.SIGCONT if state == STATES[0] else signal.SIGSTOP)
                time.sleep(1.0)
                progress(f"round {number + 1} of {rounds}: {state}")
                serial[state] += _serial(port, spec.bodies, serial_count)
                for rate in rates:
                    step = run_step(port, rate, spec)
                    steps[state][f"{rate:g}"].append(
                        {"p99_ms": step.p99_ms, "errors": step.errors, "measured": step.measured}
                    )
                    progress(f"  {rate:g} req/s: p99 {step.p99_ms:.2f} ms, {step.errors} errors")
    finally:
        os.kill(expirer, signal.SIGCONT)
    result: dict[str, Any] = {}
    for state in STATES:
        latencies = np.asarray(serial[state])
        result[state] = {
            "serial": {
                f"p{q:g}_ms": float(np.percentile(latencies, q)) / 1000 for q in (50, 99, 99.9)
            }
            | {"count": int(latencies.size)},
            "steps": steps[state],
        }
    return result


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bake_cost.json").write_text(json.dumps(results, indent=1) + "\n")
    on, off = (results["states"][state] for state in STATES)
    lines = [
        "# What the watched bake costs live traffic",
        "",
        f"One run of `python -m bench.bake_cost` on {results['started']} "
        f"({results['machine']['cpus']} CPUs; busy with other work {results['busy']['start']:.0%} "
        f"before, {results['busy']['end']:.0%} after); took {results['took_min']:.1f} min. "
        "`bentogate demo --keep-running` of this checkout with its default settings but a "
        "warm window of a day; the production port measured with the expirer running and "
        f"paused in turn, {results['rounds']} interleaved rounds.",
        "",
        "| | bake running | bake paused | running / paused |",
        "|---|---:|---:|---:|",
    ]
    for key in ("p50_ms", "p99_ms", "p99.9_ms"):
        a, b = on["serial"][key], off["serial"][key]
        lines.append(f"| serial {key[:-3]} ms | {a:.3f} | {b:.3f} | {ratio(a, b):.2f}x |")
    for rate in on["steps"]:
        a_all = [s["p99_ms"] for s in on["steps"][rate]]
        b_all = [s["p99_ms"] for s in off["steps"][rate]]
        a, b = float(np.median(a_all)), float(np.median(b_all))
        lines.append(
            f"| p99 ms at {rate} req/s (median of rounds; each) | {a:.2f} "
            f"({', '.join(f'{x:.1f}' for x in a_all)}) | {b:.2f} "
            f"({', '.join(f'{x:.1f}' for x in b_all)}) | {ratio(a, b):.2f}x |"
        )
    rerun = "Rerun: `.venv/bin/python -m bench.bake_cost` (about 4 minutes; a quiet machine)."
    lines += ["", rerun]
    (out / "bake_cost.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bake_cost", description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--serial-count", type=int, default=3000, help="per state and round")
    parser.add_argument("--rates", default="1500,3000", help="open-loop steps, req/s")
    parser.add_argument("--wait-quiet", type=float, default=120.0)
    args = parser.parse_args(argv)
    progress = Progress()
    started = datetime.now(UTC)
    busy_start = wait_for_quiet(progress, args.wait_quiet)
    with tempfile.TemporaryDirectory(prefix="bench-bake-") as tmp:
        work = Path(tmp)
        spec = LoadSpec(bodies=_bodies(work / "bodies.json"))
        with demo(work, progress) as (port, ctx):
            [expirer] = warm.expirer_pids(ctx)
            states = measure(port, expirer, spec, [float(r) for r in args.rates.split(",")],
                             args.rounds, args.serial_count, progress)  # fmt: skip
    results = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "took_min": (datetime.now(UTC) - started).total_seconds() / 60,
        "machine": describe(),
        "busy": {"start": busy_start, "end": cpu_busy(2.0)},
        "rounds": args.rounds,
        "states": states,
    }
    write(results, args.out)
    progress(f"wrote {args.out / 'bake_cost.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
