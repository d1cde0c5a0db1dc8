"""Read the per-request samples the locustfile writes (``samples-<node>.npz``).

Each file holds one row per request (times in seconds from the schedule's start, which every
process of one run shares): ``intended`` send time, send ``lag`` behind it, ``late``: the
generator's own share of that lag (the send behind the moment a user was free to make it),
``latency`` from the intended time (or that moment, when every user was busy) to the
response, ``server``: the server's own time for it (its ``Server-Timing``; nan when it sent
none or the request failed), HTTP ``status`` (0 = none), ``kind`` (index into
``meta["kinds"]``, 0 = ok) and ``target`` (index into ``meta["targets"]``); plus a JSON
``meta`` with the schedule, the slots scheduled per target in the measured window, the
process's CPU series ``[(t, cumulative cpu seconds), ...]`` and the host's
``[(t, busy, steal, total cumulative CPU-seconds of every CPU), ...]`` (``host``).
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bentogate.errors import LoadTestError

FORMAT_VERSION = 4
_COLUMNS = ("intended", "lag", "late", "latency", "server", "status", "kind", "target")


@dataclass(frozen=True)
class HostCPU:
    """What the host's CPUs did over a measured window, in CPU-seconds of all of them:
    ``busy`` (all but idle and I/O wait: the gate's own processes, the targets' and
    everything else) and ``steal`` (the hypervisor ran something else on a VM's CPU),
    of ``total``. All zero: unknown."""

    busy_s: float = 0.0
    steal_s: float = 0.0
    total_s: float = 0.0

    def __add__(self, other: HostCPU) -> HostCPU:
        return HostCPU(self.busy_s + other.busy_s, self.steal_s + other.steal_s,
                       self.total_s + other.total_s)  # fmt: skip

    @property
    def busy(self) -> float:
        """Busy share of the host's CPU time (nan if unknown)."""
        return self.busy_s / self.total_s if self.total_s > 0 else float("nan")

    @property
    def steal(self) -> float:
        """Stolen share of the host's CPU time (nan if unknown)."""
        return self.steal_s / self.total_s if self.total_s > 0 else float("nan")

    def describe(self) -> str:
        """E.g. "the host's CPUs 97% busy, 21% stolen by the hypervisor" ('' if unknown)."""
        if self.total_s <= 0:
            return ""
        return f"the host's CPUs {self.busy:.0%} busy, {self.steal:.0%} stolen by the hypervisor"

    def to_dict(self) -> dict[str, float | None]:
        """``busy`` and ``steal`` shares (None if unknown)."""
        known = self.total_s > 0
        return {"busy": round(self.busy, 4) if known else None,
                "steal": round(self.steal, 4) if known else None}  # fmt: skip


@dataclass(frozen=True)
class Samples:
    """All requests of one run (every process merged), columns as numpy arrays."""

    intended: np.ndarray
    lag: np.ndarray
    late: np.ndarray
    latency: np.ndarray
    server: np.ndarray
    status: np.ndarray
    kind: np.ndarray
    target: np.ndarray
    targets: tuple[str, ...]
    kinds: tuple[str, ...]
    rate: float
    warmup_s: float
    duration_s: float
    scheduled: tuple[int, ...]
    cpu_series: tuple[tuple[tuple[float, float], ...], ...]
    cpu_warnings: int
    host: HostCPU = HostCPU()  # over the measured window(s)

    @property
    def measured(self) -> np.ndarray:
        """Mask of the requests whose intended time lies in the measured window."""
        return (self.intended >= self.warmup_s) & (self.intended < self.end_s)

    @property
    def end_s(self) -> float:
        """End of the measured window."""
        return self.warmup_s + self.duration_s

    def extended_by(self, later: Samples) -> Samples:
        """These samples and the measured window of a later run of the same targets, laid end
        to end: ``later``'s warm-up is dropped and its times shifted to follow this window.

        Raises LoadTestError if the runs drove other targets or another rate.
        """
        if later.targets != self.targets or later.rate != self.rate:
            raise LoadTestError("cannot extend a gate run with a run of other targets or rate")
        shift = self.end_s - later.warmup_s
        keep = later.intended >= later.warmup_s
        columns: dict[str, Any] = {c: np.concatenate([getattr(self, c), getattr(later, c)[keep]])
                   for c in _COLUMNS}  # fmt: skip
        columns["intended"][len(self.intended):] += shift
        moved = tuple(tuple((t + shift, c) for t, c in series if t >= later.warmup_s)
                      for series in later.cpu_series)  # fmt: skip
        return dataclasses.replace(
            self, **columns, duration_s=self.duration_s + later.duration_s,
            scheduled=tuple(a + b for a, b in zip(self.scheduled, later.scheduled, strict=True)),
            cpu_series=self.cpu_series + moved,  # one series per process and run
            cpu_warnings=self.cpu_warnings + later.cpu_warnings, host=self.host + later.host,
        )  # fmt: skip

    def target_index(self, name: str) -> int:
        """Index of a target name in the ``target`` column."""
        try:
            return self.targets.index(name)
        except ValueError:
            raise LoadTestError(f"no samples for target {name!r} in {self.targets}") from None


def load_samples(out_dir: Path) -> Samples:
    """Merge every ``samples-*.npz`` under ``out_dir`` (one per Locust process).

    Raises LoadTestError when there is none, or one is unreadable or of another format.
    """
    paths = sorted(out_dir.glob("samples-*.npz"))
    if not paths:
        raise LoadTestError(f"Locust wrote no samples file in {out_dir}")
    parts = [_read(path) for path in paths]
    metas = [meta for meta, _ in parts]
    first = metas[0]
    for meta in metas[1:]:
        if meta["targets"] != first["targets"] or meta["start"] != first["start"]:
            raise LoadTestError("samples files of different runs in one directory")
    columns = {c: np.concatenate([cols[c] for _, cols in parts]) for c in _COLUMNS}
    order = np.argsort(columns["intended"], kind="stable")
    return Samples(
        **{c: columns[c][order] for c in _COLUMNS},
        targets=tuple(first["targets"]),
        kinds=tuple(first["kinds"]),
        rate=float(first["rate"]),
        warmup_s=float(first["warmup_s"]),
        duration_s=float(first["duration_s"]),
        scheduled=tuple(int(sum(c)) for c in zip(*(m["scheduled"] for m in metas), strict=True)),
        cpu_series=tuple(tuple((float(t), float(c)) for t, c in m["cpu"]) for m in metas),
        cpu_warnings=sum(int(m["cpu_warnings"]) for m in metas),
        # every process saw the same host: the first's series
        host=window_host(first["host"], float(first["warmup_s"]),
                         float(first["warmup_s"]) + float(first["duration_s"])),
    )  # fmt: skip


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            columns = {c: np.asarray(data[c]) for c in _COLUMNS}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise LoadTestError(f"cannot read samples file {path}: {exc}") from exc
    if meta.get("format") != FORMAT_VERSION:
        raise LoadTestError(f"{path}: samples format {meta.get('format')} != {FORMAT_VERSION}")
    return meta, columns


def _window(times: np.ndarray, start: float, end: float) -> tuple[float, float] | None:
    """The part of [start, end] a series sampled at ``times`` covers, or None if it covers
    less than half a second of it (too short to mean anything)."""
    lo, hi = max(start, times[0]), min(end, times[-1])
    return (lo, hi) if hi - lo >= 0.5 else None


def window_cpu(series: tuple[tuple[float, float], ...], start: float, end: float) -> float:
    """CPU of one process over [start, end] as a fraction of one core (nan if unknown)."""
    if len(series) < 2:
        return float("nan")
    ts = np.array([t for t, _ in series])
    cs = np.array([c for _, c in series])
    if (window := _window(ts, start, end)) is None:
        return float("nan")
    lo, hi = window
    return float((np.interp(hi, ts, cs) - np.interp(lo, ts, cs)) / (hi - lo))


def window_host(series: list[list[float]], start: float, end: float) -> HostCPU:
    """The host's CPU-seconds over [start, end] from its cumulative series (unknown where
    :func:`window_cpu` would be)."""
    if len(series) < 2:
        return HostCPU()
    ts = np.array([row[0] for row in series])
    if (window := _window(ts, start, end)) is None:
        return HostCPU()
    lo, hi = window
    busy, steal, total = (
        float(np.interp(hi, ts, column) - np.interp(lo, ts, column))
        for column in np.array([row[1:4] for row in series]).T
    )
    return HostCPU(busy, steal, total)


def generator_cpu(samples: Samples) -> float:
    """The busiest Locust process's CPU over the measured window, in cores (1.0 = saturated).

    A Locust process is one gevent thread: at ~1.0 it cannot keep its schedule.
    """
    values = [window_cpu(s, samples.warmup_s, samples.end_s) for s in samples.cpu_series]
    finite = [v for v in values if np.isfinite(v)]
    return max(finite) if finite else float("nan")
