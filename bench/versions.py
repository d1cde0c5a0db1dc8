"""``python -m bench.versions REF [REF ...]``: bentogate as released at each git ``REF``, each
deployed the way its own README deploys it, measured side by side in one run.

For each ref: a worktree of it (``git worktree add --detach``) with its own ``.venv``
(``./run setup``), then ``bentogate demo --keep-running`` there: the product of that commit
with its default settings, trained, gated and cut over by its own code, serving v2 on its own
production port (ports and state directory moved apart by ``BENTOGATE_*`` settings, warm
versions kept for the whole run). Then, against every ref's production port:

1. **serial latency**, one request at a time over one keep-alive connection (``bench.serial``),
   in interleaved rounds (drift hits every ref alike);
2. **capacity at p99 ≤ 5 ms** (``bench.capacity``), repeated with the refs alternating, so
   each ref's figure comes with its spread.

Every figure is also a ratio to the first ref's. This is how "no slowdown" of a refactor is
shown: the commit before it and the commit after it, measured together, not two runs on two
days. Writes ``bench/results/<--name>.{json,md}`` (default ``versions``).

A ref may carry settings that its demo runs with instead of its defaults, after commas:
``HEAD,bento.replicas=1,haproxy.access_log=false`` (each ``section.field=value`` becomes
``BENTOGATE_SECTION__FIELD``): to compare two commits deployed alike when their defaults
differ, beside the same commits as each deploys itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.capacity import LoadSpec, find_capacity
from bench.machine import cpu_busy, describe
from bench.run import PROJECT_DIR, RESULTS_DIR, Options, Progress, serial_latency, wait_for_quiet
from bench.stats import ratio
from bentogate.data import make_transactions

#: where each ref's ports start: production (and candidate) ports, stats, then its backends
PORT_BASE = 21000
PORT_BLOCK = 200


@dataclass(frozen=True)
class Deployed:
    """One ref, served: its commit, tree and production port."""

    ref: str
    commit: str
    tree: Path
    port: int


def _git(*args: str, cwd: Path = PROJECT_DIR) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def split_ref(spec: str) -> tuple[str, dict[str, str]]:
    """``REF[,section.field=value...]`` → the git ref and the settings' environment."""
    ref, *pairs = spec.split(",")
    settings = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        section, dot, field = key.partition(".")
        if not (equals and dot and section and field):
            raise SystemExit(f"{spec}: {pair!r} is not section.field=value")
        settings[f"BENTOGATE_{section.upper()}__{field.upper()}"] = value
    return ref, settings


def _environment(home: Path, base: int) -> dict[str, str]:
    """Settings for one ref's demo: its own state and ports, warm versions kept all run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENTOGATE_")}
    env |= {
        "BENTOGATE_HOME": str(home),
        "BENTOGATE_PORTS__PRODUCTION_START": str(base),
        "BENTOGATE_PORTS__STATS": str(base + 9),
        "BENTOGATE_PORTS__BACKEND_START": str(base + 10),
        "BENTOGATE_PORTS__BACKEND_END": str(base + PORT_BLOCK - 1),
        "BENTOGATE_BENTO__KEEP_PREVIOUS_S": "86400",
    }
    return env


@contextmanager
def deployed(spec: str, work: Path, index: int, progress: Progress) -> Iterator[Deployed]:
    """The demo of ``spec``'s ref running with its settings (:func:`split_ref`; set up in
    ``work``; the ``index``-th ref of the run, its ports and state apart from the others'),
    shut down at the end."""
    ref, settings = split_ref(spec)
    base = PORT_BASE + index * PORT_BLOCK
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    tree = work / commit[:12]
    if not (tree / ".git").exists():
        progress(f"{ref}: worktree of {commit[:12]} in {tree}")
        _git("worktree", "add", "--detach", str(tree), commit)
    progress(f"{ref}: ./run setup (its own .venv)")
    subprocess.run(["./run", "setup"], cwd=tree, check=True, stdout=sys.stderr)
    state = work / f"state-{index}"
    shutil.rmtree(state, ignore_errors=True)  # a demo starts from nothing
    env = _environment(state / "home", base) | settings
    demo = state / "demo"
    told = ", ".join(f"{k}={v}" for k, v in settings.items()) or "its default settings"
    progress(f"{ref}: bentogate demo --keep-running ({told})")
    command = [str(tree / ".venv/bin/bentogate"), "demo", "--keep-running", "--workdir", str(demo)]
    try:
        subprocess.run(command, cwd=tree, env=env, check=True, stdout=sys.stderr, timeout=900)
        yield Deployed(f"{index + 1}:{spec}", commit, tree, base)
    finally:
        progress(f"{ref}: bentogate shutdown")
        subprocess.run(
            [str(tree / ".venv/bin/bentogate"), "shutdown"], cwd=tree, env=env,
            stdout=sys.stderr, stderr=sys.stderr, timeout=300, check=False,
        )  # fmt: skip


def _bodies(path: Path, count: int = 64) -> Path:
    """Rows of the demo's own data set (its generator, its feature count) as request bodies."""
    data = make_transactions(count, seed=5)
    rows = np.asarray(data.features, dtype=float)
    path.write_text(json.dumps([orjson.dumps({"features": r.tolist()}).decode() for r in rows]))
    return path


