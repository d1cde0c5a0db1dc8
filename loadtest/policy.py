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
    "max_error_ratio", "min_samples", "max_regression",
)  # fmt: skip


@dataclass(frozen=True)
class GatePolicy:
    """Load to apply and the limits a candidate must meet; stored with the verdict.

    ``rate`` (req/s) is held open-loop for ``warmup_s`` (discarded) + ``duration_s`` by up to
    ``users`` concurrent Locust users. Latency limits apply to the candidate's successful
    requests; ``max_error_ratio`` to failed / all measured requests. With a live target in
    the same run, the candidate's p99 may be at most ``max_regression`` x live p99, or live
    p99 + ``regression_floor_ms`` when that is larger (small p99s differ by noise alone:
    identical targets measured 2.7 vs 5.0 ms on a loaded 2-core machine). ``min_samples``
    is per target. Targets alternate every ``slice_s`` seconds.
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
    regression_floor_ms: float = 2.0
    slice_s: float = 2.0

    def __post_init__(self) -> None:
        positive = ("rate", "duration_s", "users", "p50_ms", "p95_ms", "p99_ms", "slice_s")
        for name in positive:
            _check(self, name, getattr(self, name) > 0, "must be > 0")
        for name in ("warmup_s", "min_samples", "regression_floor_ms"):
            _check(self, name, getattr(self, name) >= 0, "must be >= 0")
        _check(self, "max_error_ratio", 0 <= self.max_error_ratio <= 1, "must be in [0, 1]")
        _check(self, "max_regression", self.max_regression >= 1, "must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GatePolicy:
        """The policy from ``to_dict()`` output; missing optional fields take defaults.

        Raises ConfigError on unknown or missing required fields and on invalid values.
        """
        known = {f.name for f in fields(cls)}
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
        """Warm-up plus measured time: how long the load runs."""
        return self.warmup_s + self.duration_s


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
