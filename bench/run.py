"""``python -m bench`` (``./run bench``): every benchmark, side by side in one run.

1. in-process scoring with pytest-benchmark (onnxruntime vs XGBoost vs the pickled model;
   the service's hot path; a request through BentoML's ASGI stack);
2. ``/predict_batch``'s scoring against XGBoost native, interleaved (``bench.batch``);
3. a real bentogate host: v1 released through the workflow (each step timed);
4. serial latency and open-loop capacity (repeated, interleaved searches) of the bare
   endpoint (one process, and one per replica), the Bento, HAProxy and the peer, MLServer
   (``bench.peer``); CPU per request at a fixed rate of all but the peer, HAProxy and
   each replica apart (``bench.cpu``); then the resident memory of each
   (``bench.processes``);
5. v2 released and promoted under a probe (deploy and cutover times), and every process of
   the host that is neither a Bento nor HAProxy once that is over;
then ``bench/results/{results.json,results.md,latency.png,inprocess.json}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench import peer, report
from bench.capacity import LoadSpec, interleaved_capacities
from bench.cpu import Target, cpu_per_request, fixed_rate
from bench.machine import cpu_busy, describe, revision
from bench.models import ModelFiles, train
from bench.peer import Peer
from bench.processes import processes_of, resident_memory, tree_tops
from bench.release_timing import cutover, first_promotion, release_to_gate, rollbacks
from bench.stack import (
    MODEL,
    bare_endpoint,
    bentogate_host,
    listeners,
    post,
    production_port,
)
from bench.stats import percentiles_ms
from bentogate import warm
from bentogate.bentos import resident_bytes
from bentogate.context import Context
from bentogate.governance import DeploymentInfo

PROJECT_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


class Progress:
    """``[bench mm:ss] message`` lines on stderr, as the run goes."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        print(
            f"[bench {elapsed // 60:02d}:{elapsed % 60:02d}] {message}", file=sys.stderr, flush=True
        )

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass(frozen=True)
class Options:
    """How much of everything one run measures."""

    workers: int
    replicas: int | None  # None: the settings' default (one per core)
    project_dir: Path
    serial_count: int
    serial_warmup: int
    load: LoadSpec
    quick: bool
    capacity_rounds: int = 1
    batch_rounds: int = 15


def wait_for_quiet(progress: Progress, limit_s: float, busy_limit: float = 0.25) -> float:
    """Wait up to ``limit_s`` for the CPUs to be less than ``busy_limit`` busy (other test
    suites on a shared machine); the last share measured."""
    deadline = time.monotonic() + limit_s
    busy = cpu_busy(2.0)
    while busy > busy_limit and time.monotonic() < deadline:
        progress(f"the machine is {busy:.0%} busy with other work: waiting for it to calm down")
        busy = cpu_busy(5.0)
    return busy


def _bodies(models: ModelFiles, path: Path, count: int = 64) -> Path:
    bodies = [
        orjson.dumps({"features": row.astype(float).tolist()}).decode()
        for row in models.rows[:count]
    ]
    path.write_text(json.dumps(bodies))
    return path


def run_inprocess(models_dir: Path, out: Path, options: Options) -> dict[str, dict[str, float]]:
    """pytest-benchmark over bench/test_inprocess.py; medians and minimums in µs per test."""
    command = [
        # -n 0: one process (the suite's addopts start two xdist workers, and pytest-benchmark
        # switches itself off under xdist; two would also share the cores they time).
        sys.executable, "-m", "pytest", "bench/test_inprocess.py", "-q", "-n", "0",
        "-p", "no:cacheprovider",
        "--bench-models", str(models_dir), "--benchmark-json", str(out),
        "--bench-project-dir", str(options.project_dir),
        "--benchmark-columns", "median,min,rounds", "--benchmark-sort", "name",
        "--benchmark-max-time", "0.5" if options.quick else "1.0",
    ]  # fmt: skip
    subprocess.run(command, cwd=PROJECT_DIR, check=True, stdout=sys.stderr)
    data = json.loads(out.read_text())
    for bench in data["benchmarks"]:
        bench["stats"].pop("data", None)  # every round's time: megabytes, not worth keeping
    out.write_text(json.dumps(data, indent=1) + "\n")
    return {
        bench["name"]: {
            "median_us": bench["stats"]["median"] * 1e6,
            "min_us": bench["stats"]["min"] * 1e6,
            "rounds": bench["stats"]["rounds"],
        }
        for bench in data["benchmarks"]
    }


