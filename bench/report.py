"""Write one run's figures: ``results.json``, ``results.md`` (tables with ratios) and
``latency.png`` (serial latency curves and capacity steps)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.stats import ratio

TARGETS = {
    "bare": "bare uvicorn + onnxruntime (floor)",
    "bare_n": "bare, one process per replica",  # only when the release deploys several
    "bento": "Bento, direct (one replica)",
    "haproxy": "Bento through HAProxy (all replicas)",
    "mlserver": "MLServer + XGBoost runtime (the peer)",
}
#: The acceptance of issue "Performance as deployed": serial latency through HAProxy as a
#: multiple of the bare floor's; capacity through HAProxy as a share of the bare endpoint's
#: with as many processes as the release deployed replicas (of one bare process if one).
GOALS = {"serial_p50_x": 1.6, "serial_p99_x": 2.0, "capacity_same_processes": 0.6,
         "capacity_one_process": 0.5}  # fmt: skip
BATCH_SIZES = ("64", "1024")
#: Kinds of ``bench.processes.processes_of`` rows the issue allows once a cutover ends (the
#: agent on fleet hosts: a bench host runs none).
ALLOWED = ("bento", "haproxy", "agent")


def _present(figures: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(key, label, figures) of each of :data:`TARGETS` measured in ``figures``, in order."""
    return [(key, label, figures[key]) for key, label in TARGETS.items() if key in figures]


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"


def _x(value: float) -> str:
    return "-" if value != value else f"{value:.2f}x"


def _goal(name: str, relation: str, limit: float, value: float) -> tuple[str, str, str, bool]:
    """A goal's row, ``value`` judged ``relation`` ("≤" or "≥") ``limit``: its ratio as
    :func:`_x` prints it, or to three decimals where a missed goal's two would print its
    limit (1.605x is over ≤ 1.60x; "1.60x" beside "no" reads as a contradiction)."""
    met = value <= limit if relation == "≤" else value >= limit
    shown = _x(value)
    if not met and shown == _x(limit):
        shown = f"{value:.3f}x"
    return (name, f"{relation} {limit:.2f}x", shown, met)


def _parser(machine: dict[str, Any]) -> str:
    packages = machine["packages"]
    parser = "httptools" if packages.get("httptools") else "h11"
    loop = "uvloop" if packages.get("uvloop") else "asyncio"
    return f"{parser}, {loop} event loop"


def _of(revision: str | None) -> str:
    return f" of commit {revision}" if revision else ""


def _met(ok: bool | None) -> str:
    return "-" if ok is None else "yes" if ok else "**no**"


def _mib(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.0f}"


