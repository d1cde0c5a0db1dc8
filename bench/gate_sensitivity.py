"""``python -m bench.gate_sensitivity``: how the release gate judges copies of the live
version that are slower by a known factor, on a quiet machine and next to a noisy neighbour.

A bentogate host with the settings' default gate policy serves v2 of the demo models as
the live version (released through the whole workflow). Copies of it with the same scores
but zero-valued "chain" trees appended (:mod:`bench.slowcopy`) have a server time of 1.0x,
1.25x, 1.5x and 2x live's: the chains per factor come from live's server p50 under gate
load (one calibration gate of the identical copy) and the in-process cost of chains,
timed at several copy sizes (a chain costs more in a copy that no longer fits the caches),
then corrected by a probe gate of each copy (:func:`settle`: served, a chain costs more
still).
Each copy is registered, validated, approved, built and deployed as any candidate, gated
``--runs`` times against live (``bentogate.loadtest.run_gate`` directly, as ``gating.gate`` does,
but without recording a verdict: a rejected version could not be gated again), quiet and noisy
runs interleaved, and retired once the next copy is deployed (``release.retire`` refuses
to drain a version HAProxy's candidate route still points at). Noisy: another process
burns one core in bursts (:mod:`bench.noise`) for the whole gate.

Writes ``gate_sensitivity.{json,md,png}`` (see :mod:`bench.sensitivity_report`) and prints
one progress line per gate on stderr. Exit code 1 if a gate could not be run at all.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import sensitivity_report
from bench.machine import cpu_busy, describe
from bench.noise import Noise, noisy_neighbour
from bench.run import RESULTS_DIR, Progress, wait_for_quiet
from bench.slowcopy import DEPTH, ChainCost, add_chains, chain_cost_us, chains_for
from bench.stack import ACTORS, MODEL, bentogate_host
from bentogate import gating, release
from bentogate.context import Context, Ref, artifact_dir
from bentogate.data import make_demo_files, read_csv
from bentogate.errors import LoadTestError
from bentogate.loadtest import GatePolicy, GateResult, run_gate
from bentogate.modelimport import load_artifact
from bentogate.settings import GateSettings

FACTORS = (1.0, 1.25, 1.5, 2.0)
QUIET, NOISY = "quiet", "noisy"
NOISE_ON_S, NOISE_OFF_S = 0.2, 0.8


@dataclass(frozen=True)
class Options:
    """How many gates per factor and condition, and where the results go."""

    runs: int
    identical_runs: int
    noisy_identical_runs: int
    factors: tuple[float, ...]
    noise: bool
    out: Path
    wait_quiet: float
    verbose: bool

    def counts(self, factor: float) -> tuple[int, int]:
        """(quiet, noisy) gates for ``factor``: the identical copy gets its own counts."""
        identical = factor == 1.0
        quiet = self.identical_runs if identical else self.runs
        noisy = (self.noisy_identical_runs if identical else self.runs) if self.noise else 0
        return quiet, noisy


@dataclass(frozen=True)
class Bench:
    """The host and what every gate of the run shares."""

    ctx: Context
    model_file: Path
    holdout: Path
    work: Path
    policy: GatePolicy
    progress: Progress
    verbose: bool


@dataclass(frozen=True)
class Copy:
    """A staged copy of live: its version, how many chains of what depth it carries, its
    ONNX sha256 and its reference rows (what the gate sends)."""

    ref: Ref
    chains: int
    depth: int
    sha256: str
    rows: list[list[float]]

    def describe(self) -> dict[str, Any]:
        return {"version": self.ref.version, "chains": self.chains, "depth": self.depth,
                "sha256": self.sha256}  # fmt: skip


def schedule(quiet: int, noisy: int) -> list[str]:
    """The conditions in running order: alternating while both last (drift over the run
    hits both alike), then the rest of the longer one."""
    order: list[str] = []
    for i in range(max(quiet, noisy)):
        order += [QUIET] * (i < quiet) + [NOISY] * (i < noisy)
    return order


def release_live(ctx: Context, files: dict[str, Path], progress: Progress, *, verbose: bool) -> Ref:
    """Register ``files["v2"]`` and take it through the whole release to production (its
    steps and gate progress on ``progress`` only when ``verbose``)."""
    info = release.register(ctx, MODEL, files["v2"], files["holdout"], developer=ACTORS.developer)
    ref = Ref(MODEL, info.version)
    steps = progress if verbose else _silent
    release.release(ctx, ref, files["holdout"], actors=ACTORS, progress=steps)
    return ref


def _silent(_: str) -> None:
    return None


def register_copy(bench: Bench, chains: int, depth: int) -> Ref:
    """Register a copy of the live model file with ``chains`` chain trees of ``depth``."""
    path = add_chains(bench.model_file, bench.work / f"copy-{chains}x{depth}.json", chains, depth)
    info = release.register(bench.ctx, MODEL, path, bench.holdout, developer=ACTORS.developer)
    return Ref(MODEL, info.version)


def stage(bench: Bench, ref: Ref, chains: int, depth: int) -> Copy:
    """validate → approve → build → deploy (one Bento) a registered copy; the staged copy."""
    ctx = bench.ctx
    bench.progress(f"{ref}: validate, approve, build, deploy ({chains} chains of depth {depth})")
    release.validate(ctx, ref, bench.holdout, actor=ACTORS.validator)
    release.approve(ctx, ref, actor=ACTORS.approver)
    release.build(ctx, ref, actor=ACTORS.release)
    release.deploy(ctx, ref, actor=ACTORS.release)
    info = ctx.registry.get_version(ref.model, ref.version)
    rows = load_artifact(artifact_dir(info.artifact_uri)).reference_rows.astype(float).tolist()
    return Copy(ref, chains, depth, info.sha256, rows)


def stage_identical(bench: Bench) -> Copy:
    """The 1.0x copy, staged: the live model file registered again (governance has no rule
    against it, and its ONNX export differs anyway: onnxmltools names the graph with a
    random uuid, so the sha256 does too)."""
    return stage(bench, register_copy(bench, 0, DEPTH), 0, DEPTH)


def retire(bench: Bench, copy: Copy) -> None:
    """Retire a copy once its gates are done (stops its Bento)."""
    release.retire(bench.ctx, copy.ref, actor=ACTORS.release, reason="gate sensitivity run")


def _json_number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _target(result: GateResult, name: str) -> dict[str, float | None]:
    fig = result.figures.get(name)
    keys = ("server_p50_ms", "server_p99_ms", "p50_ms", "p99_ms")
    return {key: _json_number(getattr(fig, key) if fig else None) for key in keys}


def run_record(result: GateResult, wall_s: float) -> dict[str, Any]:
    """What one gate run is kept as: verdict, reasons, time, regression intervals and the
    two targets' server and client figures."""
    candidate, live = _target(result, "candidate"), _target(result, "live")
    cand_p50, live_p50 = candidate["server_p50_ms"], live["server_p50_ms"]
    regressions = [
        {"name": c.name, "estimate": _json_number(c.measured.estimate),
         "low": _json_number(c.measured.low), "high": _json_number(c.measured.high),
         "allowed": _json_number(c.allowed), "decision": c.decision}
        for c in result.evidence.regressions
    ]  # fmt: skip
    return {
        "verdict": result.verdict, "reasons": list(result.reasons),
        "measured_s": result.measured_s, "rounds": result.rounds, "wall_s": wall_s,
        "generator_cpu": _json_number(result.generator_cpu),
        "stall_fraction": result.evidence.stall_fraction, "basis": result.evidence.basis,
        "regressions": regressions, "candidate": candidate, "live": live,
        "server_p50_ratio": cand_p50 / live_p50 if cand_p50 and live_p50 else None,
    }  # fmt: skip