def measure(
    refs: list[Deployed], options: Options, repeats: int, progress: Progress
) -> dict[str, Any]:
    progress(f"serial latency: {options.serial_count} requests per ref, interleaved rounds")
    serial = serial_latency({d.ref: (d.port, options.load) for d in refs}, options)
    capacity: dict[str, list[float]] = {d.ref: [] for d in refs}
    for repeat in range(repeats):
        order = refs if repeat % 2 == 0 else list(reversed(refs))
        for d in order:
            progress(f"capacity of {d.ref} at p99 <= {options.load.p99_limit_ms} ms "
                     f"({repeat + 1}/{repeats})")  # fmt: skip
            found = find_capacity(d.port, options.load)
            capacity[d.ref].append(found.rate)
    first = refs[0].ref
    rows = {}
    for d in refs:
        figures = {k: v for k, v in serial[d.ref].items() if k != "latencies_us"}
        rates = capacity[d.ref]
        rows[d.ref] = {
            "commit": d.commit,
            "serial": figures,
            "capacity_rps": rates,
            "capacity_median_rps": float(np.median(rates)),
            "vs_first": {
                "p50": ratio(figures["p50_ms"], serial[first]["p50_ms"]),
                "p99": ratio(figures["p99_ms"], serial[first]["p99_ms"]),
                "capacity": ratio(float(np.median(rates)), float(np.median(capacity[first]))),
            },
        }
    return rows


def write(results: dict[str, Any], out: Path, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    machine = results["machine"]
    lines = [
        "# bentogate at several commits, side by side",
        "",
        f"One run of `python -m bench.versions {' '.join(results['refs'])}` on "
        f"{results['started']} ({machine['cpus']} x {machine['cpu_model']}, HAProxy "
        f"{machine['haproxy']}); took {results['took_min']:.1f} min. "
        f"CPU busy with other work: {results['busy_before']:.0%} before, "
        f"{results['busy_after']:.0%} after.",
        "",
        "Each ref is its own checkout running `bentogate demo --keep-running` with its own "
        "default settings (replicas, workers, HAProxy config as that commit deploys them), "
        "except the settings named after a ref's commas. "
        f"Serial: {results['serial_count']} requests per ref in interleaved rounds. Capacity "
        f"at p99 ≤ 5 ms: {results['repeats']} searches per ref, the refs alternating.",
        "",
        "| ref | commit | p50 ms | p99 ms | p99.9 ms | p50 vs first | p99 vs first "
        "| capacity req/s (each search) | capacity vs first |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for ref, row in results["rows"].items():
        s, v = row["serial"], row["vs_first"]
        each = ", ".join(f"{r:.0f}" for r in row["capacity_rps"])
        lines.append(
            f"| `{ref}` | {row['commit'][:12]} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} "
            f"| {s['p99_9_ms']:.3f} | {v['p50']:.3f}x | {v['p99']:.3f}x "
            f"| {row['capacity_median_rps']:.0f} ({each}) | {v['capacity']:.2f}x |"
        )
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "refs", nargs="+",
        help="git refs, each with settings after commas (REF,section.field=value); ratios are "
        "to the first; a ref given twice is an A/A pair (the run's own resolution)",
    )  # fmt: skip
    parser.add_argument("--serial-count", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2, help="capacity searches per ref")
    parser.add_argument("--wait-quiet", type=float, default=120.0)
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "bentogate-versions",
        help="worktrees and their state (kept: a second run reuses the venvs)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="versions", help="the results' file name")
    args = parser.parse_args(argv)
    progress = Progress()
    args.work.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    with ExitStack() as stack:
        refs = [
            stack.enter_context(deployed(ref, args.work, i, progress))
            for i, ref in enumerate(args.refs)
        ]
        load = LoadSpec(bodies=_bodies(args.work / "bodies.json"))
        options = Options(
            workers=1, replicas=None, project_dir=PROJECT_DIR, serial_count=args.serial_count,
            serial_warmup=500, load=load, quick=False,
        )  # fmt: skip
        busy_before = wait_for_quiet(progress, args.wait_quiet)
        rows = measure(refs, options, args.repeats, progress)
        busy_after = cpu_busy(2.0)
    results = {
        "refs": args.refs,
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": describe(),
        "took_min": progress.elapsed / 60,
        "busy_before": busy_before,
        "busy_after": busy_after,
        "serial_count": args.serial_count,
        "repeats": args.repeats,
        "rows": rows,
    }
    write(results, args.out, args.name)
    progress(f"wrote {args.out / args.name}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
