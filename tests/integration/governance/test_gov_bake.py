"""Automatic rollbacks (the bake watcher's) and the bake rule, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from governance_support import SHA, gate

from bentogate.errors import GovernanceError, IllegalTransition
from bentogate.governance import Action, Registry, RolloutStatus, State

pytestmark = pytest.mark.integration
Advance = Callable[..., str]
WATCHER = "bake-watcher"
REASON = "automatic rollback of fraud:2: error ratio 20.0% > 1.0% over 2.0 s"
EVIDENCE: dict[str, Any] = {
    "rule": "bake_max_error_ratio",
    "error_ratio": 0.2,
    "requests": 50,
    "errors": 10,
    "window_s": 2.0,
    "breach": None,
    "rows": [1, 2],
}
PLAIN_PAYLOAD = {
    "measured_sha256",
    "registered_sha256",
    "approval_id",
    "gate_run_id",
    "replaced",
    "deployments",
}


def _failed_bake(reg: Registry, advance: Advance) -> datetime:
    """fraud:1 then fraud:2 promoted; fraud:2's bake fails: the watcher rolls back to fraud:1.
    Returns when fraud:2 failed its bake."""
    advance("fraud", State.PRODUCTION)
    advance("fraud", State.PRODUCTION)
    back = reg.rollback("fraud", actor=WATCHER, reason=REASON, evidence=EVIDENCE)
    assert (back.version, back.state, back.bake_failed_at) == ("1", State.PRODUCTION, None)
    at = reg.get_version("fraud", "2").bake_failed_at
    assert at is not None
    return at


def _gate(reg: Registry, version: str, verdict: str = "pass") -> int:
    return gate(reg, version, verdict, compared_with="1").id


def _refusal(version: str, at: str, action: str = "promote") -> str:
    return (
        f"refused: {action} fraud:{version} — fraud:{version} failed its bake at {at} "
        "(automatic rollback); it needs a passed gate newer than that (bake)"
    )


def test_automatic_rollback_is_audited_with_its_evidence(reg: Registry, advance: Advance) -> None:
    evidence = {**EVIDENCE, "nested": {"limits": [1]}}
    advance("fraud", State.PRODUCTION)
    advance("fraud", State.PRODUCTION)
    reg.rollback("fraud", actor=WATCHER, reason=REASON, evidence=evidence)
    evidence["nested"]["limits"].append(2)  # the caller's dict is not stored by reference
    rolled = reg.audit("fraud", "1")[-1]
    assert (rolled.action, rolled.outcome, rolled.actor, rolled.reason) == (
        Action.ROLLBACK,
        "ok",
        WATCHER,
        REASON,
    )
    assert (rolled.from_state, rolled.to_state) == ("gated", "production")
    assert rolled.payload["evidence"] == {**EVIDENCE, "nested": {"limits": [1]}}
    assert rolled.payload.keys() == PLAIN_PAYLOAD | {"evidence"}
    assert rolled.payload["replaced"] == "2"
    assert reg.verify_audit()[0]


def test_automatic_rollback_marks_the_version_it_takes_out(reg: Registry, advance: Advance) -> None:
    at = _failed_bake(reg, advance)
    failed = reg.get_version("fraud", "2")
    assert (failed.state, failed.demoted_at) == (State.GATED, at)
    assert reg.get_version("fraud", "1").bake_failed_at is None
    demoted = reg.audit("fraud", "2")[-1]
    assert (demoted.action, demoted.outcome, demoted.actor, demoted.reason) == (
        Action.DEMOTE,
        "ok",
        WATCHER,
        "failed its bake; production rolled back to fraud:1",
    )
    assert demoted.payload == {"by": "1", "bake_failed_at": at.isoformat()}
    assert [v.bake_failed_at for v in reg.versions("fraud")] == [None, at]
    assert reg.previous_version("fraud").bake_failed_at == at  # type: ignore[union-attr]


def test_without_a_reason_an_automatic_rollback_says_so(reg: Registry, advance: Advance) -> None:
    advance("fraud", State.PRODUCTION)
    advance("fraud", State.PRODUCTION)
    reg.rollback("fraud", actor=WATCHER, evidence={})
    rolled = reg.audit("fraud", "1")[-1]
    assert (rolled.reason, rolled.payload["evidence"]) == ("automatic rollback", {})
    assert reg.get_version("fraud", "2").bake_failed_at is not None


def test_plain_rollbacks_are_unchanged(reg: Registry, advance: Advance) -> None:
    advance("fraud", State.PRODUCTION)
    advance("fraud", State.PRODUCTION)
    assert reg.rollback("fraud", actor="rel").version == "1"
    demoted, rolled = reg.audit("fraud")[-2:]
    assert (demoted.action, demoted.version, demoted.reason, demoted.payload) == (
        Action.DEMOTE,
        "2",
        "rolled back from fraud:1",
        {"by": "1"},
    )
    assert (rolled.action, rolled.version, rolled.reason) == (Action.ROLLBACK, "1", "rolled back")
    assert rolled.payload.keys() == PLAIN_PAYLOAD
    # a reason alone names the rollback; it marks nothing
    assert reg.rollback("fraud", actor="rel", reason="pager: fraud:1 looks off").version == "2"
    assert reg.audit("fraud")[-1].reason == "pager: fraud:1 looks off"
    assert "evidence" not in reg.audit("fraud")[-1].payload
    assert [v.bake_failed_at for v in reg.versions("fraud")] == [None, None]
    assert reg.audit("fraud")[-2].reason == "rolled back from fraud:2"


def test_a_failed_bake_blocks_promotion_until_a_newer_passed_gate(
    reg: Registry, advance: Advance
) -> None:
    at = _failed_bake(reg, advance)
    message = _refusal("2", at.isoformat())
    with pytest.raises(IllegalTransition) as caught:
        reg.promote("fraud", "2", actor="rel", sha256=SHA)
    assert str(caught.value) == message
    _gate(reg, "2", "inconclusive")  # an inconclusive gate does not lift it
    with pytest.raises(IllegalTransition, match=re.escape(message)):
        reg.promote("fraud", "2", actor="rel", sha256=SHA)
    refused = [e for e in reg.audit("fraud", "2") if e.action == Action.PROMOTE][-2:]
    assert [(e.outcome, e.from_state, e.to_state, e.reason) for e in refused] == [
        ("refused", "gated", "production", message)
    ] * 2
    assert refused[-1].payload["error"] == "IllegalTransition"
    assert reg.production_version("fraud").version == "1"  # type: ignore[union-attr]
    passed = _gate(reg, "2")
    assert reg.promote("fraud", "2", actor="rel", sha256=SHA).state == State.PRODUCTION
    promoted = reg.audit("fraud", "2")[-1]
    assert (promoted.action, promoted.outcome) == (Action.PROMOTE, "ok")
    assert promoted.payload["gate_run_id"] == passed
    assert promoted.payload["bake_failed_at"] == at.isoformat()  # the failure the gate lifted
    assert reg.get_version("fraud", "2").bake_failed_at == at  # the mark is history: it stays
    assert reg.verify_audit()[0]


def test_a_second_failed_bake_moves_the_mark(reg: Registry, advance: Advance) -> None:
    first = _failed_bake(reg, advance)
    _gate(reg, "2")
    reg.promote("fraud", "2", actor="rel", sha256=SHA)
    reg.rollback("fraud", actor=WATCHER, reason=REASON, evidence=EVIDENCE)
    second = reg.get_version("fraud", "2").bake_failed_at
    assert second is not None and second > first
    with pytest.raises(IllegalTransition, match=re.escape(_refusal("2", second.isoformat()))):
        reg.promote("fraud", "2", actor="rel", sha256=SHA)


def test_a_rollback_to_a_version_that_failed_its_bake_is_refused(
    reg: Registry, advance: Advance
) -> None:
    at = _failed_bake(reg, advance)
    assert reg.previous_version("fraud").version == "2"  # type: ignore[union-attr]
    message = _refusal("2", at.isoformat(), "rollback")
    with pytest.raises(IllegalTransition) as caught:
        reg.rollback("fraud", actor="rel")
    assert str(caught.value) == message
    with pytest.raises(IllegalTransition, match=re.escape(message)):  # nor automatically
        reg.rollback("fraud", actor=WATCHER, reason=REASON, evidence=EVIDENCE)
    plain, automatic = reg.audit("fraud")[-2:]
    assert [(e.action, e.outcome, e.version, e.reason) for e in (plain, automatic)] == [
        (Action.ROLLBACK, "refused", "2", message)
    ] * 2
    assert "evidence" not in plain.payload
    assert automatic.payload["evidence"] == EVIDENCE  # a refused automatic rollback keeps them
    assert reg.production_version("fraud").version == "1"  # type: ignore[union-attr]
    assert reg.get_version("fraud", "1").bake_failed_at is None  # nothing was marked
    _gate(reg, "2")
    assert reg.rollback("fraud", actor="rel").version == "2"
    assert reg.verify_audit()[0]


def test_a_fleet_rollout_is_held_to_the_bake_rule(reg: Registry, advance: Advance) -> None:
    at = _failed_bake(reg, advance)
    with pytest.raises(IllegalTransition, match=re.escape(_refusal("2", at.isoformat()))):
        reg.start_rollout("fraud", "2", actor="rel", sha256=SHA, hosts=["h1"], deadline_s=60)
    assert reg.rollouts("fraud") == []


def test_a_failed_rollout_returns_to_a_version_whose_failed_bake_was_lifted(
    reg: Registry, advance: Advance
) -> None:
    at = _failed_bake(reg, advance)
    _gate(reg, "2")
    reg.promote("fraud", "2", actor="rel", sha256=SHA)  # the newer gate lifted the mark
    three = advance("fraud", State.GATED)
    rollout = reg.start_rollout("fraud", three, actor="rel", sha256=SHA, hosts=["h1"], deadline_s=9)
    settled = reg.settle_rollout(
        "fraud", rollout.id, actor="agent", complete=False, reason="h1 unhealthy", results={}
    )
    assert (settled.status, settled.outcome["rollback"]) == (
        RolloutStatus.ROLLED_BACK,
        "fraud:2 is production again",
    )
    assert reg.get_version("fraud", "2").bake_failed_at == at
    assert reg.get_version("fraud", three).bake_failed_at is None  # a plain rollback marks none


@pytest.mark.parametrize(
    ("evidence", "why"),
    [
        ({"error_ratio": float("nan")}, r"evidence is not plain JSON: .*"),
        ([0.2], r"evidence is a list, not a JSON object"),
    ],
)
def test_evidence_that_is_not_json_is_refused_and_audited(
    reg: Registry, advance: Advance, evidence: Any, why: str
) -> None:
    advance("fraud", State.PRODUCTION)
    advance("fraud", State.PRODUCTION)
    with pytest.raises(GovernanceError, match=rf"^refused: rollback fraud — {why} \(JSON\)$"):
        reg.rollback("fraud", actor=WATCHER, reason=REASON, evidence=evidence)
    assert reg.production_version("fraud").version == "2"  # type: ignore[union-attr]
    assert [v.bake_failed_at for v in reg.versions("fraud")] == [None, None]
    last = reg.audit()[-1]
    assert (last.action, last.outcome, last.payload["error"]) == (
        Action.ROLLBACK,
        "refused",
        "GovernanceError",
    )
    assert reg.verify_audit()[0]
