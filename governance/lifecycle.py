"""The lifecycle steps before production: create model, register, validate, approve, build,
stage, gate, retire. Each runs inside the caller's write transaction, checks its rules, changes
the rows and appends its ``ok`` audit row; a refusal raises (the registry rolls back and audits
it)."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bentogate.errors import GovernanceError, IllegalTransition, SeparationOfDuties
from governance import queries, records
from governance.attempt import Attempt
from governance.records import GateRunInfo, ModelInfo, VersionInfo
from governance.schema import Approval, AuditHead, GateRun, Model, Validation, Version
from governance.states import GATE_TARGET, Action, State, Verdict, check_transition

_SHA256 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def locked_version(session: Session, attempt: Attempt) -> tuple[Model, Version]:
    """Lock the attempt's model row, return it and the version row; note the current state."""
    assert attempt.model is not None and attempt.version is not None
    model = queries.model_row(session, attempt.environment, attempt.model, lock=True)
    row = queries.version_row(session, model, attempt.version)
    attempt.from_state = State(row.state)
    return model, row


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


def ensure_model(
    session: Session,
    attempt: Attempt,
    *,
    owner: str,
    production_port: int,
    purpose: str,
    intended_use: str,
    use_restrictions: str,
    next_review_due: date | None,
) -> ModelInfo:
    """Return the model, creating it if new. Refuses a different production port for an
    existing model, or a port another model of the environment already uses."""
    # The head lock serializes model creation (every writer takes it), so two concurrent
    # ensure_model calls for one name cannot both insert.
    session.execute(sa.select(AuditHead.id).where(AuditHead.id == 1).with_for_update())
    assert attempt.model is not None
    query = sa.select(Model).where(Model.environment == attempt.environment)
    existing = {m.name: m for m in session.execute(query).scalars()}
    if attempt.model in existing:
        model = existing[attempt.model]
        if model.production_port != production_port:
            attempt.refuse(
                GovernanceError,
                f"{model.name} already has production port "
                f"{model.production_port}, not {production_port}",
                "one production port per model",
            )
        return records.model_info(model)
    if not 1 <= production_port <= 65535:
        attempt.refuse(GovernanceError, f"port {production_port} is not 1..65535", "valid ports")
    taken = next((m for m in existing.values() if m.production_port == production_port), None)
    if taken is not None:
        attempt.refuse(
            GovernanceError,
            f"port {production_port} is {taken.name}'s production port",
            "production ports are unique per environment",
        )
    model = Model(
        environment=attempt.environment,
        name=attempt.model,
        owner=owner,
        purpose=purpose,
        intended_use=intended_use,
        use_restrictions=use_restrictions,
        inventory_status="active",
        next_review_due=next_review_due,
        production_port=production_port,
        created_at=attempt.now(),
    )
    session.add(model)
    session.flush()
    attempt.record(
        session,
        reason="model added to the inventory",
        payload={"owner": owner, "production_port": production_port, "purpose": purpose},
    )
    return records.model_info(model)


def register_version(
    session: Session,
    attempt: Attempt,
    *,
    sha256: str,
    feature_names: list[str],
    threshold: float,
    metrics: dict[str, Any],
    artifact_uri: str,
) -> VersionInfo:
    """Create the next (or the given) version in state registered and return it."""
    assert attempt.model is not None
    model = queries.model_row(session, attempt.environment, attempt.model, lock=True)
    existing = queries.version_rows(session, model)
    if attempt.version is None:
        numbers = [int(v.version) for v in existing if v.version.isdigit()]
        attempt.version = str(max(numbers, default=0) + 1)
    attempt.to_state = State.REGISTERED
    _check_new_version(attempt, existing, sha256, feature_names, threshold)
    now = attempt.now()
    row = Version(
        model_id=model.id,
        version=attempt.version,
        state=State.REGISTERED,
        sha256=sha256,
        feature_names=list(feature_names),
        threshold=float(threshold),
        metrics=dict(metrics),
        developer=attempt.actor,
        registered_at=now,
        state_changed_at=now,
        artifact_uri=artifact_uri,
    )
    session.add(row)
    session.flush()
    attempt.record(
        session,
        reason="version registered",
        to_state=State.REGISTERED,
        payload={
            "sha256": sha256,
            "features": len(feature_names),
            "threshold": threshold,
            "artifact_uri": artifact_uri,
            "metrics": metrics,
        },
    )
    return records.version_info(row, model.name)


