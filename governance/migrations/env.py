"""Alembic environment: runs on the connection handed over by
:mod:`bentogate.governance.migrate`."""

from __future__ import annotations

from alembic import context

from bentogate.governance.schema import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only bentogate.governance.migrate drives Alembic
    raise RuntimeError(
        "governance migrations run through bentogate.governance.migrate (Registry.upgrade)"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=config.get_main_option("version_table") or "governance_alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
)
context.run_migrations()
