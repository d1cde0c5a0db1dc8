"""Synthetic card transactions and reference XGBoost models for the demo and the tests.

The data set is deterministic for a seed: 20 transaction-level features plus 200 behavioural
aggregates (220 named numeric features), with a fraud rate of about 3 %. Fraud depends on a
handful of features non-linearly, so a bigger ensemble (v2) measurably beats a small one (v1).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BASE_FEATURES: tuple[str, ...] = (
    "amount",
    "amount_log",
    "hour_of_day",
    "day_of_week",
    "merchant_risk",
    "mcc_risk",
    "card_age_days",
    "account_age_days",
    "distance_home_km",
    "distance_prev_km",
    "secs_since_prev",
    "txn_count_1h",
    "txn_count_24h",
    "declines_24h",
    "is_card_present",
    "is_foreign",
    "is_online",
    "device_risk",
    "ip_risk",
    "email_age_days",
)
_WINDOWS = ("1d", "7d", "30d", "90d")
_STATS = ("sum", "mean", "max", "std", "count")
_GROUPS = ("card", "merchant", "device", "ip", "mcc", "country", "email", "bin", "zip", "phone")

FEATURE_NAMES: tuple[str, ...] = BASE_FEATURES + tuple(
    f"{group}_{window}_{stat}" for group in _GROUPS for window in _WINDOWS for stat in _STATS
)
LABEL = "is_fraud"


@dataclass(frozen=True)
class Dataset:
    """Features (float32, rows x len(FEATURE_NAMES)) and 0/1 fraud labels."""

    features: np.ndarray
    labels: np.ndarray
    feature_names: tuple[str, ...] = FEATURE_NAMES

    @property
    def fraud_rate(self) -> float:
        return float(self.labels.mean())

    def split(self, fraction: float) -> tuple[Dataset, Dataset]:
        """The first ``fraction`` of rows and the rest (rows are already shuffled)."""
        cut = int(len(self.labels) * fraction)
        return (
            Dataset(self.features[:cut], self.labels[:cut], self.feature_names),
            Dataset(self.features[cut:], self.labels[cut:], self.feature_names),
        )


def make_transactions(n_rows: int, seed: int = 7) -> Dataset:
    """Generate ``n_rows`` synthetic transactions; the same seed gives the same data."""
    rng = np.random.default_rng(seed)
    n_aggregates = len(FEATURE_NAMES) - len(BASE_FEATURES)
    amount = rng.lognormal(3.5, 1.2, n_rows)
    hour = rng.integers(0, 24, n_rows).astype(np.float64)
    base = np.column_stack(
        [
            amount,
            np.log1p(amount),
            hour,
            rng.integers(0, 7, n_rows),
            rng.beta(2, 8, n_rows),
            rng.beta(2, 6, n_rows),
            rng.exponential(700, n_rows),
            rng.exponential(1500, n_rows),
            rng.exponential(30, n_rows),
            rng.exponential(50, n_rows),
            rng.exponential(20000, n_rows),
            rng.poisson(1.0, n_rows),
            rng.poisson(4.0, n_rows),
            rng.poisson(0.2, n_rows),
            rng.integers(0, 2, n_rows),
            (rng.random(n_rows) < 0.08),
            rng.integers(0, 2, n_rows),
            rng.beta(1.5, 10, n_rows),
            rng.beta(1.5, 10, n_rows),
            rng.exponential(900, n_rows),
        ]
    )
    # Aggregates: correlated with a latent "customer activity" factor plus noise.
    activity = rng.normal(0, 1, (n_rows, 1))
    aggregates = activity * rng.uniform(0.2, 1.0, n_aggregates) + rng.normal(
        0, 1, (n_rows, n_aggregates)
    )
    features = np.column_stack([base, aggregates]).astype(np.float32)

    logit = (
        -6.1
        + 3.0 * base[:, 4]  # merchant risk
        + 40.0 * base[:, 17] * base[:, 18]  # device x ip risk interaction
        + 1.2 * base[:, 15]  # foreign
        + 0.9 * (base[:, 13] > 0)  # recent declines
        + 1.5 * ((hour < 5) & (base[:, 16] > 0))  # night-time online
        + 0.8 * np.tanh(base[:, 1] - 5.0)  # large amounts
        + 0.9 * aggregates[:, 0] * aggregates[:, 1]
        + 0.7 * np.maximum(aggregates[:, 7], 0)
        - 0.0006 * np.minimum(base[:, 6], 2000)  # new cards are riskier
    )
    labels = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    return Dataset(features, labels)


def train_xgboost(data: Dataset, *, n_estimators: int, max_depth: int, seed: int = 0) -> object:
    """Train an XGBoost binary classifier booster on ``data`` (feature names kept)."""
    import xgboost as xgb

    matrix = xgb.DMatrix(data.features, label=data.labels, feature_names=list(data.feature_names))
    params = {
        "objective": "binary:logistic",
        "max_depth": max_depth,
        "eta": 0.1,
        "subsample": 0.9,
        "colsample_bytree": 0.8,
        "eval_metric": "auc",
        "seed": seed,
        "nthread": 2,
    }
    return xgb.train(params, matrix, num_boost_round=n_estimators)


@dataclass(frozen=True)
class ReferenceModel:
    """How the demo trains one version: ``rows`` is the share of the training rows it sees."""

    rows: float
    n_estimators: int = 300
    max_depth: int = 6


REFERENCE_MODELS: dict[str, ReferenceModel] = {
    # The same ensemble, so one row costs the same to score; v2 is retrained on twice the
    # rows and ranks fraud better. Why not a small v1 (the gate rightly failed a 7.5x bigger
    # v2): bench/README.md, "The demo's two versions"; why not fewer rows (its bake stood at
    # the PSI limit): bench/README.md, "Shadow and bake limits".
    "v1": ReferenceModel(rows=0.5),
    "v2": ReferenceModel(rows=1.0),
}


def write_csv(data: Dataset, path: Path) -> Path:
    """Write features and the label as CSV with a header (the register/validate input)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*data.feature_names, LABEL])
        for row, label in zip(data.features, data.labels, strict=True):
            writer.writerow([*(repr(float(v)) for v in row), int(label)])
    return path


def read_csv(path: Path) -> Dataset:
    """Read a CSV written by :func:`write_csv` (or any CSV with named columns + ``is_fraud``)."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [[float(v) for v in row] for row in reader]
    if LABEL not in header:
        raise ValueError(f"{path}: no {LABEL!r} column")
    table = np.asarray(rows, dtype=np.float64)
    label_at = header.index(LABEL)
    names = tuple(h for i, h in enumerate(header) if i != label_at)
    features = np.delete(table, label_at, axis=1).astype(np.float32)
    return Dataset(features, table[:, label_at].astype(np.int8), names)


def make_demo_files(directory: Path, *, seed: int = 7) -> dict[str, Path]:
    """Train v1 and v2 on synthetic data; write model files and train/holdout CSVs.

    Returns paths under the keys ``v1``, ``v2`` (XGBoost JSON models) and ``holdout`` (CSV).
    """
    directory.mkdir(parents=True, exist_ok=True)
    train, holdout = make_transactions(30_000, seed=seed).split(0.7)
    paths: dict[str, Path] = {"holdout": write_csv(holdout, directory / "holdout.csv")}
    for name, model in REFERENCE_MODELS.items():
        rows, _ = train.split(model.rows)
        booster = train_xgboost(rows, n_estimators=model.n_estimators, max_depth=model.max_depth)
        path = directory / f"fraud_{name}.json"
        booster.save_model(str(path))  # type: ignore[attr-defined]
        paths[name] = path
    return paths
