"""The Bento's own latency, as the bake watcher reads it: BentoML's request-duration histogram
on each replica's ``/_latency`` (the buckets of ``serving.metrics.LATENCY_BUCKETS_S``), its
growth over a window, and what that growth says about a tail. Pure, but :func:`parse`'s
input, which the caller fetches.

A histogram bounds a quantile, it does not give it: the p99 of a window lies in the bucket
where the cumulative count first reaches 99 % of the window's answers, above that bucket's
lower bound and at most its upper bound (:func:`quantile_bucket`). And it counts exactly
the answers slower than each bound (:func:`slower_than`). So the bake's rule on a p99 limit
(:func:`latency_breach`) counts the answers certainly slower than the limit, and breaches when
more than 1 % of the window's are, on the whole ``confidence`` interval (rationale:
:mod:`bentogate.bake`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from bentogate.loadtest import GatePolicy
from bentogate.loadtest.shadow import wilson

#: BentoML's request-duration histogram, as service.py names it (``metrics.namespace``
#: "bentoml_service"): one series per endpoint and response code, summed over workers.
METRIC = "bentoml_service_request_duration_seconds_bucket"
#: The endpoint whose time clients' predictions take (``/predict_batch`` answers many rows
#: at once and would be slow by right). HAProxy's health checks are answered here too: one
#: fast canary prediction per server and second.
ENDPOINT = "/predict"

TAIL_SHARE = 0.01  # what a p99 limit allows over it
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Histogram:
    """Answers by duration: ``counts[i]`` answers took at most ``bounds[i]`` seconds
    (cumulative; ascending bounds, the last one ``inf`` when the source has it)."""

    bounds: tuple[float, ...] = ()
    counts: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        """How many answers the histogram holds (those of the ``inf`` bucket)."""
        return self.counts[-1] if self.counts else 0


def parse(text: str, endpoint: str = ENDPOINT) -> Histogram:
    """The histogram of ``endpoint``'s successful (2xx) answers in a ``/_latency`` or
    ``/metrics`` page (Prometheus text format), its response codes summed; empty if the page
    has none. Like the gate's percentiles, it times answers that succeeded: failures are the
    error ratio's."""
    sums: dict[float, int] = {}
    for line in text.splitlines():
        if not line.startswith(METRIC + "{"):
            continue
        labels_text, _, value = line[len(METRIC) + 1 :].rpartition("}")
        labels = dict(_LABEL.findall(labels_text))
        code = labels.get("http_response_code", "")
        if labels.get("endpoint") != endpoint or not code.startswith("2"):
            continue
        bound = float(labels["le"])  # "+Inf" too
        sums[bound] = sums.get(bound, 0) + int(float(value.split()[0]))
    bounds = tuple(sorted(sums))
    return Histogram(bounds, tuple(sums[b] for b in bounds))


def growth(first: Histogram, last: Histogram) -> Histogram | None:
    """The answers ``last`` holds beyond ``first`` (a later reading of the same replica), on
    the bounds both have; None if a count went down (the replica restarted in between)."""
    before = dict(zip(first.bounds, first.counts, strict=True))
    bounds, counts = [], []
    for bound, count in zip(last.bounds, last.counts, strict=True):
        if bound in before:
            if count < before[bound]:
                return None
            bounds.append(bound)
            counts.append(count - before[bound])
    return Histogram(tuple(bounds), tuple(counts))


def window(first: Mapping[str, Histogram], last: Mapping[str, Histogram]) -> Histogram:
    """The answers of a window, from two readings of every replica (replica → histogram):
    each replica's :func:`growth`, summed on the bounds they share. A replica missing from
    either reading, or restarted in between, is left out (its window is unknown)."""
    grown = [growth(first[key], last[key]) for key in sorted(first.keys() & last.keys())]
    parts = [g for g in grown if g is not None]
    if not parts:
        return Histogram()
    shared = set(parts[0].bounds).intersection(*(p.bounds for p in parts[1:]))
    bounds = tuple(sorted(shared))
    totals = [0] * len(bounds)
    for part in parts:
        at = dict(zip(part.bounds, part.counts, strict=True))
        for i, bound in enumerate(bounds):
            totals[i] += at[bound]
    return Histogram(bounds, tuple(totals))


