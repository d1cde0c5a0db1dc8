"""Shadow runs and the ``require_shadow`` rule on a SQLite registry with a clock the test moves:
what "newer than the build" means to the second, what is refused and what is audited."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from governance_support import SHA, Clock, gate, gated_later, shadow

from bentogate.errors import GovernanceError, IllegalTransition
from bentogate.governance import Action, Registry, State

RULE = "has no passed shadow run newer than its build (policy require_shadow)"


@pytest.fixture
def candidate(timed: Registry, clock: Clock) -> str:
    """fraud:1 in production, fraud:2 gated, the policy requiring a shadow run."""
    timed.promote("fraud", gated_later(timed, clock), actor="rel", sha256=SHA)
    version = gated_later(timed, clock)
    timed.set_gate_policy("fraud", {"require_shadow": True}, actor="lead")
    return version


def test_a_shadow_run_at_the_build_instant_is_not_newer(
    timed: Registry, clock: Clock, candidate: str
) -> None:
    clock.tick()
    timed.record_build("fraud", candidate, actor="ci", bento_tag="fraud:2b")
    at_build = shadow(timed, candidate)  # same instant as the build: not newer
    clock.tick()
    gate(timed, candidate, compared_with="1")
    with pytest.raises(IllegalTransition) as caught:
        timed.promote("fraud", candidate, actor="rel", sha256=SHA)
    build = timed.get_version("fraud", candidate).built_at
    assert build == at_build.created_at == clock.now - timedelta(seconds=1)
    assert str(caught.value) == (
        f"refused: promote fraud:2 — fraud:2 has no passed shadow run newer than its build; "
        f"last pass {build.isoformat()}, build {build.isoformat()} (policy require_shadow)"
    )
    later = shadow(timed, candidate)
    assert timed.promote("fraud", candidate, actor="rel", sha256=SHA).state == State.PRODUCTION
    promoted = timed.audit("fraud", candidate)[-1]
    assert (promoted.action, promoted.payload["shadow_run_id"]) == ("promote", later.id)


def test_a_failed_shadow_run_blocks_without_rejecting(
    timed: Registry, clock: Clock, candidate: str
) -> None:
    clock.tick()
    failed = shadow(timed, candidate, "fail")
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
