"""The gate's reports: ``gate-report.json`` and ``gate-report.html`` (plots inline, base64 PNG).

Plots are drawn on ``matplotlib.figure.Figure`` directly (no pyplot, no global backend);
matplotlib is imported only when a figure is drawn, so the processes that import the gate
without reporting (the bake watcher that a cutover leaves running) do not carry it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .evidence import STALL_BIN_S, Comparison
from .figures import time_series
from .result import GateResult
from .samples import Samples
from .verdict import MAX_GENERATOR_CPU, MIN_RATE_FRACTION

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COLORS = {"candidate": "tab:blue", "live": "tab:orange"}


def report_dict(result: GateResult, samples: Samples, extra: dict[str, Any]) -> dict[str, Any]:
    """Everything the JSON report holds: the result, the criteria and run facts."""
    return {
        **result.to_dict(),
        "criteria": {
            "max_generator_cpu": MAX_GENERATOR_CPU,
            "min_rate_fraction": MIN_RATE_FRACTION,
            "stall_bin_s": STALL_BIN_S,
        },
        "target_rate": samples.rate,
        "cpu_warnings": samples.cpu_warnings,
        "requests_total": int(samples.intended.size),
        **extra,
    }  # fmt: skip


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON atomically; return the path."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def write_html(path: Path, result: GateResult, samples: Samples) -> Path:
    """Write the HTML report: the verdict and why, client vs server figures per target, the
    intervals against their limits, and the latency, histogram, rate and CPU plots."""
    images = {
        "The evidence: intervals against their limits": _evidence_plot(result),
        "Latency over time (clients: from intended send time; server: its own time)":
            _latency_plot(samples, result),
        "Latency histograms (measured window)": _histograms(samples),
        "Achieved vs target rate": _rate_plot(samples),
        "Load generator CPU": _cpu_plot(samples),
    }
    rows = "".join(_figure_row(name, fig.to_dict()) for name, fig in result.figures.items())
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in result.reasons) or "<li>none</li>"
    plots = "".join(
        f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" '
        f'src="data:image/png;base64,{png}">'
        for title, png in images.items()
    )
    locust = (
        f'<p>Locust\'s own report: <a href="{html.escape(result.locust_html.name)}">'
        f"{html.escape(result.locust_html.name)}</a></p>"
        if result.locust_html
        else ""
    )
    cpu = "n/a" if np.isnan(result.generator_cpu) else f"{result.generator_cpu:.0%}"
    ev = result.evidence
    comparisons = "".join(_comparison_row(c) for c in ev.comparisons)
    page = _PAGE.format(
        comparisons=comparisons,
        basis=html.escape(ev.basis or "no live target: none"),
        stalls=f"{len(ev.stalls)} bins of {STALL_BIN_S:g} s "
        f"({ev.stall_fraction:.1%} of the window)",
        measured=f"{result.measured_s:g} s in {result.rounds} run(s), {ev.blocks} blocks",
        verdict=html.escape(result.verdict),
        cls=html.escape(result.verdict),
        reasons=reasons,
        policy=html.escape(json.dumps(result.policy.to_dict(), indent=1)),
        header="".join(f"<th>{h}</th>" for h in _COLUMNS),
        rows=rows,
        cpu=cpu,
        host=html.escape(result.host.describe() or "the host's CPUs: not known"),
        plots=plots,
        locust=locust,
    )
    path.write_text(page)
    return path


_COLUMNS = ("target", "samples", "p50_ms", "p95_ms", "p99_ms", "p999_ms", "server_p50_ms",
            "server_p99_ms", "overhead_p50_ms", "overhead_p99_ms", "lag_p99_ms", "max_ms",
            "achieved_rate", "target_rate", "error_ratio", "errors")  # fmt: skip

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Gate report: {verdict}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 8px;text-align:right}}
.pass,.within{{color:green}} .fail,.beyond{{color:#b00}} .inconclusive,.unsure{{color:#b60}}
img{{max-width:100%}}</style>
</head><body>
<h1>Gate verdict: <span class="{cls}">{verdict}</span></h1>
<ul>{reasons}</ul>
<h2>The evidence</h2>
<p>Measured: {measured}. Regressions judged on: {basis} time. Host stalls (the generator
itself late, or both targets slow at once) left out: {stalls}.</p>
<table><tr><th>limit</th><th>measured</th><th>interval</th><th>allowed</th><th>decision</th></tr>
{comparisons}</table>
<h2>What each target did: clients vs server</h2>
<p>p50&hellip;p99.9: what clients see, from the intended send time. server_*: the Bento's own
time (Server-Timing). overhead_*: client minus server per request, the load generator's, the
network's and the proxy's share. lag_p99: how late the generator sent.</p>
<table><tr>{header}</tr>{rows}</table>
<p>Generator CPU over the measured window: {cpu} of a core. Over the same window (every
process, the gate's own and the targets' included): {host}.</p>
{locust}
{plots}
<h2>Policy</h2><pre>{policy}</pre>
</body></html>
"""


def _figure_row(name: str, fig: dict[str, Any]) -> str:
    def cell(key: str) -> str:
        value = fig.get(key)
        if isinstance(value, float):
            return f"{value:.4f}" if key == "error_ratio" else f"{value:.2f}"
        return html.escape(str(value if value is not None else "n/a"))

    cells = "".join(f"<td>{cell(k)}</td>" for k in _COLUMNS[1:])
    return f"<tr><td>{html.escape(name)}</td>{cells}</tr>"