def error_record(exc: Exception, wall_s: float) -> dict[str, Any]:
    """A gate that could not be run (Locust failed): kept, counted as an error."""
    return {"verdict": "error", "reasons": [str(exc)], "wall_s": wall_s, "regressions": [],
            "server_p50_ratio": None}  # fmt: skip


def gate_once(bench: Bench, copy: Copy, name: str) -> dict[str, Any]:
    """One gate of ``copy`` against live at the policy; its record (an error record when
    Locust could not be run)."""
    candidate, live = gating.gate_targets(bench.ctx, copy.ref)
    out_dir = bench.ctx.settings.reports_dir / f"sensitivity-{name}"
    started = time.perf_counter()
    try:
        forward = _indented(bench.progress) if bench.verbose else None
        result = run_gate(candidate, copy.rows, bench.policy, out_dir, live=live, progress=forward)
    except LoadTestError as exc:
        return error_record(exc, time.perf_counter() - started)
    return run_record(result, time.perf_counter() - started)


def _indented(progress: Progress) -> Callable[[str], None]:
    def forward(line: str) -> None:
        progress(f"    {line}")

    return forward


@contextlib.contextmanager
def condition(name: str) -> Iterator[Noise | None]:
    """Nothing for a quiet run; the noisy neighbour for a noisy one."""
    if name == NOISY:
        with noisy_neighbour(NOISE_ON_S, NOISE_OFF_S) as noise:
            yield noise
    else:
        yield None


