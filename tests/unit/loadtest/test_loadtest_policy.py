"""GatePolicy and Target: validation, dict round trip, defaults from settings."""

from __future__ import annotations

import dataclasses

import pytest

from bentogate.errors import ConfigError
from bentogate.loadtest import GatePolicy, Target
from bentogate.settings import GateSettings


def policy(**kw: object) -> GatePolicy:
    return GatePolicy.from_settings(GateSettings(), **kw)


def test_from_settings_copies_every_gate_setting() -> None:
    gate = GateSettings(rate=321.0, p99_ms=7.5, users=4)
    p = GatePolicy.from_settings(gate)
    for name, value in gate.model_dump().items():
        assert getattr(p, name) == value
    assert p.total_s == gate.warmup_s + gate.duration_s


def test_settings_and_policy_agree_on_the_defaults_they_share() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(GatePolicy)}
    for name, field in GateSettings.model_fields.items():
        if defaults.get(name, dataclasses.MISSING) is not dataclasses.MISSING:
            assert defaults[name] == field.default, name


def test_round_trip_and_frozen() -> None:
    p = policy(block_s=0.5, regression_floor_us=5.0, extend_s=5.0)
    assert GatePolicy.from_dict(p.to_dict()) == p
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.rate = 1.0  # type: ignore[misc]


def test_from_dict_defaults_optional_fields() -> None:
    data = policy().to_dict()
    del data["block_s"], data["regression_floor_us"], data["max_duration_s"]
    assert GatePolicy.from_dict(data) == policy()


def test_a_policy_stored_before_the_interval_verdict_still_reads() -> None:
    # slice_s (A/B slices) and regression_floor_ms (a floor on client p99) meant other
    # things: they are dropped, and the new fields take their defaults
    data = {**policy().to_dict(), "slice_s": 2.0, "regression_floor_ms": 2.0}
    del data["regression_floor_us"]
    assert GatePolicy.from_dict(data) == policy()


def test_the_first_run_must_fit_under_the_cap_and_hold_blocks() -> None:
    with pytest.raises(ConfigError, match=r"max_duration_s=10\.0 must be >= duration_s"):
        policy(duration_s=20.0, max_duration_s=10.0)
    with pytest.raises(ConfigError, match="at least 4 blocks"):
        policy(duration_s=3.0, block_s=1.0, max_duration_s=3.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bogus": 1}, "unknown gate policy fields: bogus"),
        ({"rate": 0.0}, "rate"),
        ({"users": 0}, "users"),
        ({"warmup_s": -1.0}, "warmup_s"),
        ({"max_error_ratio": 1.5}, "max_error_ratio"),
        ({"max_regression": 0.9}, "max_regression"),
        ({"p99_ms": float("nan")}, "p99_ms"),
    ],
)
def test_invalid_policies_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GatePolicy.from_dict({**policy().to_dict(), **change})


def test_missing_required_field_is_refused() -> None:
    data = policy().to_dict()
    del data["rate"]
    with pytest.raises(ConfigError, match="rate"):
        GatePolicy.from_dict(data)


def test_target_validation() -> None:
    Target("candidate", "http://127.0.0.1:3003", "3")
    with pytest.raises(ConfigError):
        Target("candidate", "127.0.0.1:3003", "3")
    with pytest.raises(ConfigError):
        Target("candidate", "http://127.0.0.1:3003", "")
