"""What every :class:`~bentogate.governance.Registry` method stands on: the database of one
environment (its schema, migrated by Alembic), a write as one audited attempt, a read in a read
session, and the audit trail itself (its rows, why a version was rejected, and the verification of
the chain against its signed checkpoints)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Concatenate, ParamSpec, Self, TypeVar

from sqlalchemy.orm import Session

from bentogate.governance import audit, checkpoints, identity, migrate, queries, records, roles
from bentogate.governance.attempt import Attempt, transaction, utcnow
from bentogate.governance.checkpoints import Anchor
from bentogate.governance.db import Database
from bentogate.governance.states import Action

P = ParamSpec("P")
T = TypeVar("T")


class Store:
    """The database at ``url`` for one environment. ``anchor``: where the audit checkpoints'
    key and log are (:mod:`bentogate.governance.checkpoints`); without it no checkpoint is written
    or checked. Every write is done by the identity the database authenticated
    (:mod:`bentogate.governance.identity`) unless an actor is named; ``require_authenticated``
    refuses named actors on PostgreSQL."""

    def __init__(
        self,
        url: str,
        *,
        environment: str = "prod",
        clock: Callable[[], datetime] = utcnow,
        anchor: Anchor | None = None,
        require_authenticated: bool = False,
    ) -> None:
        self.environment = environment
        self._db = Database(url)
        self._clock = clock
        self._anchor = anchor
        self._require = require_authenticated
        self._identify = functools.partial(identity.identify, require=require_authenticated)

    def whoami(self) -> str:
        """Return the identity the database authenticates this registry's writes as
        (PostgreSQL: the connection's role; SQLite: the operating-system user)."""
        with self._db.read() as s:
            return identity.authenticated_user(s)

    def acting_as(self, label: str) -> str:
        """The actor a process records for itself (a host's agent, the bake watcher):
        ``label`` where named actors are accepted (SQLite; PostgreSQL without
        ``require_authenticated``), else the authenticated identity (e.g. the agent's role)."""
        if identity.accepts_named(self.dialect, require=self._require):
            return label
        return self.whoami()

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._db.dialect

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema to ``revision`` (Alembic). Safe to call on every start."""
        migrate.upgrade(self._db, revision)

    def downgrade(self, revision: str = "base") -> None:
        """Migrate the schema down (``"base"`` drops every governance table and its data)."""
        migrate.downgrade(self._db, revision)

    def schema_revision(self) -> str | None:
        """Return the database's Alembic revision (``None``: never migrated)."""
        return migrate.current_revision(self._db)

    def create_roles(self, prefix: str = "bentogate") -> list[str]:
        """PostgreSQL: create the group roles, their GRANTs and the duties trigger
        (:mod:`bentogate.governance.roles`; idempotent, run by the schema's owner after
        :meth:`upgrade`); return the group roles' names. Raises ConfigError on SQLite."""
        return roles.create_roles(self._db, prefix)

    def close(self) -> None:
        """Release every pooled connection. The registry may not be used afterwards."""
        self._db.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the audit trail (audit, checkpoints) ----------------------------------------------
    def audit(
        self, model: str | None = None, version: str | None = None
    ) -> list[records.AuditEntry]:
        """Return this environment's audit rows (optionally of one model/version), oldest first,
        with the refusals the database kept since the last write sealed in first."""
        self._seal_refusals()
        return self._read(queries.audit_entries, model, version)

    def rejection(self, model: str, version: str) -> str | None:
        """Return why ``model:version`` was rejected (its rejecting audit row's reason: the
        measured figures of a failed validation or gate); None if it is not rejected."""
        return self._read(queries.rejection, model, version)

    def verify_audit(self) -> tuple[bool, int | None, str]:
        """Check the whole hash chain and, with an anchor, the chain against every signed
        checkpoint (in the database and in the log). Returns ``(ok, first row concerned,
        message)``; the message names every finding (edited or deleted rows, a rewritten and
        re-chained history, a truncated tail, a missing or forged checkpoint). Raises
        ConfigError if the anchor's key file is missing or readable by others."""
        self._seal_refusals()
        with self._db.read() as s:
            ok, row, message = audit.verify(s)
            if self._anchor is None:
                return ok, row, message
            findings, summary = checkpoints.verify(s, self._anchor)
        if ok and not findings:
            return True, None, f"{message}; {summary}"
        found = ([] if ok else [(row or 0, message)]) + findings
        return False, min(r for r, _ in found), "; ".join(m for _, m in found)

    def _seal_refusals(self) -> None:
        """PostgreSQL: append the refusals its duties trigger kept that the chain does not hold
        yet (:func:`bentogate.governance.audit.seal_refusals`), so a reader sees them."""
        if self.dialect != "postgresql":
            return
        with self._db.translated(), self._db.write() as s:
            audit.seal_refusals(s, self.environment)

    def _read(
        self, query: Callable[Concatenate[Session, str, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        with self._db.read() as s:
            return query(s, self.environment, *args, **kwargs)

    def _write(
        self,
        action: Action,
        actor: str | None,
        model: str | None = None,
        version: str | None = None,
    ) -> AbstractContextManager[tuple[Session, Attempt]]:
        """An audited write by ``actor`` (None: the authenticated identity)."""
        attempt = Attempt(action, self.environment, actor or "", self._clock, model, version)
        return transaction(self._db, attempt, self._anchor, self._identify)