def goals(results: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(goal, target, measured, met) rows of the issue's acceptance figures; met is None
    for a figure the issue asks to see without a limit (resident memory per replica)."""
    serial, capacity = results["serial"], results["capacity"]
    ours, floor = serial["haproxy"], serial["bare"]
    rows: list[tuple[str, str, str, bool | None]] = []
    for name, key, limit in (
        ("p50", "p50_ms", GOALS["serial_p50_x"]),
        ("p99", "p99_ms", GOALS["serial_p99_x"]),
    ):
        value = ratio(ours[key], floor[key])
        rows.append(_goal(f"serial {name} through HAProxy vs bare", "≤", limit, value))
    replicas = results["config"].get("replicas", 1)
    if "bare_n" in capacity:
        floor_n, least = capacity["bare_n"], GOALS["capacity_same_processes"]
        name = f"capacity at p99 ≤ 5 ms, {replicas} replicas through HAProxy vs bare x {replicas}"
    else:
        floor_n, least = capacity["bare"], GOALS["capacity_one_process"]
        name = "capacity at p99 ≤ 5 ms, 1 replica through HAProxy vs one bare process"
    rows.append(_capacity_goal(name, capacity["haproxy"], floor_n, least))
    rows += _memory_goals(results.get("memory"))
    peer = peer_ratios(results)
    for name, key in (("serial p50", "p50"), ("serial p99", "p99")):
        value = peer[key]
        rows.append(_goal(f"{name} through HAProxy vs MLServer", "≤", 1.0, value))
    value, theirs = peer["capacity"], results["capacity"]["mlserver"]["rate"]
    if theirs == 0 and results["capacity"]["haproxy"]["rate"] > 0:
        # MLServer held no rate within the limit (its own p99 is over it even when idle):
        # any rate bentogate holds is ahead, by no finite ratio.
        rows.append(("capacity through HAProxy vs MLServer", "≥ 1.00x",
                     "MLServer held no rate at p99 ≤ 5 ms", True))  # fmt: skip
    else:
        rows.append(_goal("capacity through HAProxy vs MLServer", "≥", 1.0, value))
    for size in BATCH_SIZES:
        value = results["batch"]["sizes"][size]["bentogate_vs"]["xgboost"]["median"]
        rows.append(_goal(f"/predict_batch of {size} rows vs XGBoost native (default threads)",
                          "≤", 1.0, value))  # fmt: skip
    return rows


def _capacity_goal(
    name: str, ours: dict[str, Any], floor: dict[str, Any], least: float
) -> tuple[str, str, str, bool | None]:
    """The capacity goal's row. A search that ended on its ceiling, or on a rate its
    generator could not drive (``limited_by`` not "target"), found a lower bound, not the
    capacity: a floor's lower bound makes the ratio an upper bound (which can only show
    the goal missed), ours a lower bound (which can only show it met); otherwise the row
    says the run could not judge it (met None)."""
    row = _goal(name, "≥", least, ratio(ours["rate"], floor["rate"]))
    ours_found, floor_found = ours["limited_by"] == "target", floor["limited_by"] == "target"
    if ours_found and floor_found:
        return row
    met = row[3]
    upper_bound_missed = ours_found and not met  # the floor's capacity is higher still
    lower_bound_met = floor_found and met  # ours is higher still
    bounds = [f"{who} {_UNFOUND[found['limited_by']]}: at least {found['rate']:.0f} req/s"
              for who, found in (("HAProxy", ours), ("the floor", floor))
              if found["limited_by"] != "target"]  # fmt: skip
    judged = upper_bound_missed or lower_bound_met
    return (name, row[1], f"{row[2]} ({'; '.join(bounds)})", met if judged else None)


_UNFOUND = {"ceiling": "passed the search's ceiling", "generator": "outran its load generator"}


def _memory_goals(memory: dict[str, Any] | None) -> list[tuple[str, str, str, bool | None]]:
    """Resident memory per replica (no limit: the issue asks for it in the table) and what
    else of bentogate's ran once the cutover ended, its warm window included (the issue:
    nothing but the Bentos, HAProxy and, on fleet hosts, the agent)."""
    if memory is None:
        return []  # a results file from before these figures
    replicas = memory["replica_mib"]
    each = ", ".join(_mib(mib) for mib in replicas)
    extra = left_over(memory)
    found = "; ".join(f"{row['name']} ({_mib(row['resident_mib'])} MiB)" for row in extra)
    return [
        ("resident memory per replica (arbiter + worker)", "reported",
         f"{each} MiB (all {len(replicas)}: {_mib(sum(replicas))} MiB)", None),
        ("other bentogate processes once the cutover's warm window ended (besides Bentos, "
         "HAProxy, agent)", "none", found or "none", not extra),
    ]  # fmt: skip


def left_over(memory: dict[str, Any], moment: str = "after_cutover") -> list[dict[str, Any]]:
    """The processes of the bench host at ``moment`` (``after_cutover``: once the warm window
    ended; ``warm_window``: during it) that are neither a Bento, HAProxy nor an agent
    (``bench.processes.ALLOWED``)."""
    return [row for row in memory.get(moment, []) if row["kind"] not in ALLOWED]


def peer_ratios(results: dict[str, Any]) -> dict[str, float]:
    """bentogate through HAProxy over MLServer: serial p50 and p99 (below 1: faster), the
    median capacity, and the extremes of the rounds' paired capacity ratios (above 1: more
    requests)."""
    ours, theirs = results["serial"]["haproxy"], results["serial"]["mlserver"]
    capacity = results["capacity"]
    paired = [
        ratio(a, b)
        for a, b in zip(capacity["haproxy"]["rates"], capacity["mlserver"]["rates"], strict=True)
    ]
    return {
        "p50": ratio(ours["p50_ms"], theirs["p50_ms"]),
        "p99": ratio(ours["p99_ms"], theirs["p99_ms"]),
        "capacity": ratio(capacity["haproxy"]["rate"], capacity["mlserver"]["rate"]),
        "capacity_min": min(paired),
        "capacity_max": max(paired),
    }


def _inprocess_rows(inprocess: dict[str, dict[str, float]]) -> list[str]:
    def median(name: str) -> float:
        return inprocess.get(name, {}).get("median_us", float("nan"))

    lines = [
        "| scoring | onnxruntime | XGBoost native, 1 thread | "
        "pickled scikit-learn API | ORT : XGBoost : pickled |",
        "|---|---:|---:|---:|---|",
    ]
    for label, suffix in (("one row", ""), ("batch of 64", "[64]"), ("batch of 1024", "[1024]")):
        stem = "test_one_row_" if not suffix else "test_batch_"
        kinds = ("onnxruntime", "xgboost", "pickled_sklearn")
        ort, xgb, pkl = (median(f"{stem}{kind}{suffix}") for kind in kinds)
        lines.append(
            f"| {label} | {ort:.1f} µs | {xgb:.1f} µs | {pkl:.1f} µs | "
            f"1 : {ratio(xgb, ort):.1f} : {ratio(pkl, ort):.1f} |"
        )
    lines.append("")
    lines.append("| service, in-process | median |")
    lines.append("|---|---:|")
    for name, label in (
        ("test_service_parse_check_score", "service.py: parse + check 220 values + score"),
        ("test_service_request_through_bentoml_asgi", "one POST through BentoML's ASGI stack"),
    ):
        lines.append(f"| {label} | {median(name):.1f} µs |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The run as markdown tables."""
    machine = results["machine"]
    serial, capacity = results["serial"], results["capacity"]
    bare_p50 = serial["bare"]["p50_ms"]
    out = [
        "# bentogate benchmarks",
        "",
        f"One run of `./run bench`{_of(results['config'].get('revision'))} on "
        f"{results['started']} ({machine['cpus']} x "
        f"{machine['cpu_model']}, Python {machine['python']}, HAProxy {machine['haproxy']}, "
        f"BentoML {machine['packages']['bentoml']}; {results['config'].get('replicas', 1)} "
        f"Bento replica(s) x {results['config']['workers']} worker(s); HTTP parser "
        f"{_parser(machine)}); took {results['elapsed_s'] / 60:.1f} min.",
        f"Other load on the machine: CPU {results['background_cpu']['start']:.0%} busy before "
        f"the run, {results['background_cpu']['end']:.0%} after (load average "
        f"{machine['load_average_1m']:.2f} at start). Figures from a busy machine are slower "
        "and noisier; compare ratios measured in the same run.",
        "",
        "## Goals",
        "",
        "| goal | target | measured | met |",
        "|---|---|---|---|",
        *(f"| {goal} | {aim} | {value} | {_met(ok)} |" for goal, aim, value, ok in goals(results)),
        "",
        "## Serial latency (one request at a time, one keep-alive connection)",
        "",
        f"{results['config']['serial_count']} measured requests per target after "
        f"{results['config']['serial_warmup']} warm-up; latency seen by the client.",
        "",
        "| target | p50 ms | p99 ms | p99.9 ms | p50 vs floor | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for _, label, row in _present(serial):
        out.append(
            f"| {label} | {_ms(row['p50_ms'])} | {_ms(row['p99_ms'])} | {_ms(row['p99_9_ms'])} "
            f"| {_x(ratio(row['p50_ms'], bare_p50))} | {row['errors']} |"
        )
    spec = results["config"]["capacity"]
    out += [
        "",
        f"## Capacity at p99 ≤ {spec['p99_limit_ms']:g} ms (open loop)",
        "",
        f"`bench/openloop.py`: requests start on a fixed schedule ({spec['connections']} "
        f"keep-alive connections, {spec['warmup_s']:g} s warm-up + {spec['duration_s']:g} s "
        "measured per step), latency counted from when each request was due; the rate "
        "doubles until a step fails, then bisects to 5 %. A step passes with no errors, every "
        "request answered and p99 within the limit. Each target was searched "
        f"{len(capacity['bare']['rates'])} times, the targets' order reversed every other "
        "round; the capacity is the median search's, beside the lowest and highest.",
        "",
        "| target | capacity req/s | searches: lowest to highest | vs floor | limited by | steps |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for _, label, row in _present(capacity):
        out.append(
            f"| {label} | {row['rate']:.0f} | {min(row['rates']):.0f} to {max(row['rates']):.0f} "
            f"| {_x(ratio(row['rate'], capacity['bare']['rate']))} "
            f"| {row['limited_by']} | {len(row['steps'])} |"
        )
    out += _cpu_rows(results)
    out += _memory_rows(results)
    out += _peer_rows(results)
    out += _batch_rows(results["batch"])
    out += ["", "## In-process (pytest-benchmark medians)", ""]
    out += _inprocess_rows(results["inprocess"])
    out += _release_rows(results["release"])
    out += ["", "![latency and capacity](latency.png)", ""]
    return "\n".join(out)


def _cpu_rows(results: dict[str, Any]) -> list[str]:
    """CPU per request of each process group (``bench.cpu``), the floor of as many processes
    as the target has serving ones beside it; nothing for a run from before it."""
    cpu = results.get("cpu")
    if cpu is None:
        return []
    measured = cpu["targets"]
    several = "bare_n" if "bare_n" in measured else "bare"  # the floor with a process per replica
    floors = {"bare": "bare", "bento": "bare", "bare_n": "bare_n", "haproxy": several}
    lines = [
        "",
        f"## CPU per request at {cpu['rate']:.0f} req/s (open loop)",
        "",
        "User + system CPU time of each process (with its children) over a fixed-rate run, "
        "divided by the requests sent; half the lowest capacity above, so that every target "
        f"holds it; median of {len(next(iter(measured.values()))['rounds'])} interleaved "
        "rounds. Steadier than a capacity search, and it says where capacity goes: on these "
        "cores every process's µs are taken from the others.",
        "",
        "| target | µs per request, each process | together | vs floor | generator µs "
        "| p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, label, row in _present(measured):
        parts = ", ".join(f"{name} {us:.0f}" for name, us in row["us"].items())
        floor = measured[floors[key]]["total_us"]
        lines.append(
            f"| {label} | {parts} | {row['total_us']:.0f} | {_x(ratio(row['total_us'], floor))} "
            f"| {row['generator_us']:.0f} | {_ms(row['p99_ms'])} | {row['errors']} |"
        )
    return lines


def _memory_rows(results: dict[str, Any]) -> list[str]:
    """Resident memory of what serves, and what else of bentogate's ran in the cutover's warm
    window and once it ended."""
    memory = results.get("memory")
    if memory is None:
        return []
    replicas = memory["replica_mib"]
    processes = results["config"].get("replicas", len(replicas))
    after = memory.get("after_cutover", [])
    extra = left_over(memory)
    names = ", ".join(row["name"] for row in extra) or "none"
    baking = left_over(memory, "warm_window")
    baking_names = ", ".join(row["name"] for row in baking) or "none"
    out = [
        "",
        "## Resident memory",
        "",
        "While v1 served the measurements; a process counted with its children (a Bento: "
        "BentoML's arbiter and its worker), VmRSS summed, as `bentogate status` shows a replica. "
        "The last rows: every process of the bench host (its argv, environment, working "
        "directory or an open file in its `BENTOGATE_HOME`) that is neither a Bento, HAProxy "
        "nor an agent, right after v2's cutover and the two rollbacks (the previous version "
        "warm, its expirer baking v2), and once that warm window ended (its versions stopped "
        "as the expirer stops them when `bento.keep_previous_s` is over, not waited for here).",
        "",
        "| what | MiB |",
        "|---|---:|",
        *(f"| Bento replica {n} of v1 | {_mib(mib)} |" for n, mib in enumerate(replicas, 1)),
        f"| all {len(replicas)} replicas of v1 | {_mib(sum(replicas))} |",
        f"| HAProxy (master and worker) | {_mib(memory['haproxy_mib'])} |",
        f"| bare floor, one process | {_mib(memory.get('bare_mib'))} |",
    ]
    if "bare_n_mib" in memory:
        out.append(
            f"| bare floor, {processes} processes (one per replica) "
            f"| {_mib(memory['bare_n_mib'])} |"
        )
    out += [
        f"| MLServer (the peer) | {_mib(memory['mlserver_mib'])} |",
        f"| other bentogate processes in the warm window: {baking_names} "
        f"| {_mib(sum(row['resident_mib'] for row in baking))} |",
        f"| other bentogate processes once the warm window ended: {names} "
        f"| {_mib(sum(row['resident_mib'] for row in extra))} |",
    ]
    kinds = {kind: sum(1 for row in after if row["kind"] == kind) for kind in ALLOWED}
    out += [
        "",
        f"Once the warm window ended the host ran {kinds['bento']} Bento "
        f"process tree(s), {kinds['haproxy']} HAProxy and {kinds['agent']} agent"
        + (
            "; nothing else of bentogate's."
            if not extra
            else "; besides them: "
            + "; ".join(f"`{row['command']}` ({_mib(row['resident_mib'])} MiB)" for row in extra)
            + "."
        ),
    ]
    return out


def _peer_rows(results: dict[str, Any]) -> list[str]:
    peer = results["peer"]
    versions = peer["versions"]
    serial, capacity = results["serial"], results["capacity"]
    ratios = peer_ratios(results)
    ours, theirs = serial["haproxy"], serial["mlserver"]
    return [
        "",
        "## Against the peer: MLServer",
        "",
        f"MLServer {versions['mlserver']} with mlserver-xgboost {versions['mlserver-xgboost']} "
        f"(XGBoost {versions['xgboost']}, uvicorn {versions['uvicorn']}) serves v1's XGBoost "
        "file in its own venv (`.venv-peer`): its defaults (one inference worker "
        "process, XGBoost on every core) but `debug: false` (no access-log line per request, "
        "as the Bentos), V2 protocol, one FP32 row per request, the fraud probability back. "
        f"Same row scored {peer['score_check']['mlserver']:.6f} by MLServer and "
        f"{peer['score_check']['bentogate']:.6f} by bentogate; MLServer's processes held "
        f"{peer['resident_mib']:.0f} MiB resident. Measured in the rounds above, "
        "interleaved with bentogate's production port as the default release deploys it.",
        "",
        "| figure | bentogate through HAProxy | MLServer | bentogate / MLServer |",
        "|---|---:|---:|---:|",
        f"| serial p50 | {_ms(ours['p50_ms'])} ms | {_ms(theirs['p50_ms'])} ms "
        f"| {_x(ratios['p50'])} |",
        f"| serial p99 | {_ms(ours['p99_ms'])} ms | {_ms(theirs['p99_ms'])} ms "
        f"| {_x(ratios['p99'])} |",
        f"| capacity at p99 ≤ {results['config']['capacity']['p99_limit_ms']:g} ms (median; "
        "rounds' paired ratios lowest to highest) "
        f"| {capacity['haproxy']['rate']:.0f} req/s | {capacity['mlserver']['rate']:.0f} req/s "
        f"| {_x(ratios['capacity'])} ({_x(ratios['capacity_min'])} to "
        f"{_x(ratios['capacity_max'])}) |",
    ]


def _batch_rows(batch: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## /predict_batch against XGBoost native (interleaved)",
        "",
        "The Bento's path (`Scorer.score_rows`, what `/predict_batch` calls: a session with "
        f"one thread per core, {batch['cores']} here) and XGBoost's `inplace_predict` on "
        "the same model and float32 rows, with its default threads (every core: "
        f"{batch['cores']}; OMP_NUM_THREADS {batch['omp_num_threads'] or 'unset'}) and with "
        "one; the one-row session (one thread) shows the Bento before its batch session. "
        "Medians of each contender's block medians over the rounds (quartiles in brackets); "
        "ratios are the rounds' paired ratios, median (lowest to highest).",
        "",
        "| rows | bentogate µs | XGBoost, default threads µs | XGBoost, 1 thread µs "
        "| one-row session µs | vs XGBoost default | vs XGBoost 1 thread |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in BATCH_SIZES:
        row = batch["sizes"][size]
        us, vs = row["us"], row["bentogate_vs"]

        def cell(name: str, us: dict[str, Any] = us) -> str:
            return f"{us[name]['median']:.0f} ({us[name]['q1']:.0f}-{us[name]['q3']:.0f})"

        def times(name: str, vs: dict[str, Any] = vs) -> str:
            return f"{_x(vs[name]['median'])} ({_x(vs[name]['min'])} to {_x(vs[name]['max'])})"

        lines.append(
            f"| {size} | {cell('bentogate')} | {cell('xgboost')} | {cell('xgboost_1_thread')} "
            f"| {cell('onnxruntime_1_thread')} | {times('xgboost')} "
            f"| {times('xgboost_1_thread')} |"
        )
    added = batch["resident_mib_after_scorer"] - batch["resident_mib_before_scorer"]
    lines += [
        "",
        f"Resident memory the model's sessions add to a process (the Scorer loaded, "
        f"onnxruntime imported before): {added:.1f} MiB.",
    ]
    return lines


def _release_rows(release: dict[str, Any]) -> list[str]:
    v1, v2, cut = release["v1"], release["v2"], release["cutover"]
    names = ("register", "validate", "approve", "build", "deploy", "gate", "promote")
    lines = [
        "",
        "## Deploy and cutover (bentogate's release workflow, seconds)",
        "",
        "*Deploy* = build + deploy: `bentoml build` → `bentoml serve` on its own port → "
        "healthy behind HAProxy as the candidate (canary check passed). Switches run while a "
        "probe sends one request after another to the production port.",
        "",
        "| step | v1 (first) | v2 |",
        "|---|---:|---:|",
    ]
    for name in names:
        lines.append(f"| {name} | {v1.get(name, math.nan):.2f} | {v2.get(name, math.nan):.2f} |")
    deploy1 = v1.get("build", math.nan) + v1.get("deploy", math.nan)
    deploy2 = v2.get("build", math.nan) + v2.get("deploy", math.nan)
    lines += [
        f"| **deploy** (build → healthy behind HAProxy) | **{deploy1:.2f}** | **{deploy2:.2f}** |",
        "",
        "| switch, under the probe | took (s) | first answer from the target (s) | "
        "probe requests failed |",
        "|---|---:|---:|---:|",
        _switch_row("cutover: `promote` v2 (v1 stays warm)", cut),
    ]
    for kind, figures in release.get("rollback", {}).items():
        lines.append(_switch_row(f"`rollback` to the {kind} v1", figures))
    return lines


def _switch_row(name: str, switch: dict[str, Any]) -> str:
    failed = f"{switch['probe_failures']} of {switch['probe_requests']}"
    if switch["probe_failures"]:
        failed += f" ({switch['failure_kinds']})"
    return f"| {name} | {switch['switch_s']:.2f} | {switch['first_new_answer_s']:.3f} | {failed} |"


def figure(results: dict[str, Any], path: Path, latencies: dict[str, list[float]]) -> None:
    """Serial latency percentile curves (left) and capacity steps: p99 vs offered rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, label, capacity in _present(results["capacity"]):
        values = np.sort(np.asarray(latencies.get(key, []), dtype=float)) / 1000.0
        if values.size:
            quantiles = np.arange(1, values.size + 1) / values.size
            left.plot(quantiles * 100, values, label=label)
        steps = sorted(capacity["steps"], key=lambda s: s["rate"])
        right.plot(  # every search's steps: points, not a line
            [s["rate"] for s in steps], [s["p99_ms"] for s in steps], "o", label=label
        )
    left.set(xlabel="percentile", ylabel="latency (ms)", yscale="log", xlim=(0, 100))
    left.set_title("serial latency, one keep-alive connection")
    left.grid(True, which="both", alpha=0.3)
    left.legend()
    limit = results["config"]["capacity"]["p99_limit_ms"]
    right.axhline(limit, color="grey", linestyle="--", label=f"p99 limit {limit:g} ms")
    right.set(xlabel="offered rate (req/s, open loop)", ylabel="p99 (ms)", yscale="log")
    right.set_title("capacity searches: p99 per step")
    right.grid(True, which="both", alpha=0.3)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict[str, Any], out_dir: Path, latencies: dict[str, list[float]]) -> None:
    """``results.json``, ``results.md`` and ``latency.png`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (out_dir / "results.md").write_text(markdown(results))
    figure(results, out_dir / "latency.png", latencies)
