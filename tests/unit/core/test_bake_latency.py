"""The bake watcher's latency rule on the Bentos' own histograms: parsing ``/metrics`` as
BentoML writes it, windows over replicas, the bucket a p99 lies in, and the breach (no
Bento, no timing: synthetic histograms)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import prometheus_client
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from bentogate.bake import Reading
from bentogate.latency import (
    ENDPOINT,
    Histogram,
    growth,
    latency_breach,
    parse,
    quantile_bucket,
    slower_than,
)
from bentogate.latency import window as window_of
from bentogate.loadtest import GatePolicy
from bentogate.status import _bake_text
from serving.metrics import LATENCY_BUCKETS_S, RequestMetrics

#: the namespace service.py gives its metrics (checked below): latency.METRIC's prefix
METRICS_NAMESPACE = "bentoml_service"

PROJECT_DIR = Path(__file__).resolve().parents[3]
POLICY = GatePolicy(
    rate=100, duration_s=10, warmup_s=1, users=4, p50_ms=5, p95_ms=10, p99_ms=25,
    max_error_ratio=0.0, min_samples=10, max_regression=1.25,
    bake_window_s=2.0, bake_max_error_ratio=0.01, bake_min_requests=20,
)  # fmt: skip
BOUNDS = (*LATENCY_BUCKETS_S, math.inf)


def histogram(durations_s: Iterable[float], bounds: tuple[float, ...] = BOUNDS) -> Histogram:
    """The cumulative histogram of these durations on ``bounds``."""
    values = list(durations_s)
    return Histogram(bounds, tuple(sum(v <= b for v in values) for b in bounds))


def metrics_page(observed: dict[tuple[str, str], list[float]]) -> str:
    """A ``/metrics`` page as a Bento fills it: its app's RequestMetrics, as service.py makes
    it, recording each answer (one series per endpoint and response code)."""
    registry = prometheus_client.CollectorRegistry()
    metrics = RequestMetrics(
        Starlette(routes=[Route(ENDPOINT, _unused), Route("/predict_batch", _unused)]),
        namespace=METRICS_NAMESPACE, buckets=LATENCY_BUCKETS_S, registry=registry,
    )  # fmt: skip
    for (endpoint, code), values in observed.items():
        for value in values:
            metrics.record(endpoint, int(code), value)
    return prometheus_client.generate_latest(registry).decode()


async def _unused(request: object) -> None:
    raise AssertionError("never called: answers are recorded directly")


def test_service_py_records_its_requests_where_the_watcher_reads_them() -> None:
    service = (PROJECT_DIR / "service.py").read_text()
    assert f'METRICS_NAMESPACE = "{METRICS_NAMESPACE}"\n' in service
    assert re.search(r"namespace=METRICS_NAMESPACE,\s*buckets=LATENCY_BUCKETS_S", service)
    assert '"namespace": METRICS_NAMESPACE' in service  # BentoML's /metrics, the same name


def test_parse_keeps_the_successful_predictions_of_every_response_code() -> None:
    page = metrics_page({
        (ENDPOINT, "200"): [0.0004, 0.0009, 0.03],
        (ENDPOINT, "201"): [0.0002],
        (ENDPOINT, "400"): [0.00005] * 5,  # refused inputs: the error ratio's, not timed
        ("/predict_batch", "200"): [0.2] * 7,  # many rows at once: slow by right
    })  # fmt: skip
    parsed = parse(page)
    assert parsed == histogram([0.0004, 0.0009, 0.03, 0.0002])
    assert parsed.total == 4
    assert parse("# nothing here\n") == Histogram()


def test_a_window_is_each_replicas_growth_summed_and_restarts_are_left_out() -> None:
    a0, a1 = histogram([0.0005] * 10), histogram([0.0005] * 10 + [0.03] * 4)
    b0, b1 = histogram([0.001] * 3), histogram([0.001] * 3 + [0.0008] * 6)
    assert growth(a0, a1) == histogram([0.03] * 4)
    assert window_of({"a": a0, "b": b0}, {"a": a1, "b": b1}) == histogram([0.03] * 4 + [0.001] * 6)
    restarted = histogram([0.0004])  # b's counts went down: its window is unknown
    assert growth(b1, restarted) is None
    assert window_of({"a": a0, "b": b1}, {"a": a1, "b": restarted}) == histogram([0.03] * 4)
    # A replica in one reading only (started or gone in between) is left out too.
    assert window_of({"a": a0}, {"a": a1, "c": b1}) == histogram([0.03] * 4)
    assert window_of({}, {"a": a1}) == Histogram()


def test_replicas_with_other_buckets_are_summed_on_the_bounds_they_share() -> None:
    coarse = (0.001, 0.01, 0.1, math.inf)
    fine, rough = histogram([0.0005, 0.05]), histogram([0.0005, 0.05], coarse)
    summed = window_of({"a": Histogram(), "b": Histogram()}, {"a": fine, "b": rough})
    assert summed == Histogram()  # empty first readings share no bound
    start = {"a": histogram([]), "b": histogram([], coarse)}
    summed = window_of(start, {"a": fine, "b": rough})
    assert summed.bounds == coarse and summed.counts == (2, 2, 4, 4)


@pytest.mark.parametrize(
    ("durations", "bucket"),
    [
        ([0.0004] * 99 + [0.3], (0.00025, 0.0005)),  # the 99th of 100 is still fast
        ([0.0004] * 98 + [0.3] * 2, (0.25, 0.5)),
        ([0.0012] * 10, (0.001, 0.0015)),
        ([0.001] * 10, (0.00075, 0.001)),  # a bound holds what equals it
        ([20.0] * 3, (10.0, math.inf)),
        ([], None),
    ],
)
def test_the_p99_lies_in_one_bucket(
    durations: list[float], bucket: tuple[float, float] | None
) -> None:
    assert quantile_bucket(histogram(durations), 0.99) == bucket


def test_answers_over_a_limit_are_counted_from_the_lowest_bound_at_or_above_it() -> None:
    h = histogram([0.001] * 90 + [0.02] * 6 + [0.04] * 4)
    assert slower_than(h, 0.025) == (4, 0.025)  # a bound: exact
    # 15 ms is between the bounds 10 and 25 ms: the six answers in that bucket may be on
    # either side of it, only those over 25 ms are certainly over.
    assert slower_than(h, 0.015) == (4, 0.025)
    assert slower_than(h, 0.03) == (0, 0.05)
    assert slower_than(h, 50.0) == (0, math.inf)  # beyond the last finite bound: unknown


def test_a_slow_class_of_answers_is_a_breach_naming_the_figures_and_the_rule() -> None:
    slow = histogram([0.0009] * 180 + [0.06] * 20)
    breach, tail = latency_breach(slow, 2.0, POLICY)
    assert (tail.answers, tail.over, tail.over_ms) == (200, 20, 25.0)
    assert tail.p99_bucket_ms == (50.0, 100.0)
    assert breach == (
        "server p99 > 25 ms (p99_ms): 20 of 200 answers (10.0%, interval 6.4%-15.2%) took over "
        "25 ms in the Bento over 2.0 s, where at most 1% may; server p99 <= 100 ms "
        "(bucket 50-100 ms)"
    )


def test_a_limit_between_bounds_counts_only_what_is_certainly_over_it() -> None:
    policy = replace(POLICY, p99_ms=20)
    breach, tail = latency_breach(histogram([0.0009] * 150 + [0.04] * 50), 2.0, policy)
    assert breach is not None and "took over 25 ms (the lowest bucket bound >= 20 ms)" in breach
    # 11-25 ms answers may or may not be over 20 ms: no rollback on them.
    breach, tail = latency_breach(histogram([0.0009] * 150 + [0.015] * 50), 2.0, policy)
    assert breach is None and tail.over == 0 and tail.p99_bucket_ms == (10.0, 25.0)


@pytest.mark.parametrize(
    "durations",
    [
        [0.0009] * 197 + [0.04] * 2,  # 1 %: the limit itself
        [0.0009] * 195 + [0.04] * 4,  # 2 %, but the interval reaches down below 1 %
        [0.0009] * 17 + [0.3] * 2,  # 2 of 19: too few answers to judge
        [0.02] * 300,  # slow, yet within 25 ms
    ],
)
def test_no_breach_at_the_limit_on_too_little_evidence_or_within_it(
    durations: list[float],
) -> None:
    breach, tail = latency_breach(histogram(durations), 2.0, POLICY)
    assert breach is None and tail.answers == len(durations)


def test_the_rule_needs_the_whole_interval_over_1_percent() -> None:
    # 6 of 200 (3 %) is over it on the whole 95 % interval; 2 of 20 (10 %) too.
    assert latency_breach(histogram([0.001] * 194 + [0.04] * 6), 2.0, POLICY)[0] is not None
    assert latency_breach(histogram([0.001] * 18 + [0.04] * 2), 2.0, POLICY)[0] is not None
    # One slow answer among 20 (a pause of the host) is not enough.
    assert latency_breach(histogram([0.001] * 19 + [0.04]), 2.0, POLICY)[0] is None


def test_status_shows_the_server_p99_as_its_buckets_upper_bound() -> None:
    reading = Reading("fraud", "3", "2", until="2999-12-05T12:05:00+00:00", at="12:00:01",
                      requests=412, errors=0, window_s=2.0, compared_rows=380,
                      score_verdict="pass", server_answers=405,
                      server_p99_le_ms=1.5)  # fmt: skip
    assert _bake_text(reading) == (
        "baking until 2999-12-05T12:05:00+00:00: 0 of 412 5xx over 2 s; server p99 <= 1.5 ms "
        "(of 405 answers); 380 rows compared: pass (at 12:00:01)"
    )
    none_yet = replace(reading, server_answers=0, server_p99_le_ms=None)
    assert "; no server p99 yet;" in (_bake_text(none_yet) or "")
