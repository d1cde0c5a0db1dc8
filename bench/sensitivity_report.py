"""The gate-sensitivity run's files: ``gate_sensitivity.json`` (everything),
``gate_sensitivity.md`` (verdict counts per factor and condition) and
``gate_sensitivity.png`` (each run's server-time ratio interval against what was allowed).

Pure functions of the run's results dict (see :mod:`bench.gate_sensitivity`), so the
counting is unit-tested on synthetic run records. Plots are drawn on
``matplotlib.figure.Figure`` directly (no pyplot, no global backend), like loadtest/report.py.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PASS, FAIL, INCONCLUSIVE, ERROR = "pass", "fail", "inconclusive", "error"
VERDICTS = (PASS, FAIL, INCONCLUSIVE, ERROR)
CONDITIONS = ("quiet", "noisy")
COLORS = {PASS: "tab:green", FAIL: "tab:red", INCONCLUSIVE: "tab:orange", ERROR: "0.5"}
P50, P99 = "server p50 vs live", "server p99 vs live"


def _median(values: Iterable[float | None]) -> float:
    kept = [v for v in values if v is not None and v == v]
    return statistics.median(kept) if kept else float("nan")


def comparison(run: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The run's regression comparison called ``name`` (e.g. "server p50 vs live"), or None
    (an errored run, or regressions judged on client time)."""
    return next((c for c in run.get("regressions", []) if c["name"] == name), None)


