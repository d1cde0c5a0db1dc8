"""The ORM schema (SQLAlchemy 2 typed). The migrations under ``migrations/versions`` create the
same tables; ``tests/integration/governance/test_gov_migrations.py`` checks that they agree.

Portable across SQLite and PostgreSQL: short string enums (no native enum types), UTC
timestamps, JSON columns, partial unique indexes spelled for both dialects.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column, relationship

from bentogate.governance.states import Outcome, Role, State, Verdict

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
GENESIS_HASH = "0" * 64


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every dialect.

    SQLite has no time zones, so the value is stored as naive UTC there.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: governance stores UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def str_enum(enum_cls: type[enum.StrEnum], length: int = 16) -> sa.Enum:
    """A short VARCHAR holding ``enum_cls`` values; the CHECK lives in the migration."""
    return sa.Enum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda cls: [m.value for m in cls],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: sa.JSON()}


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (
        sa.UniqueConstraint("environment", "name"),
        sa.UniqueConstraint("environment", "production_port"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(128))
    owner: Mapped[str] = mapped_column(sa.String(128))
    purpose: Mapped[str] = mapped_column(sa.Text, default="")
    intended_use: Mapped[str] = mapped_column(sa.Text, default="")
    use_restrictions: Mapped[str] = mapped_column(sa.Text, default="")
    inventory_status: Mapped[str] = mapped_column(sa.String(16), default="active")
    next_review_due: Mapped[date | None] = mapped_column(sa.Date)
    production_port: Mapped[int]
    created_at: Mapped[datetime]

    versions: Mapped[list[Version]] = relationship(back_populates="model")
    gate_policy: Mapped[GatePolicy | None] = relationship()


class GatePolicy(Base):
    """The current gate policy of a model (opaque JSON; its history is in the audit log)."""

    __tablename__ = "gate_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id"), unique=True)
    policy: Mapped[dict[str, Any]]
    set_by: Mapped[str] = mapped_column(sa.String(128))
    set_at: Mapped[datetime]


class CapacityMeasurement(Base):
    """A measured capacity of a version: the highest request rate that met the gate policy."""

    __tablename__ = "capacity_measurements"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("versions.id"), index=True)
    actor: Mapped[str] = mapped_column(sa.String(128))
    rate: Mapped[float] = mapped_column(sa.Float)
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (
        sa.UniqueConstraint("model_id", "version"),
        # The database itself allows at most one production version per model (and a model
        # row belongs to one environment).
        sa.Index(
            "uq_versions_one_production",
            "model_id",
            unique=True,
            sqlite_where=sa.text("state = 'production'"),
            postgresql_where=sa.text("state = 'production'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id"), index=True)
    version: Mapped[str] = mapped_column(sa.String(64))
    state: Mapped[State] = mapped_column(str_enum(State))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    feature_names: Mapped[list[str]] = mapped_column(sa.JSON)
    threshold: Mapped[float] = mapped_column(sa.Float)
    metrics: Mapped[dict[str, Any]]
    developer: Mapped[str] = mapped_column(sa.String(128))
    validator: Mapped[str | None] = mapped_column(sa.String(128))
    approver: Mapped[str | None] = mapped_column(sa.String(128))
    bento_tag: Mapped[str | None] = mapped_column(sa.String(256))
    image_tag: Mapped[str | None] = mapped_column(sa.String(256))
    #: the engine's id of the image (``sha256:<hex>``) built as image_tag (migration 0009)
    image_id: Mapped[str | None] = mapped_column(sa.String(80))
    built_at: Mapped[datetime | None]
    registered_at: Mapped[datetime]
    state_changed_at: Mapped[datetime]
    demoted_at: Mapped[datetime | None]
    artifact_uri: Mapped[str] = mapped_column(sa.Text)
    #: when an automatic rollback took it out of production (its bake failed; migration 0006)
    bake_failed_at: Mapped[datetime | None]
    #: the latest measured capacity (req/s), loaded with the row; not a column
    capacity_rps: Mapped[float | None] = column_property(
        sa.select(CapacityMeasurement.rate)
        .where(CapacityMeasurement.version_id == id)
        .order_by(CapacityMeasurement.id.desc())
        .limit(1)
        .correlate_except(CapacityMeasurement)
        .scalar_subquery()
    )

    model: Mapped[Model] = relationship(back_populates="versions")


#: what may never change after a version is registered
IMMUTABLE_VERSION_FIELDS = (
    "model_id",
    "version",
    "sha256",
    "feature_names",
    "developer",
    "artifact_uri",
    "registered_at",
    "threshold",
)


@event.listens_for(Version, "before_update")
def _versions_are_immutable(mapper: Any, connection: Any, target: Version) -> None:
    state = sa.inspect(target)
    changed = [f for f in IMMUTABLE_VERSION_FIELDS if state.attrs[f].history.deleted]
    if changed:
        raise ValueError(f"version fields are immutable: {', '.join(changed)}")


class Validation(Base):
    __tablename__ = "validations"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("versions.id"), index=True)
    validator: Mapped[str] = mapped_column(sa.String(128))
    passed: Mapped[bool]
    results: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class GateRun(Base):
    __tablename__ = "gate_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("versions.id"), index=True)
    actor: Mapped[str] = mapped_column(sa.String(128))
    verdict: Mapped[Verdict] = mapped_column(str_enum(Verdict))
    policy: Mapped[dict[str, Any]]
    results: Mapped[dict[str, Any]]
    report_path: Mapped[str] = mapped_column(sa.Text)
    compared_with: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]


class ShadowRun(Base):
    """A shadow run: the version scored recent live requests beside the production version
    (``compared_with``); the policy it was judged against is frozen into it. Its verdict
    changes no state (promotion reads it: :mod:`bentogate.governance.shadow`)."""

    __tablename__ = "shadow_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("versions.id"), index=True)
    actor: Mapped[str] = mapped_column(sa.String(128))
    verdict: Mapped[Verdict] = mapped_column(str_enum(Verdict))
    policy: Mapped[dict[str, Any]]
    results: Mapped[dict[str, Any]]
    report_path: Mapped[str] = mapped_column(sa.Text)
    compared_with: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]


class Approval(Base):
    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("versions.id"), index=True)
    approver: Mapped[str] = mapped_column(sa.String(128))
    decision: Mapped[str] = mapped_column(sa.String(16))
    comment: Mapped[str] = mapped_column(sa.Text, default="")
    sha256: Mapped[str] = mapped_column(sa.String(64))
    valid_until: Mapped[datetime | None]
    gate_run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("gate_runs.id"))
    created_at: Mapped[datetime]


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = (
        # one active deployment per host port
        sa.Index(
            "uq_deployments_active_port",
            "host",
            "port",
            unique=True,
            sqlite_where=sa.text("stopped_at IS NULL"),
            postgresql_where=sa.text("stopped_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("versions.id"), index=True)
    host: Mapped[str] = mapped_column(sa.String(128))
    port: Mapped[int]
    role: Mapped[Role] = mapped_column(str_enum(Role))
    pid: Mapped[int | None]
    started_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]


class Host(Base):
    """An API host of the fleet: its last heartbeat and what its agent last reported."""

    __tablename__ = "hosts"
    __table_args__ = (sa.UniqueConstraint("environment", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(128))
    first_seen: Mapped[datetime]
    last_heartbeat: Mapped[datetime]
    report: Mapped[dict[str, Any]]


class Rollout(Base):
    """A fleet promotion: which version, by whom, to which hosts, by when, and how it ended."""

    __tablename__ = "rollouts"
    __table_args__ = (
        # one rollout in progress per model: fleet promotions serialize in the database
        sa.Index(
            "uq_rollouts_one_in_progress",
            "model_id",
            unique=True,
            sqlite_where=sa.text("status = 'in_progress'"),
            postgresql_where=sa.text("status = 'in_progress'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id"), index=True)
    version: Mapped[str] = mapped_column(sa.String(64))
    from_version: Mapped[str | None] = mapped_column(sa.String(64))
    actor: Mapped[str] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(16))
    hosts: Mapped[list[str]] = mapped_column(sa.JSON)
    started_at: Mapped[datetime]
    deadline: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[dict[str, Any]]


class PolicyException(Base):
    __tablename__ = "policy_exceptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id"), index=True)
    version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("versions.id"))
    rule: Mapped[str] = mapped_column(sa.String(64))
    reason: Mapped[str] = mapped_column(sa.Text)
    granted_by: Mapped[str] = mapped_column(sa.String(128))
    valid_until: Mapped[datetime | None]
    created_at: Mapped[datetime]


class AuditRow(Base):
    """Append-only; ``id`` is assigned by :mod:`bentogate.governance.audit` under the head lock."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    environment: Mapped[str] = mapped_column(sa.String(64))
    actor: Mapped[str] = mapped_column(sa.String(128))
    action: Mapped[str] = mapped_column(sa.String(32))
    model: Mapped[str | None] = mapped_column(sa.String(128), index=True)
    version: Mapped[str | None] = mapped_column(sa.String(64))
    from_state: Mapped[str | None] = mapped_column(sa.String(16))
    to_state: Mapped[str | None] = mapped_column(sa.String(16))
    outcome: Mapped[Outcome] = mapped_column(str_enum(Outcome, 8))
    reason: Mapped[str] = mapped_column(sa.Text)
    payload: Mapped[str] = mapped_column(sa.Text)  # canonical JSON: hashed exactly as stored
    # unique: a row can be the successor of only one row, so the chain cannot fork
    prev_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)


