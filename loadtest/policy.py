"""What the gate asks of a candidate (``GatePolicy``) and what it drives (``Target``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from bentogate.errors import ConfigError

if TYPE_CHECKING:
    from bentogate.settings import GateSettings

# The policy fields that GateSettings carries under the same names.
_SETTINGS_FIELDS = (
    "rate", "duration_s", "warmup_s", "users", "p50_ms", "p95_ms", "p99_ms",
    "max_error_ratio", "min_samples", "max_regression", "max_tail_regression", "max_auc_drop",
    "block_s",
)  # fmt: skip


@dataclass(frozen=True)
class GatePolicy:
    """Load to apply and the limits a candidate must meet; stored with the verdict.

    Load: ``rate`` (req/s) per target, held open-loop for ``warmup_s`` (discarded) +
    ``duration_s`` by up to ``users`` concurrent Locust users; with a live target in the
    same run both get ``rate``, taking turns request by request. ``min_samples`` is per
    target.

    Limits (loadtest/evidence.py computes the intervals, loadtest/verdict.py judges):
    * what clients see: p50/p95/p99 (``p50_ms``...) of the candidate's successful requests,
      from the intended send time, and ``max_error_ratio`` (failed / all measured);
    * regression against live: the candidate's *server-side* p50 (its own ``Server-Timing``,
      without the generator's and the proxy's share) may be at most ``max_regression`` x
      live's, its p99 at most ``max_tail_regression`` x live's (a tail on a shared host is
      mostly scheduling: identical Bentos' server p99s differ by 10-30 % where their p50s
      differ by a few), or live's + ``regression_floor_us`` when that is larger.
    Each limit is judged on a ``confidence`` block-bootstrap interval over blocks of
    ``block_s`` seconds (candidate and live resampled as pairs): it fails only when the
    whole interval is beyond the limit and passes only when the whole interval is within it.
    Otherwise the run is extended by ``extend_s`` measured seconds at a time, up to
    ``max_duration_s`` measured in all, before it ends inconclusive.
    A run that still ends inconclusive is no verdict: the promotion's gate
    (bentogate/gating.py) measures again in a new run, up to ``max_runs`` runs in all (each
    recorded), as Argo Rollouts' analyses repeat inconclusive measurements up to their
    ``inconclusiveLimit``; a failed run ends it at once.
    Host stalls (a tenth of a second in which the generator sent a quarter of its requests
    over ``stall_factor`` x the median latency late, or a quarter of both targets' requests
    took that much over their own median) are left out of the comparison; more than
    ``max_stall_fraction`` of the window stalled makes the run inconclusive.

    ``max_auc_drop`` is validation's quality rule, kept here so that every threshold a
    release is judged by is in the model's one stored policy: the candidate's AUC on the
    holdout may be at most this much below production's on the same rows.

    Shadow scoring (loadtest/shadow.py) replays recent live rows to candidate and live:
    ``require_shadow`` makes a passed shadow run (newer than the build) a condition of
    promotion and a step of ``release``; it needs ``shadow_min_rows`` rows; the share of
    decisions that flip at the model's threshold may be at most ``shadow_max_flip_ratio``,
    the p99 of |candidate - live| at most ``shadow_p99_abs_delta`` (at most 1 % of rows
    move by more), the score distributions' PSI at most ``shadow_max_psi``, their rank
    correlation at least ``shadow_min_rank_correlation``, each judged on an interval at
    ``confidence`` like the gate's limits (loadtest/shadow.py); any candidate error or
    non-probability fails it. The defaults let an ordinary retrain through and stop gross
    changes, measured on retrains of the demo's model (bench/README.md, "Shadow and bake
    limits"): a retrain on the same rows with another seed moves 0.37 % of scores by more
    than 0.3 and ranks with a correlation of 0.87; inverted scores, or a shift of every
    score's log-odds by 1 (PSI 0.38), fail.

    The watched bake (bentogate/bake.py) follows a new live version through its warm
    window: more than ``bake_max_error_ratio`` of the production port's requests answered
    5xx over the last ``bake_window_s`` (once at least ``bake_min_requests`` came), more
    than 1 % of its successful answers certainly slower than ``p99_ms`` inside the Bento
    (its own latency histogram; on a ``confidence`` Wilson interval, with at least
    ``bake_min_requests`` answers), or its scores on clients' rows failing the shadow limits
    against the warm previous version, rolls production back at once.
    """

    rate: float
    duration_s: float
    warmup_s: float
    users: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_error_ratio: float
    min_samples: int
    max_regression: float
    max_tail_regression: float = 1.5  # GateSettings' default too (policies stored without it)
    regression_floor_us: float = 20.0
    block_s: float = 1.0
    confidence: float = 0.95
    extend_s: float = 10.0
    max_duration_s: float = 40.0
    max_runs: int = 2
    stall_factor: float = 3.0
    max_stall_fraction: float = 0.25
    max_auc_drop: float = 0.005
    require_shadow: bool = False
    shadow_min_rows: int = 200
    shadow_max_flip_ratio: float = 0.02
    shadow_p99_abs_delta: float = 0.3
    shadow_max_psi: float = 0.25
    shadow_min_rank_correlation: float = 0.5
    bake_window_s: float = 2.0
    bake_max_error_ratio: float = 0.01
    bake_min_requests: int = 20

    def __post_init__(self) -> None:
        positive = ("rate", "duration_s", "users", "p50_ms", "p95_ms", "p99_ms", "block_s",
                    "extend_s")  # fmt: skip
        for name in positive:
            _check(self, name, getattr(self, name) > 0, "must be > 0")
        for name in ("warmup_s", "min_samples", "regression_floor_us"):
            _check(self, name, getattr(self, name) >= 0, "must be >= 0")
        # A stored or typed 0/1 is a bool (``bentogate policy --set require_shadow=1``).
        object.__setattr__(self, "require_shadow", bool(self.require_shadow))
        _check(self, "shadow_min_rows", self.shadow_min_rows >= 1, "must be >= 1")
        for name in ("max_error_ratio", "max_stall_fraction", "max_auc_drop",
                     "shadow_max_flip_ratio", "shadow_p99_abs_delta",
                     "shadow_min_rank_correlation"):  # fmt: skip
            _check(self, name, 0 <= getattr(self, name) <= 1, "must be in [0, 1]")
        for name in ("max_regression", "max_tail_regression"):
            _check(self, name, getattr(self, name) >= 1, "must be >= 1")
        _check(self, "max_runs", isinstance(self.max_runs, int) and self.max_runs >= 1,
               "must be a whole number >= 1")  # fmt: skip
        _check(self, "stall_factor", self.stall_factor > 1, "must be > 1")
        _check(self, "shadow_max_psi", self.shadow_max_psi >= 0, "must be >= 0")
        _check(self, "bake_window_s", self.bake_window_s > 0, "must be > 0")
        _check(
            self, "bake_max_error_ratio", 0 <= self.bake_max_error_ratio <= 1, "must be in [0, 1]"
        )
        _check(self, "bake_min_requests", self.bake_min_requests >= 1, "must be >= 1")
        _check(self, "confidence", 0.5 < self.confidence < 1, "must be in (0.5, 1)")
        _check(self, "max_duration_s", self.max_duration_s >= self.duration_s,
               f"must be >= duration_s ({self.duration_s:g})")  # fmt: skip
        _check(self, "duration_s", self.duration_s >= 4 * self.block_s,
               f"must hold at least 4 blocks of block_s={self.block_s:g} s")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GatePolicy:
        """The policy from ``to_dict()`` output; missing optional fields take defaults.

        Raises ConfigError on unknown or missing required fields and on invalid values.
        """
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k not in _RETIRED}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown gate policy fields: {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"gate policy: {exc}") from exc

    @classmethod
    def from_settings(cls, gate: GateSettings, **overrides: Any) -> GatePolicy:
        """The policy from ``Settings.gate`` (a ``GateSettings``), with optional overrides."""
        values = {name: getattr(gate, name) for name in _SETTINGS_FIELDS}
        return cls.from_dict({**values, **overrides})

    @property
    def total_s(self) -> float:
        """Warm-up plus measured time of the first run: how long the load runs at least."""
        return self.warmup_s + self.duration_s

    @property
    def alpha(self) -> float:
        """The chance the bootstrap interval leaves out on each side (1 - confidence)."""
        return 1.0 - self.confidence


# Fields of policies stored before the server-side, interval-based verdict: they meant
# something else (A/B slices; a floor on client p99) and are dropped when read.
_RETIRED = frozenset({"slice_s", "regression_floor_ms"})


def _check(policy: GatePolicy, name: str, ok: bool, rule: str) -> None:
    value = getattr(policy, name)
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(f"gate policy {name}={value!r} {rule}")


@dataclass(frozen=True)
class Target:
    """One endpoint the gate drives: ``name`` is "candidate" or "live"; ``url`` has no path."""

    name: str
    url: str
    expected_version: str

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"target {self.name}: url {self.url!r} is not http(s)://host:port")
        if not self.name or not self.expected_version:
            raise ConfigError("a target needs a name and an expected model version")
