"""Exact figures per target from the samples: percentiles, rate, errors, time series."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .samples import Samples

NAN = float("nan")


@dataclass(frozen=True)
class TargetFigures:
    """What one target did in the measured window.

    ``samples`` counts measured requests (ok and failed); latencies (ms, from the intended
    send time) are over the successful ones only (nan when there is none). ``achieved_rate``
    counts requests to this target *sent* (intended + lag) in the window, per second
    the target was active (a lagging generator shows here); ``errors`` maps kind
    (``status 500``, ``connection``, ``wrong_version``, ``bad_body``, ``unfinished``) to a
    count. ``lag_p99_ms``: p99 of how late the generator
    sent a request behind its slot (a diagnostic of the generator, not of the target).
    ``server_*_ms``: the server's own time (its ``Server-Timing``; nan if it sent none);
    ``overhead_*_ms``: client latency minus server time per request, what the generator,
    the network and the proxy add.
    """

    samples: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    achieved_rate: float
    errors: dict[str, int] = field(default_factory=dict)
    error_ratio: float = 0.0
    target_rate: float = NAN
    lag_p99_ms: float = NAN
    server_p50_ms: float = NAN
    server_p99_ms: float = NAN
    overhead_p50_ms: float = NAN
    overhead_p99_ms: float = NAN

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; nan becomes None."""
        return {k: _json_number(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetFigures:
        """Inverse of ``to_dict``."""
        values: dict[str, Any] = {k: (NAN if v is None else v) for k, v in data.items()}
        return cls(**values)


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def quantile_ms(latency_s: np.ndarray, q: float) -> float:
    """Exact nearest-rank quantile (q in [0, 1], e.g. 0.999) of latencies in s, in ms."""
    if latency_s.size == 0:
        return NAN
    return float(np.quantile(latency_s, q, method="inverted_cdf")) * 1e3


def error_counts(samples: Samples, mask: np.ndarray) -> dict[str, int]:
    """Failed requests under ``mask`` by kind; HTTP errors by status code (``status 500``)."""
    counts: dict[str, int] = {}
    failed = mask & (samples.kind != 0)
    for kind, status in zip(samples.kind[failed], samples.status[failed], strict=True):
        name = samples.kinds[int(kind)]
        key = f"status {int(status)}" if name == "status" else name
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def target_figures(samples: Samples, name: str) -> TargetFigures:
    """The figures of one target over the measured window."""
    index = samples.target_index(name)
    mask = samples.measured & (samples.target == index)
    ok_mask = mask & (samples.kind == 0)
    ok = samples.latency[ok_mask].astype(np.float64)
    server = samples.server[ok_mask].astype(np.float64)
    timed = np.isfinite(server)
    overhead = ok[timed] - server[timed]
    n = int(np.count_nonzero(mask))
    errors = error_counts(samples, mask)
    sent_at = samples.intended + samples.lag
    sent = (samples.target == index) & (sent_at >= samples.warmup_s) & (sent_at < samples.end_s)
    return TargetFigures(
        samples=n,
        p50_ms=quantile_ms(ok, 0.50),
        p95_ms=quantile_ms(ok, 0.95),
        p99_ms=quantile_ms(ok, 0.99),
        p999_ms=quantile_ms(ok, 0.999),
        mean_ms=float(ok.mean()) * 1e3 if ok.size else NAN,
        max_ms=float(ok.max()) * 1e3 if ok.size else NAN,
        achieved_rate=int(np.count_nonzero(sent)) / samples.duration_s,
        errors=errors,
        error_ratio=sum(errors.values()) / n if n else 0.0,
        target_rate=samples.rate,
        lag_p99_ms=quantile_ms(samples.lag[mask].astype(np.float64), 0.99),
        server_p50_ms=quantile_ms(server[timed], 0.50),
        server_p99_ms=quantile_ms(server[timed], 0.99),
        overhead_p50_ms=quantile_ms(overhead, 0.50),
        overhead_p99_ms=quantile_ms(overhead, 0.99),
    )


def all_figures(samples: Samples) -> dict[str, TargetFigures]:
    """Figures of every target in the run, by name."""
    return {name: target_figures(samples, name) for name in samples.targets}


@dataclass(frozen=True)
class Series:
    """Per-second series of one target over the whole run (warm-up included), for plots."""

    edges: np.ndarray
    p50_ms: np.ndarray
    p99_ms: np.ndarray
    p999_ms: np.ndarray
    server_p50_ms: np.ndarray
    sent: np.ndarray
    errors: np.ndarray

    @property
    def centers(self) -> np.ndarray:
        """Middle of each bin (where per-bin percentiles are plotted)."""
        return (self.edges[:-1] + self.edges[1:]) / 2


def time_series(samples: Samples, name: str, bin_s: float = 1.0) -> Series:
    """Latency percentiles of successful requests, sends and errors per ``bin_s`` seconds.

    Bins where the target got no successful request hold nan (every request failed).
    ``sent`` counts by actual send time (intended + lag).
    """
    index = samples.target_index(name)
    total = samples.warmup_s + samples.duration_s
    nbins = max(1, math.ceil(total / bin_s))
    edges = np.arange(nbins + 1) * bin_s
    mine = samples.target == index
    ok = mine & (samples.kind == 0)
    bins = np.clip((samples.intended // bin_s).astype(np.int64), 0, nbins - 1)
    pct = np.full((4, nbins), NAN)
    for b in np.unique(bins[ok]):
        lat = samples.latency[ok & (bins == b)].astype(np.float64)
        server = samples.server[ok & (bins == b)].astype(np.float64)
        pct[:3, b] = [quantile_ms(lat, q) for q in (0.5, 0.99, 0.999)]
        pct[3, b] = quantile_ms(server[np.isfinite(server)], 0.5)
    sent_at = samples.intended[mine] + samples.lag[mine]
    sent, _ = np.histogram(sent_at, bins=edges)
    errors, _ = np.histogram(samples.intended[mine & (samples.kind != 0)], bins=edges)
    return Series(edges, pct[0], pct[1], pct[2], pct[3], sent / bin_s, errors)
