"""Shadow runs and the ``require_shadow`` release rule, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from governance_support import SHA, gate, shadow

from bentogate.errors import GovernanceError, IllegalTransition, NotFoundError
from bentogate.governance import Action, Registry, ShadowRunInfo, State

pytestmark = pytest.mark.integration
Advance = Callable[..., str]
REQUIRE = {"p99_ms": 25, "require_shadow": True}
NO_PASS = "has no passed shadow run newer than its build (policy require_shadow)"


def test_shadow_run_is_stored_audited_and_changes_no_state(reg: Registry, advance: Advance) -> None:
    advance("fraud", State.PRODUCTION)
    version = advance("fraud", State.GATED)
    policy = {"nested": {"limits": [1]}}
    run = reg.record_shadow(
        "fraud",
        version,
        actor="ci",
        policy=policy,
        results={"p99_abs_delta": 0.003},
        verdict="pass",
        report_path="/r/shadow.json",
        compared_with="1",
    )
    policy["nested"]["limits"].append(2)  # the caller's dict is not stored by reference
    assert (run.model, run.version, run.verdict, run.compared_with, run.actor) == (
        "fraud",
        version,
        "pass",
        "1",
        "ci",
    )
    assert run.created_at.tzinfo is not None
    assert reg.get_version("fraud", version).state == State.GATED
    reg.set_gate_policy("fraud", {"p99_ms": 5}, actor="a")  # the run keeps its frozen policy
    assert reg.shadow_runs("fraud", version) == [
        ShadowRunInfo(
            id=run.id,
            model="fraud",
            version=version,
            verdict="pass",
            policy={"nested": {"limits": [1]}},
            results={"p99_abs_delta": 0.003},
            report_path="/r/shadow.json",
            compared_with="1",
            created_at=run.created_at,
            actor="ci",
        )
    ]
    row = next(e for e in reg.audit("fraud", version) if e.action == Action.SHADOW)
    assert (row.outcome, row.actor, row.from_state, row.to_state, row.reason) == (
        "ok",
        "ci",
        "gated",
        "gated",
        "shadow pass against fraud:1",
    )
    assert row.payload == {
        "verdict": "pass",
        "report_path": "/r/shadow.json",
        "compared_with": "1",
        "shadow_run_id": run.id,
    }
    assert reg.verify_audit()[0]


def test_failed_and_inconclusive_runs_reject_nothing(reg: Registry, advance: Advance) -> None:
    advance("fraud", State.PRODUCTION)
    staged = advance("fraud", State.STAGED)
    gated = advance("fraud", State.GATED)
    for verdict in ("fail", "inconclusive", "pass"):
        shadow(reg, staged, verdict)
    shadow(reg, gated, "fail")
    assert reg.get_version("fraud", staged).state == State.STAGED
    assert reg.get_version("fraud", gated).state == State.GATED
    assert [r.verdict for r in reg.shadow_runs("fraud", staged)] == ["fail", "inconclusive", "pass"]
    assert [r.verdict for r in reg.shadow_runs("fraud", gated)] == ["fail"]
    assert reg.shadow_runs("fraud", "1") == []


@pytest.mark.parametrize(
    "state", [State.REGISTERED, State.VALIDATED, State.APPROVED, State.PRODUCTION]
)
def test_shadow_refused_outside_staged_and_gated(
    reg: Registry, advance: Advance, state: State
) -> None:
    advance("fraud", State.PRODUCTION)
    version = "1" if state == State.PRODUCTION else advance("fraud", state)
    with pytest.raises(IllegalTransition) as caught:
        shadow(reg, version)
    assert str(caught.value) == (
        f"refused: shadow fraud:{version} — fraud:{version} is {state}; "
        "shadow needs gated or staged (lifecycle)"
    )
    assert reg.shadow_runs("fraud", version) == []
    last = reg.audit()[-1]
    assert (last.action, last.outcome, last.version, last.from_state, last.to_state) == (
        "shadow",
        "refused",
        version,
        state,
        state,
    )
    assert last.payload["error"] == "IllegalTransition"
    assert reg.verify_audit()[0]


def test_shadow_refused_for_rejected_and_retired(reg: Registry, advance: Advance) -> None:
    advance("fraud", State.PRODUCTION)
    rejected = advance("fraud", State.STAGED)
    gate(reg, rejected, "fail", compared_with="1")
    retired = advance("fraud", State.GATED)
    reg.retire("fraud", retired, actor="boss", reason="old")
    with pytest.raises(IllegalTransition, match="fraud:2 is rejected; shadow needs gated or"):
        shadow(reg, rejected)
    with pytest.raises(IllegalTransition, match="fraud:3 is retired; shadow needs gated or"):
        shadow(reg, retired)


@pytest.mark.parametrize(
    ("verdict", "compared_with", "results", "why"),
    [
        (
            "maybe",
            "1",
            {},
            r"verdict 'maybe' is not pass, fail or inconclusive \(shadow verdicts\)",
        ),
        (
            "pass",
            "9",
            {},
            r"compared with fraud:9, but the production version is fraud:1 "
            r"\(a shadow run compares with the live version\)",
        ),
        ("pass", "1", {"psi": float("nan")}, r"results is not plain JSON: .* \(JSON\)"),
    ],
)
def test_bad_shadow_runs_are_refused_and_audited(
    reg: Registry,
    advance: Advance,
    verdict: str,
    compared_with: str,
    results: dict[str, object],
    why: str,
) -> None:
    advance("fraud", State.PRODUCTION)
    version = advance("fraud", State.GATED)
    with pytest.raises(GovernanceError, match=rf"^refused: shadow fraud:2 — {why}$"):
        shadow(reg, version, verdict, compared_with=compared_with, results=results)
    assert reg.shadow_runs("fraud", version) == []
    last = reg.audit()[-1]
    assert (last.action, last.outcome) == ("shadow", "refused")
    assert (last.payload["verdict"], last.payload["compared_with"]) == (verdict, compared_with)
    assert reg.verify_audit()[0]


def test_shadow_needs_a_live_version(reg: Registry, advance: Advance) -> None:
    version = advance("fraud", State.GATED)
    with pytest.raises(GovernanceError, match="but the production version is none"):
        shadow(reg, version, compared_with="0")
    with pytest.raises(NotFoundError, match=r"unknown version fraud:9"):
        shadow(reg, "9")
    assert [(e.action, e.outcome) for e in reg.audit()[-2:]] == [("shadow", "refused")] * 2


def test_promotion_without_require_shadow_needs_no_shadow_run(
    reg: Registry, advance: Advance
) -> None:
    advance("fraud", State.PRODUCTION)
    version = advance("fraud", State.GATED)
    reg.set_gate_policy("fraud", {"p99_ms": 25, "require_shadow": False}, actor="lead")
    assert reg.promote("fraud", version, actor="rel", sha256=SHA).state == State.PRODUCTION
    promoted = reg.audit("fraud", version)[-1]
    assert promoted.action == "promote" and "shadow_run_id" not in promoted.payload


def test_require_shadow_blocks_promotion_until_a_pass(reg: Registry, advance: Advance) -> None:
    advance("fraud", State.PRODUCTION)
    version = advance("fraud", State.GATED)
    reg.set_gate_policy("fraud", REQUIRE, actor="lead")
    message = f"refused: promote fraud:2 — fraud:2 {NO_PASS}"
    with pytest.raises(IllegalTransition) as caught:
        reg.promote("fraud", version, actor="rel", sha256=SHA)
    assert str(caught.value) == message
    shadow(reg, version, "fail")  # a failed run does not count ...
    shadow(reg, version, "inconclusive")  # ... nor an inconclusive one
    with pytest.raises(IllegalTransition) as caught:
        reg.promote("fraud", version, actor="rel", sha256=SHA)
    assert str(caught.value) == message
    refused = [e for e in reg.audit("fraud", version) if e.action == "promote"]
    assert [(e.outcome, e.from_state, e.to_state, e.reason) for e in refused] == [
        ("refused", "gated", "production", message)
    ] * 2
    assert refused[-1].payload["error"] == "IllegalTransition"
    assert reg.get_version("fraud", version).state == State.GATED
    assert reg.production_version("fraud").version == "1"  # type: ignore[union-attr]
    passed = shadow(reg, version)
    assert reg.promote("fraud", version, actor="rel", sha256=SHA).state == State.PRODUCTION
    promoted = reg.audit("fraud", version)[-1]
    (gate_run,) = reg.gate_runs("fraud", version)
    assert (promoted.action, promoted.outcome) == ("promote", "ok")
    assert promoted.payload["shadow_run_id"] == passed.id
    assert promoted.payload["gate_run_id"] == gate_run.id
    assert "shadow_waived" not in promoted.payload
    assert reg.verify_audit()[0]


def test_a_pass_older_than_the_build_does_not_count(reg: Registry, advance: Advance) -> None:
    advance("fraud", State.PRODUCTION)
    version = advance("fraud", State.GATED)
    reg.set_gate_policy("fraud", REQUIRE, actor="lead")
    old = shadow(reg, version)
    reg.record_build("fraud", version, actor="ci", bento_tag="fraud:2b")
    gate(reg, version, compared_with="1")  # the gate rule is met again; the shadow rule is not
    built = reg.get_version("fraud", version).built_at
    assert built is not None and old.created_at < built
    with pytest.raises(IllegalTransition) as caught:
        reg.promote("fraud", version, actor="rel", sha256=SHA)
    assert str(caught.value) == (
        "refused: promote fraud:2 — fraud:2 has no passed shadow run newer than its build; "
        f"last pass {old.created_at.isoformat()}, build {built.isoformat()} "
        "(policy require_shadow)"
    )
    new = shadow(reg, version)
    assert reg.promote("fraud", version, actor="rel", sha256=SHA).state == State.PRODUCTION
    assert reg.audit("fraud", version)[-1].payload["shadow_run_id"] == new.id


def test_rollback_and_first_release_need_no_shadow_run(reg: Registry, advance: Advance) -> None:
    reg.ensure_model("fraud", owner="risk", production_port=10000, actor="admin")
    reg.set_gate_policy("fraud", REQUIRE, actor="lead")
    first = advance("fraud", State.PRODUCTION)  # nothing live to compare with
    promoted = reg.audit("fraud", first)[-1]
    assert (promoted.action, promoted.payload["shadow_run_id"]) == ("promote", None)
    assert promoted.payload["shadow_waived"] == "first release: no live version to compare with"
    second = advance("fraud", State.GATED)
    run = shadow(reg, second)
    reg.promote("fraud", second, actor="rel", sha256=SHA)
    back = reg.rollback("fraud", actor="rel")  # fraud:1 has no shadow run: none is needed
    assert (back.version, back.state) == (first, State.PRODUCTION)
    rolled = reg.audit("fraud", first)[-1]
    assert (rolled.action, rolled.outcome, rolled.payload["shadow_run_id"]) == (
        "rollback",
        "ok",
        None,
    )
    assert rolled.payload["shadow_waived"] == "a rollback returns a former production version"
    # promoting a demoted version again is a promotion: its pass still counts (newer than its
    # build) ...
    reg.promote("fraud", second, actor="rel", sha256=SHA)
    assert reg.audit("fraud", second)[-1].payload["shadow_run_id"] == run.id
    # ... and fraud:1, demoted again, may come back by rollback but not by promote
    with pytest.raises(IllegalTransition, match=re.escape(f"fraud:1 {NO_PASS}")):
        reg.promote("fraud", first, actor="rel", sha256=SHA)
    assert reg.rollback("fraud", actor="rel").version == first
    assert reg.verify_audit()[0]


def test_fleet_rollout_is_held_to_require_shadow(reg: Registry, advance: Advance) -> None:
    advance("fraud", State.PRODUCTION)
    version = advance("fraud", State.GATED)
    reg.set_gate_policy("fraud", REQUIRE, actor="lead")
    with pytest.raises(IllegalTransition, match=re.escape(f"fraud:2 {NO_PASS}")):
        reg.start_rollout("fraud", version, actor="rel", sha256=SHA, hosts=["h1"], deadline_s=60)
    assert reg.rollouts("fraud") == []
    shadow(reg, version)
    rollout = reg.start_rollout(
        "fraud", version, actor="rel", sha256=SHA, hosts=["h1"], deadline_s=60
    )
    assert rollout.version == version


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_require_shadow_must_be_a_boolean(reg: Registry, value: object) -> None:
    reg.ensure_model("fraud", owner="risk", production_port=10000, actor="admin")
    with pytest.raises(
        GovernanceError,
        match=rf"refused: set_policy fraud — require_shadow is {value!r}, not true or false "
        r"\(policy require_shadow\)",
    ):
        reg.set_gate_policy("fraud", {"require_shadow": value}, actor="lead")
    assert reg.gate_policy("fraud") is None
    assert reg.audit("fraud")[-1].outcome == "refused"


def test_database_refuses_an_unknown_shadow_verdict(
    reg: Registry, advance: Advance, raw: sa.Engine
) -> None:
    advance("fraud", State.GATED)
    insert = (
        "INSERT INTO shadow_runs (version_id, actor, verdict, policy, results, report_path, "
        "compared_with, created_at) VALUES (1, 'x', '{}', '{{}}', '{{}}', 'r', '1', "
        "CURRENT_TIMESTAMP)"
    )
    with raw.begin() as conn:
        conn.execute(sa.text(insert.format("pass")))
    with pytest.raises(sa.exc.IntegrityError), raw.begin() as conn:
        conn.execute(sa.text(insert.format("maybe")))
