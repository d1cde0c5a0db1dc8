"""The lifecycle rules, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from governance_support import SHA, gate, register

from bentogate.errors import (
    GovernanceError,
    IllegalTransition,
    IntegrityError,
    NotFoundError,
    SeparationOfDuties,
)
from bentogate.governance import Registry, Role, State

pytestmark = pytest.mark.integration
Advance = Callable[..., str]


def test_full_path_is_audited_and_chained(reg: Registry, advance: Advance) -> None:
    version = advance("fraud", State.PRODUCTION)
    info = reg.get_version("fraud", version)
    assert (info.state, info.developer, info.validator, info.approver) == (
        State.PRODUCTION,
        "dev",
        "val",
        "boss",
    )
    assert info.bento_tag == "fraud:1" and info.built_at is not None
    actions = [(e.action, e.from_state, e.to_state, e.outcome) for e in reg.audit("fraud")]
    assert actions == [
        ("create_model", None, None, "ok"),
        ("register", None, "registered", "ok"),
        ("validate", "registered", "validated", "ok"),
        ("approve", "validated", "approved", "ok"),
        ("build", "approved", "approved", "ok"),
        ("stage", "approved", "staged", "ok"),
        ("gate", "staged", "gated", "ok"),
        ("promote", "gated", "production", "ok"),
    ]
    assert all(e.at.tzinfo is not None for e in reg.audit())
    assert reg.verify_audit() == (True, None, "audit chain intact: 8 rows")


def test_versions_number_themselves_and_are_unique(reg: Registry, advance: Advance) -> None:
    assert [advance("fraud", State.REGISTERED) for _ in range(3)] == ["1", "2", "3"]
    with pytest.raises(GovernanceError, match=r"fraud:2 already exists \(versions are immutable"):
        register(reg, feature_names=["a"], version="2")
    assert reg.audit()[-1].outcome == "refused"


def test_ensure_model_is_idempotent_and_guards_ports(reg: Registry) -> None:
    first = reg.ensure_model("fraud", owner="risk", production_port=10000, actor="a")
    assert reg.ensure_model("fraud", owner="risk", production_port=10000, actor="a") == first
    with pytest.raises(GovernanceError, match="already has production port 10000, not 10010"):
        reg.ensure_model("fraud", owner="risk", production_port=10010, actor="a")
    with pytest.raises(GovernanceError, match="port 10000 is fraud's production port"):
        reg.ensure_model("churn", owner="risk", production_port=10000, actor="a")
    assert [m.name for m in reg.models()] == ["fraud"]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("validate", "validator 'dev' is the developer of fraud:1 (separation of duties)"),
        ("approve_dev", "approver 'dev' is the developer of fraud:1 (separation of duties)"),
        ("approve_val", "approver 'val' validated fraud:1 (separation of duties)"),
    ],
)
def test_separation_of_duties(reg: Registry, advance: Advance, step: str, message: str) -> None:
    state = State.REGISTERED if step == "validate" else State.VALIDATED
    version = advance("fraud", state)
    actor = "val" if step == "approve_val" else "dev"
    with pytest.raises(SeparationOfDuties) as caught:
        if step == "validate":
            reg.validate("fraud", version, actor=actor, results={}, passed=True)
        else:
            reg.approve("fraud", version, actor=actor)
    assert str(caught.value).endswith(message)
    assert str(caught.value).startswith(f"refused: {step.split('_')[0]} fraud:1 — ")
    assert reg.get_version("fraud", version).state == state
    last = reg.audit()[-1]
    assert (last.outcome, last.actor, last.reason) == ("refused", actor, str(caught.value))


def test_failed_validation_rejects(reg: Registry, advance: Advance) -> None:
    version = advance("fraud", State.REGISTERED)
    info = reg.validate("fraud", version, actor="val", results={"auc": 0.4}, passed=False)
    assert info.state == State.REJECTED
    with pytest.raises(IllegalTransition, match="fraud:1 is rejected; approve needs validated"):
        reg.approve("fraud", version, actor="boss")


def test_a_rejection_keeps_its_measured_reason(reg: Registry, advance: Advance) -> None:
    validated, gated = advance("fraud", State.REGISTERED), advance("fraud", State.STAGED)
    assert reg.rejection("fraud", validated) is None
    why = "AUC 0.7012 < production 2's 0.8120 - 0.005"
    reg.validate("fraud", validated, actor="val", results={}, passed=False, why=why)
    assert reg.rejection("fraud", validated) == f"validation failed: {why}"
    reg.record_gate("fraud", gated, actor="ci", policy={}, verdict="fail", report_path="r",
                    results={"reasons": ["p99 41.2 ms > 25 ms"]}, compared_with=None)  # fmt: skip
    assert reg.rejection("fraud", gated) == "gate fail: p99 41.2 ms > 25 ms"


def test_gate_verdicts(reg: Registry, advance: Advance) -> None:
    version = advance("fraud", State.STAGED)
    fields = dict(
        actor="ci",
        policy={"rate": 200},
        results={"p99": 3},
        report_path="r.json",
        compared_with="0",
    )
    run = reg.record_gate("fraud", version, verdict="inconclusive", **fields)  # type: ignore[arg-type]
    assert reg.get_version("fraud", version).state == State.STAGED
    assert (run.verdict, run.policy, run.compared_with) == ("inconclusive", {"rate": 200}, "0")
    reg.record_gate("fraud", version, verdict="pass", **fields)  # type: ignore[arg-type]
    assert reg.get_version("fraud", version).state == State.GATED
    with pytest.raises(GovernanceError, match="verdict 'maybe' is not pass, fail or inconclusive"):
        reg.record_gate("fraud", version, verdict="maybe", **fields)  # type: ignore[arg-type]
    reg.record_gate("fraud", version, verdict="fail", **fields)  # type: ignore[arg-type]
    assert reg.get_version("fraud", version).state == State.REJECTED
    assert [r.verdict for r in reg.gate_runs("fraud", version)] == ["inconclusive", "pass", "fail"]


def test_gate_refused_before_staging(reg: Registry, advance: Advance) -> None:
    version = advance("fraud", State.APPROVED)
    with pytest.raises(IllegalTransition, match="gate needs gated or staged"):
        gate(reg, version)
    assert reg.gate_runs("fraud", version) == []


def test_promote_demotes_and_moves_roles(reg: Registry, advance: Advance) -> None:
    one = advance("fraud", State.PRODUCTION, deploy_port=3001)
    two = advance("fraud", State.GATED, deploy_port=3002)
    assert [(d.version, d.role) for d in reg.deployments()] == [
        (one, Role.LIVE),
        (two, Role.CANDIDATE),
    ]
    assert reg.promote("fraud", two, actor="rel", sha256=SHA).state == State.PRODUCTION
    assert reg.get_version("fraud", one).state == State.GATED
    assert [(d.version, d.role) for d in reg.deployments(model="fraud")] == [
        (one, Role.PREVIOUS),
        (two, Role.LIVE),
    ]
    demote = reg.audit("fraud", one)[-1]
    assert (demote.action, demote.reason) == ("demote", "superseded by fraud:2")
    assert reg.previous_version("fraud").version == one  # type: ignore[union-attr]
    back = reg.rollback("fraud", actor="rel")
    assert (back.version, back.state) == (one, State.PRODUCTION)
    assert reg.production_version("fraud").version == one  # type: ignore[union-attr]
    assert [(d.version, d.role) for d in reg.deployments()] == [
        (one, Role.LIVE),
        (two, Role.PREVIOUS),
    ]
    assert reg.previous_version("fraud").version == two  # type: ignore[union-attr]


def test_rollback_without_previous(reg: Registry, advance: Advance) -> None:
    advance("fraud", State.PRODUCTION)
    with pytest.raises(NotFoundError, match="fraud has no demoted version to return to"):
        reg.rollback("fraud", actor="rel")
    assert reg.audit()[-1].outcome == "refused"


def test_changed_artifact_is_refused_and_audited(
    reg: Registry, advance: Advance, raw: object
) -> None:
    version = advance("fraud", State.GATED)
    before = reg.audit()
    with pytest.raises(
        IntegrityError,
        match=r"artifact sha256 bbbbbbbbbbbb… differs .* "
        r"\(artifact integrity\)",
    ):
        reg.promote("fraud", version, actor="rel", sha256="b" * 64)
    after = reg.audit()
    assert len(after) == len(before) + 1
    refused = after[-1]
    assert (refused.action, refused.outcome, refused.from_state, refused.to_state) == (
        "promote",
        "refused",
        "gated",
        "production",
    )
    assert refused.payload["measured_sha256"] == "b" * 64
    assert refused.payload["error"] == "IntegrityError"
    assert reg.get_version("fraud", version).state == State.GATED


def test_new_build_needs_new_gate(reg: Registry, advance: Advance) -> None:
    version = advance("fraud", State.GATED)
    reg.record_build("fraud", version, actor="ci", bento_tag="fraud:1b")
    with pytest.raises(IllegalTransition, match=r"a passed gate newer than the build\)$"):
        reg.promote("fraud", version, actor="rel", sha256=SHA)
    gate(reg, version)
    assert reg.promote("fraud", version, actor="rel", sha256=SHA).state == State.PRODUCTION


def test_expired_approval_blocks_promotion(
    make_registry: object, advance: Advance, reg: Registry
) -> None:
    version = advance("fraud", State.VALIDATED)
    now = reg.get_version("fraud", version).registered_at
    with pytest.raises(GovernanceError, match="is in the past"):
        reg.approve("fraud", version, actor="boss", valid_until=now - timedelta(days=1))
    reg.approve("fraud", version, actor="boss", valid_until=now + timedelta(days=1))
    reg.record_build("fraud", version, actor="ci", bento_tag="fraud:1")
    reg.stage("fraud", version, actor="ci")
    gate(reg, version)
    later = make_registry(clock=lambda: now + timedelta(days=2))  # type: ignore[operator]
    with pytest.raises(IllegalTransition, match="its approval expired"):
        later.promote("fraud", version, actor="rel", sha256=SHA)


def test_retire(reg: Registry, advance: Advance) -> None:
    live = advance("fraud", State.PRODUCTION)
    with pytest.raises(IllegalTransition, match="a production version cannot be retired"):
        reg.retire("fraud", live, actor="boss", reason="old")
    draft = advance("fraud", State.REGISTERED)
    assert reg.retire("fraud", draft, actor="boss", reason="abandoned").state == State.RETIRED
    with pytest.raises(IllegalTransition, match="fraud:2 is retired"):
        reg.retire("fraud", draft, actor="boss", reason="again")
    assert reg.audit("fraud", draft)[-2].reason == "abandoned"


def test_stage_is_idempotent_after_staging(reg: Registry, advance: Advance) -> None:
    version = advance("fraud", State.GATED)
    assert reg.stage("fraud", version, actor="ci").state == State.GATED
    draft = advance("fraud", State.VALIDATED)
    with pytest.raises(IllegalTransition, match="fraud:2 is validated; stage needs"):
        reg.stage("fraud", draft, actor="ci")


def test_deployment_rules(reg: Registry, advance: Advance) -> None:
    staged = advance("fraud", State.STAGED)
    draft = advance("fraud", State.VALIDATED)
    dep = reg.record_deployment(
        "fraud", staged, host="local", port=3001, pid=42, role=Role.CANDIDATE
    )
    assert (dep.port, dep.pid, dep.role, dep.stopped_at) == (3001, 42, Role.CANDIDATE, None)
    with pytest.raises(GovernanceError, match="port 3001 on host 'local' is held by deployment"):
        reg.record_deployment("fraud", staged, host="local", port=3001, pid=43, role=Role.CANDIDATE)
    with pytest.raises(IllegalTransition, match="only the production version runs as live"):
        reg.record_deployment("fraud", staged, host="local", port=3002, pid=1, role=Role.LIVE)
    with pytest.raises(IllegalTransition, match="fraud:2 is validated"):
        reg.record_deployment("fraud", draft, host="local", port=3003, pid=1, role=Role.CANDIDATE)
    reg.end_deployment(dep.id)
    reg.end_deployment(dep.id)  # idempotent
    assert reg.deployments() == []
    assert reg.deployments(active_only=False)[0].stopped_at is not None
    assert (
        reg.record_deployment(
            "fraud", staged, host="local", port=3001, pid=44, role=Role.CANDIDATE
        ).id
        != dep.id
    )
    with pytest.raises(NotFoundError, match="unknown deployment 999"):
        reg.end_deployment(999)


def test_not_found_messages(reg: Registry, advance: Advance) -> None:
    with pytest.raises(NotFoundError, match="unknown model 'nope' in environment 'prod'"):
        reg.get_model("nope")
    advance("fraud", State.REGISTERED)
    with pytest.raises(NotFoundError, match=r"unknown version fraud:7 \(known versions: 1\)"):
        reg.get_version("fraud", "7")
    with pytest.raises(NotFoundError, match="unknown version fraud:7"):
        reg.approve("fraud", "7", actor="boss")
    assert reg.audit()[-1].outcome == "refused"


def test_environments_are_separate(reg: Registry, make_registry: object) -> None:
    staging = make_registry(environment="staging")  # type: ignore[operator]
    reg.ensure_model("fraud", owner="risk", production_port=10000, actor="a")
    staging.ensure_model("fraud", owner="risk", production_port=10000, actor="a")
    assert [m.environment for m in staging.models()] == ["staging"]
    assert [e.environment for e in staging.audit()] == ["staging"]
    assert reg.verify_audit()[0]
