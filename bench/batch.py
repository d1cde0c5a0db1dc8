"""``python -m bench.batch``: ``/predict_batch``'s scoring against XGBoost's native predictor
on the same model, side by side, interleaved, in its own process; prints JSON.

The Bento's side is the path it serves: ``serving.Scorer`` of ``--project-dir`` built as
``service.py`` builds it, and ``Scorer.score_rows``, what ``/predict_batch`` calls on the
checked rows. XGBoost scores the same float32 matrix with ``Booster.inplace_predict`` twice:
with its default threads (all the cores this process may use) and with one thread. The
one-row session's options (one thread) scoring the batch show what the Bento did before it
had a batch session.

Every call scores other rows than the call before (batches taken in turn from the holdout's
2,400 rows): a tree walk repeated on the same few rows is learnt by the CPU's branch
predictor, and a batch of 32 rows measured that way scored three times faster per row than
the same rows among others (bench/README.md, "Batches").

For each batch size, ``--rounds`` rounds; in each, every contender runs a block of calls
(the order alternating between rounds, so drift hits all alike) and its block's median is
kept. A figure is the median over the rounds, with quartiles and extremes; a ratio is the
median of the rounds' paired ratios, with its extremes. Memory: the process's resident set
before and after the Scorer loads (the model's sessions; onnxruntime imported before): run
with ``--project-dir`` of another tree for a before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.models import load, serving_session, train
from bentogate.data import read_csv
from bentogate.modelimport import load_artifact

SIZES = (64, 1024)
# Calls per block: about 0.1-0.3 s of work per contender and round on this kind of machine.
BLOCK = {64: 100, 1024: 12}
# Offsets of consecutive batches: co-prime with the block, so a contender meets other rows
# from one round to the next.
STRIDE = {64: 37, 1024: 301}
Score = Callable[[np.ndarray], np.ndarray]


def resident_mib() -> float:
    """This process's resident set (VmRSS), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def contenders(models_dir: Path, project_dir: Path) -> tuple[dict[str, Score], dict[str, Any]]:
    """The scoring functions compared, by name, and what was measured while loading them."""
    sys.path.insert(0, str(project_dir))  # the tree whose serving/ the Bento carries
    import xgboost as xgb

    from serving import scorer as served

    models = load(models_dir)
    artifact = load_artifact(models.onnx.parent)
    before = resident_mib()
    scorer = served.Scorer(
        artifact.directory, name="fraud", version="1", expected_sha256=artifact.sha256
    )
    after = resident_mib()
    one_row = serving_session(artifact.onnx_path)
    native = xgb.Booster(model_file=str(models.v1))  # default nthread: every core
    single = xgb.Booster(model_file=str(models.v1))
    single.set_param({"nthread": 1})
    name = one_row.get_inputs()[0].name
    scores: dict[str, Score] = {
        "bentogate": scorer.score_rows,
        "xgboost": lambda rows: native.inplace_predict(rows, validate_features=False),
        "xgboost_1_thread": lambda rows: single.inplace_predict(rows, validate_features=False),
        "onnxruntime_1_thread": lambda rows: one_row.run(["probabilities"], {name: rows})[0][:, 1],
    }
    loaded = {
        "resident_mib_before_scorer": before,
        "resident_mib_after_scorer": after,
        "cores": len(os.sched_getaffinity(0)),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "xgboost_default_threads": "all cores (nthread unset)",
    }
    return scores, loaded


def _spread(values: list[float]) -> dict[str, float]:
    q1, q3 = np.percentile(values, [25, 75])
    return {
        "median": statistics.median(values),
        "q1": float(q1),
        "q3": float(q3),
        "min": min(values),
        "max": max(values),
    }


def batches(rows: np.ndarray, size: int) -> list[np.ndarray]:
    """Batches of ``size`` consecutive rows, each starting ``STRIDE[size]`` rows after the
    one before (wrapping around), as contiguous float32 matrices."""
    starts = range(0, len(rows), STRIDE[size])
    return [
        np.ascontiguousarray(np.take(rows, range(i, i + size), axis=0, mode="wrap")) for i in starts
    ]


def compare(scores: dict[str, Score], rows: np.ndarray, size: int, rounds: int) -> dict[str, Any]:
    """Interleaved rounds at one batch size, each call on the next of :func:`batches`: per
    contender the spread of its block medians (µs), and the paired ratios of each
    contender to ``bentogate``'s time."""
    taken = batches(rows, size)
    reference = scores["xgboost_1_thread"](taken[0])
    for name, score in scores.items():
        worst = float(np.abs(np.asarray(score(taken[0])) - reference).max())
        if worst > 1e-5:
            raise RuntimeError(f"{name} scores differ from XGBoost's by {worst:.2g}")
    medians: dict[str, list[float]] = {name: [] for name in scores}
    names = list(scores)
    calls = 0
    for round_number in range(rounds):
        for name in names if round_number % 2 == 0 else names[::-1]:
            score = scores[name]
            times = []
            for _ in range(BLOCK[size]):
                batch = taken[calls % len(taken)]
                calls += 1
                started = time.perf_counter_ns()
                score(batch)
                times.append((time.perf_counter_ns() - started) / 1000)
            medians[name].append(statistics.median(times))
    ours = medians["bentogate"]
    return {
        "rows": size,
        "rounds": rounds,
        "calls_per_block": BLOCK[size],
        "us": {name: _spread(values) for name, values in medians.items()},
        "bentogate_vs": {
            name: _spread([a / b for a, b in zip(ours, values, strict=True)])
            for name, values in medians.items()
            if name != "bentogate"
        },
    }


def measure(models_dir: Path, project_dir: Path, rounds: int) -> dict[str, Any]:
    """Every batch size of SIZES compared; what loading measured."""
    scores, loaded = contenders(models_dir, project_dir)
    rows = np.asarray(read_csv(load(models_dir).holdout).features, dtype=np.float32)
    sizes = {str(size): compare(scores, rows, size, rounds) for size in SIZES}
    return {**loaded, "distinct_rows": len(rows), "sizes": sizes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--models", type=Path, required=True,
        help="what bench.models trained (trained there first when it holds none: ~20 s)",
    )  # fmt: skip
    parser.add_argument("--project-dir", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    if not (args.models / "artifacts").is_dir():
        train(args.models)
    json.dump(measure(args.models, args.project_dir.resolve(), args.rounds), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