def summarize(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (factor, condition) that has runs, factors ascending, quiet first: the
    number of runs, a count per verdict, the median measured server p50 ratio (candidate /
    live), the median allowed p50 ratio, the median and the longest wall seconds."""
    groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((float(run["factor"]), run["condition"]), []).append(run)
    order = sorted(groups, key=lambda key: (key[0], CONDITIONS.index(key[1])))
    rows = []
    for factor, condition in order:
        mine = groups[(factor, condition)]
        allowed = (comparison(run, P50) for run in mine)
        rows.append({
            "factor": factor, "condition": condition, "runs": len(mine),
            **{verdict: sum(run["verdict"] == verdict for run in mine) for verdict in VERDICTS},
            "median_ratio": _median(run.get("server_p50_ratio") for run in mine),
            "median_allowed": _median(c["allowed"] if c else None for c in allowed),
            "median_wall_s": _median(run["wall_s"] for run in mine),
            "max_wall_s": max(run["wall_s"] for run in mine),
        })  # fmt: skip
    return rows


def _num(value: float, fmt: str) -> str:
    return "-" if value != value else fmt.format(value)


def policy_line(policy: dict[str, Any]) -> str:
    """The gate policy in one line: load, the regression rule, the statistics."""
    tail = policy.get("max_tail_regression", policy["max_regression"])  # older: one ratio
    return (
        f"{policy['rate']:g} req/s per target (candidate and live in turn), "
        f"{policy['warmup_s']:g} s warm-up + {policy['duration_s']:g} s measured, extended by "
        f"{policy['extend_s']:g} s up to {policy['max_duration_s']:g} s while undecided; "
        f"server p50 at most {policy['max_regression']:g}x live's and p99 at most {tail:g}x, "
        f"or live's + {policy['regression_floor_us']:g} µs where that is larger; "
        f"{policy['confidence']:.0%} block-bootstrap intervals over {policy['block_s']:g} s "
        f"blocks; client p50/p95/p99 limits {policy['p50_ms']:g}/{policy['p95_ms']:g}/"
        f"{policy['p99_ms']:g} ms; min {policy['min_samples']} samples per target"
    )


def table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The markdown table of :func:`summarize`'s rows (an ``error`` column only when a run
    errored)."""
    errors = any(row[ERROR] for row in rows)
    head = "| factor | condition | runs | pass | fail | inconclusive |" + (
        " error |" if errors else ""
    )
    head += " median server p50 ratio | median allowed p50 ratio | median wall s | max wall s |"
    columns = head.count("|") - 1
    lines = [head, "|---:|---|" + "---:|" * (columns - 2)]
    for row in rows:
        cells = [f"{row['factor']:g}x", row["condition"], str(row["runs"]), str(row[PASS]),
                 str(row[FAIL]), str(row[INCONCLUSIVE])]  # fmt: skip
        if errors:
            cells.append(str(row[ERROR]))
        cells += [
            _num(row["median_ratio"], "{:.2f}x"),
            _num(row["median_allowed"], "{:.2f}x"),
            _num(row["median_wall_s"], "{:.0f}"),
            _num(row["max_wall_s"], "{:.0f}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _probes(copy: dict[str, Any]) -> str:
    """``; probes: 860 chains 1.44x, 530 chains 1.26x`` (empty without probes)."""
    probes = copy.get("probes") or []
    if not probes:
        return ""
    shown = ", ".join(
        f"{p['chains']} chains " + ("n/a" if p["ratio"] is None else f"{p['ratio']:.2f}x")
        for p in probes
    )
    return f"; probes: {shown}"


def _calibration_lines(results: dict[str, Any]) -> list[str]:
    cal = results["calibration"]
    cost = cal["chain_cost"]
    copies = ", ".join(
        f"{float(f):g}x: {c['chains']} chains (version {c['version']}{_probes(c)})"
        for f, c in sorted(results["copies"].items(), key=lambda item: float(item[0]))
    )
    identical = cal["identical"]
    same = (
        "the same" if identical["same_sha256"] else "another (the ONNX export is not byte-stable)"
    )
    added = ", ".join(
        f"{p['chains']} chains +{p['added_us']:.0f} µs ({p['per_chain_us']:.3f} µs each)"
        for p in cost["points"]
    )
    return [
        f"Calibration: live's server p50 under gate load {cal['live_server_p50_ms']:.3f} ms "
        f"(one gate of the identical copy against live). Chain trees of depth "
        f"{cost['depth']} add to a one-row prediction in-process (onnxruntime, 1 thread, "
        f"{cost['base_us']:.1f} µs without chains): {added}; each copy's chains are "
        "interpolated between these, then corrected by probe gates (not counted in the "
        "table): a served Bento pays more per chain than a process alone.",
        f"Identical copy (1.0x): the live model file registered again; ONNX sha256: {same}.",
        f"Copies: {copies}.",
    ]


def markdown(results: dict[str, Any]) -> str:
    """The run as markdown: what was measured, the policy line, the table, the figure."""
    machine, config = results["machine"], results["config"]
    noise = config["noise"]
    noisy = (
        f"noisy: another process busy-looping {noise['on_s']:g} s then sleeping "
        f"{noise['off_s']:g} s, for the whole gate"
        if noise
        else "no noisy runs (--no-noise)"
    )
    default = "the default policy" if results["policy_is_default"] else "**not** the default"
    out = [
        "# Gate sensitivity",
        "",
        f"One run of `python -m bench.gate_sensitivity` on {results['started']} "
        f"({machine['cpus']} x {machine['cpu_model']}, Python {machine['python']}, HAProxy "
        f"{machine['haproxy']}); took {results['elapsed_s'] / 60:.1f} min. Other load: CPU "
        f"{results['background_cpu']['start']:.0%} busy before, "
        f"{results['background_cpu']['end']:.0%} after.",
        "",
        "Copies of the live version (same scores, more trees of zeros to walk) whose server "
        "time is the factor x live's, each gated against live (`bentogate.loadtest.run_gate`, the "
        f"release gate) several times; quiet: nothing else on purpose; {noisy}. One Bento "
        "(1 worker) per version.",
        "",
        f"Policy ({default}): {policy_line(results['policy'])}.",
        "",
        *_calibration_lines(results),
        "",
        *table(summarize(results["runs"])),
        "",
        "*median server p50 ratio*: candidate / live server p50 (Server-Timing) as measured "
        "in each run; *allowed*: the largest p50 ratio the regression rule allowed in that run "
        "(live's + the floor, where that is more than the ratio).",
        "",
        "![intervals per run](gate_sensitivity.png)",
        "",
    ]
    return "\n".join(out)


def _group_positions(runs: Sequence[dict[str, Any]]) -> tuple[list[float], list[tuple[float, str]]]:
    """y of each run (quiet ones first, a gap, the noisy ones) and (y, label) per group."""
    counts = {c: sum(run["condition"] == c for run in runs) for c in CONDITIONS}
    first: dict[str, float] = {}
    ticks: list[tuple[float, str]] = []
    y = 0.0
    for condition in CONDITIONS:
        if counts[condition]:
            first[condition] = y
            ticks.append((y + (counts[condition] - 1) / 2, f"{condition} ({counts[condition]})"))
            y += counts[condition] + 1.5
    seen = dict.fromkeys(CONDITIONS, 0)
    ys = []
    for run in runs:
        ys.append(first[run["condition"]] + seen[run["condition"]])
        seen[run["condition"]] += 1
    return ys, ticks


def _draw(ax: Axes, runs: Sequence[dict[str, Any]], name: str, factor: float) -> None:
    ys, ticks = _group_positions(runs)
    for y, run in zip(ys, runs, strict=True):
        c = comparison(run, name)
        if c is None or c["low"] is None or c["high"] is None:
            continue
        color = COLORS.get(run["verdict"], "k")
        ax.plot([c["low"], c["high"]], [y, y], color=color, lw=4, solid_capstyle="butt")
        ax.plot([c["estimate"]], [y], "k|", ms=8)
        ax.plot([c["allowed"]], [y], "|", color="red", ms=10, mew=2)
    ax.axvline(factor, color="0.4", ls=":", label=f"factor {factor:g}x")
    ax.axvline(1.0, color="0.7", lw=1)
    ax.set_yticks([t[0] for t in ticks], [t[1] for t in ticks])
    ax.set_title(f"{factor:g}x: {name}", fontsize="medium")
    ax.grid(True, axis="x", alpha=0.3)


def figure(results: dict[str, Any], path: Path) -> Path:
    """Per factor (rows) the p50 and p99 server-ratio intervals of every run (columns),
    colored by verdict, with the allowed ratio of each run (red |); writes ``path``."""
    runs = results["runs"]
    factors = sorted({float(run["factor"]) for run in runs})
    heights = [max(2, sum(float(r["factor"]) == f for r in runs)) for f in factors] or [1]
    fig = Figure(figsize=(11, 1.2 + 0.22 * sum(heights) + 0.6 * len(heights)),
                 layout="constrained")  # fmt: skip
    axes = fig.subplots(max(1, len(factors)), 2, squeeze=False,
                        gridspec_kw={"height_ratios": heights})  # fmt: skip
    for row, factor in zip(axes, factors, strict=False):
        mine = [run for run in runs if float(run["factor"]) == factor]
        for ax, name in zip(row, (P50, P99), strict=True):
            _draw(ax, mine, name, factor)
    for ax in axes[-1]:
        ax.set_xlabel("candidate / live server time (interval, | estimate, red | allowed, "
                      "dotted: the factor)")  # fmt: skip
    handles = [axes[0][0].plot([], [], color=c, lw=4, label=v)[0] for v, c in COLORS.items()]
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles))
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)
    return path


def write(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """``gate_sensitivity.json``, ``.md`` and ``.png`` under ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"gate_sensitivity.{ext}" for ext in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    paths["md"].write_text(markdown(results))
    figure(results, paths["png"])
    return paths
