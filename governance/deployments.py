"""What runs where: deployments of versions on hosts' backend ports (HAProxy is rendered from
these), and the check that what is about to run is what was registered. Recording one needs an
approved-or-later version; only production runs as live."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bentogate.errors import GovernanceError, IllegalTransition, IntegrityError, NotFoundError
from bentogate.governance import queries, records
from bentogate.governance.attempt import Attempt
from bentogate.governance.records import DeploymentInfo
from bentogate.governance.schema import Deployment, Model, Version
from bentogate.governance.states import Action, Role, State, check_transition


def record(
    session: Session, attempt: Attempt, *, host: str, port: int, pid: int | None, role: Role
) -> DeploymentInfo:
    """Record a started deployment and return it. Refuses unapproved versions, ``live`` for a
    non-production version, and a host port another active deployment holds."""
    model, row = queries.locked_version(session, attempt)
    current = State(row.state)
    attempt.to_state = current
    attempt.payload.update(host=host, port=port, pid=pid, role=str(role))
    check_transition(Action.DEPLOY, current, current, subject=attempt.subject)
    role = Role(role)
    if role == Role.LIVE and current != State.PRODUCTION:
        attempt.refuse(
            IllegalTransition,
            f"{attempt.subject} is {current}, not production",
            "only the production version runs as live",
        )
    if not 1 <= port <= 65535:
        attempt.refuse(GovernanceError, f"port {port} is not 1..65535", "valid ports")
    holder = _active_on(session, host, port)
    if holder is not None:
        attempt.refuse(
            GovernanceError,
            f"port {port} on host '{host}' is held by deployment {holder.id}",
            "one active deployment per host port",
        )
    dep = Deployment(
        version_id=row.id, host=host, port=port, role=role, pid=pid, started_at=attempt.now()
    )
    session.add(dep)
    session.flush()
    attempt.payload["deployment_id"] = dep.id
    attempt.record(
        session, from_state=current, to_state=current, reason=f"running as {role} on {host}:{port}"
    )
    return records.deployment_info(dep, model.name, row.version)


def end(session: Session, attempt: Attempt, deployment_id: int) -> bool:
    """Mark a deployment stopped. Returns ``False`` if it already was (nothing changes).
    Raises :class:`NotFoundError` for an id unknown in this environment."""
    found = session.execute(
        sa.select(Model.name, Version.version)
        .join(Version, Version.model_id == Model.id)
        .join(Deployment, Deployment.version_id == Version.id)
        .where(Deployment.id == deployment_id, Model.environment == attempt.environment)
    ).one_or_none()
    if found is None:
        raise NotFoundError(
            f"unknown deployment {deployment_id} in environment '{attempt.environment}'"
        )
    attempt.model, attempt.version = found.name, found.version
    # the model lock serializes this with promote/rollback
    _, row = queries.locked_version(session, attempt)
    dep = session.get(Deployment, deployment_id, populate_existing=True)
    assert dep is not None
    if dep.stopped_at is not None:
        return False
    dep.stopped_at = attempt.now()
    attempt.payload.update(deployment_id=dep.id, host=dep.host, port=dep.port, role=str(dep.role))
    attempt.record(
        session,
        from_state=State(row.state),
        to_state=State(row.state),
        reason=f"stopped on {dep.host}:{dep.port}",
    )
    return True


def verify_artifact(session: Session, attempt: Attempt, *, sha256: str, what: str) -> None:
    """Audit that the bytes about to be served or built (``what``) are the registered ones;
    IntegrityError if not."""
    _, row = queries.locked_version(session, attempt)
    check_sha256(attempt, row, sha256, what)
    attempt.record(session, reason=f"{what} matches the registered sha256")


def check_sha256(attempt: Attempt, row: Version, sha256: str, what: str) -> None:
    """Note the measured and the registered sha256 in the attempt's payload; refuse with
    :class:`IntegrityError` (artifact integrity) unless they are equal. ``what`` names the
    measured bytes in the message."""
    attempt.payload.update(measured_sha256=sha256, registered_sha256=row.sha256)
    if sha256 != row.sha256:
        attempt.refuse(
            IntegrityError,
            f"{what} sha256 {sha256[:12]}… differs from the registered {row.sha256[:12]}…",
            "artifact integrity",
        )


def _active_on(session: Session, host: str, port: int) -> Deployment | None:
    return session.execute(
        sa.select(Deployment).where(
            Deployment.host == host, Deployment.port == port, Deployment.stopped_at.is_(None)
        )
    ).scalar_one_or_none()
