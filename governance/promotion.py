"""Promotion and rollback: the release rules and the one-transaction switch of production.

Rules (both for promote and rollback): the version is gated; the sha256 the caller measured on
the artifact equals the registered one and carries a valid approval; a build is recorded and a
passed gate is newer than it. When the model's gate policy has ``"require_shadow": true``, a
promotion also needs a passed shadow run newer than the build (:mod:`bentogate.governance.shadow`;
not a rollback, nor a first release). The switch demotes the old production version (→ gated,
"superseded") and flushes before promoting, so the partial unique index never sees two.

The bake: a rollback given the watcher's ``evidence`` is *automatic*, and marks the version it
takes out of production as having failed its bake (``bake_failed_at``). That version then needs
a passed gate newer than the mark to take production again, by promotion *or rollback* (the
bake rule): right after an automatic rollback it is the most recently demoted version, so a
reflex ``rollback`` would otherwise put the failing version back. Unlike the shadow rule's, the
rollback waiver does not apply: the failure is newer than the version's time in production.
A watcher names the version it judged (``replacing``): when several hosts' watchers see it
fail at once, the first rolls back and the others are refused (ConcurrentChange, audited
with their figures), never a second rollback.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bentogate.errors import ConcurrentChange, IllegalTransition, IntegrityError, NotFoundError
from bentogate.governance import deployments, queries, records, shadow
from bentogate.governance.attempt import Attempt
from bentogate.governance.documents import json_copy
from bentogate.governance.records import VersionInfo
from bentogate.governance.schema import Approval, Deployment, GateRun, Model, Version
from bentogate.governance.states import Action, Role, State, check_transition

BAKE_RULE = "bake"


def promote(session: Session, attempt: Attempt, *, sha256: str) -> VersionInfo:
    """gated → production; the old production version → gated. Returns the new production."""
    model, row = queries.locked_version(session, attempt)
    attempt.to_state = State.PRODUCTION
    check_transition(Action.PROMOTE, State(row.state), State.PRODUCTION, subject=attempt.subject)
    evidence = check_release_rules(session, attempt, row, sha256)
    _switch(session, attempt, model, row, evidence)
    return records.version_info(row, model.name)


def rollback(
    session: Session,
    attempt: Attempt,
    *,
    sha256: str | None,
    reason: str | None = None,
    evidence: dict[str, Any] | None = None,
    replacing: str | None = None,
) -> VersionInfo:
    """The most recently demoted (still gated) version → production; production → gated.

    ``reason`` replaces "rolled back" on the audit row. With ``evidence`` (the bake watcher's
    figures) the rollback is automatic (reason by default "automatic rollback"): the figures go
    into the audit payload as ``"evidence"`` (a refusal's too) and the version leaving
    production is marked ``bake_failed_at`` (its demotion's audit row says so). Refuses
    ``evidence`` that is not a strict JSON object
    (:func:`bentogate.governance.documents.json_copy`). With ``replacing`` (the version the caller
    judged in production), refuses with :class:`ConcurrentChange` unless that version is still
    production when the model row is locked: of two watchers that saw the same version fail, the
    second changes nothing.
    """
    assert attempt.model is not None
    if evidence is not None:
        attempt.payload["evidence"] = json_copy(attempt, evidence, "evidence")
    model = queries.model_row(session, attempt.environment, attempt.model, lock=True)
    if replacing is not None:
        _check_still_production(session, attempt, model, replacing)
    row = queries.previous_row(session, model)
    attempt.to_state = State.PRODUCTION
    if row is None:
        attempt.refuse(
            NotFoundError,
            f"{model.name} has no demoted version to return to",
            "rollback needs a previous production version",
        )
    attempt.version, attempt.from_state = row.version, State(row.state)
    check_transition(Action.ROLLBACK, State(row.state), State.PRODUCTION, subject=attempt.subject)
    proof = check_release_rules(session, attempt, row, sha256 or row.sha256)
    automatic = evidence is not None
    why = reason or ("automatic rollback" if automatic else None)
    _switch(session, attempt, model, row, proof, reason=why, bake_failed=automatic)
    return records.version_info(row, model.name)


def _check_still_production(session: Session, attempt: Attempt, model: Model, version: str) -> None:
    current = queries.production_row(session, model)
    if current is None or current.version != version:
        now = f"{model.name}:{current.version}" if current is not None else "no version"
        attempt.payload["replacing"] = version
        attempt.refuse(
            ConcurrentChange,
            f"{model.name}:{version} is no longer production ({now} is)",
            "roll back only the version the caller saw in production",
        )


def check_release_rules(
    session: Session, attempt: Attempt, row: Version, sha256: str
) -> dict[str, object]:
    """Return the evidence (approval id, gate run id, the bake failure its gate lifts if any,
    and shadow run id when the policy requires one) allowing ``row`` into production.

    Raises :class:`IntegrityError` if ``sha256`` differs from the registered or approved bytes,
    :class:`IllegalTransition` without a valid approval, a build, a gate pass newer than it and
    than a failed bake (the bake rule), or (policy ``require_shadow``) a shadow pass newer than
    the build.
    """
    deployments.check_sha256(attempt, row, sha256, "artifact")
    now = attempt.now()
    approvals = (
        session.execute(
            sa.select(Approval)
            .where(Approval.version_id == row.id, Approval.decision == "approved")
            .order_by(Approval.id.desc())
        )
        .scalars()
        .all()
    )
    if approvals and all(a.sha256 != sha256 for a in approvals):
        attempt.refuse(
            IntegrityError,
            f"the approval of {attempt.subject} is for sha256 "
            f"{approvals[0].sha256[:12]}…, not {sha256[:12]}…",
            "artifact integrity",
        )
    valid = [
        a
        for a in approvals
        if a.sha256 == sha256 and (a.valid_until is None or a.valid_until > now)
    ]
    if not valid:
        why = "its approval expired" if approvals else "it has no approval"
        attempt.refuse(
            IllegalTransition, f"{attempt.subject}: {why}", "approval of the exact artifact"
        )
    gate = _passed_gate(session, attempt, row)
    baked = {} if row.bake_failed_at is None else {"bake_failed_at": row.bake_failed_at.isoformat()}
    evidence = shadow.release_evidence(session, attempt, row)
    return {"approval_id": valid[0].id, "gate_run_id": gate.id, **baked, **evidence}


def _passed_gate(session: Session, attempt: Attempt, row: Version) -> GateRun:
    """Return ``row``'s latest passed gate run; refuse unless it is newer than the build and
    than a failed bake (the bake rule)."""
    if row.built_at is None:
        attempt.refuse(
            IllegalTransition,
            f"{attempt.subject} has no recorded build",
            "a passed gate newer than the build",
        )
    gate = queries.latest_pass(session, GateRun, row)
    if gate is None or gate.created_at <= row.built_at:
        last = "no passed gate" if gate is None else f"last pass {gate.created_at.isoformat()}"
        attempt.refuse(
            IllegalTransition,
            f"{last}; build {row.built_at.isoformat()}",
            "a passed gate newer than the build",
        )
    if row.bake_failed_at is not None and gate.created_at <= row.bake_failed_at:
        attempt.refuse(
            IllegalTransition,
            f"{attempt.subject} failed its bake at {row.bake_failed_at.isoformat()} "
            "(automatic rollback); it needs a passed gate newer than that",
            BAKE_RULE,
        )
    return gate


def _switch(
    session: Session,
    attempt: Attempt,
    model: Model,
    row: Version,
    evidence: dict[str, object],
    *,
    reason: str | None = None,
    bake_failed: bool = False,
) -> None:
    now = attempt.now()
    old = queries.production_row(session, model)
    if old is not None:
        _demote(session, attempt, model, old, now, bake_failed=bake_failed)
    from_state = State(row.state)
    row.state, row.demoted_at, row.state_changed_at = State.PRODUCTION, None, now
    session.flush()
    moved = _move_roles(session, model, row)
    attempt.payload.update(evidence, replaced=old.version if old else None, deployments=moved)
    if reason is None:
        reason = "promoted" if attempt.action == Action.PROMOTE else "rolled back"
    attempt.record(session, from_state=from_state, to_state=State.PRODUCTION, reason=reason)


def _demote(
    session: Session,
    attempt: Attempt,
    model: Model,
    old: Version,
    now: datetime,
    *,
    bake_failed: bool,
) -> None:
    """The production version → gated (audited); with ``bake_failed`` (an automatic rollback)
    it is marked as having failed its bake ``now``."""
    check_transition(
        Action.DEMOTE, State.PRODUCTION, State.GATED, subject=f"{model.name}:{old.version}"
    )
    old.state, old.demoted_at, old.state_changed_at = State.GATED, now, now
    what = "rolled back from" if attempt.action == Action.ROLLBACK else "superseded by"
    reason, payload = f"{what} {attempt.subject}", {"by": attempt.version}
    if bake_failed:
        old.bake_failed_at = now
        reason = f"failed its bake; production rolled back to {attempt.subject}"
        payload["bake_failed_at"] = now.isoformat()
    session.flush()  # before the promotion: the partial unique index checks every row
    attempt.record(
        session,
        action=Action.DEMOTE,
        version=old.version,
        from_state=State.PRODUCTION,
        to_state=State.GATED,
        reason=reason,
        payload=payload,
    )


def _move_roles(session: Session, model: Model, row: Version) -> dict[str, list[int]]:
    """live → previous for other versions; this version's active deployments → live."""
    active = (
        session.execute(
            sa.select(Deployment)
            .join(Version, Deployment.version_id == Version.id)
            .where(Version.model_id == model.id, Deployment.stopped_at.is_(None))
            .order_by(Deployment.id)
        )
        .scalars()
        .all()
    )
    moved: dict[str, list[int]] = {"to_live": [], "to_previous": []}
    for dep in active:
        if dep.version_id == row.id and dep.role != Role.LIVE:
            dep.role = Role.LIVE
            moved["to_live"].append(dep.id)
        elif dep.version_id != row.id and dep.role == Role.LIVE:
            dep.role = Role.PREVIOUS
            moved["to_previous"].append(dep.id)
    return moved
