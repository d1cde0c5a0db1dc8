"""A registered version's way to the release: validate, approve, build, stage, and retire at
any point but production. :func:`move` is the one way these steps change a state.

Each step runs inside the caller's write transaction, checks its rules, changes the rows and
appends its ``ok`` audit row; a refusal raises (the registry rolls back and audits it). The
gate's step is in :mod:`bentogate.governance.gates`, promotion and rollback in
:mod:`bentogate.governance.promotion`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bentogate.errors import GovernanceError, IllegalTransition, SeparationOfDuties
from bentogate.governance import queries, records
from bentogate.governance.attempt import Attempt
from bentogate.governance.records import VersionInfo
from bentogate.governance.schema import Approval, Validation, Version
from bentogate.governance.states import Action, State, check_transition


def move(
    session: Session,
    attempt: Attempt,
    row: Version,
    target: State,
    reason: str,
    payload: dict[str, Any] | None = None,
) -> None:
    """Check ``attempt.action`` may take ``row`` to ``target`` (one table, one function), set it,
    and append the ``ok`` audit row. Raises :class:`IllegalTransition`."""
    current = State(row.state)
    attempt.to_state = target
    check_transition(attempt.action, current, target, subject=attempt.subject)
    if target != current:
        row.state = target
        row.state_changed_at = attempt.now()
    attempt.record(session, reason=reason, from_state=current, to_state=target, payload=payload)


def validate(
    session: Session, attempt: Attempt, *, results: dict[str, Any], passed: bool, why: str
) -> VersionInfo:
    """registered → validated (passed) or → rejected; the validator is not the developer.
    ``why``: the measured reason of a rejection (the audit row's reason says it)."""
    model, row = queries.locked_version(session, attempt)
    target = State.VALIDATED if passed else State.REJECTED
    attempt.to_state = target
    check_transition(Action.VALIDATE, State(row.state), target, subject=attempt.subject)
    if attempt.actor == row.developer:
        attempt.refuse(
            SeparationOfDuties,
            f"validator '{attempt.actor}' is the developer of {attempt.subject}",
            "separation of duties",
        )
    session.add(
        Validation(
            version_id=row.id,
            validator=attempt.actor,
            passed=passed,
            results=dict(results),
            created_at=attempt.now(),
        )
    )
    row.validator = attempt.actor
    reason = "validation passed" if passed else f"validation failed: {why or 'no reason given'}"
    move(session, attempt, row, target, reason, {"passed": passed, "results": results})
    return records.version_info(row, model.name)


def approve(
    session: Session, attempt: Attempt, *, comment: str, valid_until: datetime | None
) -> VersionInfo:
    """validated → approved; the approver is neither developer nor validator. The approval
    row binds the version's sha256."""
    model, row = queries.locked_version(session, attempt)
    attempt.to_state = State.APPROVED
    check_transition(Action.APPROVE, State(row.state), State.APPROVED, subject=attempt.subject)
    if attempt.actor == row.developer:
        attempt.refuse(
            SeparationOfDuties,
            f"approver '{attempt.actor}' is the developer of {attempt.subject}",
            "separation of duties",
        )
    if attempt.actor == row.validator:
        attempt.refuse(
            SeparationOfDuties,
            f"approver '{attempt.actor}' validated {attempt.subject}",
            "separation of duties",
        )
    now = attempt.now()
    if valid_until is not None and valid_until.tzinfo is None:
        attempt.refuse(
            GovernanceError,
            f"valid_until {valid_until.isoformat()} has no time zone",
            "timestamps are UTC",
        )
    if valid_until is not None and valid_until <= now:
        attempt.refuse(
            GovernanceError,
            f"valid_until {valid_until.isoformat()} is in the past",
            "approvals expire in the future",
        )
    approval = Approval(
        version_id=row.id,
        approver=attempt.actor,
        decision="approved",
        comment=comment,
        sha256=row.sha256,
        valid_until=valid_until,
        created_at=now,
    )
    session.add(approval)
    session.flush()
    row.approver = attempt.actor
    move(
        session,
        attempt,
        row,
        State.APPROVED,
        comment or "approved",
        {
            "approval_id": approval.id,
            "sha256": row.sha256,
            "valid_until": valid_until.isoformat() if valid_until else None,
        },
    )
    return records.version_info(row, model.name)


def record_build(
    session: Session,
    attempt: Attempt,
    *,
    bento_tag: str,
    image_tag: str | None,
    image_id: str | None,
) -> VersionInfo:
    """Record a build of an approved (or later) version (its image's tag and id with
    both or neither); older gate passes stop counting."""
    model, row = queries.locked_version(session, attempt)
    current = State(row.state)
    attempt.to_state = current
    check_transition(Action.BUILD, current, current, subject=attempt.subject)
    if not bento_tag:
        attempt.refuse(GovernanceError, "bento_tag is empty", "builds are named")
    if (image_tag is None) != (image_id is None):
        attempt.refuse(
            GovernanceError,
            f"image tag {image_tag!r} with image id {image_id!r}",
            "an image is recorded by its tag and its id",
        )
    row.bento_tag, row.image_tag, row.image_id = bento_tag, image_tag, image_id
    row.built_at = attempt.now()
    move(
        session,
        attempt,
        row,
        current,
        f"built {bento_tag}",
        {"bento_tag": bento_tag, "image_tag": image_tag, "image_id": image_id},
    )
    return records.version_info(row, model.name)


def stage(session: Session, attempt: Attempt) -> VersionInfo:
    """approved → staged; staged, gated and production stay as they are."""
    model, row = queries.locked_version(session, attempt)
    current = State(row.state)
    target = State.STAGED if current == State.APPROVED else current
    move(session, attempt, row, target, "deployed as candidate")
    return records.version_info(row, model.name)


def retire(session: Session, attempt: Attempt, *, reason: str) -> VersionInfo:
    """Any state except production → retired (kept in the inventory)."""
    model, row = queries.locked_version(session, attempt)
    attempt.to_state = State.RETIRED
    if row.state == State.PRODUCTION:
        attempt.refuse(
            IllegalTransition,
            f"{attempt.subject} is the "
            "production version; promote another version or roll back first",
            "a production version cannot be retired",
        )
    move(session, attempt, row, State.RETIRED, reason or "retired")
    return records.version_info(row, model.name)
