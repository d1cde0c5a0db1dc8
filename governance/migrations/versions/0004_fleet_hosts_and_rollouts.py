"""Fleet: API hosts with heartbeats and agent reports; fleet rollouts.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04 00:00:00

New tables only (see 0003 for why existing tables are not altered). A frozen snapshot: it
does not import ``bentogate.governance.schema``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ROLLOUT_STATUSES = ("in_progress", "complete", "rolled_back", "failed")


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        _ts("first_seen"),
        _ts("last_heartbeat"),
        sa.Column("report", sa.JSON, nullable=False),
        sa.UniqueConstraint("environment", "name", name="uq_hosts_environment_name"),
    )
    listed = ", ".join(f"'{s}'" for s in ROLLOUT_STATUSES)
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("from_version", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("hosts", sa.JSON, nullable=False),
        _ts("started_at"),
        _ts("deadline"),
        _ts("finished_at", True),
        sa.Column("outcome", sa.JSON, nullable=False),
        sa.CheckConstraint(f"status IN ({listed})", name="ck_rollouts_status"),
    )
    op.create_index("ix_rollouts_model_id", "rollouts", ["model_id"])
    op.create_index(
        "uq_rollouts_one_in_progress",
        "rollouts",
        ["model_id"],
        unique=True,
        sqlite_where=sa.text("status = 'in_progress'"),
        postgresql_where=sa.text("status = 'in_progress'"),
    )


def downgrade() -> None:
    op.drop_table("rollouts")
    op.drop_table("hosts")
