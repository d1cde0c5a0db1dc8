"""Initial governance schema: inventory, versions, evidence, deployments, audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00

A frozen snapshot: it does not import ``bentogate.governance.schema`` (the models may move on; this
must keep creating exactly what it created).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATES = (
    "registered",
    "validated",
    "approved",
    "staged",
    "gated",
    "production",
    "retired",
    "rejected",
)
ROLES = ("live", "candidate", "previous")
VERDICTS = ("pass", "fail", "inconclusive")
OUTCOMES = ("ok", "refused")
INVENTORY = ("active", "retired")
DECISIONS = ("approved", "rejected")
GENESIS = "0" * 64


def _one_of(column: str, values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=name)


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _str(name: str, length: int, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.String(length), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        _str("environment", 64),
        _str("name", 128),
        _str("owner", 128),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("intended_use", sa.Text, nullable=False),
        sa.Column("use_restrictions", sa.Text, nullable=False),
        _str("inventory_status", 16),
        sa.Column("next_review_due", sa.Date, nullable=True),
        sa.Column("production_port", sa.Integer, nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("environment", "name", name="uq_models_environment_name"),
        sa.UniqueConstraint(
            "environment", "production_port", name="uq_models_environment_production_port"
        ),
        _one_of("inventory_status", INVENTORY, "ck_models_inventory_status"),
        sa.CheckConstraint("production_port BETWEEN 1 AND 65535", name="ck_models_port"),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        _str("version", 64),
        _str("state", 16),
        _str("sha256", 64),
        sa.Column("feature_names", sa.JSON, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        _str("developer", 128),
        _str("validator", 128, True),
        _str("approver", 128, True),
        _str("bento_tag", 256, True),
        _str("image_tag", 256, True),
        _ts("built_at", True),
        _ts("registered_at"),
        _ts("state_changed_at"),
        _ts("demoted_at", True),
        sa.Column("artifact_uri", sa.Text, nullable=False),
        sa.UniqueConstraint("model_id", "version", name="uq_versions_model_id_version"),
        _one_of("state", STATES, "ck_versions_state"),
        sa.CheckConstraint("length(sha256) = 64", name="ck_versions_sha256"),
    )
    op.create_index("ix_versions_model_id", "versions", ["model_id"])
    op.create_index(
        "uq_versions_one_production",
        "versions",
        ["model_id"],
        unique=True,
        sqlite_where=sa.text("state = 'production'"),
        postgresql_where=sa.text("state = 'production'"),
    )
    op.create_table(
        "validations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        _str("validator", 128),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("results", sa.JSON, nullable=False),
        _ts("created_at"),
    )
    op.create_index("ix_validations_version_id", "validations", ["version_id"])
    op.create_table(
        "gate_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        _str("actor", 128),
        _str("verdict", 16),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("results", sa.JSON, nullable=False),
        sa.Column("report_path", sa.Text, nullable=False),
        _str("compared_with", 64, True),
        _ts("created_at"),
        _one_of("verdict", VERDICTS, "ck_gate_runs_verdict"),
    )
    op.create_index("ix_gate_runs_version_id", "gate_runs", ["version_id"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        _str("approver", 128),
        _str("decision", 16),
        sa.Column("comment", sa.Text, nullable=False),
        _str("sha256", 64),
        _ts("valid_until", True),
        sa.Column("gate_run_id", sa.Integer, sa.ForeignKey("gate_runs.id"), nullable=True),
        _ts("created_at"),
        _one_of("decision", DECISIONS, "ck_approvals_decision"),
    )
    op.create_index("ix_approvals_version_id", "approvals", ["version_id"])
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
        _str("host", 128),
        sa.Column("port", sa.Integer, nullable=False),
        _str("role", 16),
        sa.Column("pid", sa.Integer, nullable=True),
        _ts("started_at"),
        _ts("stopped_at", True),
        _one_of("role", ROLES, "ck_deployments_role"),
    )
    op.create_index("ix_deployments_version_id", "deployments", ["version_id"])
    op.create_index(
        "uq_deployments_active_port",
        "deployments",
        ["host", "port"],
        unique=True,
        sqlite_where=sa.text("stopped_at IS NULL"),
        postgresql_where=sa.text("stopped_at IS NULL"),
    )
    op.create_table(
        "policy_exceptions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=True),
        _str("rule", 64),
        sa.Column("reason", sa.Text, nullable=False),
        _str("granted_by", 128),
        _ts("valid_until", True),
        _ts("created_at"),
    )
    op.create_index("ix_policy_exceptions_model_id", "policy_exceptions", ["model_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        _ts("at"),
        _str("environment", 64),
        _str("actor", 128),
        _str("action", 32),
        _str("model", 128, True),
        _str("version", 64, True),
        _str("from_state", 16, True),
        _str("to_state", 16, True),
        _str("outcome", 8),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        _str("prev_hash", 64),
        _str("hash", 64),
        sa.UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),
        sa.UniqueConstraint("hash", name="uq_audit_log_hash"),
        _one_of("outcome", OUTCOMES, "ck_audit_log_outcome"),
    )
    op.create_index("ix_audit_log_model", "audit_log", ["model"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_id", sa.Integer, nullable=False),
        _str("last_hash", 64),
        sa.CheckConstraint("id = 1", name="ck_audit_head_single_row"),
    )
    op.bulk_insert(head, [{"id": 1, "last_id": 0, "last_hash": GENESIS}])


def downgrade() -> None:
    for table in (
        "audit_head",
        "audit_log",
        "policy_exceptions",
        "deployments",
        "approvals",
        "gate_runs",
        "validations",
        "versions",
        "models",
    ):
        op.drop_table(table)