def _comparison_row(c: Comparison) -> str:
    fmt = "{:.3f}x" if c.unit == "x" else "{:.3f} ms"
    m = c.measured
    cells = (c.name, fmt.format(m.estimate), f"{fmt.format(m.low)} - {fmt.format(m.high)}",
             fmt.format(c.allowed), c.decision)  # fmt: skip
    tds = "".join(f"<td>{html.escape(x)}</td>" for x in cells)
    return f'<tr class="{html.escape(c.decision)}">{tds}</tr>'


def _evidence_plot(result: GateResult) -> str:
    """Each limit's interval (as a fraction of what is allowed) against the allowed band."""
    comps = result.evidence.comparisons
    fig = figure(10, 0.6 * max(2, len(comps)) + 1, left=1.9)
    ax = fig.add_subplot()
    colors = {"within": "tab:green", "beyond": "tab:red", "unsure": "tab:orange"}
    for i, c in enumerate(comps):
        m = c.measured
        lo, est, hi = (v / c.allowed for v in (m.low, m.estimate, m.high))
        ax.plot([lo, hi], [i, i], color=colors[c.decision], lw=6, solid_capstyle="butt")
        ax.plot([est], [i], "k|", ms=14)
    ax.axvspan(0, 1, color="tab:green", alpha=0.08, label="allowed")
    ax.axvline(1, color="red", ls="--", label="limit")
    ax.set_yticks(range(len(comps)), [c.name for c in comps])
    ax.set(xlabel="measured / allowed (interval; | = estimate)", xlim=(0, None))
    ax.legend(fontsize="small", loc="lower right")
    return png(fig)


def figure(width: float, height: float, *, left: float = 0.8) -> Figure:
    """A ``width`` x ``height`` inch figure with fixed margins (``left`` inches for the y
    labels): a layout engine would cost a gate about a second per report in text layout."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - 0.2 / width, bottom=0.75 / height,
                        top=1 - 0.35 / height, wspace=0.2)  # fmt: skip
    return fig


def png(fig: Figure) -> str:
    """``fig`` as base64 PNG, for an inline ``<img>``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _shade_warmup(ax: Axes, samples: Samples) -> None:
    if samples.warmup_s > 0:
        ax.axvspan(0, samples.warmup_s, color="0.9", label="warm-up (excluded)")


def _latency_plot(samples: Samples, result: GateResult) -> str:
    fig = figure(10, 4)
    ax = fig.add_subplot()
    _shade_warmup(ax, samples)
    for start, end in result.evidence.stalls:
        ax.axvspan(start, end, color="red", alpha=0.25, lw=0)
    for name in samples.targets:
        s = time_series(samples, name)
        color = COLORS.get(name)
        ax.plot(s.centers, s.p50_ms, ".-", color=color, alpha=0.5, label=f"{name} p50")
        ax.plot(s.centers, s.p99_ms, "o-", color=color, label=f"{name} p99")
        ax.plot(s.centers, s.server_p50_ms, "--", color=color, alpha=0.7,
                label=f"{name} server p50")  # fmt: skip
    ax.axhline(result.policy.p99_ms, color="red", ls="--", label="p99 limit (host stalls red)")
    ax.set(xlabel="intended send time (s)", ylabel="latency (ms)", yscale="log")
    ax.legend(fontsize="small", ncol=3)
    return png(fig)


def _histograms(samples: Samples) -> str:
    names = samples.targets
    fig = figure(5 * len(names), 3.5)
    axes = fig.subplots(1, len(names), sharex=True, squeeze=False)[0]
    ok = samples.measured & (samples.kind == 0)
    lat_ms = samples.latency[ok].astype(np.float64) * 1e3
    lo, hi = (max(lat_ms.min(), 1e-3), lat_ms.max()) if lat_ms.size else (0.1, 1.0)
    bins = np.geomspace(lo, max(hi, lo * 1.01), 60)
    for ax, name in zip(axes, names, strict=True):
        mine = samples.latency[ok & (samples.target == samples.target_index(name))] * 1e3
        ax.hist(mine, bins=bins, color=COLORS.get(name))
        ax.set(title=name, xscale="log", xlabel="latency (ms)", ylabel="requests")
    return png(fig)


def _rate_plot(samples: Samples) -> str:
    fig = figure(10, 3.5)
    ax = fig.add_subplot()
    _shade_warmup(ax, samples)
    series = [time_series(samples, name) for name in samples.targets]
    edges = series[0].edges
    ax.stairs(
        np.sum([s.sent for s in series], axis=0), edges, color="k", lw=2, label="sent/s (all)"
    )
    for name, s in zip(samples.targets, series, strict=True):
        ax.stairs(s.sent, edges, color=COLORS.get(name), label=f"{name} sent/s")
    errors = np.sum([s.errors for s in series], axis=0)
    if errors.any():
        ax.stairs(errors, edges, color="red", fill=True, alpha=0.4, label="errors/s")
    ax.axhline(samples.rate, color="green", ls="--", label="target rate")
    ax.set(xlabel="time (s)", ylabel="requests/s")
    ax.legend(fontsize="small")
    return png(fig)


def _cpu_plot(samples: Samples) -> str:
    fig = figure(10, 2.5)
    ax = fig.add_subplot()
    _shade_warmup(ax, samples)
    for i, series in enumerate(samples.cpu_series):
        arr = np.array(series, dtype=np.float64).reshape(-1, 2)
        if len(arr) > 1:
            dt = np.diff(arr[:, 0])
            usage = np.divide(np.diff(arr[:, 1]), dt, out=np.full(dt.shape, np.nan), where=dt > 0)
            ax.step(arr[1:, 0], usage, where="pre", label=f"locust process {i}")
    ax.axhline(MAX_GENERATOR_CPU, color="red", ls="--", label="saturation")
    ax.set(xlabel="time (s)", ylabel="CPU (cores)", ylim=(0, 1.1))
    ax.legend(fontsize="small")
    return png(fig)
