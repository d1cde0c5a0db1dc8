"""Gate policy and capacity on a SQLite registry: stored, read back, audited, refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from governance_support import register

from bentogate.errors import GovernanceError, NotFoundError
from bentogate.governance import Action, Registry
from bentogate.governance.attempt import Attempt
from bentogate.governance.documents import json_copy

POLICY = {"rate": 200, "p99_ms": 25.0}


def _version(reg: Registry) -> str:
    reg.ensure_model("fraud", owner="o", production_port=10000, actor="a")
    return register(reg)


def test_policy_round_trip_and_audit(reg: Registry) -> None:
    _version(reg)
    assert reg.gate_policy("fraud") is None
    info = reg.set_gate_policy("fraud", POLICY, actor="lead")
    assert info.gate_policy == POLICY == reg.gate_policy("fraud")
    reg.set_gate_policy("fraud", {"p99_ms": 20.0}, actor="lead")
    assert reg.get_model("fraud").gate_policy == {"p99_ms": 20.0}
    last = reg.audit("fraud")[-1]
    assert (last.action, last.outcome, last.actor) == (Action.SET_POLICY, "ok", "lead")
    assert last.payload == {"old": POLICY, "new": {"p99_ms": 20.0}}
    assert reg.verify_audit()[0]


def test_policy_for_unknown_model_is_refused_and_audited(reg: Registry) -> None:
    with pytest.raises(NotFoundError, match="unknown model 'ghost'"):
        reg.set_gate_policy("ghost", POLICY, actor="a")
    (row,) = reg.audit("ghost")
    assert (row.action, row.outcome) == ("set_policy", "refused")


def test_capacity_latest_is_on_the_version(reg: Registry) -> None:
    version = _version(reg)
    assert reg.get_version("fraud", version).capacity_rps is None
    reg.record_capacity("fraud", version, actor="ci", rate=100, details={"limited_by": "target"})
    reg.record_capacity("fraud", version, actor="ci", rate=90.5, details={})
    assert reg.get_version("fraud", version).capacity_rps == 90.5
    last = reg.audit("fraud", version)[-1]
    assert (last.action, last.outcome, last.payload["rate"]) == (Action.CAPACITY, "ok", 90.5)
    with pytest.raises(GovernanceError, match=r"refused: capacity fraud:1 — rate True"):
        reg.record_capacity("fraud", version, actor="ci", rate=True, details={})
    assert reg.audit("fraud", version)[-1].outcome == "refused"
    assert reg.verify_audit()[0]


def test_json_copy_is_deep_and_strict() -> None:
    attempt = Attempt(Action.SET_POLICY, "prod", "a", lambda: datetime.now(UTC), model="m")
    value = {"a": [1, {"b": None}], 2: "x"}
    copied = json_copy(attempt, value, "policy")
    assert copied == {"a": [1, {"b": None}], "2": "x"}  # keys become strings, as in any JSON
    assert copied["a"] is not value["a"]
    with pytest.raises(GovernanceError, match="policy is not plain JSON"):
        json_copy(attempt, {"when": datetime.now(UTC)}, "policy")
    with pytest.raises(GovernanceError, match=r"policy is a str, not a JSON object \(JSON\)"):
        json_copy(attempt, "p99<25", "policy")
