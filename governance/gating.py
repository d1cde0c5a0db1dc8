"""What gates are judged by: a model's gate policy and its versions' measured capacity.

Neither is a lifecycle transition, but both are audited attempts like every other write: each
runs inside the caller's write transaction (model row locked), checks its input, changes the
rows and appends its ``ok`` audit row; a refusal raises (the registry rolls back and audits it).
The policy and the capacity details are opaque JSON to governance: the load-test part owns
their keys.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sqlalchemy.orm import Session

from bentogate.errors import GovernanceError
from governance import queries, records
from governance.attempt import Attempt
from governance.lifecycle import locked_version
from governance.records import ModelInfo
from governance.schema import CapacityMeasurement, GatePolicy


def set_gate_policy(session: Session, attempt: Attempt, *, policy: dict[str, Any]) -> ModelInfo:
    """Store ``policy`` as the model's gate policy (replacing any) and return the model; the
    audit row carries the old and the new policy. Refuses a policy that is not a JSON object."""
    assert attempt.model is not None
    model = queries.model_row(session, attempt.environment, attempt.model, lock=True)
    new = json_copy(attempt, policy, "policy")
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


def record_capacity(
    session: Session, attempt: Attempt, *, rate: float, details: dict[str, Any]
) -> None:
    """Store a measured capacity (req/s) of the version. Refuses a rate that is not a finite
    number >= 0 and details that are not a JSON object."""
    _, row = locked_version(session, attempt)
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


def json_copy(attempt: Attempt, value: Any, what: str) -> dict[str, Any]:
    """Return a deep copy of ``value`` as strict JSON (what every database stores alike).
    Refuses anything but a JSON object of finite numbers, strings, booleans, null, lists."""
    if not isinstance(value, dict):
        attempt.refuse(
            GovernanceError, f"{what} is a {type(value).__name__}, not a JSON object", "JSON"
        )
    try:
        copied: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        attempt.refuse(GovernanceError, f"{what} is not plain JSON: {err}", "JSON")
    return copied
