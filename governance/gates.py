"""The gate: a model's gate policy, the gate runs of its versions (and the state change each
verdict makes), and their measured capacity.

Every write is an audited attempt: it runs inside the caller's write transaction (model row
locked), checks its input, changes the rows and appends its ``ok`` audit row; a refusal raises
(the registry rolls back and audits it). The policy, the run's figures and the capacity details
are opaque JSON to governance (:mod:`bentogate.governance.documents`): the load-test part owns their
keys, but for the policy's ``require_shadow``, which promotion reads
(:mod:`bentogate.governance.shadow`).
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.orm import Session

from bentogate.errors import GovernanceError
from bentogate.governance import queries, records
from bentogate.governance.attempt import Attempt
from bentogate.governance.documents import RunReport, json_copy
from bentogate.governance.lifecycle import move
from bentogate.governance.records import GateRunInfo, ModelInfo
from bentogate.governance.schema import CapacityMeasurement, GatePolicy, GateRun
from bentogate.governance.shadow import REQUIRE_SHADOW, SHADOW_RULE
from bentogate.governance.states import GATE_TARGET, Action, State, Verdict, check_transition


def set_gate_policy(session: Session, attempt: Attempt, *, policy: dict[str, Any]) -> ModelInfo:
    """Store ``policy`` as the model's gate policy (replacing any) and return the model; the
    audit row carries the old and the new policy. Refuses a policy that is not a JSON object,
    or whose ``require_shadow`` (the one key governance reads) is not a boolean."""
    assert attempt.model is not None
    model = queries.model_row(session, attempt.environment, attempt.model, lock=True)
    new = json_copy(attempt, policy, "policy")
    require = new.get(REQUIRE_SHADOW, False)
    if not isinstance(require, bool):
        # governance reads this key (promotion): a "yes" must not silently mean "no"
        attempt.refuse(
            GovernanceError, f"{REQUIRE_SHADOW} is {require!r}, not true or false", SHADOW_RULE
        )
    current = model.gate_policy
    old = None if current is None else json_copy(attempt, current.policy, "policy")
    now = attempt.now()
    if current is None:
        model.gate_policy = GatePolicy(policy=new, set_by=attempt.actor, set_at=now)
    else:
        current.policy, current.set_by, current.set_at = new, attempt.actor, now
    session.flush()
    reason = "gate policy set" if old is None else "gate policy changed"
    attempt.record(session, reason=reason, payload={"old": old, "new": new})
    return records.model_info(model)


def record_gate(session: Session, attempt: Attempt, run: RunReport) -> GateRunInfo:
    """Store a gate run of a staged/gated version: pass → gated, fail → rejected,
    inconclusive → unchanged."""
    model, row = queries.locked_version(session, attempt)
    if run.verdict not in set(Verdict):
        attempt.refuse(
            GovernanceError,
            f"verdict {run.verdict!r} is not pass, fail or inconclusive",
            "gate verdicts",
        )
    current, parsed = State(row.state), Verdict(run.verdict)
    target = GATE_TARGET[parsed] or current
    attempt.to_state = target
    check_transition(Action.GATE, current, target, subject=attempt.subject)
    stored = GateRun(
        version_id=row.id,
        actor=attempt.actor,
        verdict=parsed,
        policy=dict(run.policy),
        results=dict(run.results),
        report_path=run.report_path,
        compared_with=run.compared_with,
        created_at=attempt.now(),
    )
    session.add(stored)
    session.flush()
    move(
        session,
        attempt,
        row,
        target,
        _gate_reason(parsed, run.results),
        {
            "gate_run_id": stored.id,
            "verdict": str(parsed),
            "report_path": run.report_path,
            "compared_with": run.compared_with,
        },
    )
    return records.gate_info(stored, model.name, row.version)


def _gate_reason(verdict: Verdict, results: dict[str, Any]) -> str:
    """``gate fail: p99 41.2 ms > 25 ms`` — the verdict and, unless it passed, the measured
    reasons the run gives (``results["reasons"]``)."""
    reasons = results.get("reasons")
    if verdict == Verdict.PASS or not isinstance(reasons, list) or not reasons:
        return f"gate {verdict}"
    return f"gate {verdict}: {'; '.join(str(r) for r in reasons)}"


def record_capacity(
    session: Session, attempt: Attempt, *, rate: float, details: dict[str, Any]
) -> None:
    """Store a measured capacity (req/s) of the version. Refuses a rate that is not a finite
    number >= 0 and details that are not a JSON object."""
    _, row = queries.locked_version(session, attempt)
    attempt.payload["rate"] = rate
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
        attempt.refuse(GovernanceError, f"rate {rate!r} is not a finite number", "capacity")
    if rate < 0:
        attempt.refuse(GovernanceError, f"rate {rate!r} is negative", "capacity")
    stored = json_copy(attempt, details, "details")
    measurement = CapacityMeasurement(
        version_id=row.id,
        actor=attempt.actor,
        rate=float(rate),
        details=stored,
        created_at=attempt.now(),
    )
    session.add(measurement)
    session.flush()
    attempt.payload.update(capacity_id=measurement.id, details=stored)
    attempt.record(session, reason=f"capacity {float(rate):g} req/s")
