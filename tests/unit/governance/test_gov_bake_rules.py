"""Automatic rollbacks and the bake rule on a SQLite registry with a clock the test moves: what
"a passed gate newer than the failed bake" means to the second, what is refused and audited."""

from __future__ import annotations

from datetime import datetime

import pytest
from governance_support import SHA, Clock, gate, gated_later

from bentogate.errors import IllegalTransition
from bentogate.governance import Action, Registry, State

WATCHER = "bake-watcher"


@pytest.fixture
def failed(timed: Registry, clock: Clock) -> datetime:
    """fraud:1 promoted, then fraud:2; a second later fraud:2's bake fails and the watcher
    rolls production back to fraud:1 (at 00:00:03). Returns the instant of the failure."""
    timed.promote("fraud", gated_later(timed, clock), actor="rel", sha256=SHA)
    timed.promote("fraud", gated_later(timed, clock), actor="rel", sha256=SHA)
    clock.tick()
    timed.rollback(
        "fraud",
        actor=WATCHER,
        reason="automatic rollback of fraud:2: error ratio 20.0% > 1.0% over 2.0 s",
        evidence={"error_ratio": 0.2, "window_s": 2.0},
    )
    return clock.now


def test_the_mark_is_the_instant_of_the_automatic_rollback(
    timed: Registry, clock: Clock, failed: datetime
) -> None:
    version = timed.get_version("fraud", "2")
    assert version.bake_failed_at == version.demoted_at == failed == clock.now
    assert version.bake_failed_at.tzinfo is not None
    demoted, rolled = timed.audit("fraud")[-2:]
    assert (demoted.action, demoted.version, demoted.at) == (Action.DEMOTE, "2", failed)
    assert demoted.payload["bake_failed_at"] == "2025-01-01T00:00:03+00:00"
    assert (rolled.action, rolled.version, rolled.at) == (Action.ROLLBACK, "1", failed)


def test_a_gate_at_the_instant_of_the_failure_is_not_newer(
    timed: Registry, clock: Clock, failed: datetime
) -> None:
    gate(timed, "2")  # the same instant as the failure: not newer
    with pytest.raises(IllegalTransition) as caught:
        timed.promote("fraud", "2", actor="rel", sha256=SHA)
    assert str(caught.value) == (
        "refused: promote fraud:2 — fraud:2 failed its bake at 2025-01-01T00:00:03+00:00 "
        "(automatic rollback); it needs a passed gate newer than that (bake)"
    )
    refused = timed.audit("fraud", "2")[-1]
    assert (refused.action, refused.outcome, refused.reason) == (
        Action.PROMOTE,
        "refused",
        str(caught.value),
    )
    clock.tick()
    newer = gate(timed, "2").id
    assert timed.promote("fraud", "2", actor="rel", sha256=SHA).state == State.PRODUCTION
    promoted = timed.audit("fraud", "2")[-1]
    assert (promoted.payload["gate_run_id"], promoted.payload["bake_failed_at"]) == (
        newer,
        failed.isoformat(),
    )


def test_a_rebuild_after_the_failure_needs_a_gate_newer_than_both(
    timed: Registry, clock: Clock, failed: datetime
) -> None:
    clock.tick()
    timed.record_build("fraud", "2", actor="ci", bento_tag="fraud:2b")
    with pytest.raises(IllegalTransition, match=r"last pass .*; build .* \(a passed gate newer"):
        timed.promote("fraud", "2", actor="rel", sha256=SHA)
    clock.tick()
    gate(timed, "2")
    assert timed.promote("fraud", "2", actor="rel", sha256=SHA).state == State.PRODUCTION


def test_the_rule_names_the_rollback_it_refuses(timed: Registry, failed: datetime) -> None:
    with pytest.raises(IllegalTransition) as caught:
        timed.rollback("fraud", actor="rel", sha256=SHA)
    assert str(caught.value) == (
        "refused: rollback fraud:2 — fraud:2 failed its bake at 2025-01-01T00:00:03+00:00 "
        "(automatic rollback); it needs a passed gate newer than that (bake)"
    )
    assert timed.production_version("fraud").version == "1"  # type: ignore[union-attr]


def test_versions_that_never_failed_a_bake_carry_no_mark(timed: Registry, clock: Clock) -> None:
    version = gated_later(timed, clock)
    assert timed.get_version("fraud", version).bake_failed_at is None
    timed.promote("fraud", version, actor="rel", sha256=SHA)
    assert "bake_failed_at" not in timed.audit("fraud", version)[-1].payload
