"""A shadow run's reports: ``shadow-report.json`` and ``shadow-report.html`` (plots inline)."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING

import numpy as np

from .report import figure, png, write_json

if TYPE_CHECKING:
    from .shadow import Scored, ShadowResult


def write_reports(result: ShadowResult, scored: dict[str, Scored], threshold: float) -> None:
    """Write both reports of ``result`` where it names them."""
    write_json(result.report_json, {**result.to_dict(), "threshold": threshold,
               "errors": {n: list(s.error_samples) for n, s in scored.items()}})  # fmt: skip
    cand, live = scored["candidate"].scores, scored["live"].scores
    both = np.isfinite(cand) & np.isfinite(live)
    images = {
        "Candidate vs live score, row by row": _scatter(live[both], cand[both], threshold),
        "|candidate - live| per row": _deltas(np.abs(cand[both] - live[both])),
        "Decisions flipped at the threshold, by live score band": _bands(result),
    }
    plots = "".join(
        f'<h2>{html.escape(t)}</h2><img alt="{html.escape(t)}" src="data:image/png;base64,{p}">'
        for t, p in images.items()
    )
    c = result.comparison
    facts = {
        "rows compared": c.rows,
        "max |delta|": f"{c.max_abs_delta:.5f}",
        "p99 |delta|": f"{c.p99_abs_delta:.5f}",
        f"rows moved by more than {c.delta_limit:g}": f"{c.moved} ({_share(c.moved, c.rows)}, "
        f"interval {c.moved_interval[0]:.2%}-{c.moved_interval[1]:.2%})",
        "rank correlation": f"{c.rank_correlation:.5f} (interval "
        f"{c.rank_interval[0]:.4f}-{c.rank_interval[1]:.4f})",
        "flipped decisions": f"{c.flips} ({c.flip_ratio:.2%}, interval "
        f"{c.flip_interval[0]:.2%}-{c.flip_interval[1]:.2%})",
        "PSI": f"{c.psi:.4f} (interval {c.psi_interval[0]:.4f}-{c.psi_interval[1]:.4f})",
        "errors (candidate / live)": f"{c.candidate_errors} / {c.live_errors}",
        "rows from (live port: rows)": json.dumps(result.sources),
        "batch latency ms": json.dumps(result.latency_ms),
    }
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in facts.items())  # fmt: skip
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in result.reasons) or "<li>none</li>"
    result.report_html.write_text(
        _PAGE.format(
            verdict=html.escape(result.verdict),
            reasons=reasons,
            rows=rows,
            plots=plots,
            policy=html.escape(json.dumps(result.policy.to_dict(), indent=1)),
        )
    )


def _scatter(live: np.ndarray, cand: np.ndarray, threshold: float) -> str:
    fig = figure(6, 6)
    ax = fig.add_subplot()
    ax.scatter(live, cand, s=4, alpha=0.5)
    ax.plot([0, 1], [0, 1], color="0.5", lw=1, label="equal")
    ax.axvline(threshold, color="red", ls="--", lw=1, label="threshold")
    ax.axhline(threshold, color="red", ls="--", lw=1)
    ax.set(xlabel="live score", ylabel="candidate score", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    return png(fig)


def _deltas(delta: np.ndarray) -> str:
    fig = figure(8, 3.5)
    ax = fig.add_subplot()
    if delta.size:
        ax.hist(delta, bins=50, log=True)
    ax.set(xlabel="|candidate - live|", ylabel="rows (log)")
    return png(fig)


def _bands(result: ShadowResult) -> str:
    bands = result.comparison.flips_by_band
    fig = figure(8, 3.5)
    ax = fig.add_subplot()
    names = list(bands)
    ax.bar(names, [rows for rows, _ in bands.values()], color="0.8", label="rows")
    ax.bar(names, [flips for _, flips in bands.values()], color="tab:red", label="flipped")
    ax.set(xlabel="live score band", ylabel="rows")
    ax.legend()
    return png(fig)


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Shadow report: {verdict}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 8px;text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>Shadow scoring: {verdict}</h1>
<p>Recent live requests' rows, scored by the candidate and by the live version at the same
time; neither answer reached a client.</p>
<ul>{reasons}</ul>
<table>{rows}</table>
{plots}
<h2>Policy (frozen into this run)</h2><pre>{policy}</pre>
</body></html>
"""


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.2%}" if whole else "-"
