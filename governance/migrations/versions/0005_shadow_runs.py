"""Shadow runs: a version's scores compared with the production version's on live requests.

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-05 00:00:00

New table only (see 0003 for why existing tables are not altered), guarded like ``gate_runs``
(0001): the version's foreign key and its index, the verdict CHECK. Like ``gate_runs`` it has
no append-only trigger (0002 guards ``audit_log`` and ``versions`` only); the audit row of
each run carries its verdict. A frozen snapshot: it does not import ``bentogate.governance.schema``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

VERDICTS = ("pass", "fail", "inconclusive")


def upgrade() -> None:
    listed = ", ".join(f"'{v}'" for v in VERDICTS)
    op.create_table(
        "shadow_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("results", sa.JSON, nullable=False),
        sa.Column("report_path", sa.Text, nullable=False),
        sa.Column("compared_with", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"verdict IN ({listed})", name="ck_shadow_runs_verdict"),
    )
    op.create_index("ix_shadow_runs_version_id", "shadow_runs", ["version_id"])


def downgrade() -> None:
    op.drop_table("shadow_runs")
