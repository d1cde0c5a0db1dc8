"""Reading the locustfile's samples and the exact figures computed from them."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from lt_samples_factory import uniform_run

from bentogate.errors import LoadTestError
from bentogate.loadtest.figures import all_figures, quantile_ms, target_figures, time_series
from bentogate.loadtest.samples import HostCPU, generator_cpu, load_samples, window_cpu

Writer = Callable[..., Path]


def test_percentiles_are_exact_nearest_rank_and_warmup_is_excluded(
    samples_writer: Writer, tmp_path: Path
) -> None:
    samples_writer(uniform_run(1000))
    fig = target_figures(load_samples(tmp_path), "candidate")
    assert fig.samples == 1000
    assert (fig.p50_ms, fig.p95_ms, fig.p99_ms, fig.p999_ms) == pytest.approx(
        (500.0, 950.0, 990.0, 999.0), abs=1e-3
    )
    assert fig.max_ms == pytest.approx(1000.0, abs=1e-3)  # warm-up's 9 s is not there
    assert fig.mean_ms == pytest.approx(500.5, abs=1e-3)
    assert fig.achieved_rate == pytest.approx(100.0)
    assert fig.error_ratio == 0.0 and fig.errors == {}


def test_failures_are_counted_by_kind_and_kept_out_of_latency(
    samples_writer: Writer, tmp_path: Path
) -> None:
    rows = uniform_run(100, warmup_rows=0)
    rows += [(2.0, 0.0, 0.001, 500, 1, 0)] * 3  # fast 500s must not improve latency
    rows += [(2.0, 0.0, 5.0, 0, 2, 0), (3.0, 0.0, 0.002, 200, 3, 0), (4.0, 0.0, 9.0, 0, 5, 0)]
    rows += [(2.5, 0.0, 0.002, 503, 1, 0)]
    samples_writer(rows, scheduled=[107])
    fig = target_figures(load_samples(tmp_path), "candidate")
    assert fig.samples == 107
    assert fig.errors == {"connection": 1, "status 500": 3, "status 503": 1,
                          "unfinished": 1, "wrong_version": 1}  # fmt: skip
    assert fig.error_ratio == pytest.approx(7 / 107)
    assert fig.p50_ms == pytest.approx(50.0, abs=1e-3)
    assert fig.max_ms == pytest.approx(100.0, abs=1e-3)


def test_no_success_gives_nan_latencies() -> None:
    assert math.isnan(quantile_ms(np.array([]), 99))


def test_two_targets_and_two_worker_files_merge(samples_writer: Writer, tmp_path: Path) -> None:
    # 25 req/s per target over the 10 s window, taking turns, split over two processes
    meta = {"targets": ["candidate", "live"], "scheduled": [125, 125], "rate": 25.0}
    cand = [(1.0 + i / 25, 0.0, 0.002, 200, 0, 0) for i in range(250)]
    live = [(1.02 + i / 25, 0.0, 0.001, 200, 0, 1) for i in range(250)]
    samples_writer(cand[::2] + live[::2], name="w0", **meta)
    samples_writer(cand[1::2] + live[1::2], name="w1", **meta)
    figures = all_figures(load_samples(tmp_path))
    assert set(figures) == {"candidate", "live"}
    assert figures["candidate"].samples == figures["live"].samples == 250
    assert figures["live"].p99_ms == pytest.approx(1.0, abs=1e-3)
    assert figures["candidate"].achieved_rate == pytest.approx(25.0)


def test_a_lagging_generator_shows_in_achieved_rate(samples_writer: Writer, tmp_path: Path) -> None:
    # slots due in [1, 11) but sent 0.5-5 s late: only those sent before 11 s count
    rows = [(1.0 + i / 100, 0.5 + i / 200, 0.6 + i / 200, 200, 0, 0) for i in range(1000)]
    samples_writer(rows)
    fig = target_figures(load_samples(tmp_path), "candidate")
    assert fig.samples == 1000
    assert fig.achieved_rate < 95.0
    assert fig.lag_p99_ms > 4000


def test_time_series_bins(samples_writer: Writer, tmp_path: Path) -> None:
    samples_writer(uniform_run(1000))
    s = time_series(load_samples(tmp_path), "candidate")
    assert len(s.edges) == 12 and len(s.p99_ms) == 11
    assert s.sent[1:].tolist() == [100.0] * 10
    assert s.p99_ms[0] == pytest.approx(9000.0, abs=1e-2)  # the warm-up bin is plotted


def test_missing_and_unreadable_files_raise_loadtesterror(
    samples_writer: Writer, tmp_path: Path
) -> None:
    with pytest.raises(LoadTestError, match="no samples"):
        load_samples(tmp_path)
    (tmp_path / "samples-bad.npz").write_bytes(b"not a zip")
    with pytest.raises(LoadTestError, match="cannot read"):
        load_samples(tmp_path)


def test_other_format_version_is_refused(samples_writer: Writer, tmp_path: Path) -> None:
    samples_writer(uniform_run(10), format=99)
    with pytest.raises(LoadTestError, match="format"):
        load_samples(tmp_path)


def test_files_of_different_runs_are_refused(samples_writer: Writer, tmp_path: Path) -> None:
    samples_writer(uniform_run(10), name="a")
    samples_writer(uniform_run(10), name="b", start=2000.0)
    with pytest.raises(LoadTestError, match="different runs"):
        load_samples(tmp_path)


def test_unknown_target_raises(samples_writer: Writer, tmp_path: Path) -> None:
    samples_writer(uniform_run(10))
    with pytest.raises(LoadTestError, match="live"):
        target_figures(load_samples(tmp_path), "live")


def test_cpu_over_the_window() -> None:
    series = ((0.0, 0.0), (1.0, 0.9), (2.0, 1.1), (3.0, 1.3), (4.0, 1.5))
    assert window_cpu(series, 1.0, 4.0) == pytest.approx(0.2)
    assert window_cpu(series, 0.5, 1.5) == pytest.approx((1.0 - 0.45) / 1.0)
    assert math.isnan(window_cpu(((0.0, 0.0),), 0.0, 1.0))


def test_generator_cpu_is_the_busiest_process(samples_writer: Writer, tmp_path: Path) -> None:
    samples_writer(uniform_run(10), name="a", cpu=[[0.0, 0.0], [11.0, 2.2]])
    samples_writer(uniform_run(10), name="b", cpu=[[0.0, 0.0], [11.0, 9.9]])
    assert generator_cpu(load_samples(tmp_path)) == pytest.approx(0.9)


def test_the_hosts_cpu_over_the_measured_window_and_its_extension(
    samples_writer: Writer, tmp_path: Path
) -> None:
    # cumulative (t, busy, steal, total) CPU-seconds of a 2-CPU host; the window is 1-11 s
    host = [[0.0, 0.0, 0.0, 0.0], [1.0, 0.5, 0.0, 2.0], [11.0, 18.5, 4.0, 22.0]]
    samples_writer(uniform_run(10), host=host)
    samples = load_samples(tmp_path)
    assert (samples.host.busy, samples.host.steal) == (pytest.approx(0.9), pytest.approx(0.2))
    assert samples.host.describe() == "the host's CPUs 90% busy, 20% stolen by the hypervisor"
    longer = samples.extended_by(samples)  # a second run's window adds its CPU-seconds
    assert longer.host == HostCPU(36.0, 8.0, 40.0)
    unknown = HostCPU()
    assert math.isnan(unknown.busy) and unknown.describe() == ""
    assert unknown.to_dict() == {"busy": None, "steal": None}
