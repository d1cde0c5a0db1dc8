"""Shadow scoring's comparison and verdict on synthetic scores (no server, no timing)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bentogate.loadtest import FAIL, INCONCLUSIVE, PASS, GatePolicy
from bentogate.loadtest.shadow import Scored, compare, distinct, judge

POLICY = GatePolicy(
    rate=100, duration_s=10, warmup_s=1, users=4, p50_ms=5, p95_ms=10, p99_ms=20,
    max_error_ratio=0.0, min_samples=10, max_regression=1.25,
)  # fmt: skip
RNG = np.random.default_rng(7)
LIVE = RNG.beta(0.5, 8, size=2000)  # fraud scores: most near 0, a tail towards 1


def scored(scores: np.ndarray, errors: int = 0) -> Scored:
    return Scored(np.asarray(scores, dtype=float), errors, (), np.array([1.0]))


def verdict(
    candidate: np.ndarray, live: np.ndarray = LIVE, *, cand_errors: int = 0, live_errors: int = 0
) -> tuple[str, tuple[str, ...]]:
    c = compare(scored(candidate, cand_errors), scored(live, live_errors), 0.5, POLICY)
    return judge(c, POLICY)


def test_an_identical_copy_passes() -> None:
    assert verdict(LIVE.copy()) == (PASS, ())
    c = compare(scored(LIVE), scored(LIVE), 0.5, POLICY)
    assert (c.max_abs_delta, c.flips, c.rank_correlation, c.psi) == (0.0, 0, 1.0, 0.0)


def test_a_retrained_model_with_small_differences_passes() -> None:
    retrained = np.clip(LIVE + RNG.normal(0, 0.01, LIVE.size), 0, 1)
    assert verdict(retrained)[0] == PASS


def test_a_class_of_inputs_scored_differently_fails_naming_the_flips() -> None:
    """Same scores except for one class (5 % of rows) that the candidate scores as fraud."""
    candidate = LIVE.copy()
    cls = np.arange(LIVE.size) % 20 == 0
    candidate[cls] = 0.97
    result, reasons = verdict(candidate)
    assert result == FAIL
    assert any(r.startswith("decisions flipped at the threshold") and "> 2.00%" in r
               for r in reasons), reasons  # fmt: skip


def test_a_shifted_distribution_fails_on_psi_and_delta() -> None:
    result, reasons = verdict(np.clip(LIVE + 0.3, 0, 1))
    assert result == FAIL
    assert any("PSI" in r for r in reasons) and any("p99 |score delta|" in r for r in reasons)


def test_reversed_ranking_fails_on_rank_correlation() -> None:
    result, reasons = verdict(1 - LIVE)
    assert result == FAIL and any(r.startswith("rank correlation -") for r in reasons)


def test_too_few_rows_is_inconclusive_not_a_pass() -> None:
    result, reasons = verdict(LIVE[:50].copy(), LIVE[:50])
    assert result == INCONCLUSIVE and reasons == ("50 rows scored by both < 200 (shadow_min_rows)",)


def test_candidate_errors_fail_live_errors_leave_it_undecided() -> None:
    holes = LIVE.copy()
    holes[:64] = np.nan
    assert verdict(holes, cand_errors=64) == (FAIL, ("candidate failed 64 rows",))
    assert verdict(LIVE.copy(), holes, live_errors=64) == (
        INCONCLUSIVE,
        ("live failed 64 rows: they are not compared",),
    )


def test_a_flip_share_whose_interval_straddles_the_limit_is_inconclusive() -> None:
    """40 of 2000 decisions (2.0 %, the limit itself) flip by a small move across the
    threshold: nothing else is off, and the interval cannot say which side it is on."""
    live = np.linspace(0.0, 1.0, 2000)
    candidate = live.copy()
    near = np.flatnonzero((live >= 0.45) & (live < 0.5))[:40]
    candidate[near] += 0.06
    result, reasons = judge(compare(scored(candidate), scored(live), 0.5, POLICY), POLICY)
    assert result == INCONCLUSIVE, reasons
    assert len(reasons) == 1 and reasons[0].endswith("straddles 2.00%"), reasons


@pytest.mark.parametrize(("k", "n"), [(0, 100), (5, 100), (100, 100), (40, 2000)])
def test_the_flip_interval_holds_the_share(k: int, n: int) -> None:
    low, high = compare(scored(np.r_[np.ones(k), np.zeros(n - k)]),
                        scored(np.zeros(n)), 0.5, POLICY).flip_interval  # fmt: skip
    assert 0 <= low <= k / n <= high <= 1 and high - low < 0.2
    assert not math.isnan(low)


def test_figures_that_cannot_be_computed_are_null_in_the_record() -> None:
    """The governance DB stores strict JSON: no nan, no inf."""
    record = compare(scored(np.full(5, np.nan)), scored(np.full(5, np.nan)), 0.5, POLICY).to_dict()
    assert record["max_abs_delta"] is None and record["rank_correlation"] is None
    assert record["psi"] is None and record["rows"] == 0
    json_text = json.dumps(record, allow_nan=False)
    assert "NaN" not in json_text


def test_a_repeated_row_counts_once() -> None:
    """One transaction sent 500 times is one row of evidence, not 500 (a client's retry
    loop must not turn one flipped decision into a 100 % flip ratio); order is kept."""
    row, other = [0.1, 2.0, 3.0], [0.2, 2.0, 3.0]
    assert distinct([row] * 500 + [other, row]) == [row, other]
    one_input = compare(scored(np.full(1, 0.51)), scored(np.full(1, 0.49)), 0.5, POLICY)
    assert judge(one_input, POLICY)[0] == INCONCLUSIVE  # too few rows, not a failure
