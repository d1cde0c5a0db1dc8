"""Row lookups that fail with :class:`NotFoundError`, and ORM row → info conversions."""

from __future__ import annotations

import copy
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bentogate.errors import NotFoundError
from governance.info import DeploymentInfo, GateRunInfo, ModelInfo, VersionInfo
from governance.schema import Deployment, GateRun, Model, Version
from governance.states import State


def model_row(session: Session, environment: str, name: str, *, lock: bool = False) -> Model:
    """Return the model row; with ``lock`` it is ``SELECT … FOR UPDATE`` (a no-op on SQLite,
    whose writers are serialized by ``BEGIN IMMEDIATE``). Raises :class:`NotFoundError`."""
    query = sa.select(Model).where(Model.environment == environment, Model.name == name)
    if lock:
        query = query.with_for_update()
    row = session.execute(query).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"unknown model '{name}' in environment '{environment}'")
    return row


def version_row(session: Session, model: Model, version: str) -> Version:
    """Return the version row of ``model``. Raises :class:`NotFoundError` listing known ones."""
    row = session.execute(
        sa.select(Version).where(Version.model_id == model.id, Version.version == version)
    ).scalar_one_or_none()
    if row is None:
        known = ", ".join(v.version for v in version_rows(session, model)) or "none"
        raise NotFoundError(f"unknown version {model.name}:{version} (known versions: {known})")
    return row


def version_rows(session: Session, model: Model) -> list[Version]:
    """Return all versions of ``model`` in registration order."""
    query = sa.select(Version).where(Version.model_id == model.id).order_by(Version.id)
    return list(session.execute(query).scalars())


def production_row(session: Session, model: Model) -> Version | None:
    """Return the production version of ``model`` or ``None``."""
    query = sa.select(Version).where(
        Version.model_id == model.id, Version.state == State.PRODUCTION
    )
    return session.execute(query).scalar_one_or_none()


def previous_row(session: Session, model: Model) -> Version | None:
    """Return the most recently demoted version still able to return (state gated), or ``None``."""
    query = (
        sa.select(Version)
        .where(
            Version.model_id == model.id,
            Version.state == State.GATED,
            Version.demoted_at.is_not(None),
        )
        .order_by(Version.demoted_at.desc(), Version.id.desc())
        .limit(1)
    )
    return session.execute(query).scalar_one_or_none()


def model_info(row: Model) -> ModelInfo:
    """Return the public view of a model row."""
    return ModelInfo(
        name=row.name,
        owner=row.owner,
        purpose=row.purpose,
        production_port=row.production_port,
        created_at=row.created_at,
        environment=row.environment,
        intended_use=row.intended_use,
        use_restrictions=row.use_restrictions,
        inventory_status=row.inventory_status,
        next_review_due=row.next_review_due,
        gate_policy=None if row.gate_policy is None else _copy(row.gate_policy.policy),
    )


def version_info(row: Version, model_name: str) -> VersionInfo:
    """Return the public view of a version row (JSON fields copied, so callers cannot alias)."""
    return VersionInfo(
        model=model_name,
        version=row.version,
        state=State(row.state),
        sha256=row.sha256,
        feature_names=list(row.feature_names),
        threshold=row.threshold,
        metrics=_copy(row.metrics),
        developer=row.developer,
        validator=row.validator,
        approver=row.approver,
        bento_tag=row.bento_tag,
        built_at=row.built_at,
        image_tag=row.image_tag,
        registered_at=row.registered_at,
        artifact_uri=row.artifact_uri,
        demoted_at=row.demoted_at,
        capacity_rps=row.capacity_rps,
    )


def gate_info(row: GateRun, model_name: str, version: str) -> GateRunInfo:
    """Return the public view of a gate run row."""
    return GateRunInfo(
        id=row.id,
        model=model_name,
        version=version,
        verdict=str(row.verdict),
        policy=_copy(row.policy),
        results=_copy(row.results),
        report_path=row.report_path,
        compared_with=row.compared_with,
        created_at=row.created_at,
        actor=row.actor,
    )


def deployment_info(row: Deployment, model_name: str, version: str) -> DeploymentInfo:
    """Return the public view of a deployment row."""
    return DeploymentInfo(
        id=row.id,
        host=row.host,
        model=model_name,
        version=version,
        port=row.port,
        role=row.role,
        pid=row.pid,
        started_at=row.started_at,
        stopped_at=row.stopped_at,
    )


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(value))
