"""Shadow runs and the ``require_shadow`` rule on a SQLite registry with a clock the test moves:
what "newer than the build" means to the second, what is refused and what is audited."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bentogate.errors import GovernanceError, IllegalTransition
from governance import Action, Registry, ShadowRunInfo, State

SHA = "a" * 64
RULE = "has no passed shadow run newer than its build (policy require_shadow)"


class Clock:
    """The registry's clock: stands still until the test moves it."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self) -> None:
        self.now += timedelta(seconds=1)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(sqlite_url: str, clock: Clock) -> Iterator[Registry]:
    """A migrated SQLite registry on the test's clock."""
    registry = Registry(sqlite_url, clock=clock)
    registry.upgrade()
    yield registry
    registry.close()


def _gated(reg: Registry, clock: Clock) -> str:
    """Register a new version of ``fraud`` and take it to gated (built, then gated a second
    later); returns the version."""
    reg.ensure_model("fraud", owner="risk", production_port=10000, actor="admin")
    version = reg.register_version(
        "fraud",
        sha256=SHA,
        feature_names=["f"],
        threshold=0.5,
        metrics={},
        developer="dev",
        artifact_uri="x",
    ).version
    reg.validate("fraud", version, actor="val", results={}, passed=True)
    reg.approve("fraud", version, actor="boss")
    reg.record_build("fraud", version, actor="ci", bento_tag=f"fraud:{version}")
    reg.stage("fraud", version, actor="ci")
    clock.tick()
    reg.record_gate(
        "fraud",
        version,
        actor="ci",
        policy={},
        results={},
        verdict="pass",
        report_path="r",
        compared_with=None,
    )
    return version


def _shadow(reg: Registry, version: str, verdict: str = "pass") -> ShadowRunInfo:
    return reg.record_shadow(
        "fraud",
        version,
        actor="ci",
        policy={"shadow_max_psi": 0.25},
        results={"psi": 0.01},
        verdict=verdict,
        report_path="s.json",
        compared_with="1",
    )


@pytest.fixture
def candidate(timed: Registry, clock: Clock) -> str:
    """fraud:1 in production, fraud:2 gated, the policy requiring a shadow run."""
    timed.promote("fraud", _gated(timed, clock), actor="rel", sha256=SHA)
    version = _gated(timed, clock)
    timed.set_gate_policy("fraud", {"require_shadow": True}, actor="lead")
    return version


def test_a_shadow_run_at_the_build_instant_is_not_newer(
    timed: Registry, clock: Clock, candidate: str
) -> None:
    clock.tick()
    timed.record_build("fraud", candidate, actor="ci", bento_tag="fraud:2b")
    at_build = _shadow(timed, candidate)  # same instant as the build: not newer
    clock.tick()
    timed.record_gate(
        "fraud",
        candidate,
        actor="ci",
        policy={},
        results={},
        verdict="pass",
        report_path="r",
        compared_with="1",
    )
    with pytest.raises(IllegalTransition) as caught:
        timed.promote("fraud", candidate, actor="rel", sha256=SHA)
    build = timed.get_version("fraud", candidate).built_at
    assert build == at_build.created_at == clock.now - timedelta(seconds=1)
    assert str(caught.value) == (
        f"refused: promote fraud:2 — fraud:2 has no passed shadow run newer than its build; "
        f"last pass {build.isoformat()}, build {build.isoformat()} (policy require_shadow)"
    )
    later = _shadow(timed, candidate)
    assert timed.promote("fraud", candidate, actor="rel", sha256=SHA).state == State.PRODUCTION
    promoted = timed.audit("fraud", candidate)[-1]
    assert (promoted.action, promoted.payload["shadow_run_id"]) == ("promote", later.id)


def test_a_failed_shadow_run_blocks_without_rejecting(
    timed: Registry, clock: Clock, candidate: str
) -> None:
    clock.tick()
    failed = _shadow(timed, candidate, "fail")
    assert timed.get_version("fraud", candidate).state == State.GATED
    with pytest.raises(IllegalTransition, match=re.escape(f"fraud:2 {RULE}")):
        timed.promote("fraud", candidate, actor="rel", sha256=SHA)
    shadow_row, refused = timed.audit("fraud", candidate)[-2:]
    assert (shadow_row.action, shadow_row.outcome, shadow_row.reason) == (
        Action.SHADOW,
        "ok",
        "shadow fail against fraud:1",
    )
    assert shadow_row.payload["shadow_run_id"] == failed.id
    assert (refused.action, refused.outcome) == (Action.PROMOTE, "refused")
    assert timed.verify_audit()[0]


def test_turning_require_shadow_off_lifts_the_rule(timed: Registry, candidate: str) -> None:
    with pytest.raises(IllegalTransition, match=re.escape(RULE)):
        timed.promote("fraud", candidate, actor="rel", sha256=SHA)
    timed.set_gate_policy("fraud", {"require_shadow": False}, actor="lead")
    assert timed.promote("fraud", candidate, actor="rel", sha256=SHA).state == State.PRODUCTION
    assert "shadow_run_id" not in timed.audit("fraud", candidate)[-1].payload


@pytest.mark.parametrize("value", [0, 1, "true", [True]])
def test_require_shadow_is_a_json_boolean(reg: Registry, value: object) -> None:
    reg.ensure_model("fraud", owner="risk", production_port=10000, actor="admin")
    with pytest.raises(GovernanceError, match=r"require_shadow is .*, not true or false"):
        reg.set_gate_policy("fraud", {"rate": 1, "require_shadow": value}, actor="lead")
    assert reg.gate_policy("fraud") is None
    assert reg.set_gate_policy("fraud", {"require_shadow": True}, actor="lead").gate_policy == {
        "require_shadow": True
    }