def quantile_bucket(histogram: Histogram, q: float) -> tuple[float, float] | None:
    """``(lower, upper]``: the bucket holding the ``q`` quantile (the ``ceil(q * n)``-th
    fastest of ``n`` answers): the quantile is above ``lower`` and at most ``upper`` (``inf``
    past the last finite bound). None without answers."""
    n = histogram.total
    if n == 0:
        return None
    rank = max(1, math.ceil(round(q * n, 9)))  # 0.99 * 100 is 99, not 99.00000000000001
    lower = 0.0
    for bound, count in zip(histogram.bounds, histogram.counts, strict=True):
        if count >= rank:
            return lower, bound
        lower = bound
    return lower, math.inf  # no "inf" bucket in the source: the counts end below n


def slower_than(histogram: Histogram, limit_s: float) -> tuple[int, float]:
    """``(answers, bound)``: how many answers certainly took longer than ``limit_s``, those
    over ``bound``, the lowest bucket bound at or above it (exact when the limit is a bound;
    ``(0, inf)`` when no finite bound is that high: nothing is known above the last)."""
    for bound, count in zip(histogram.bounds, histogram.counts, strict=True):
        if bound >= limit_s and math.isfinite(bound):
            return histogram.total - count, bound
    return 0, math.inf


@dataclass(frozen=True)
class ServerTail:
    """What the Bentos' histograms say about a window's tail (:func:`latency_breach`)."""

    answers: int
    p99_bucket_ms: tuple[float, float] | None  # the p99 is above the first, at most the second
    over: int  # answers certainly slower than the limit: those over ``over_ms``
    over_ms: float  # the lowest bucket bound at or above the limit


def latency_breach(
    window: Histogram, seconds: float, policy: GatePolicy
) -> tuple[str | None, ServerTail]:
    """``(breach, tail)`` of a window's server-side histogram (pure): a breach when, with at
    least ``bake_min_requests`` answers, the share that certainly took longer than
    ``p99_ms`` is over 1 % on the whole ``confidence`` Wilson interval; it names the
    measured figures and the rule."""
    limit_ms = policy.p99_ms
    over, bound_s = slower_than(window, limit_ms / 1e3)
    bucket = quantile_bucket(window, 1 - TAIL_SHARE)
    tail = ServerTail(
        answers=window.total,
        p99_bucket_ms=None if bucket is None else (bucket[0] * 1e3, bucket[1] * 1e3),
        over=over,
        over_ms=bound_s * 1e3,
    )
    n = window.total
    if n < policy.bake_min_requests or over == 0:
        return None, tail
    low, high = wilson(over, n, policy.confidence)
    if low <= TAIL_SHARE:
        return None, tail
    over_what = f"{tail.over_ms:g} ms"
    if not math.isclose(tail.over_ms, limit_ms):
        over_what += f" (the lowest bucket bound >= {limit_ms:g} ms)"
    breach = (
        f"server p99 > {limit_ms:g} ms (p99_ms): {over} of {n} answers ({over / n:.1%}, "
        f"interval {low:.1%}-{high:.1%}) took over {over_what} in the Bento over "
        f"{seconds:.1f} s, where at most {TAIL_SHARE:.0%} may; {_p99_text(tail)}"
    )
    return breach, tail


def _p99_text(tail: ServerTail) -> str:
    """E.g. "server p99 <= 100 ms (bucket 50-100 ms)": a histogram gives a bucket, no value."""
    if tail.p99_bucket_ms is None:
        return "no server p99 (no answer)"
    low, high = tail.p99_bucket_ms
    return f"server p99 <= {high:g} ms (bucket {low:g}-{high:g} ms)"
