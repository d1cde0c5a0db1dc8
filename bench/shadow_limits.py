"""``python -m bench.shadow_limits``: what the shadow limits (and the bake, which judges
clients' rows by them) say about real retrains of the demo's model and about broken ones.

No server and no timing: the demo's data (``bentogate.data``), models trained as the demo
trains them, scored on the 9,000 holdout rows with XGBoost (the served ONNX files answer
the same within 1e-5). Pairs, each a candidate against the live version it would replace:

- *retrains*: v2 against v2 trained with another seed (same rows: chance alone), against
  v2 trained on 90 % and on 40 % of the rows (the demo's v1 before 2026-12-06), and the
  demo's own release (v1, on half the rows, replaced by v2);
- *broken*: v2 with its two most important features swapped, with one of them zeroed (a
  feature pipeline bug), every score's log-odds + 1 (a calibration shift), inverted scores.

For each pair: the figures on all holdout rows, then ``--orders`` random orders of the rows
judged as the bake judges them (after every 100 rows from ``shadow_min_rows``, over the
newest ``COMPARED_ROWS``, with the default policy a new model gets): how many orders were
failed at some look, and the verdict at the end. Writes ``shadow_limits.{json,md}`` to
``--out`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import describe
from bench.run import RESULTS_DIR, Progress
from bentogate.bake import COMPARED_ROWS
from bentogate.data import REFERENCE_MODELS, make_transactions, train_xgboost
from bentogate.loadtest import FAIL, GatePolicy
from bentogate.loadtest.shadow import Scored, compare, judge
from bentogate.settings import Settings

THRESHOLD = 0.5
MOVED_AT = (0.2, 0.3, 0.4)
EMPTY = np.array([])
# A failing reason's first words -> the policy field it names.
LIMITS = {
    "candidate failed": "candidate errors",
    "decisions flipped": "shadow_max_flip_ratio",
    "scores moved": "shadow_p99_abs_delta",
    "score distribution": "shadow_max_psi",
    "rank correlation": "shadow_min_rank_correlation",
}


def pairs(progress: Callable[[str], None]) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """name -> (candidate scores, live scores, kind) on the holdout."""
    import xgboost as xgb

    train, holdout = make_transactions(30_000, seed=7).split(0.7)
    names = list(holdout.feature_names)
    v2_model = REFERENCE_MODELS["v2"]

    def fit(rows: float, seed: int = 0) -> Any:
        progress(f"training on {rows:.0%} of the rows, seed {seed}")
        part, _ = train.split(rows)
        return train_xgboost(part, n_estimators=v2_model.n_estimators,
                             max_depth=v2_model.max_depth, seed=seed)  # fmt: skip

    def score(booster: Any, features: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(xgb.DMatrix(features, feature_names=names)), float)

    x = holdout.features
    v2 = fit(v2_model.rows)
    live = score(v2, x)
    gain = v2.get_score(importance_type="gain")
    first, second = (names.index(n) for n in sorted(gain, key=gain.get, reverse=True)[:2])
    swapped = x.copy()
    swapped[:, [first, second]] = x[:, [second, first]]
    zeroed = x.copy()
    zeroed[:, second] = 0
    odds = np.log(live / (1 - live))
    return {
        "v2, retrained with another seed": (score(fit(1.0, seed=1), x), live, "retrain"),
        "v2, retrained on 90 % of the rows": (score(fit(0.9), x), live, "retrain"),
        "v2, retrained on 40 % of the rows": (score(fit(0.4), x), live, "retrain"),
        "the demo's release: v2 replacing v1": (
            live, score(fit(REFERENCE_MODELS["v1"].rows), x), "retrain"),
        f"v2 with {names[first]} and {names[second]} swapped": (
            score(v2, swapped), live, "broken"),
        f"v2 with {names[second]} zeroed": (score(v2, zeroed), live, "broken"),
        "v2 with every log-odds + 1": (1 / (1 + np.exp(-(odds + 1))), live, "broken"),
        "v2 inverted": (1 - live, live, "broken"),
    }  # fmt: skip


def figures(candidate: np.ndarray, live: np.ndarray, policy: GatePolicy) -> dict[str, Any]:
    """The comparison of all rows, and the share of rows moved by more than each of
    MOVED_AT."""
    c = compare(Scored(candidate, 0, (), EMPTY), Scored(live, 0, (), EMPTY), THRESHOLD, policy)
    delta = np.abs(candidate - live)
    verdict, reasons = judge(c, policy)
    return {
        "moved_share": {str(t): float((delta > t).mean()) for t in MOVED_AT},
        "p99_abs_delta": c.p99_abs_delta,
        "flip_ratio": c.flip_ratio,
        "psi": c.psi,
        "rank_correlation": c.rank_correlation,
        "verdict_all_rows": verdict,
        "reasons_all_rows": list(reasons),
    }


def orders(
    candidate: np.ndarray, live: np.ndarray, policy: GatePolicy, count: int
) -> dict[str, Any]:
    """``count`` random orders of the rows, each judged after every 100 rows over the newest
    COMPARED_ROWS: the orders failed at some look (and the limits the first failing look
    broke), and the verdict where each order's looks ended (its first failure, or its last
    row)."""
    rng = np.random.default_rng(2)
    failed, reasons, last = 0, Counter[str](), Counter[str]()
    for _ in range(count):
        order = rng.permutation(candidate.size)
        verdict = ""
        for n in range(policy.shadow_min_rows, candidate.size + 1, 100):
            rows = order[max(0, n - COMPARED_ROWS) : n]
            c = compare(Scored(candidate[rows], 0, (), EMPTY), Scored(live[rows], 0, (), EMPTY),
                        THRESHOLD, policy)  # fmt: skip
            verdict, why = judge(c, policy)
            if verdict == FAIL:
                failed += 1
                reasons.update(_limit(r) for r in why if "straddles" not in r)
                break
        last[verdict] += 1
    return {"orders": count, "failed": failed, "fail_reasons": dict(reasons),
            "last_verdicts": dict(last)}  # fmt: skip


def _limit(reason: str) -> str:
    return next(field for start, field in LIMITS.items() if reason.startswith(start))


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "shadow_limits.json").write_text(json.dumps(results, indent=1))
    policy = results["policy"]
    lines = [
        "# Shadow and bake limits on retrains and on broken versions",
        "",
        f"`python -m bench.shadow_limits`, {results['started']}; the default policy of a new "
        f"model: flip share <= {policy['shadow_max_flip_ratio']:.0%}, p99 |delta| <= "
        f"{policy['shadow_p99_abs_delta']:g} (at most 1 % of rows move more), PSI <= "
        f"{policy['shadow_max_psi']:g}, rank correlation >= "
        f"{policy['shadow_min_rank_correlation']:g}, each on an interval at confidence "
        f"{policy['confidence']:g}; at least {policy['shadow_min_rows']} rows.",
        "",
        "All 9,000 holdout rows:",
        "",
        "| candidate vs live | kind | "
        + " | ".join(f"moved > {t}" for t in MOVED_AT)
        + " | p99 \\|delta\\| | flips | PSI | rank corr. | verdict |",
        "|---|---|" + "---:|" * (len(MOVED_AT) + 4) + "---|",
    ]
    for name, row in results["pairs"].items():
        f = row["all_rows"]
        moved = " | ".join(f"{f['moved_share'][str(t)]:.2%}" for t in MOVED_AT)
        lines.append(
            f"| {name} | {row['kind']} | {moved} | {f['p99_abs_delta']:.3f} | "
            f"{f['flip_ratio']:.2%} | {f['psi']:.3f} | {f['rank_correlation']:.3f} | "
            f"{f['verdict_all_rows']} |"
        )
    lines += [
        "",
        f"Judged as the bake judges clients' rows ({results['orders']} random orders of the "
        f"rows, a look after every 100 rows over the newest {COMPARED_ROWS}):",
        "",
        "| candidate vs live | kind | orders failed at some look | limits the first failing "
        "look broke (orders) | where the looks ended: the first failure, or the last row |",
        "|---|---|---:|---|---|",
    ]
    for name, row in results["pairs"].items():
        o = row["orders"]
        why = ", ".join(f"{k} ({v})" for k, v in o["fail_reasons"].items()) or "-"
        last = ", ".join(f"{k} {v}" for k, v in sorted(o["last_verdicts"].items()))
        lines.append(f"| {name} | {row['kind']} | {o['failed']} of {o['orders']} | {why} | "
                     f"{last} |")  # fmt: skip
    (out / "shadow_limits.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shadow_limits", description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--orders", type=int, default=40, help="random orders of the rows")
    args = parser.parse_args(argv)
    progress = Progress()
    policy = GatePolicy.from_settings(Settings().gate)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results: dict[str, Any] = {
        "started": started,
        "machine": describe(),
        "policy": policy.to_dict(),
        "orders": args.orders,
        "pairs": {},
    }
    for name, (candidate, live, kind) in pairs(progress).items():
        progress(f"{name}: {args.orders} orders")
        results["pairs"][name] = {
            "kind": kind,
            "all_rows": figures(candidate, live, policy),
            "orders": orders(candidate, live, policy, args.orders),
        }
    write(results, args.out)
    progress(f"done: {args.out / 'shadow_limits.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
