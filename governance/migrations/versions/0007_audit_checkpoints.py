"""Signed checkpoints of the audit chain's head: ``audit_checkpoints`` (append-only).

Revision ID: 0007
Revises: 0006
Create Date: 2025-01-07 00:00:00

Each row is what :mod:`bentogate.governance.checkpoints` signed with the key kept outside the
database: an audit row's id and hash, and when. The same checkpoints are appended to a log file
outside the database; ``verify_audit`` compares the chain with both. The table is append-only like
``audit_log`` (the 0002 guards, repeated for it). A frozen snapshot: it does not import
``bentogate.governance.schema``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

APPEND_ONLY = "audit_checkpoints is append-only"


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("row_id", sa.Integer(), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_checkpoints"),
        sa.UniqueConstraint("row_id", name="uq_audit_checkpoints_row_id"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE "
            f"ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION governance_refuse('{APPEND_ONLY}')"
        )
        op.execute(
            "CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints "
            f"FOR EACH STATEMENT EXECUTE FUNCTION governance_refuse('{APPEND_ONLY}')"
        )
        return
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER audit_checkpoints_no_{event.lower()} BEFORE {event} "
            f"ON audit_checkpoints BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
        )


def downgrade() -> None:
    op.drop_table("audit_checkpoints")  # its triggers go with it
