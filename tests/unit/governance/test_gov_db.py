"""SQLite setup, error translation at the boundary, type guards."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from governance_support import register

from bentogate.errors import ConfigError, DatabaseUnavailable, GovernanceError, NotFoundError
from bentogate.governance import Registry


def test_sqlite_is_wal_with_foreign_keys(reg: Registry, sqlite_url: str) -> None:
    reg.ensure_model("fraud", owner="o", production_port=10000, actor="a")
    with reg._db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_unmigrated_database_says_what_to_do(sqlite_url: str) -> None:
    with Registry(sqlite_url) as reg, pytest.raises(ConfigError, match=r"call Registry\.upgrade"):
        reg.get_model("fraud")


def test_unreachable_database_is_unavailable_not_a_rule() -> None:
    url = "postgresql+psycopg://nobody:secret@127.0.0.1:1/none?connect_timeout=1"
    with Registry(url) as reg, pytest.raises(DatabaseUnavailable) as caught:
        reg.models()
    assert "secret" not in str(caught.value) and "***" in str(caught.value)


def test_unusable_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unusable governance database URL"):
        Registry("nosuchdb://x")


def test_constraint_violation_becomes_concurrent_change(reg: Registry) -> None:
    from bentogate.governance.db import translate

    err = sa.exc.IntegrityError("stmt", {}, Exception("uq_versions_one_production violated"))
    translated = translate(err, "sqlite://", "refused: promote m:2 — ")
    assert str(translated) == (
        "refused: promote m:2 — another change committed first; at most "
        "one production version per model (enforced by the database)"
    )
    locked = sa.exc.OperationalError("stmt", {}, Exception("database is locked"))
    assert "retry" in str(translate(locked, "sqlite://"))
    other = sa.exc.DatabaseError("stmt", {}, Exception("weird"))
    assert type(translate(other, "sqlite://")) is GovernanceError


def test_naive_datetimes_are_refused(reg: Registry) -> None:
    reg.ensure_model("fraud", owner="o", production_port=10000, actor="a")
    register(reg)
    reg.validate("fraud", "1", actor="val", results={}, passed=True)
    with pytest.raises(GovernanceError, match=r"has no time zone \(timestamps are UTC\)"):
        reg.approve("fraud", "1", actor="boss", valid_until=datetime(2999, 1, 1))


def test_versions_are_immutable(reg: Registry) -> None:
    from sqlalchemy.orm import Session

    from bentogate.governance.schema import Version

    reg.ensure_model("fraud", owner="o", production_port=10000, actor="a")
    register(reg)
    with Session(reg._db.engine) as session:
        row = session.execute(sa.select(Version)).scalar_one()
        row.sha256 = "b" * 64
        with pytest.raises(ValueError, match="immutable: sha256"):
            session.flush()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sha256": "ABC"}, "is not 64 lowercase hex digits (artifact identity)"),
        ({"feature_names": []}, "(feature schema)"),
        ({"feature_names": ["a", "a"]}, "(feature schema)"),
        ({"threshold": float("nan")}, "(threshold)"),
        ({"version": "no spaces"}, "(version names)"),
    ],
)
def test_register_checks_its_input(reg: Registry, kwargs: dict[str, object], message: str) -> None:
    reg.ensure_model("fraud", owner="o", production_port=10000, actor="a")
    with pytest.raises(GovernanceError) as caught:
        register(reg, **kwargs)
    assert str(caught.value).endswith(message)
    assert reg.versions("fraud") == []
    assert reg.audit()[-1].outcome == "refused"


def test_unknown_model_refusal_is_audited(reg: Registry) -> None:
    with pytest.raises(NotFoundError):
        register(reg, "ghost")
    last = reg.audit()[-1]
    assert (last.action, last.model, last.outcome) == ("register", "ghost", "refused")


def test_upgrade_creates_the_sqlite_directory(tmp_path: Path) -> None:
    with Registry(f"sqlite:///{tmp_path / 'new' / 'home' / 'governance.db'}") as reg:
        reg.upgrade()
        assert reg.models() == []
