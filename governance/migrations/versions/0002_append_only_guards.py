"""Database-side guards: the audit log is append-only, version identity is immutable.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02 00:00:00

Defence in depth behind the ORM: a stray UPDATE/DELETE through any client is refused by the
database itself. (Someone with DDL rights can still drop a trigger; the hash chain and
``verify_audit`` catch what they then change.)
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

IDENTITY = (
    "model_id",
    "version",
    "sha256",
    "feature_names",
    "developer",
    "artifact_uri",
    "registered_at",
    "threshold",
)
APPEND_ONLY = "audit_log is append-only"
IMMUTABLE = "versions are immutable: " + ", ".join(IDENTITY)


def _changed(cast: str) -> str:
    return " OR ".join(
        f"NEW.{c}{cast} IS DISTINCT FROM OLD.{c}{cast}"
        if c == "feature_names"
        else f"NEW.{c} IS DISTINCT FROM OLD.{c}"
        for c in IDENTITY
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION governance_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            f"FOR EACH ROW EXECUTE FUNCTION governance_refuse('{APPEND_ONLY}')"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            f"FOR EACH STATEMENT EXECUTE FUNCTION governance_refuse('{APPEND_ONLY}')"
        )
        op.execute(
            f"CREATE TRIGGER versions_immutable BEFORE UPDATE ON versions FOR EACH ROW "
            f"WHEN ({_changed('::text')}) "
            f"EXECUTE FUNCTION governance_refuse('{IMMUTABLE}')"
        )
        return
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
        )
    op.execute(
        f"CREATE TRIGGER versions_immutable BEFORE UPDATE ON versions "
        f"WHEN {_changed('')} BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}'); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER versions_immutable ON versions")
        op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION governance_refuse()")
        return
    for name in ("versions_immutable", "audit_log_no_delete", "audit_log_no_update"):
        op.execute(f"DROP TRIGGER {name}")
