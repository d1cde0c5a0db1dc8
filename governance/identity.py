"""Who is acting: the identity the database authenticated, not a name anyone may type.

PostgreSQL: the session's role (``current_user``), authenticated by the server (password,
client certificate or peer, as the DBA configures it); the roles and the database-side duty
checks are in :mod:`bentogate.governance.roles`. SQLite has no users: the operating-system user
running the command stands in. Naming someone else is recorded as *unauthenticated*, and refused on
PostgreSQL while the registry requires authenticated actors (``require_authenticated``).
"""

from __future__ import annotations

import getpass
import os

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bentogate.errors import Unauthenticated
from bentogate.governance.attempt import Attempt


def authenticated_user(session: Session) -> str:
    """Return who the database says is acting: PostgreSQL's ``current_user``; on SQLite the
    operating-system user of this process (``uid <n>`` if it has no name)."""
    if session.get_bind().dialect.name == "postgresql":
        return str(session.execute(sa.text("SELECT current_user")).scalar_one())
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


def accepts_named(dialect: str, *, require: bool) -> bool:
    """Whether a named actor (not the authenticated identity) may act: always on SQLite; on
    PostgreSQL only while authenticated actors are not required."""
    return dialect != "postgresql" or not require


def identify(session: Session, attempt: Attempt, *, require: bool) -> None:
    """Settle ``attempt``'s actor: the authenticated identity unless another name was given.
    A named actor is recorded as unauthenticated; on PostgreSQL with ``require`` it is refused
    (:class:`Unauthenticated`, audited under the authenticated role, naming the name given)."""
    who = authenticated_user(session)
    if not attempt.actor or attempt.actor == who:
        attempt.actor, attempt.authenticated = who, True
        return
    attempt.authenticated = False
    if not accepts_named(session.get_bind().dialect.name, require=require):
        named = attempt.actor
        attempt.actor, attempt.authenticated = who, True
        attempt.payload["named_actor"] = named
        attempt.refuse(
            Unauthenticated,
            f"'{named}' is not the authenticated database role '{who}': on PostgreSQL the "
            "actor is the role that connects",
            "authenticated actors",
        )
