"""The shadow limits (and the bake, which judges clients' rows by them) on real retrains of
the demo's model, judged as the bake judges: after every 100 rows, over the newest 5,000.

An ordinary retrain must never fail (the bake would roll a good version back), the demo's
own v1 -> v2 must not either, and gross changes must. The demo's data and models, trained
here (about 20 s): XGBoost's scores, which the served ONNX file reproduces within 1e-5.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bentogate.bake import COMPARED_ROWS
from bentogate.data import REFERENCE_MODELS, make_transactions, train_xgboost
from bentogate.loadtest import FAIL, PASS, GatePolicy
from bentogate.loadtest.shadow import Scored, compare, judge
from bentogate.settings import Settings

POLICY = GatePolicy.from_settings(Settings().gate)  # the defaults a new model gets
THRESHOLD = 0.5


@pytest.fixture(scope="module")
def scores() -> dict[str, np.ndarray]:
    """Holdout scores of the demo's v1 and v2, and of v2 retrained with another seed."""
    import xgboost as xgb

    train, holdout = make_transactions(30_000, seed=7).split(0.7)
    matrix = xgb.DMatrix(holdout.features, feature_names=list(holdout.feature_names))

    def scored(name: str, seed: int = 0) -> np.ndarray:
        model = REFERENCE_MODELS[name]
        rows, _ = train.split(model.rows)
        booster: xgb.Booster = train_xgboost(  # type: ignore[assignment]
            rows, n_estimators=model.n_estimators, max_depth=model.max_depth, seed=seed
        )
        return np.asarray(booster.predict(matrix), dtype=float)

    return {"v1": scored("v1"), "v2": scored("v2"), "v2 other seed": scored("v2", seed=1)}


def looks(candidate: np.ndarray, live: np.ndarray) -> list[tuple[int, str, tuple[str, ...]]]:
    """The verdict after every 100 rows (from shadow_min_rows), over the newest
    COMPARED_ROWS, as the bake's looks see clients' rows arrive in this order."""
    empty = np.array([])
    verdicts = []
    for n in range(POLICY.shadow_min_rows, candidate.size + 1, 100):
        newest = slice(max(0, n - COMPARED_ROWS), n)
        c = compare(Scored(candidate[newest], 0, (), empty), Scored(live[newest], 0, (), empty),
                    THRESHOLD, POLICY)  # fmt: skip
        verdicts.append((n, *judge(c, POLICY)))
    return verdicts


def test_an_ordinary_retrain_is_never_failed_and_passes_once_rows_suffice(
    scores: dict[str, np.ndarray],
) -> None:
    """Same rows, same settings, another seed: what a retrain changes by chance alone.
    (Under the limits before, p99 |delta| 0.2 and rank correlation 0.9 judged on the point
    estimates, it failed at every look: its rank correlation is 0.87.)"""
    verdicts = looks(scores["v2 other seed"], scores["v2"])
    assert [v for v in verdicts if v[1] == FAIL] == []
    assert verdicts[-1][1] == PASS, verdicts[-1]


def test_the_demos_release_is_never_failed_on_its_holdout_rows(
    scores: dict[str, np.ndarray],
) -> None:
    """v2 replacing v1 as the demo releases it, the demo's holdout sent in its order: twice
    the training rows move its scores more than another seed does (PSI 0.22, rank
    correlation 0.78), inconclusive at some looks, never a failure, a pass at the end."""
    verdicts = looks(scores["v2"], scores["v1"])
    assert [v for v in verdicts if v[1] == FAIL] == []
    assert verdicts[-1][1] == PASS, verdicts[-1]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("inverted", "decisions flipped at the threshold"),
        ("log-odds + 1", "score distribution shift PSI"),
        ("a tenth of rows scored 0.97", "decisions flipped at the threshold"),
    ],
)
def test_a_gross_change_fails(scores: dict[str, np.ndarray], change: str, reason: str) -> None:
    live = scores["v2"][:1000]
    if change == "inverted":
        candidate = 1 - live
    elif change == "log-odds + 1":
        candidate = 1 / (1 + np.exp(-(np.log(live / (1 - live)) + 1)))
    else:
        candidate = live.copy()
        candidate[::10] = 0.97
    empty = np.array([])
    verdict, reasons = judge(
        compare(Scored(candidate, 0, (), empty), Scored(live, 0, (), empty), THRESHOLD, POLICY),
        POLICY,
    )
    assert verdict == FAIL and any(r.startswith(reason) for r in reasons), reasons


def test_a_stricter_policy_fails_what_the_default_lets_through(
    scores: dict[str, np.ndarray],
) -> None:
    """The limits are the team's: at the earlier p99 |delta| of 0.2 the demo's release
    moves too many scores (1.1 % of rows) to pass, and at 0.1 it fails outright."""
    strict = replace(POLICY, shadow_p99_abs_delta=0.1)
    empty = np.array([])
    c = compare(Scored(scores["v2"], 0, (), empty), Scored(scores["v1"], 0, (), empty),
                THRESHOLD, strict)  # fmt: skip
    verdict, reasons = judge(c, strict)
    assert verdict == FAIL and any(r.startswith("scores moved by more than 0.1") for r in reasons)


def test_a_bin_empty_by_chance_in_the_first_rows_does_not_fail_the_demos_release(
    scores: dict[str, np.ndarray],
) -> None:
    """The 7th of bench.shadow_limits' random orders of the holdout: its first 200 rows left
    one of the live deciles without a candidate row. Counted as a share of 1e-4, that bin
    alone made the PSI 0.82 (interval 0.35-1.07, all rows: 0.22) and the bake rolled the
    demo's release back at its first look; with half a row added to every bin on both sides
    it reads 0.48 (interval 0.18-0.61): inconclusive, as 200 rows are."""
    rng = np.random.default_rng(2)
    order = [rng.permutation(scores["v2"].size) for _ in range(7)][-1]
    first = order[: POLICY.shadow_min_rows]
    empty = np.array([])
    candidate, live = scores["v2"][first], scores["v1"][first]
    c = compare(Scored(candidate, 0, (), empty), Scored(live, 0, (), empty), THRESHOLD, POLICY)
    assert c.psi < 0.5, c.psi
    assert judge(c, POLICY)[0] != FAIL, judge(c, POLICY)
