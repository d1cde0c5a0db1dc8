"""Shadow scoring: recent live rows replayed to the candidate and to live, scores compared.

The gate shows a candidate is fast enough on its reference rows; a shadow run shows it
scores *real* requests the way the team expects: both versions score the same rows (the
live Bentos' kept recent rows, ``serving/recent.py``) at the same time, through their
ports, and never answer a client. Per row: the two scores; over the run: max and p99 of
|candidate - live|, Spearman rank correlation, the share of decisions that flip at the
model's threshold (with a Wilson interval), the population stability index of the score
distributions, errors and response times. :func:`judge` turns them into a verdict with the
model's stored policy (``GatePolicy.shadow_*``): a limit *fails* only when the evidence is
beyond it (for the flip share: the whole interval), *passes* only when within it.
"""

from __future__ import annotations

import http.client
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from bentogate.errors import LoadTestError

from .policy import GatePolicy, Target
from .verdict import FAIL, INCONCLUSIVE, PASS

BATCH_ROWS = 64  # rows per /predict_batch request: few round trips, small bodies
_PSI_BINS = 10
_PSI_FLOOR = 1e-4  # a bin empty on one side still counts, but not infinitely


@dataclass(frozen=True)
class Scored:
    """What one target answered for the replayed rows: a score per row (nan where its
    batch failed), failed rows, and each batch request's time in ms."""

    scores: np.ndarray
    errors: int
    error_samples: tuple[str, ...]
    batch_ms: np.ndarray


@dataclass(frozen=True)
class Comparison:
    """Candidate vs live on the same rows (rows both scored)."""

    rows: int
    max_abs_delta: float
    p99_abs_delta: float
    rank_correlation: float
    flips: int
    flip_ratio: float
    flip_interval: tuple[float, float]
    psi: float
    candidate_errors: int
    live_errors: int
    flips_by_band: dict[str, list[int]]  # live-score band -> [rows, flips]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: a figure that could not be computed (nan, inf) is None."""
        return {key: _json_ready(value) for key, value in asdict(self).items()}


def compare(
    candidate: Scored, live: Scored, threshold: float, confidence: float = 0.95
) -> Comparison:
    """The comparison of two targets' scores for the same rows (pure)."""
    both = np.isfinite(candidate.scores) & np.isfinite(live.scores)
    cand, base = candidate.scores[both], live.scores[both]
    n = int(both.sum())
    delta = np.abs(cand - base)
    flipped = (cand >= threshold) != (base >= threshold)
    flips = int(flipped.sum())
    return Comparison(
        rows=n,
        max_abs_delta=float(delta.max()) if n else math.nan,
        p99_abs_delta=float(np.percentile(delta, 99)) if n else math.nan,
        rank_correlation=_spearman(cand, base),
        flips=flips,
        flip_ratio=flips / n if n else math.nan,
        flip_interval=wilson(flips, n, confidence),
        psi=_psi(base, cand),
        candidate_errors=candidate.errors,
        live_errors=live.errors,
        flips_by_band=_flips_by_band(base, flipped),
    )


def judge(comparison: Comparison, policy: GatePolicy) -> tuple[str, tuple[str, ...]]:
    """``(verdict, reasons)`` of a comparison under the model's policy: every violated or
    undecided limit named with its measured and allowed values. Fail on any violation;
    inconclusive when the evidence cannot decide (too few rows, live failing rows, a flip
    interval straddling its limit); pass otherwise."""
    c, violations, doubts = comparison, [], []
    if c.candidate_errors:
        violations.append(f"candidate failed {c.candidate_errors} rows")
    if c.live_errors:
        doubts.append(f"live failed {c.live_errors} rows: they are not compared")
    if c.rows < policy.shadow_min_rows:
        doubts.append(f"{c.rows} rows scored by both < {policy.shadow_min_rows} (shadow_min_rows)")
        return (FAIL, tuple(violations)) if violations else (INCONCLUSIVE, tuple(doubts))
    low, high = c.flip_interval
    limit = policy.shadow_max_flip_ratio
    flips = (
        f"decisions flipped at the threshold {c.flip_ratio:.2%} ({c.flips} of {c.rows}, "
        f"interval {low:.2%}-{high:.2%})"
    )
    if low > limit:
        violations.append(f"{flips} > {limit:.2%}")
    elif high > limit:
        doubts.append(f"{flips} straddles {limit:.2%}")
    if c.p99_abs_delta > policy.shadow_p99_abs_delta:
        violations.append(
            f"p99 |score delta| {c.p99_abs_delta:.4f} > {policy.shadow_p99_abs_delta:g} "
            f"(max {c.max_abs_delta:.4f})"
        )
    if c.psi > policy.shadow_max_psi:
        violations.append(f"score distribution shift PSI {c.psi:.3f} > {policy.shadow_max_psi:g}")
    if not c.rank_correlation >= policy.shadow_min_rank_correlation:  # nan fails too
        violations.append(
            f"rank correlation {c.rank_correlation:.4f} < {policy.shadow_min_rank_correlation:g}"
        )
    if violations:
        return FAIL, tuple(violations)
    if doubts:
        return INCONCLUSIVE, tuple(doubts)
    return PASS, ()


