"""Alembic from empty, down and up again, and the migrated schema equals the ORM models."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from governance_support import register, shadow

from bentogate.errors import ConfigError
from bentogate.governance import Registry, State
from bentogate.governance.migrate import VERSION_TABLE, head_revision
from bentogate.governance.schema import Base

pytestmark = pytest.mark.integration
TABLES = {
    "models",
    "versions",
    "validations",
    "approvals",
    "gate_runs",
    "deployments",
    "policy_exceptions",
    "audit_log",
    "audit_head",
    "gate_policies",
    "capacity_measurements",
    "hosts",
    "rollouts",
    "database_refusals",
    "shadow_runs",
    "audit_checkpoints",
}


def _tables(raw: sa.Engine) -> set[str]:
    return set(sa.inspect(raw).get_table_names()) - {VERSION_TABLE}


def test_upgrade_from_empty(make_registry: object, raw: sa.Engine) -> None:
    reg: Registry = make_registry()  # type: ignore[operator]
    assert reg.schema_revision() is None
    with pytest.raises(ConfigError, match=r"call Registry.upgrade\(\)"):
        reg.models()
    reg.upgrade()
    reg.upgrade()  # idempotent
    assert reg.schema_revision() == head_revision()
    assert _tables(raw) == TABLES
    assert reg.verify_audit() == (True, None, "audit chain intact: 0 rows")


def test_downgrade_upgrade_round_trip(reg: Registry, raw: sa.Engine) -> None:
    reg.ensure_model("fraud", owner="risk", production_port=10000, actor="a")
    reg.downgrade()
    assert reg.schema_revision() is None
    assert _tables(raw) == set()
    reg.upgrade()
    assert _tables(raw) == TABLES
    assert reg.models() == []
    reg.ensure_model("fraud", owner="risk", production_port=10000, actor="a")
    assert reg.verify_audit()[0]


def test_migrations_match_models(reg: Registry, raw: sa.Engine) -> None:
    with raw.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_database_itself_allows_one_production_version(
    reg: Registry, raw: sa.Engine, advance: object
) -> None:
    advance("fraud", State.PRODUCTION)  # type: ignore[operator]
    advance("fraud", State.GATED)  # type: ignore[operator]
    with pytest.raises(sa.exc.IntegrityError), raw.begin() as conn:
        conn.execute(sa.text("UPDATE versions SET state = 'production' WHERE version = '2'"))
    with pytest.raises(sa.exc.IntegrityError), raw.begin() as conn:
        conn.execute(sa.text("UPDATE versions SET state = 'shipped' WHERE version = '2'"))


def test_step_down_to_0001_and_back(reg: Registry, raw: sa.Engine) -> None:
    reg.ensure_model("fraud", owner="risk", production_port=10000, actor="a")
    edit = "UPDATE audit_log SET reason = 'x' WHERE id = 1"
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), raw.begin() as conn:
        conn.execute(sa.text(edit))
    reg.downgrade("0001")
    assert reg.schema_revision() == "0001"
    with raw.begin() as conn:
        conn.execute(sa.text(edit))  # unguarded at 0001 ...
    reg.upgrade()
    assert reg.schema_revision() == head_revision() == "0009"
    assert reg.verify_audit()[:2] == (False, 1)  # ... but the chain still tells
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), raw.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log"))


def test_step_down_to_0002_and_back(reg: Registry, raw: sa.Engine, advance: object) -> None:
    version = advance("fraud", State.GATED)  # type: ignore[operator]
    reg.set_gate_policy("fraud", {"p99_ms": 25}, actor="a")
    reg.record_capacity("fraud", version, actor="ci", rate=100.0, details={})
    reg.downgrade("0002")
    assert reg.schema_revision() == "0002"
    newer = {"gate_policies", "capacity_measurements", "hosts", "rollouts", "shadow_runs"}
    newer |= {"audit_checkpoints", "database_refusals"}
    assert _tables(raw) == TABLES - newer
    reg.upgrade()
    assert reg.schema_revision() == head_revision()
    assert reg.verify_audit()[0]  # the audit rows of policy and capacity stayed
    assert reg.gate_policy("fraud") is None
    assert reg.get_version("fraud", version).capacity_rps is None
    assert [e.action for e in reg.audit("fraud")][-2:] == ["set_policy", "capacity"]


def test_step_down_to_0004_and_back(reg: Registry, raw: sa.Engine, advance: object) -> None:
    advance("fraud", State.PRODUCTION)  # type: ignore[operator]
    version = advance("fraud", State.GATED)  # type: ignore[operator]
    shadow(reg, version)
    reg.downgrade("0004")
    assert reg.schema_revision() == "0004"
    assert _tables(raw) == TABLES - {"shadow_runs", "audit_checkpoints", "database_refusals"}
    reg.upgrade()
    assert reg.schema_revision() == head_revision()
    assert reg.verify_audit()[0]  # the shadow run's audit row stayed
    assert reg.shadow_runs("fraud", version) == []
    assert reg.audit("fraud", version)[-1].action == "shadow"
    with pytest.raises(sa.exc.IntegrityError), raw.begin() as conn:  # the CHECK is back too
        conn.execute(
            sa.text(
                "INSERT INTO shadow_runs (version_id, actor, verdict, policy, results, "
                "report_path, compared_with, created_at) "
                "VALUES (2, 'x', 'maybe', '{}', '{}', 'r', '1', CURRENT_TIMESTAMP)"
            )
        )


def _columns(raw: sa.Engine, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(raw).get_columns(table)}


def test_step_down_to_0005_and_back(reg: Registry, raw: sa.Engine, advance: object) -> None:
    advance("fraud", State.PRODUCTION)  # type: ignore[operator]
    advance("fraud", State.GATED)  # type: ignore[operator]
    with raw.begin() as conn:
        conn.execute(sa.text("UPDATE versions SET bake_failed_at = CURRENT_TIMESTAMP"))
    reg.downgrade("0005")
    assert reg.schema_revision() == "0005"
    assert "bake_failed_at" not in _columns(raw, "versions")
    assert _tables(raw) == TABLES - {"audit_checkpoints", "database_refusals"}
    # versions' newer columns (0006 and later) are missing: the first one read is named
    behind = r"schema in .* is older than this code: call Registry\.upgrade\(\) "
    behind += r"\(.*(bake_failed_at|image_id)"
    with pytest.raises(ConfigError, match=behind):  # this code reads versions' new column
        reg.versions("fraud")
    with pytest.raises(ConfigError, match=behind):  # and so does every write of a version
        register(reg)
    reg.upgrade()
    assert reg.schema_revision() == head_revision()
    assert reg.verify_audit()[0]
    assert "bake_failed_at" in _columns(raw, "versions")
    assert [v.bake_failed_at for v in reg.versions("fraud")] == [None, None]  # the marks are gone
    # adding and dropping the column kept 0002's guard on version identity
    with pytest.raises(sa.exc.DBAPIError, match="immutable"), raw.begin() as conn:
        conn.execute(
            sa.text("UPDATE versions SET sha256 = :s WHERE version = '2'"), {"s": "b" * 64}
        )


def test_the_identity_guard_lets_the_bake_mark_change(
    reg: Registry, raw: sa.Engine, advance: object
) -> None:
    advance("fraud", State.GATED)  # type: ignore[operator]
    with raw.begin() as conn:
        conn.execute(sa.text("UPDATE versions SET bake_failed_at = CURRENT_TIMESTAMP"))
    assert reg.get_version("fraud", "1").bake_failed_at is not None
    for column, value in (("version", "9"), ("sha256", "b" * 64), ("threshold", 0.9)):
        with pytest.raises(sa.exc.DBAPIError, match="immutable"), raw.begin() as conn:
            conn.execute(sa.text(f"UPDATE versions SET {column} = :v"), {"v": value})


def test_step_down_to_0006_and_back(reg: Registry, raw: sa.Engine) -> None:
    reg.ensure_model("fraud", owner="risk", production_port=10000, actor="a")
    insert = (
        "INSERT INTO audit_checkpoints (row_id, row_hash, at, key_id, signature) "
        "VALUES (1, 'h', 't', 'k', 's')"
    )
    with raw.begin() as conn:
        conn.execute(sa.text(insert))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), raw.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_checkpoints"))
    reg.downgrade("0006")
    assert _tables(raw) == TABLES - {"audit_checkpoints", "database_refusals"}
    reg.upgrade()
    assert reg.schema_revision() == head_revision()
    assert _tables(raw) == TABLES


def test_step_down_to_0008_and_back(reg: Registry, raw: sa.Engine, advance: object) -> None:
    version = advance("fraud", State.APPROVED)  # type: ignore[operator]
    image = "sha256:" + "c" * 64
    reg.record_build("fraud", version, actor="ci", bento_tag="fraud:1", image_tag="r/fraud:1",
                     image_id=image)  # fmt: skip
    assert reg.get_version("fraud", version).image_id == image
    reg.downgrade("0008")
    assert "image_id" not in _columns(raw, "versions")
    assert reg.verify_audit()[0]  # the build's audit row (with the id) stays
    reg.upgrade()
    assert reg.schema_revision() == head_revision()
    assert reg.get_version("fraud", version).image_id is None
    assert reg.audit("fraud", version)[-1].payload["image_id"] == image
    # adding and dropping the column kept 0002's guard on version identity
    with pytest.raises(sa.exc.DBAPIError, match="immutable"), raw.begin() as conn:
        conn.execute(sa.text("UPDATE versions SET sha256 = :s"), {"s": "b" * 64})
