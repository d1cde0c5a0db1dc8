"""A version remembers the id of its container image: ``versions.image_id``.

Revision ID: 0009
Revises: 0008
Create Date: 2025-01-09 00:00:00

Set by ``build --containerize`` next to ``image_tag``: the engine's id of the image it built
(``sha256:<hex>``, the digest of the image's configuration, which names its layers' digests).
A tag can be moved to other bytes; the id cannot, so the container runtime runs the id and
the audit row of the build records it. NULL: no image was built.

Added in place like 0006 (one nullable column, no default, constraint or index), so the 0002
identity guard on ``versions`` stays as it is: an image is a build's, not the version's
identity, and a later build records another. A frozen snapshot: it does not import
``bentogate.governance.schema``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("versions", sa.Column("image_id", sa.String(80), nullable=True))


def downgrade() -> None:
    op.drop_column("versions", "image_id")
