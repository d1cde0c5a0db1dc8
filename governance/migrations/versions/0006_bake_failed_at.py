"""A version remembers when it failed its bake: ``versions.bake_failed_at``.

Revision ID: 0006
Revises: 0005
Create Date: 2025-01-06 00:00:00

Set by an automatic rollback (the bake watcher's) on the version it takes out of production;
that version needs a passed gate newer than it before it takes production again (the bake
rule, :mod:`bentogate.governance.promotion`). NULL: it never failed a bake.

The first migration that alters an existing table, and only in the way both databases do in
place: one nullable column without a default, a constraint or an index, added and dropped by
``ALTER TABLE`` (SQLite ≥ 3.35 drops columns natively). No batch rebuild, so the 0002 triggers
on ``versions`` stay (see 0003). Those triggers list the *immutable* columns (identity), so
this lifecycle column is updatable without touching them; they are not redefined here.
A frozen snapshot: it does not import ``bentogate.governance.schema``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "versions", sa.Column("bake_failed_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("versions", "bake_failed_at")
