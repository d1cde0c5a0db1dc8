"""Gate policy per model and measured capacity per version.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03 00:00:00

New tables only: altering ``models`` or ``versions`` would make SQLite rebuild them (batch
mode), which drops the 0002 triggers and fights the foreign keys. A frozen snapshot: it does
not import ``bentogate.governance.schema``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _ts(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "gate_policies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("set_by", sa.String(128), nullable=False),
        _ts("set_at"),
        sa.UniqueConstraint("model_id", name="uq_gate_policies_model_id"),
    )
    op.create_table(
        "capacity_measurements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("rate", sa.Float, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        _ts("created_at"),
        sa.CheckConstraint("rate >= 0", name="ck_capacity_measurements_rate"),
    )
    op.create_index("ix_capacity_measurements_version_id", "capacity_measurements", ["version_id"])


def downgrade() -> None:
    op.drop_table("capacity_measurements")
    op.drop_table("gate_policies")
