"""Refusals the database itself records: ``database_refusals`` (append-only), and how far the
audit chain has taken them in (``audit_head.refusals_sealed``).

Revision ID: 0008
Revises: 0007
Create Date: 2025-01-08 00:00:00

On PostgreSQL the duties trigger of ``bentogate db roles`` refuses what a role may not write,
from any client, inside the writer's transaction, which the refusal rolls back. So that the
refusal is kept all the same, the trigger writes it here first in a transaction of its own
(``dblink`` back into the same database); the next audited write appends it to the hash chain
(:mod:`bentogate.governance.audit`). On SQLite nothing writes this table (no roles, no trigger).
A frozen snapshot: it does not import ``bentogate.governance.schema``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

APPEND_ONLY = "database_refusals is append-only"


def upgrade() -> None:
    op.create_table(
        "database_refusals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("environment", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_database_refusals"),
    )
    with op.batch_alter_table("audit_head") as batch:
        batch.add_column(
            sa.Column("refusals_sealed", sa.Integer(), nullable=False, server_default="0")
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER database_refusals_append_only BEFORE UPDATE OR DELETE "
            f"ON database_refusals FOR EACH ROW EXECUTE FUNCTION governance_refuse('{APPEND_ONLY}')"
        )
        op.execute(
            "CREATE TRIGGER database_refusals_no_truncate BEFORE TRUNCATE ON database_refusals "
            f"FOR EACH STATEMENT EXECUTE FUNCTION governance_refuse('{APPEND_ONLY}')"
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("refusals_sealed")
    op.drop_table("database_refusals")  # its triggers go with it