def serial_latency(
    targets: Mapping[str, tuple[int, LoadSpec]], options: Options, rounds: int = 4
) -> dict[str, Any]:
    """``bench.serial`` against every target (its port, and the bodies and path of its
    spec), in interleaved rounds (drift hits all alike); per target its figures and, under
    ``"latencies_us"``, every sample."""
    latencies: dict[str, list[float]] = {key: [] for key in targets}
    errors = dict.fromkeys(targets, 0)
    for _ in range(rounds):
        for key, (port, spec) in targets.items():
            command = [
                sys.executable, "-m", "bench.serial", "--port", str(port), "--path", spec.path,
                "--bodies", str(spec.bodies), "--count",
                str(options.serial_count // rounds), "--warmup", str(options.serial_warmup),
            ]  # fmt: skip
            done = subprocess.run(
                command, cwd=PROJECT_DIR, capture_output=True, text=True, check=True, timeout=600
            )
            result = json.loads(done.stdout)
            latencies[key] += result["latencies_us"]
            errors[key] += int(result["errors"])
    return {
        key: {**percentiles_ms(latencies[key]), "count": len(latencies[key]),
              "errors": errors[key], "latencies_us": latencies[key]}
        for key in targets
    }  # fmt: skip


def measure_targets(
    targets: Mapping[str, tuple[int, LoadSpec]], options: Options, progress: Progress
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Serial latency, then capacity (``options.capacity_rounds`` interleaved searches), of
    every target: (serial, capacity)."""
    progress(f"serial latency: {options.serial_count} requests per target, interleaved")
    serial = serial_latency(targets, options)
    progress(
        f"capacity at p99 <= {options.load.p99_limit_ms} ms: {options.capacity_rounds} "
        "interleaved searches per target"
    )
    capacity = interleaved_capacities(targets, options.capacity_rounds, progress=progress)
    return serial, capacity


def run_batch(models_dir: Path, options: Options) -> dict[str, Any]:
    """``bench.batch`` in its own process: /predict_batch's scoring vs XGBoost native."""
    command = [
        sys.executable, "-m", "bench.batch", "--models", str(models_dir),
        "--project-dir", str(options.project_dir), "--rounds", str(options.batch_rounds),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=PROJECT_DIR, capture_output=True, text=True, check=True, timeout=600
    )
    return dict(json.loads(done.stdout))


def _peer_checked(served: Peer, port: int, models: ModelFiles) -> dict[str, Any]:
    """The peer's score of the first row beside bentogate's (the same model: they must
    agree), and what the peer runs with."""
    body = orjson.dumps({"features": models.rows[0].astype(float).tolist()})
    status, answer = post(port, body)
    ours = float(orjson.loads(answer)["score"]) if status == 200 else float("nan")
    theirs = served.score(models.rows[0])
    if not abs(ours - theirs) <= 1e-5:
        raise RuntimeError(f"MLServer scores {theirs}, bentogate {ours}: not the same model")
    held = resident_bytes([served.pid])[served.pid]  # its HTTP process and its worker
    return {
        "settings": served.settings,
        "score_check": {"bentogate": ours, "mlserver": theirs},
        "resident_mib": held / 2**20 if held is not None else float("nan"),
    }


def on_bentogate(
    work: Path, models: ModelFiles, options: Options, progress: Progress
) -> dict[str, Any]:
    """A bentogate host: v1 released (timed); the targets (the floor with one process and,
    when the release deployed several replicas, with as many processes; one Bento; the
    production port; the peer) measured, with their resident memory; v2 released and cut
    over under a probe, rolled back twice, then what of the host still runs. The figures of
    all of it."""
    probe = json.loads(options.load.bodies.read_text())[0].encode()
    python = peer.peer_python(progress=progress)
    peer_load = replace(
        options.load,
        bodies=peer.write_bodies(models.rows[:64], work / "peer-bodies.json"),
        path=peer.INFER_PATH,
    )
    with bentogate_host(
        work / "home", workers=options.workers, project_dir=options.project_dir
    ) as ctx:
        progress("releasing v1 through bentogate (register ... gate, promote)")
        ref1, steps1 = release_to_gate(
            ctx, models.v1, models.holdout, progress=progress, replicas=options.replicas
        )
        progress(f"{ref1}: promote")
        steps1["promote"] = first_promotion(ctx, ref1)
        production = production_port(ctx)
        progress(f"starting the peer, MLServer {peer.MLSERVER} with its XGBoost runtime")
        # v1's replicas as the release deployed them (not as the settings say it would), by
        # port: the first is measured directly, and the bare floor runs as many processes.
        v1 = sorted(
            (d for d in ctx.registry.deployments(host=ctx.settings.host, model=MODEL)
             if d.version == ref1.version),
            key=lambda d: d.port,
        )  # fmt: skip
        replicas = len(v1)
        with contextlib.ExitStack() as stack:
            bare_port = stack.enter_context(bare_endpoint(models.onnx, work / "bare.log", probe))
            # The floor with as many processes as the release deployed replicas.
            bare_n_port = stack.enter_context(
                bare_endpoint(models.onnx, work / "bare-n.log", probe, processes=replicas)
            ) if replicas > 1 else None  # fmt: skip
            served = stack.enter_context(peer.mlserver(python, models.v1, work))
            checked = _peer_checked(served, production, models)
            targets = {
                "bare": (bare_port, options.load),
                **({"bare_n": (bare_n_port, options.load)} if bare_n_port else {}),
                "bento": (v1[0].port, options.load),
                "haproxy": (production, options.load),
                "mlserver": (served.port, peer_load),
            }
            serial, capacity = measure_targets(targets, options, progress)
            cpu = cpu_of(ctx, v1, targets, capacity, options, progress)
            progress("resident memory: each replica of v1, HAProxy, the floors")
            memory = resident_memory(ctx, {"bare": bare_port, "bare_n": bare_n_port})
        progress("releasing v2: deploy, gate, then cutover under a probe")
        ref2, steps2 = release_to_gate(
            ctx, models.v2, models.holdout, progress=progress, replicas=options.replicas
        )
        progress(f"{ref2}: promote (cutover), a probe on the production port")
        cut = cutover(ctx, ref2, probe)
        steps2["promote"] = float(cut["switch_s"])
        progress(f"rollback of {ref2}: to the warm v1, then to a stopped v1")
        back = rollbacks(ctx, ref2, probe)
        progress("what of bentogate's runs in the warm window, besides the Bentos and HAProxy")
        during = host_processes(ctx)
        progress("the warm window's end: v1 stopped, the expirer leaves; what runs then")
        after = after_warm_window(ctx)
    return {
        "replicas": replicas,
        "serial": serial,
        "capacity": capacity,
        "cpu": cpu,
        "memory": {
            **memory,
            "mlserver_mib": checked["resident_mib"],
            "warm_window": during,
            "after_cutover": after,
        },
        "peer": {**checked, "versions": peer.versions(python)},
        "release": {"v1": steps1, "v2": steps2, "cutover": cut, "rollback": back},
    }


def cpu_of(
    ctx: Context,
    replicas: Sequence[DeploymentInfo],
    targets: Mapping[str, tuple[int, LoadSpec]],
    capacity: Mapping[str, Any],
    options: Options,
    progress: Progress,
) -> dict[str, Any]:
    """CPU per request (``bench.cpu``) of the floors, one Bento and the production port
    (HAProxy and each replica apart), at half the lowest capacity of them measured in this
    run: a rate each holds with room. The peer is left out: it holds no such rate.
    ``replicas``: the production version's, in the backend's order."""
    pids = [(d.port, d.pid) for d in replicas if d.pid is not None]
    bento_port = targets["bento"][0]
    master = ctx.sidecar.process.master_pid()
    groups: dict[str, dict[str, list[int]]] = {
        "bare": {"floor": tree_tops(listeners(targets["bare"][0]))},
        **({"bare_n": {"floor": tree_tops(listeners(targets["bare_n"][0]))}}
           if "bare_n" in targets else {}),
        "bento": {"replica": [pid for port, pid in pids if port == bento_port]},
        "haproxy": {
            "haproxy": [master] if master is not None else [],
            **{f"replica {n}": [pid] for n, (_, pid) in enumerate(pids, 1)},
        },
    }  # fmt: skip
    rate = fixed_rate(capacity[key]["rate"] for key in groups)
    measured = cpu_per_request(
        {key: Target(targets[key][0], targets[key][1], pids) for key, pids in groups.items()},
        rate,
        rounds=1 if options.quick else 3,
        progress=progress,
    )
    return {"rate": rate, "targets": measured}


def host_processes(ctx: Context) -> list[dict[str, Any]]:
    """Every process of the bench host (``bench.processes``): the deployments' pids are the
    Bentos, the master's HAProxy; anything else is listed as such."""
    return processes_of(
        ctx.settings.home,
        bentos=[d.pid for d in ctx.registry.deployments(host=ctx.settings.host)
                if d.pid is not None],
        haproxy=ctx.sidecar.process.master_pid(),
    )  # fmt: skip


def after_warm_window(ctx: Context, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The host's processes once the cutover's warm window is over: the warm versions are
    stopped as the expirer stops them when their time comes (``bento.keep_previous_s``,
    300 s, not waited for here), then the expirer itself, which bakes and expires only while
    a version is warm, is given ``timeout`` seconds to see that and leave."""
    warm.stop_expired(ctx, now=datetime.now(UTC) + timedelta(days=1))
    deadline = time.monotonic() + timeout
    while warm.expirer_pids(ctx) and time.monotonic() < deadline:
        time.sleep(0.1)
    return host_processes(ctx)


def _options(argv: list[str] | None, bodies: Path) -> tuple[Options, Path, float]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    # The default release's: one replica per core, one worker each (2 replicas x 1 worker beat
    # 1 x 2 on 2 cores: HAProxy balances each request, while BentoML's workers share one
    # listening socket and split connections unevenly).
    parser.add_argument("--workers", type=int, default=1, help="BentoML workers per Bento")
    parser.add_argument(
        "--replicas", type=int, default=None,
        help="Bentos per version (default: bento.replicas, one per core, as a release deploys)",
    )  # fmt: skip
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=PROJECT_DIR,
        help="build the Bentos from this tree's service.py (e.g. a checkout of main: before/after)",
    )
    parser.add_argument("--serial-count", type=int, default=20_000)
    parser.add_argument(
        "--capacity-rounds", type=int, default=3,
        help="interleaved capacity searches per target (their median and spread)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="short smoke run (figures noisy)")
    parser.add_argument(
        "--wait-quiet", type=float, default=120.0, help="wait this long for a quiet machine"
    )
    args = parser.parse_args(argv)
    options = Options(
        workers=args.workers,
        replicas=args.replicas,
        project_dir=args.project_dir.resolve(),
        serial_count=2_000 if args.quick else args.serial_count,
        serial_warmup=200 if args.quick else 500,
        load=LoadSpec(bodies=bodies, duration_s=1.5 if args.quick else 4.0),
        quick=args.quick,
        capacity_rounds=1 if args.quick else args.capacity_rounds,
        batch_rounds=5 if args.quick else 15,
    )
    return options, args.out, args.wait_quiet


def main(argv: list[str] | None = None) -> int:
    progress = Progress()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="bentogate-bench-") as temp:
        work = Path(temp)
        options, out, wait_quiet = _options(argv, work / "bodies.json")
        measured_revision = revision(options.project_dir)  # before this run writes results
        background_start = wait_for_quiet(progress, wait_quiet)
        progress(f"machine busy {background_start:.0%} before the run")
        progress("training v1 and v2 (300 trees, depth 6, 220 features)")
        models = train(work / "models")
        _bodies(models, options.load.bodies)
        progress("in-process benchmarks (pytest-benchmark)")
        out.mkdir(parents=True, exist_ok=True)
        inprocess = run_inprocess(work / "models", out / "inprocess.json", options)
        progress(f"/predict_batch's scoring vs XGBoost native: {options.batch_rounds} rounds")
        batch = run_batch(work / "models", options)
        measured = on_bentogate(work, models, options, progress)
    background_end = cpu_busy(2.0)
    latencies = {key: row.pop("latencies_us") for key, row in measured["serial"].items()}
    replicas = measured.pop("replicas")  # as deployed, and as many bare processes
    results: dict[str, Any] = {
        "started": started,
        "elapsed_s": progress.elapsed,
        "machine": describe(),
        "background_cpu": {"start": background_start, "end": background_end},
        "config": {
            "workers": options.workers,
            "replicas": replicas,
            "project_dir": str(options.project_dir),
            "revision": measured_revision,
            "quick": options.quick,
            "serial_count": options.serial_count,
            "serial_warmup": options.serial_warmup,
            "capacity_rounds": options.capacity_rounds,
            "capacity": {k: v for k, v in asdict(options.load).items() if k != "bodies"},
        },
        "inprocess": inprocess,
        "batch": batch,
        **measured,
    }
    report.write(results, out, latencies)
    progress(f"done: {out / 'results.md'}")
    for goal, aim, value, ok in report.goals(results):
        verdict = "" if ok is None else " met" if ok else " NOT met"
        print(f"{goal}: {value} (goal {aim}){verdict}")
    return 0
