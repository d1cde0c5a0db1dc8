"""The bake watcher's rule on the production port's counters (no HAProxy, no timing)."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import pytest

from bentogate.bake import Reading, error_breach
from bentogate.loadtest import GatePolicy
from bentogate.status import _bake_text

POLICY = GatePolicy(
    rate=100, duration_s=10, warmup_s=1, users=4, p50_ms=5, p95_ms=10, p99_ms=20,
    max_error_ratio=0.0, min_samples=10, max_regression=1.25,
    bake_window_s=2.0, bake_max_error_ratio=0.01, bake_min_requests=20,
)  # fmt: skip


def counts(*samples: tuple[float, int, int]) -> deque[tuple[float, int, int]]:
    return deque(samples)


def test_a_5xx_share_over_the_limit_in_the_window_is_a_breach_naming_it() -> None:
    breach, requests, errors, seconds = error_breach(counts((0.0, 100, 0), (2.0, 300, 40)), POLICY)
    assert (requests, errors, seconds) == (200, 40, 2.0)
    assert breach == (
        "error ratio 20.0% (40 of 200 requests answered 5xx) > 1.0% over 2.0 s "
        "(bake_max_error_ratio)"
    )


@pytest.mark.parametrize(
    "samples",
    [
        ((0.0, 100, 0), (2.0, 300, 2)),  # 1.0 %: at the limit, not over it
        ((0.0, 100, 0), (0.5, 110, 10)),  # 10 requests: too few to judge
        ((0.0, 100, 5),),  # one sample: no window yet
    ],
)
def test_no_breach_at_the_limit_below_the_minimum_or_without_a_window(
    samples: tuple[tuple[float, int, int], ...],
) -> None:
    assert error_breach(counts(*samples), POLICY)[0] is None


def test_status_says_what_the_watcher_saw() -> None:
    reading = Reading("fraud", "3", "2", until="2999-12-05T12:05:00+00:00", at="12:00:01",
                      requests=412, errors=0, window_s=2.0, compared_rows=380,
                      score_verdict="pass")  # fmt: skip
    assert _bake_text(reading) == (
        "baking until 2999-12-05T12:05:00+00:00: 0 of 412 5xx over 2 s; no server p99 yet; "
        "380 rows compared: pass (at 12:00:01)"
    )
    over = replace(reading, until="2000-01-01T00:00:00+00:00")
    assert _bake_text(over).startswith("baked until 2000-01-01T00:00:00+00:00: 0 of 412")  # type: ignore[union-attr]
    broke = Reading("fraud", "3", "2", until="-", at="12:00:02", breach="error ratio 20.0% …")
    assert _bake_text(broke) == "rolled back at 12:00:02: error ratio 20.0% …"
    assert _bake_text(None) is None
