"""``python -m bench.recent_cost``: what keeping clients' recent rows (for shadow scoring
and the bake, ``serving/recent.py``) costs the prediction path, side by side in one run.

One host, one HAProxy, the same model released twice as two models with their own
production ports, built alike but for ``bento.recent_rows``: 2,000 (the default) and 0
(nothing kept). Serial latency through HAProxy in interleaved rounds (drift hits both
alike); p50/p99 of each, their ratio and difference. The goal (issue "Live-traffic
safety"): at most 5 % or 20 µs more at p50, whichever is larger. Writes
``bench/results/recent_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.capacity import LoadSpec
from bench.machine import cpu_busy, describe
from bench.models import train
from bench.run import RESULTS_DIR, Options, Progress, _bodies, serial_latency, wait_for_quiet
from bench.stack import ACTORS, bentogate_host
from bench.stats import ratio
from bentogate import release
from bentogate.context import Ref

KEEPS = {"keeps 2,000 rows (default)": 2000, "keeps none": 0}


def measure(work: Path, options: Options, progress: Progress) -> dict[str, Any]:
    """Release the model once per setting, then serial latency through HAProxy of both."""
    models = train(work / "models")
    _bodies(models, options.load.bodies)
    ports = {}
    with bentogate_host(work / "home", workers=1) as ctx:
        for label, rows in KEEPS.items():
            name = "keeps" if rows else "keepsnone"
            progress(f"releasing {name} (bento.recent_rows = {rows})")
            ctx.settings.bento.recent_rows = rows  # built into its Bento
            info = release.register(ctx, name, models.v1, models.holdout,
                                    developer=ACTORS.developer)  # fmt: skip
            release.release(ctx, Ref(name, info.version), models.holdout, actors=ACTORS)
            ports[label] = ctx.production_port(ctx.registry.get_model(name).production_port)
        progress(f"serial latency through HAProxy: {options.serial_count} requests each")
        serial = serial_latency(ports, options, rounds=8)
    for row in serial.values():
        row.pop("latencies_us")
    keeps, none = (serial[label] for label in KEEPS)
    return {
        "serial": serial,
        "p50_ratio": ratio(keeps["p50_ms"], none["p50_ms"]),
        "p50_added_us": (keeps["p50_ms"] - none["p50_ms"]) * 1000,
        "p99_ratio": ratio(keeps["p99_ms"], none["p99_ms"]),
        "p99_added_us": (keeps["p99_ms"] - none["p99_ms"]) * 1000,
    }


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "recent_cost.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        "# What keeping recent rows costs the prediction path",
        "",
        f"{results['started']}, {results['machine']['cpus']} CPUs, busy "
        f"{results['background_cpu']['start']:.0%} before / "
        f"{results['background_cpu']['end']:.0%} after; serial requests through HAProxy, "
        "interleaved rounds; default settings but `bento.recent_rows`.",
        "",
        "| Bento | p50 ms | p99 ms | requests |",
        "|---|---:|---:|---:|",
    ]
    for label, row in results["serial"].items():
        lines.append(f"| {label} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | {row['count']} |")
    goal = max(0.05 * results["serial"]["keeps none"]["p50_ms"] * 1000, 20.0)
    lines += [
        "",
        f"p50: {results['p50_ratio']:.3f}x ({results['p50_added_us']:+.1f} µs); "
        f"p99: {results['p99_ratio']:.3f}x ({results['p99_added_us']:+.1f} µs). "
        f"Goal: at most {goal:.0f} µs more at p50 "
        f"({'met' if results['p50_added_us'] <= goal else 'NOT met'}).",
        "",
        "Rerun: `.venv/bin/python -m bench.recent_cost` (about 3 minutes; a quiet machine).",
    ]
    (out / "recent_cost.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recent_cost", description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--serial-count", type=int, default=16_000)
    parser.add_argument("--wait-quiet", type=float, default=120.0)
    args = parser.parse_args(argv)
    progress = Progress()
    with tempfile.TemporaryDirectory(prefix="bentogate-recent-") as temp:
        work = Path(temp)
        options = Options(
            workers=1, replicas=1, project_dir=Path.cwd(), serial_count=args.serial_count,
            serial_warmup=500, load=LoadSpec(bodies=work / "bodies.json"), quick=False,
        )  # fmt: skip
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        busy = wait_for_quiet(progress, args.wait_quiet)
        measured = measure(work, options, progress)
    results = {
        "started": started,
        "machine": describe(),
        "background_cpu": {"start": busy, "end": cpu_busy(2.0)},
        **measured,
    }
    write(results, args.out)
    progress(f"done: {args.out / 'recent_cost.md'}")
    print((args.out / "recent_cost.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
