"""Alembic, driven programmatically: no ``alembic.ini`` needed anywhere.

The scripts live in ``governance/migrations/versions``; the version table is
``governance_alembic_version`` so a shared database can hold other Alembic histories.
Migrations run on the caller's connection inside one transaction that first takes a lock
(``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so two processes upgrading
at once serialize instead of racing. SQLAlchemy errors are translated here, where Alembic is
entered (:meth:`bentogate.governance.db.Database.translated`). Alembic is imported when a
migration runs, not with the governance package: a command that only reads or writes the
database (and the detached expirer every cutover leaves) does without its ≈ 10 MiB.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from bentogate.governance.db import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(str(resources.files("bentogate.governance") / "migrations"))
VERSION_TABLE = "governance_alembic_version"
_LOCK_KEY = 0x6276_6761  # arbitrary, constant: "bvga"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Return an Alembic config for the governance scripts, bound to ``connection`` if given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_table", VERSION_TABLE)
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """Return the newest revision the code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(db: Database) -> str | None:
    """Return the revision the database is at (``None`` if never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with db.translated(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate the database to ``revision``, creating a SQLite file's directory first."""
    from alembic import command

    database = db.engine.url.database
    if db.dialect == "sqlite" and database not in (None, "", ":memory:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    _run(db, lambda cfg: command.upgrade(cfg, revision))


def downgrade(db: Database, revision: str = "base") -> None:
    """Migrate the database down to ``revision`` (``"base"``: drop every governance table)."""
    from alembic import command

    _run(db, lambda cfg: command.downgrade(cfg, revision))


def _run(db: Database, step: object) -> None:
    write = db.engine.execution_options(governance_write=True)
    with db.translated(), write.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        step(alembic_config(conn))  # type: ignore[operator]