def score_rows(target: Target, rows: list[list[float]], timeout: float = 10.0) -> Scored:
    """Score ``rows`` on ``target`` in batches over one keep-alive connection (marked
    ``?from=shadow``). A batch the target refuses or fails is counted, its rows nan.
    LoadTestError if the target cannot be reached at all."""
    url = urlsplit(target.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout)
    scores = np.full(len(rows), np.nan)
    errors, samples, times = 0, [], []
    try:
        for start in range(0, len(rows), BATCH_ROWS):
            chunk = rows[start : start + BATCH_ROWS]
            sent = time.perf_counter()
            try:
                conn.request("POST", "/predict_batch?from=shadow",
                             orjson.dumps({"features": chunk}),
                             {"Content-Type": "application/json"})  # fmt: skip
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                raise LoadTestError(f"shadow: {target.name} at {target.url}: {exc}") from exc
            times.append((time.perf_counter() - sent) * 1000)
            answer = orjson.loads(body) if response.status == 200 else None
            if answer is None or answer.get("model_version") != target.expected_version:
                errors += len(chunk)
                samples.append(f"{response.status} {body[:200]!r}")
                continue
            scores[start : start + len(chunk)] = answer["scores"]
    finally:
        conn.close()
    return Scored(scores, errors, tuple(samples[:5]), np.asarray(times))


@dataclass(frozen=True)
class ShadowResult:
    """One shadow run: the verdict, its reasons, the comparison, the policy frozen into it,
    where the rows came from, and where the reports are."""

    verdict: str
    reasons: tuple[str, ...]
    comparison: Comparison
    policy: GatePolicy
    sources: dict[str, int]  # live backend port -> rows it handed out
    latency_ms: dict[str, dict[str, float]]
    report_json: Path
    report_html: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "comparison": self.comparison.to_dict(),
            "policy": self.policy.to_dict(),
            "sources": self.sources,
            "latency_ms": self.latency_ms,
            "report_json": str(self.report_json),
            "report_html": str(self.report_html),
        }


def run_shadow(
    candidate: Target,
    live: Target,
    rows: list[list[float]],
    threshold: float,
    policy: GatePolicy,
    out_dir: Path,
    *,
    sources: dict[str, int],
) -> ShadowResult:
    """Score ``rows`` on both targets, compare, judge, write the reports (JSON + HTML with
    plots) into ``out_dir``. LoadTestError if a target cannot be reached."""
    from .shadow_report import write_reports  # matplotlib only when a report is written

    rows = distinct(rows)
    scored = {"candidate": score_rows(candidate, rows), "live": score_rows(live, rows)}
    comparison = compare(scored["candidate"], scored["live"], threshold, policy.confidence)
    verdict, reasons = judge(comparison, policy)
    latency = {name: _latency(s.batch_ms) for name, s in scored.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ShadowResult(
        verdict, reasons, comparison, policy, sources, latency,
        out_dir / "shadow-report.json", out_dir / "shadow-report.html",
    )  # fmt: skip
    write_reports(result, scored, threshold)
    return result


def distinct(rows: list[list[float]]) -> list[list[float]]:
    """``rows`` without repeats, first occurrence kept, in order. A row is one piece of
    evidence however often clients sent it: a client repeating one transaction (a retry
    loop, a probe) would otherwise fill the sample with one input, whose single flip or
    score difference would read as a distribution-wide one."""
    return list({tuple(row): row for row in rows}.values())


def _json_ready(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, tuple | list):
        return [_json_ready(v) for v in value]
    return value


def _latency(batch_ms: np.ndarray) -> dict[str, float]:
    if not batch_ms.size:
        return {}
    p50, p99 = np.percentile(batch_ms, [50, 99])
    return {"batch_p50_ms": float(p50), "batch_p99_ms": float(p99), "batches": batch_ms.size}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); nan below 3 rows or when one
    side is constant."""
    if a.size < 3:
        return math.nan
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return 1.0 if np.array_equal(a, b) else math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size)
    ranks[order] = np.arange(x.size, dtype=float)
    sorted_x = x[order]  # ties share their average rank
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    for s, e in zip(starts, ends, strict=True):
        if e - s > 1:
            ranks[order[s:e]] = (s + e - 1) / 2
    return ranks


def wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Two-sided Wilson score interval of the proportion k/n at ``confidence``."""
    if n == 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of ``actual`` against ``expected`` over the deciles of
    ``expected``; nan without rows."""
    if not expected.size:
        return math.nan
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, _PSI_BINS + 1)))
    if edges.size < 2:
        return 0.0 if np.array_equal(expected, actual) else math.inf
    inner = edges[1:-1]
    e = np.bincount(np.searchsorted(inner, expected, side="right"), minlength=inner.size + 1)
    a = np.bincount(np.searchsorted(inner, actual, side="right"), minlength=inner.size + 1)
    e = np.maximum(e / expected.size, _PSI_FLOOR)
    a = np.maximum(a / actual.size, _PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def _flips_by_band(live: np.ndarray, flipped: np.ndarray) -> dict[str, list[int]]:
    """Rows and flipped decisions per band of the live score (tenths of [0, 1])."""
    band = np.minimum((live * 10).astype(int), 9)
    return {
        f"{b / 10:.1f}-{(b + 1) / 10:.1f}": [int((band == b).sum()), int(flipped[band == b].sum())]
        for b in range(10)
        if (band == b).any()
    }
