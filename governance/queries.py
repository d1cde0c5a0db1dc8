"""Every SELECT that more than one module needs: the row lookups each write starts from
(:func:`locked_version` takes the model row lock first) and the read-only views behind the
:class:`~bentogate.governance.Registry`'s queries, each returning
:mod:`~bentogate.governance.records`.

Lookups raise :class:`NotFoundError` naming what is unknown.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from bentogate.errors import NotFoundError
from bentogate.governance import records
from bentogate.governance.attempt import Attempt
from bentogate.governance.schema import (
    AuditRow,
    Deployment,
    GateRun,
    Host,
    Model,
    Rollout,
    ShadowRun,
    Version,
)
from bentogate.governance.states import Outcome, RolloutStatus, State, Verdict

#: a table of runs judged against a policy: gate runs, shadow runs
RunRow = TypeVar("RunRow", GateRun, ShadowRun)

# -- the database's clock ---------------------------------------------------------------------


def db_now(session: Session) -> datetime:
    """The database's current time, aware UTC: the one clock the fleet's times are stamped
    and judged by (heartbeats, rollout starts and deadlines), whatever the clocks of the
    agents and workstations say. PostgreSQL: ``now()`` (the transaction's start). SQLite:
    ``'now'`` as naive UTC text with milliseconds (``CURRENT_TIMESTAMP`` keeps only seconds)."""
    if session.get_bind().dialect.name == "sqlite":
        query = sa.select(sa.func.strftime("%Y-%m-%d %H:%M:%f", "now"))
        return datetime.fromisoformat(session.execute(query).scalar_one()).replace(tzinfo=UTC)
    moment: datetime = session.execute(sa.select(sa.func.now())).scalar_one()
    return moment.astimezone(UTC)


# -- row lookups -----------------------------------------------------------------------------


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


def locked_version(session: Session, attempt: Attempt) -> tuple[Model, Version]:
    """Lock the attempt's model row, return it and the version row; note the current state."""
    assert attempt.model is not None and attempt.version is not None
    model = model_row(session, attempt.environment, attempt.model, lock=True)
    row = version_row(session, model, attempt.version)
    attempt.from_state = State(row.state)
    return model, row


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


def latest_pass(session: Session, table: type[RunRow], row: Version) -> RunRow | None:
    """Return the latest passed run of ``row`` in ``table`` (gate or shadow runs), or ``None``."""
    query = (
        sa.select(table)
        .where(table.version_id == row.id, table.verdict == Verdict.PASS)
        .order_by(table.created_at.desc(), table.id.desc())
        .limit(1)
    )
    return session.execute(query).scalar_one_or_none()


# -- read-only views -------------------------------------------------------------------------


def models(session: Session, environment: str) -> list[records.ModelInfo]:
    """The inventory of ``environment``, by name."""
    query = (
        sa.select(Model)
        .where(Model.environment == environment)
        .options(selectinload(Model.gate_policy))
    )
    return [records.model_info(m) for m in session.execute(query.order_by(Model.name)).scalars()]


def get_model(session: Session, environment: str, name: str) -> records.ModelInfo:
    """The model ``name``."""
    return records.model_info(model_row(session, environment, name))


def get_version(
    session: Session, environment: str, model: str, version: str
) -> records.VersionInfo:
    """The version ``model:version``."""
    row = model_row(session, environment, model)
    return records.version_info(version_row(session, row, version), model)


def versions(session: Session, environment: str, model: str) -> list[records.VersionInfo]:
    """Every version of ``model`` in registration order."""
    row = model_row(session, environment, model)
    return [records.version_info(v, model) for v in version_rows(session, row)]


def production_version(
    session: Session, environment: str, model: str
) -> records.VersionInfo | None:
    """The production version of ``model``, or ``None``."""
    found = production_row(session, model_row(session, environment, model))
    return None if found is None else records.version_info(found, model)


def previous_version(session: Session, environment: str, model: str) -> records.VersionInfo | None:
    """The version a rollback of ``model`` would restore, or ``None``."""
    found = previous_row(session, model_row(session, environment, model))
    return None if found is None else records.version_info(found, model)


def gate_runs(
    session: Session, environment: str, model: str, version: str
) -> list[records.GateRunInfo]:
    """The gate runs of ``model:version``, oldest first."""
    runs = _runs(session, GateRun, environment, model, version)
    return [records.gate_info(r, model, version) for r in runs]


def shadow_runs(
    session: Session, environment: str, model: str, version: str
) -> list[records.ShadowRunInfo]:
    """The shadow runs of ``model:version``, oldest first."""
    runs = _runs(session, ShadowRun, environment, model, version)
    return [records.shadow_info(r, model, version) for r in runs]


def _runs(
    session: Session, table: type[RunRow], environment: str, model: str, version: str
) -> list[RunRow]:
    row = version_row(session, model_row(session, environment, model), version)
    query = sa.select(table).where(table.version_id == row.id).order_by(table.id)
    return list(session.execute(query).scalars())


def deployments(
    session: Session, environment: str, *, host: str | None, model: str | None, active_only: bool
) -> list[records.DeploymentInfo]:
    """Deployments of ``environment`` (filtered), oldest first."""
    query = (
        sa.select(Deployment, Model.name, Version.version)
        .join(Version, Deployment.version_id == Version.id)
        .join(Model, Version.model_id == Model.id)
        .where(Model.environment == environment)
        .order_by(Deployment.id)
    )
    if host is not None:
        query = query.where(Deployment.host == host)
    if model is not None:
        query = query.where(Model.name == model)
    if active_only:
        query = query.where(Deployment.stopped_at.is_(None))
    return [records.deployment_info(d, m, v) for d, m, v in session.execute(query)]


def audit_entries(
    session: Session, environment: str, model: str | None = None, version: str | None = None
) -> list[records.AuditEntry]:
    """The audit rows of ``environment`` (optionally one model/version), oldest first."""
    query = sa.select(AuditRow).where(AuditRow.environment == environment)
    if model is not None:
        query = query.where(AuditRow.model == model)
    if version is not None:
        query = query.where(AuditRow.version == version)
    return [records.audit_entry(r) for r in session.execute(query.order_by(AuditRow.id)).scalars()]


def rejection(session: Session, environment: str, model: str, version: str) -> str | None:
    """The reason of the audit row that rejected ``model:version`` (None if it is not
    rejected). Raises NotFoundError for an unknown model or version."""
    row = version_row(session, model_row(session, environment, model), version)
    if row.state != State.REJECTED:
        return None
    query = (
        sa.select(AuditRow.reason)
        .where(
            AuditRow.environment == environment,
            AuditRow.model == model,
            AuditRow.version == version,
            AuditRow.to_state == str(State.REJECTED),
            AuditRow.outcome == Outcome.OK,
        )
        .order_by(AuditRow.id.desc())
        .limit(1)
    )
    return session.execute(query).scalar_one_or_none()


def hosts(session: Session, environment: str) -> list[records.HostInfo]:
    """Every host of ``environment`` by name."""
    rows = session.execute(
        sa.select(Host).where(Host.environment == environment).order_by(Host.name)
    ).scalars()
    return [records.host_info(r) for r in rows]


def rollouts(
    session: Session, environment: str, model: str | None, active_only: bool
) -> list[records.RolloutInfo]:
    """Rollouts of ``environment`` (optionally one model's, or only those in progress),
    oldest first."""
    query = (
        sa.select(Rollout, Model.name)
        .join(Model, Rollout.model_id == Model.id)
        .where(Model.environment == environment)
        .order_by(Rollout.id)
    )
    if model is not None:
        query = query.where(Model.name == model)
    if active_only:
        query = query.where(Rollout.status == RolloutStatus.IN_PROGRESS)
    return [records.rollout_info(r, name) for r, name in session.execute(query)]
