"""``python -m bench.replica_kill``: kill -9 one replica of the live version, again and again,
under load through HAProxy, and count the requests that failed.

A bentogate host serves a small fraud model with ``--replicas`` Bentos behind the sidecar;
four probe threads send requests over keep-alive connections to the production port
(a few hundred req/s each). Each round kills one replica's whole process tree, waits until
HAProxy has it DOWN and deploys a replacement (``release.deploy``, which ends the dead
replica's record), so the next round finds as many replicas again. A failed request is any
non-200 answer or transport error. With ``--project-dir`` the Bentos are built from another
checkout's service.py (before/after: uvicorn's own two writes per response vs one).

Writes ``replica_kill.json`` (per round: the victim, seconds to DOWN, requests, failures
and their kinds) and prints a summary line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from bench.release_timing import Probe, first_promotion, release_to_gate
from bench.run import RESULTS_DIR, Progress
from bench.stack import ACTORS, MODEL, bentogate_host, production_port
from bentogate import release
from bentogate.bentos import process_tree
from bentogate.context import PROJECT_DIR, Context, Ref, artifact_dir
from bentogate.data import make_transactions, train_xgboost, write_csv
from bentogate.modelimport import load_artifact


def _model(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    train, holdout = make_transactions(3000, seed=7).split(0.6)
    model_file = directory / "fraud.json"
    train_xgboost(train, n_estimators=20, max_depth=3).save_model(str(model_file))  # type: ignore[attr-defined]
    return model_file, write_csv(holdout, directory / "holdout.csv")


def _kill_tree(pid: int) -> None:
    for member in process_tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def _wait_down(ctx: Context, server: str, limit_s: float = 10.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        states = {s.server: s.status for s in ctx.sidecar.server_status()}
        if states.get(server, "").startswith("DOWN"):
            return time.monotonic() - started
        time.sleep(0.02)
    raise RuntimeError(f"{server} not DOWN after {limit_s} s")


def kill_rounds(
    ctx: Context, ref: Ref, body: bytes, kills: int, progress: Progress
) -> list[dict[str, Any]]:
    """``kills`` rounds of kill → DOWN → replacement, under four probes."""
    probes = [Probe(production_port(ctx), body) for _ in range(4)]
    for probe in probes:
        probe.start()
    rounds = []
    try:
        time.sleep(1.0)
        for number in range(1, kills + 1):
            victim = next(d for d in ctx.registry.deployments() if d.version == ref.version)
            assert victim.pid is not None
            before = [(len(p.answers), len(p.failures)) for p in probes]
            _kill_tree(victim.pid)
            down_s = _wait_down(ctx, f"v{ref.version}_{victim.port}")
            time.sleep(0.5)  # requests that were in flight at the kill have settled
            release.deploy(ctx, ref, actor=ACTORS.release, replicas=1)  # ends the dead one
            failures: list[tuple[float, str]] = []
            requests = 0
            for probe, (answered, failed) in zip(probes, before, strict=True):
                failures += probe.failures[failed:]
                requests += len(probe.answers) - answered + len(probe.failures) - failed
            rounds.append(
                {
                    "round": number,
                    "victim_port": victim.port,
                    "down_s": down_s,
                    "requests": requests,
                    "failures": len(failures),
                    "kinds": dict(Counter(kind for _, kind in failures)),
                }
            )
            progress(f"kill {number}/{kills}: DOWN after {down_s:.2f} s, {len(failures)} failed")
    finally:
        for probe in probes:
            probe.stop()
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replica_kill", description=__doc__)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "replica_kill.json")
    args = parser.parse_args(argv)
    progress = Progress()
    with tempfile.TemporaryDirectory(prefix="bentogate-kill-") as temp:
        work = Path(temp)
        model_file, holdout = _model(work / "model")
        with bentogate_host(work / "home", workers=1, project_dir=args.project_dir) as ctx:
            progress(f"releasing {MODEL} with {args.replicas} replicas")
            ref, _ = release_to_gate(
                ctx, model_file, holdout, progress=progress, replicas=args.replicas
            )
            first_promotion(ctx, ref)
            info = ctx.registry.get_version(ref.model, ref.version)
            canary = load_artifact(artifact_dir(info.artifact_uri)).canary_row
            body = orjson.dumps({"features": canary})
            rounds = kill_rounds(ctx, ref, body, args.kills, progress)
    summary: dict[str, Any] = {
        "project_dir": str(args.project_dir.resolve()),
        "replicas": args.replicas,
        "kills": args.kills,
        "requests": sum(r["requests"] for r in rounds),
        "failed_requests": sum(r["failures"] for r in rounds),
        "kills_with_a_failure": sum(1 for r in rounds if r["failures"]),
        "median_down_s": sorted(r["down_s"] for r in rounds)[len(rounds) // 2],
        "rounds": rounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    progress(
        f"{summary['kills_with_a_failure']} of {args.kills} kills lost requests "
        f"({summary['failed_requests']} of {summary['requests']}); "
        f"DOWN after {summary['median_down_s']:.2f} s (median); {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