def _check_new_version(
    attempt: Attempt, existing: list[Version], sha256: str, features: list[str], threshold: float
) -> None:
    assert attempt.version is not None
    if not _VERSION.fullmatch(attempt.version):
        attempt.refuse(
            GovernanceError,
            f"version {attempt.version!r} is not 1-64 letters, digits, '.', '_' or '-'",
            "version names",
        )
    if any(v.version == attempt.version for v in existing):
        attempt.refuse(
            GovernanceError, f"{attempt.subject} already exists", "versions are immutable"
        )
    if not _SHA256.fullmatch(sha256):
        attempt.refuse(
            GovernanceError,
            f"sha256 {sha256!r} is not 64 lowercase hex digits",
            "artifact identity",
        )
    if not features or len(set(features)) != len(features) or not all(features):
        attempt.refuse(
            GovernanceError,
            "feature names must be a non-empty list of unique non-empty names",
            "feature schema",
        )
    if not math.isfinite(threshold):
        attempt.refuse(GovernanceError, f"threshold {threshold} is not finite", "threshold")


def validate(
    session: Session, attempt: Attempt, *, results: dict[str, Any], passed: bool
) -> VersionInfo:
    """registered → validated (passed) or → rejected; the validator is not the developer."""
    model, row = locked_version(session, attempt)
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
    reason = "validation passed" if passed else "validation failed"
    move(session, attempt, row, target, reason, {"passed": passed, "results": results})
    return records.version_info(row, model.name)


def approve(
    session: Session, attempt: Attempt, *, comment: str, valid_until: datetime | None
) -> VersionInfo:
    """validated → approved; the approver is neither developer nor validator. The approval
    row binds the version's sha256."""
    model, row = locked_version(session, attempt)
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
    session: Session, attempt: Attempt, *, bento_tag: str, image_tag: str | None
) -> VersionInfo:
    """Record a build of an approved (or later) version; older gate passes stop counting."""
    model, row = locked_version(session, attempt)
    current = State(row.state)
    attempt.to_state = current
    check_transition(Action.BUILD, current, current, subject=attempt.subject)
    if not bento_tag:
        attempt.refuse(GovernanceError, "bento_tag is empty", "builds are named")
    row.bento_tag, row.image_tag, row.built_at = bento_tag, image_tag, attempt.now()
    move(
        session,
        attempt,
        row,
        current,
        f"built {bento_tag}",
        {"bento_tag": bento_tag, "image_tag": image_tag},
    )
    return records.version_info(row, model.name)


def stage(session: Session, attempt: Attempt) -> VersionInfo:
    """approved → staged; staged, gated and production stay as they are."""
    model, row = locked_version(session, attempt)
    current = State(row.state)
    target = State.STAGED if current == State.APPROVED else current
    move(session, attempt, row, target, "deployed as candidate")
    return records.version_info(row, model.name)


def record_gate(
    session: Session,
    attempt: Attempt,
    *,
    policy: dict[str, Any],
    results: dict[str, Any],
    verdict: str,
    report_path: str,
    compared_with: str | None,
) -> GateRunInfo:
    """Store a gate run of a staged/gated version: pass → gated, fail → rejected,
    inconclusive → unchanged."""
    model, row = locked_version(session, attempt)
    if verdict not in set(Verdict):
        attempt.refuse(
            GovernanceError,
            f"verdict {verdict!r} is not pass, fail or inconclusive",
            "gate verdicts",
        )
    current, parsed = State(row.state), Verdict(verdict)
    target = GATE_TARGET[parsed] or current
    attempt.to_state = target
    check_transition(Action.GATE, current, target, subject=attempt.subject)
    run = GateRun(
        version_id=row.id,
        actor=attempt.actor,
        verdict=parsed,
        policy=dict(policy),
        results=dict(results),
        report_path=report_path,
        compared_with=compared_with,
        created_at=attempt.now(),
    )
    session.add(run)
    session.flush()
    move(
        session,
        attempt,
        row,
        target,
        f"gate {parsed}",
        {
            "gate_run_id": run.id,
            "verdict": str(parsed),
            "report_path": report_path,
            "compared_with": compared_with,
        },
    )
    return records.gate_info(run, model.name, row.version)


def retire(session: Session, attempt: Attempt, *, reason: str) -> VersionInfo:
    """Any state except production → retired (kept in the inventory)."""
    model, row = locked_version(session, attempt)
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
