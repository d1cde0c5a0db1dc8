"""Row lookups that fail with :class:`NotFoundError`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bentogate.errors import NotFoundError
from governance.schema import Model, Version
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
