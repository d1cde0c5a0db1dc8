"""Gate policy per model and measured capacity per version, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from bentogate.errors import GovernanceError, NotFoundError
from bentogate.governance import Action, Registry, State

pytestmark = pytest.mark.integration
Advance = Callable[..., str]
POLICY = {"rate": 200, "p99_ms": 25.0, "max_error_rate": 0.001, "stages": [1, 2]}


def _model(reg: Registry, name: str = "fraud", port: int = 10000) -> None:
    reg.ensure_model(name, owner="risk", production_port=port, actor="admin")


def test_policy_set_read_and_overwritten_with_audit(reg: Registry) -> None:
    _model(reg)
    assert reg.gate_policy("fraud") is None and reg.get_model("fraud").gate_policy is None
    assert reg.set_gate_policy("fraud", POLICY, actor="risk-lead").gate_policy == POLICY
    assert reg.gate_policy("fraud") == POLICY
    newer = {**POLICY, "p99_ms": 20.0}
    assert reg.set_gate_policy("fraud", newer, actor="risk-lead").gate_policy == newer
    assert reg.gate_policy("fraud") == newer
    assert [m.gate_policy for m in reg.models()] == [newer]
    rows = [e for e in reg.audit("fraud") if e.action == Action.SET_POLICY]
    assert [(e.outcome, e.actor, e.version) for e in rows] == [("ok", "risk-lead", None)] * 2
    assert [e.payload for e in rows] == [
        {"old": None, "new": POLICY},
        {"old": POLICY, "new": newer},
    ]
    assert [e.reason for e in rows] == ["gate policy set", "gate policy changed"]
    assert reg.verify_audit()[0]


def test_policies_are_per_model_and_copied(reg: Registry) -> None:
    _model(reg)
    _model(reg, "churn", 10001)
    mine = {"p99_ms": 25.0, "nested": {"a": [1]}}
    reg.set_gate_policy("fraud", mine, actor="a")
    mine["nested"]["a"].append(2)  # the caller's dict is not stored by reference
    read = reg.gate_policy("fraud")
    assert read == {"p99_ms": 25.0, "nested": {"a": [1]}}
    assert read is not None
    read["p99_ms"] = 1.0  # nor is a read aliased to the stored one
    assert reg.gate_policy("fraud") == {"p99_ms": 25.0, "nested": {"a": [1]}}
    assert reg.gate_policy("churn") is None


def test_policy_on_unknown_model_is_refused_and_audited(reg: Registry) -> None:
    with pytest.raises(NotFoundError, match="unknown model 'ghost'"):
        reg.set_gate_policy("ghost", POLICY, actor="a")
    (row,) = reg.audit("ghost")
    assert (row.action, row.outcome, row.payload["error"]) == (
        "set_policy",
        "refused",
        "NotFoundError",
    )
    with pytest.raises(NotFoundError):
        reg.gate_policy("ghost")
    assert reg.verify_audit()[0]


@pytest.mark.parametrize(
    ("policy", "why"),
    [({"p99_ms": float("nan")}, "not plain JSON"), ([1, 2], "list, not a JSON object")],
)
def test_policy_must_be_a_plain_json_object(reg: Registry, policy: object, why: str) -> None:
    _model(reg)
    reg.set_gate_policy("fraud", POLICY, actor="a")
    with pytest.raises(GovernanceError, match=rf"refused: set_policy fraud — policy is .*{why}"):
        reg.set_gate_policy("fraud", policy, actor="a")  # type: ignore[arg-type]
    assert reg.gate_policy("fraud") == POLICY
    assert reg.audit("fraud")[-1].outcome == "refused"
    assert reg.verify_audit()[0]


def test_concurrent_policy_changes_serialize(
    reg: Registry, make_registry: Callable[..., Registry]
) -> None:
    _model(reg)
    writers = [make_registry() for _ in range(4)]
    barrier = threading.Barrier(len(writers))
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            writers[i].set_gate_policy("fraud", {"n": i}, actor=f"w{i}")
        except BaseException as err:  # reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    rows = [e for e in reg.audit("fraud") if e.action == "set_policy"]
    assert [r.payload["old"] for r in rows] == [None] + [r.payload["new"] for r in rows[:-1]]
    assert reg.gate_policy("fraud") == rows[-1].payload["new"]
    assert reg.verify_audit()[0]


def test_capacity_recorded_and_read_back(reg: Registry, advance: Advance) -> None:
    version = advance("fraud", State.PRODUCTION)
    assert reg.get_version("fraud", version).capacity_rps is None
    reg.record_capacity("fraud", version, actor="ci", rate=480.0, details={"limited_by": "target"})
    reg.record_capacity("fraud", version, actor="ci", rate=730, details={"runs": [[200, "pass"]]})
    assert reg.get_version("fraud", version).capacity_rps == 730.0
    production = reg.production_version("fraud")
    assert production is not None and production.capacity_rps == 730.0
    other = advance("fraud", State.GATED)
    assert {v.version: v.capacity_rps for v in reg.versions("fraud")} == {
        version: 730.0,
        other: None,
    }
    rows = [e for e in reg.audit("fraud", version) if e.action == Action.CAPACITY]
    assert [(e.outcome, e.actor, e.reason) for e in rows] == [
        ("ok", "ci", "capacity 480 req/s"),
        ("ok", "ci", "capacity 730 req/s"),
    ]
    assert rows[1].payload["rate"] == 730
    assert rows[1].payload["details"] == {"runs": [[200, "pass"]]}
    assert reg.verify_audit()[0]


@pytest.mark.parametrize(
    ("rate", "details", "error", "match"),
    [
        (-1.0, {}, GovernanceError, "rate -1.0 is negative"),
        (float("inf"), {}, GovernanceError, "rate inf is not a finite number"),
        (10.0, {"x": float("nan")}, GovernanceError, "details is not plain JSON"),
    ],
)
def test_bad_capacity_is_refused_and_audited(
    reg: Registry,
    advance: Advance,
    rate: float,
    details: dict[str, object],
    error: type,
    match: str,
) -> None:
    version = advance("fraud", State.GATED)
    with pytest.raises(error, match=rf"refused: capacity fraud:{version} — {match}"):
        reg.record_capacity("fraud", version, actor="ci", rate=rate, details=details)
    last = reg.audit("fraud", version)[-1]
    assert (last.action, last.outcome) == ("capacity", "refused")
    assert reg.get_version("fraud", version).capacity_rps is None


def test_capacity_of_unknown_version_is_refused_and_audited(reg: Registry) -> None:
    _model(reg)
    with pytest.raises(NotFoundError, match=r"unknown version fraud:9"):
        reg.record_capacity("fraud", "9", actor="ci", rate=1.0, details={})
    assert reg.audit("fraud", "9")[-1].outcome == "refused"


def test_gate_runs_keep_their_frozen_policy(reg: Registry, advance: Advance) -> None:
    version = advance("fraud", State.GATED)  # gated with policy {"p99_ms": 25}
    reg.set_gate_policy("fraud", {"p99_ms": 5}, actor="a")
    (run,) = reg.gate_runs("fraud", version)
    assert run.policy == {"p99_ms": 25}


def test_database_refuses_negative_capacity(
    reg: Registry, advance: Advance, raw: sa.Engine
) -> None:
    advance("fraud", State.GATED)
    insert = (
        "INSERT INTO capacity_measurements (version_id, actor, rate, details, created_at) "
        "VALUES (1, 'x', -1, '{}', CURRENT_TIMESTAMP)"
    )
    with pytest.raises(sa.exc.IntegrityError), raw.begin() as conn:
        conn.execute(sa.text(insert))