class AuditHead(Base):
    """One row: the chain's last id and hash. Locking it serializes appends; comparing it with
    the log detects deleted tail rows."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last_id: Mapped[int]
    last_hash: Mapped[str] = mapped_column(sa.String(64))
    #: the last :class:`DatabaseRefusal` the chain holds (appended as a ``refused`` row)
    refusals_sealed: Mapped[int] = mapped_column(server_default="0")


class DatabaseRefusal(Base):
    """A write the PostgreSQL duties trigger refused, kept by the trigger in a transaction of its
    own (the writer's is rolled back); append-only. The next audited write seals it into the
    chain (:func:`bentogate.governance.audit.append`)."""

    __tablename__ = "database_refusals"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]  # the database's clock
    environment: Mapped[str | None] = mapped_column(sa.String(64))
    actor: Mapped[str] = mapped_column(sa.String(128))
    action: Mapped[str] = mapped_column(sa.String(32))
    model: Mapped[str | None] = mapped_column(sa.String(128))
    version: Mapped[str | None] = mapped_column(sa.String(64))
    reason: Mapped[str] = mapped_column(sa.Text)


class AuditCheckpoint(Base):
    """A signed checkpoint of the chain's head (:mod:`bentogate.governance.checkpoints`);
    append-only. The same checkpoint is appended to the checkpoint log outside the database."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    row_id: Mapped[int] = mapped_column(unique=True)
    row_hash: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[str] = mapped_column(sa.String(40))  # ISO 8601 text: signed exactly as stored
    key_id: Mapped[str] = mapped_column(sa.String(64))
    signature: Mapped[str] = mapped_column(sa.String(128))
