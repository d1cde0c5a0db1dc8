"""Property: over random action sequences, every illegal transition is refused, leaves every
table but the audit log unchanged, and is audited as refused; legal ones follow the table."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from governance_support import gate, register
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bentogate.errors import GovernanceError, NotFoundError, SeparationOfDuties
from bentogate.governance import TRANSITIONS, Action, Registry, Role, State
from bentogate.governance.schema import Base
from bentogate.governance.states import RELEASE_ORDER

pytestmark = pytest.mark.integration
SHA = "c" * 64
#: what a refused action must leave unchanged: every table but the audit log and its head
TABLES = tuple(name for name in Base.metadata.tables if not name.startswith("audit_"))
KINDS = (
    "register",
    "validate",
    "reject",
    "approve",
    "build",
    "stage",
    "deploy",
    "pass",
    "fail",
    "inconclusive",
    "promote",
    "bad_sha",
    "rollback",
    "retire",
    "promote",
    "pass",
    "rollback",
)  # repeats: the later lifecycle steps need more chances
ACTION_OF = {
    "reject": Action.VALIDATE,
    "pass": Action.GATE,
    "fail": Action.GATE,
    "inconclusive": Action.GATE,
    "bad_sha": Action.PROMOTE,
    "deploy": Action.DEPLOY,
}
steps = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 3), st.sampled_from(["dev", "val", "boss"])),
    min_size=1,
    max_size=10,
)
starts = st.lists(st.sampled_from(RELEASE_ORDER), min_size=1, max_size=3)
_models = itertools.count()


def _snapshot(raw: sa.Engine) -> dict[str, list[Any]]:
    with raw.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY id"))]
            for t in TABLES
        }


def _call(reg: Registry, model: str, kind: str, version: str, actor: str, n: int) -> object:
    calls: dict[str, Callable[[], object]] = {
        "register": lambda: register(reg, model, sha256=SHA, developer=actor),
        "validate": lambda: reg.validate(model, version, actor=actor, results={}, passed=True),
        "reject": lambda: reg.validate(model, version, actor=actor, results={}, passed=False),
        "approve": lambda: reg.approve(model, version, actor=actor),
        "build": lambda: reg.record_build(model, version, actor=actor, bento_tag="b"),
        "stage": lambda: reg.stage(model, version, actor=actor),
        "deploy": lambda: reg.record_deployment(
            model, version, host="h", port=3000 + n, pid=None, role=Role.CANDIDATE
        ),
        "promote": lambda: reg.promote(model, version, actor=actor, sha256=SHA),
        "bad_sha": lambda: reg.promote(model, version, actor=actor, sha256="d" * 64),
        "rollback": lambda: reg.rollback(model, actor=actor),
        "retire": lambda: reg.retire(model, version, actor=actor, reason="r"),
    }
    if kind in ("pass", "fail", "inconclusive"):
        return gate(reg, version, kind, model=model, actor=actor)
    return calls[kind]()


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(start=starts, sequence=steps)
def test_illegal_transitions_are_refused_unchanged_and_audited(
    reg: Registry,
    raw: sa.Engine,
    advance: Callable[..., str],
    start: list[State],
    sequence: list[tuple[str, int, str]],
) -> None:
    n = next(_models)
    model = f"m{n}"
    for state in start:  # versions spread over the lifecycle, so every action gets its chance
        advance(model, state, port=20000 + n, sha256=SHA)
    for i, (kind, index, actor) in enumerate(sequence):
        versions = reg.versions(model)
        target = versions[index % len(versions)]
        states = {v.version: v.state for v in versions}
        tables, audited = _snapshot(raw), len(reg.audit(model))
        action = ACTION_OF[kind] if kind in ACTION_OF else Action(kind)
        try:
            _call(reg, model, kind, target.version, actor, n * 100 + i)
        except (GovernanceError, NotFoundError) as err:
            new = reg.audit(model)[audited:]
            assert [(e.action, e.outcome, e.reason) for e in new] == [
                (str(action), "refused", str(err))
            ]
            assert _snapshot(raw) == tables, f"{kind} was refused but changed the tables"
            continue
        assert kind not in ("bad_sha",), "a changed artifact was promoted"
        assert not (kind == "validate" and actor == target.developer), "developer validated"
        if kind == "approve":
            assert actor not in (target.developer, target.validator), "duties not separated"
        new = reg.audit(model)[audited:]
        assert new and all(e.outcome == "ok" for e in new)
        after = {v.version: v.state for v in reg.versions(model)}
        changed = {v for v in states if states[v] != after[v]}
        if kind in ("register", "rollback"):
            continue
        before_state = states[target.version]
        assert before_state in TRANSITIONS[action], f"{kind} allowed from {before_state}"
        assert after[target.version] in TRANSITIONS[action][before_state]
        assert changed <= {target.version} | {v for v in states if states[v] == State.PRODUCTION}
    assert sum(v.state == State.PRODUCTION for v in reg.versions(model)) <= 1
    assert reg.verify_audit()[0]


def test_separation_of_duties_is_a_refusal(reg: Registry) -> None:
    reg.ensure_model("sod", owner="o", production_port=19999, actor="admin")
    register(reg, "sod", sha256=SHA)
    with pytest.raises(SeparationOfDuties):
        reg.validate("sod", "1", actor="dev", results={}, passed=True)