def _progress_line(factor: float, label: str, record: dict[str, Any]) -> str:
    ratio = record["server_p50_ratio"]
    p50 = sensitivity_report.comparison(record, sensitivity_report.P50)
    measured = "n/a" if ratio is None else f"{ratio:.2f}x"
    allowed = "" if p50 is None or p50["allowed"] is None else f" (allowed {p50['allowed']:.2f}x)"
    line = (
        f"{factor:g}x {label}: {record['verdict']}, server p50 ratio {measured}{allowed}, "
        f"{record['wall_s']:.0f} s"
    )
    if record["verdict"] != "pass" and record["reasons"]:
        line += f": {record['reasons'][0]}"
    return line


def measure(
    bench: Bench, copy: Copy, factor: float, counts: tuple[int, int]
) -> list[dict[str, Any]]:
    """Gate ``copy`` ``counts`` = (quiet, noisy) times, interleaved; every run's record."""
    records: list[dict[str, Any]] = []
    seen = {QUIET: 0, NOISY: 0}
    order = schedule(*counts)
    for name in order:
        seen[name] += 1
        label = f"{name} {seen[name]}/{counts[0] if name == QUIET else counts[1]}"
        with condition(name) as noise:
            record = gate_once(bench, copy, f"{factor:g}-{name}-{seen[name]}")
        record |= {"factor": factor, "condition": name, "index": seen[name],
                   "version": copy.ref.version, "chains": copy.chains,
                   "noise": noise.to_dict() if noise else None}  # fmt: skip
        bench.progress(_progress_line(factor, label, record))
        records.append(record)
    return records


def calibrate(bench: Bench, identical: Copy) -> tuple[dict[str, Any], ChainCost]:
    """One gate of the identical copy against live (live's server p50 under gate load) and
    the in-process cost of one chain. Raises RuntimeError when live sent no server time."""
    bench.progress("calibration: one gate of the identical copy against live")
    record = gate_once(bench, identical, "calibration")
    live_p50 = record.get("live", {}).get("server_p50_ms")
    if live_p50 is None:
        raise RuntimeError(f"calibration gate: no server time from live ({record['reasons']})")
    bench.progress(f"live's server p50 under gate load: {live_p50:.3f} ms; timing chains")
    cost = chain_cost_us(bench.model_file, read_csv(bench.holdout), depth=DEPTH)
    added = ", ".join(f"{n}: +{us:.0f} µs" for n, us in cost.points)
    bench.progress(f"chains of depth {DEPTH} added to a one-row prediction: {added}")
    return {"gate": record, "live_server_p50_ms": live_p50, "chain_cost": cost.to_dict()}, cost


