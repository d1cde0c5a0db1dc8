"""Fleet rollouts: one promotion that every host of the fleet carries out before a deadline.

A rollout is recorded in the transaction of the promotion it carries out (the model row is
locked), so "production" and "a rollout in progress" never disagree, and the partial unique
index ``uq_rollouts_one_in_progress`` lets one rollout per model run at a time. Settling a
rollout is idempotent: the first settler completes it or rolls it back; later ones change
nothing. Both are audited.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bentogate.errors import ConcurrentChange, GovernanceError, NotFoundError
from bentogate.governance import promotion, queries, records
from bentogate.governance.attempt import Attempt
from bentogate.governance.documents import check_json_object
from bentogate.governance.records import RolloutInfo
from bentogate.governance.schema import Model, Rollout
from bentogate.governance.states import Action, RolloutStatus


def start(
    session: Session,
    attempt: Attempt,
    *,
    sha256: str,
    hosts: list[str],
    deadline_s: float,
) -> RolloutInfo:
    """Promote the attempt's version (all promotion rules apply) and record the rollout that
    every host in ``hosts`` must carry out before ``deadline_s`` passes."""
    model, row = queries.locked_version(session, attempt)
    running = _in_progress(session, model)
    if running is not None:
        attempt.refuse(
            ConcurrentChange,
            f"rollout {running.id} of {model.name}:{running.version} is in progress",
            "one fleet rollout per model at a time",
        )
    if not hosts:
        attempt.refuse(GovernanceError, "no host has a recent heartbeat", "a rollout needs hosts")
    if not (math.isfinite(deadline_s) and deadline_s > 0):
        attempt.refuse(GovernanceError, f"deadline {deadline_s!r} s", "a positive deadline")
    previous = queries.production_row(session, model)
    now = attempt.now()
    rollout = Rollout(
        model_id=model.id,
        version=row.version,
        from_version=previous.version if previous is not None else None,
        actor=attempt.actor,
        status=RolloutStatus.IN_PROGRESS,
        hosts=sorted(set(hosts)),
        started_at=now,
        deadline=now + timedelta(seconds=deadline_s),
        finished_at=None,
        outcome={},
    )
    session.add(rollout)
    session.flush()
    attempt.payload.update(
        rollout_id=rollout.id, hosts=rollout.hosts, deadline=rollout.deadline.isoformat()
    )
    promotion.promote(session, attempt, sha256=sha256)
    return records.rollout_info(rollout, model.name)


def settle(
    session: Session,
    attempt: Attempt,
    *,
    rollout_id: int,
    complete: bool,
    reason: str,
    results: dict[str, Any],
) -> RolloutInfo:
    """Finish an in-progress rollout: ``complete``, or roll the model back to the rollout's
    previous version (status ``rolled_back``; ``failed`` if there is none or its rules no
    longer hold). A rollout already settled is returned unchanged."""
    check_json_object(attempt, results, "results")
    assert attempt.model is not None
    model = queries.model_row(session, attempt.environment, attempt.model, lock=True)
    rollout = session.get(Rollout, rollout_id, populate_existing=True)
    if rollout is None or rollout.model_id != model.id:
        raise NotFoundError(f"unknown rollout {rollout_id} of {model.name}")
    if rollout.status != RolloutStatus.IN_PROGRESS:
        return records.rollout_info(rollout, model.name)
    attempt.version = rollout.version
    attempt.payload.update(rollout_id=rollout.id, hosts=rollout.hosts, results=results)
    rollout.finished_at = attempt.now()
    outcome: dict[str, Any] = {"reason": reason, "hosts": results}
    if complete:
        rollout.status = RolloutStatus.COMPLETE
        summary = f"fleet rollout complete on {', '.join(rollout.hosts)}"
    else:
        rollout.status, outcome["rollback"] = _roll_back(session, attempt, model, rollout)
        summary = f"fleet rollout {rollout.status}: {reason}; {outcome['rollback']}"
    rollout.outcome = outcome
    session.flush()
    attempt.record(session, reason=summary)
    return records.rollout_info(rollout, model.name)


def _roll_back(
    session: Session, attempt: Attempt, model: Model, rollout: Rollout
) -> tuple[RolloutStatus, str]:
    production = queries.production_row(session, model)
    if production is None or production.version != rollout.version:
        now = production.version if production is not None else "nothing"
        return RolloutStatus.FAILED, f"{now} is production already; nothing switched"
    previous = queries.previous_row(session, model)
    if rollout.from_version is None or previous is None or previous.version != rollout.from_version:
        return RolloutStatus.FAILED, "no previous version to return to; production unchanged"
    back = dataclasses.replace(
        attempt, action=Action.ROLLBACK, version=None, payload={"rollout_id": rollout.id}
    )
    try:
        promotion.rollback(session, back, sha256=None)
    except GovernanceError as err:  # refused before it changed anything
        return RolloutStatus.FAILED, f"rollback refused: {err}"
    return RolloutStatus.ROLLED_BACK, f"{model.name}:{rollout.from_version} is production again"


def _in_progress(session: Session, model: Model) -> Rollout | None:
    """The model's rollout in progress, or ``None``."""
    return session.execute(
        sa.select(Rollout).where(
            Rollout.model_id == model.id, Rollout.status == RolloutStatus.IN_PROGRESS
        )
    ).scalar_one_or_none()