def measure_factors(
    bench: Bench, identical: Copy, live_p50_us: float, cost: ChainCost, options: Options
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Per factor (ascending): its copy staged (1.0x: ``identical``) and gated; each copy is
    retired once the next one is deployed, the last one is stopped with the host. The
    copies by factor and every run's record."""
    copies: dict[str, dict[str, Any]] = {}
    runs: list[dict[str, Any]] = []
    previous: Copy | None = identical
    for factor in options.factors:
        chains = chains_for(factor, live_p50_us, cost)
        probes: list[dict[str, Any]] = []
        if factor == 1.0:
            copy = identical
        else:
            copy = stage(bench, register_copy(bench, chains, DEPTH), chains, DEPTH)
        if previous is not None and previous.ref != copy.ref:
            # Only now: HAProxy's candidate route pointed at the previous copy until this
            # deploy moved it, and retire (its drain) refuses a version a route points at.
            retire(bench, previous)
        if factor != 1.0:
            copy, probes = settle(bench, copy, factor)
        copies[f"{factor:g}"] = {**copy.describe(), "probes": probes}
        runs += measure(bench, copy, factor, options.counts(factor))
        previous = copy
    return copies, runs


PROBE_TOLERANCE = 0.04  # a copy within 4 % of its factor (measured in a gate) is kept
MAX_CORRECTIONS = 2


def settle(bench: Bench, copy: Copy, factor: float) -> tuple[Copy, list[dict[str, Any]]]:
    """Measure a staged copy's server p50 ratio in one probe gate (not counted) and, while
    it is more than PROBE_TOLERANCE off ``factor``, stage a copy with the chain count scaled
    by (factor - 1) / (measured - 1) (in a served Bento a chain costs more than in-process:
    caches are shared with the other processes). The copy kept and the probes."""
    probes: list[dict[str, Any]] = []
    for attempt in range(MAX_CORRECTIONS + 1):
        record = gate_once(bench, copy, f"{factor:g}-probe-{attempt}")
        ratio = record["server_p50_ratio"]
        probes.append({"chains": copy.chains, "version": copy.ref.version, "ratio": ratio})
        bench.progress(f"{factor:g}x probe: {copy.chains} chains measured "
                       f"{'n/a' if ratio is None else f'{ratio:.2f}x'}")  # fmt: skip
        if ratio is None or ratio <= 1.02 or abs(ratio - factor) <= PROBE_TOLERANCE * factor:
            break
        if attempt == MAX_CORRECTIONS:
            break
        chains = max(1, round(copy.chains * (factor - 1) / (ratio - 1)))
        corrected = stage(bench, register_copy(bench, chains, DEPTH), chains, DEPTH)
        retire(bench, copy)  # the candidate route has moved to the corrected copy
        copy = corrected
    return copy, probes


def on_host(options: Options, work: Path, progress: Progress) -> dict[str, Any]:
    """Train, release live, calibrate, then every factor's copy gated and retired; the
    policy, calibration, copies and runs."""
    progress("training the demo models (v1, v2) and writing the holdout")
    files = make_demo_files(work / "models")
    with bentogate_host(work / "home", workers=1, gate=None) as ctx:
        progress("releasing v2 as the live version: register ... gate, promote")
        live = release_live(ctx, files, progress, verbose=options.verbose)
        policy = gating.gate_policy(ctx, MODEL)
        bench = Bench(ctx, files["v2"], files["holdout"], work, policy, progress, options.verbose)
        identical = stage_identical(bench)
        calibration, cost = calibrate(bench, identical)
        live_sha = ctx.registry.get_version(MODEL, live.version).sha256
        calibration["identical"] = {
            **identical.describe(),
            "same_sha256": identical.sha256 == live_sha,
        }
        live_p50_us = calibration["live_server_p50_ms"] * 1e3
        copies, runs = measure_factors(bench, identical, live_p50_us, cost, options)
    return {
        "policy": policy.to_dict(),
        "policy_is_default": policy == GatePolicy.from_settings(GateSettings()),
        "live": {"version": live.version, "sha256": live_sha},
        "calibration": calibration,
        "copies": copies,
        "runs": runs,
    }


def _factors(text: str) -> tuple[float, ...]:
    factors = sorted({float(part) for part in text.split(",") if part.strip()})
    if not factors or factors[0] < 1.0:
        raise argparse.ArgumentTypeError(f"factors must be >= 1.0, got {text!r}")
    return tuple(factors)


def parse(argv: list[str] | None) -> Options:
    """The command line as :class:`Options`."""
    parser = argparse.ArgumentParser(prog="python -m bench.gate_sensitivity",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--runs", type=int, default=5, help="gates per factor and condition")
    parser.add_argument("--identical-runs", type=int, default=20, help="quiet gates at 1.0x")
    parser.add_argument("--noisy-identical-runs", type=int, default=10,
                        help="noisy gates at 1.0x")  # fmt: skip
    parser.add_argument(
        "--factors",
        type=_factors,
        default=FACTORS,
        help="server-time factors of the copies (default 1.0,1.25,1.5,2.0)",
    )
    parser.add_argument("--no-noise", action="store_true", help="quiet runs only")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--wait-quiet", type=float, default=120.0,
                        help="wait this long for a quiet machine first")  # fmt: skip
    parser.add_argument("--verbose", action="store_true", help="every gate's progress lines")
    args = parser.parse_args(argv)
    return Options(
        runs=args.runs, identical_runs=args.identical_runs,
        noisy_identical_runs=args.noisy_identical_runs, factors=args.factors,
        noise=not args.no_noise, out=args.out, wait_quiet=args.wait_quiet,
        verbose=args.verbose,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its files; 1 if any gate could not be run, else 0."""
    options = parse(argv)
    progress = Progress()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    busy_start = wait_for_quiet(progress, options.wait_quiet)
    with tempfile.TemporaryDirectory(prefix="bentogate-sensitivity-") as temp:
        measured = on_host(options, Path(temp), progress)
    results = {
        "started": started,
        "elapsed_s": progress.elapsed,
        "machine": describe(),
        "background_cpu": {"start": busy_start, "end": cpu_busy(2.0)},
        "config": {
            "runs": options.runs, "identical_runs": options.identical_runs,
            "noisy_identical_runs": options.noisy_identical_runs,
            "factors": list(options.factors), "depth": DEPTH, "workers": 1, "replicas": 1,
            "noise": {"on_s": NOISE_ON_S, "off_s": NOISE_OFF_S} if options.noise else None,
        },
        **measured,
    }  # fmt: skip
    paths = sensitivity_report.write(results, options.out)
    progress(f"done: {paths['md']}")
    print("\n".join(sensitivity_report.table(sensitivity_report.summarize(results["runs"]))))
    return 1 if any(run["verdict"] == "error" for run in results["runs"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
