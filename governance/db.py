"""Engines, transactions and the one place where SQLAlchemy/DB-API errors become bentogate errors.

SQLite: WAL journal, ``foreign_keys=ON``, a generous busy timeout, and the driver's implicit
transaction handling turned off so that write transactions start with ``BEGIN IMMEDIATE``
(writers serialize up front instead of failing at commit). PostgreSQL: READ COMMITTED plus
``SELECT … FOR UPDATE`` on the model row (see :func:`bentogate.governance.queries.locked_version`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.orm import Session, sessionmaker

from bentogate.errors import (
    BentogateError,
    ConcurrentChange,
    ConfigError,
    DatabaseUnavailable,
    GovernanceError,
    SeparationOfDuties,
)

#: seconds a SQLite writer waits for the lock before giving up
SQLITE_BUSY_TIMEOUT_S = 60.0
#: PostgreSQL SQLSTATEs that mean "someone else got there first"
_PG_CONFLICT = {"40001", "40P01", "55P03"}
#: constraint / index name → the rule it enforces (used in messages)
CONSTRAINT_RULES = {
    "uq_versions_one_production": "at most one production version per model",
    "uq_versions_model_id_version": "version numbers are unique per model",
    "uq_models_environment_name": "model names are unique per environment",
    "uq_models_environment_production_port": "production ports are unique per environment",
    "uq_deployments_active_port": "one active deployment per host port",
    "uq_audit_log_prev_hash": "the audit chain cannot fork",
    "uq_gate_policies_model_id": "one gate policy per model",
}
_WRITE = "governance_write"
#: libpq connection parameters that bound how long a PostgreSQL call waits on a network that
#: drops its packets (a host cut off): without them a connect waits for the kernel's SYN
#: retries (about 2 min) and a query on an open connection for its retransmissions (about
#: 15 min), and a fleet agent hangs instead of keeping what runs and backing off. Measured
#: with an idle host's packets to the DB dropped (tests/integration/fleet, one run): its
#: agent's pass failed 10.8 s after the cut (the pooled connection's pre-ping gave up after
#: tcp_user_timeout, the new connection after connect_timeout). A URL's own query
#: parameters win.
PG_NETWORK_BOUNDS: dict[str, int] = {
    "connect_timeout": 5,  # s, per address tried
    "tcp_user_timeout": 5_000,  # ms a sent byte may stay unacknowledged
    "keepalives": 1,
    "keepalives_idle": 10,  # s idle before the first probe
    "keepalives_interval": 3,
    "keepalives_count": 3,
}


def make_engine(url: str) -> sa.Engine:
    """Return an engine for ``url`` (no connection is made yet). Raises :class:`ConfigError`
    for a URL SQLAlchemy cannot parse or load a driver for."""
    try:
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            engine = sa.create_engine(
                parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
            )
            _configure_sqlite(engine, in_memory=parsed.database in (None, "", ":memory:"))
            return engine
        bounds = {k: v for k, v in PG_NETWORK_BOUNDS.items() if k not in parsed.query}
        return sa.create_engine(
            parsed, pool_pre_ping=True, pool_size=2, max_overflow=3, connect_args=bounds
        )
    except (exc.ArgumentError, exc.NoSuchModuleError, ValueError) as err:
        raise ConfigError(f"unusable governance database URL {_safe(url)}: {err}") from err


def _configure_sqlite(engine: sa.Engine, *, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        if not in_memory and cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """Sessions over one engine: :meth:`write` for changes, :meth:`read` for queries."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._writes = sessionmaker(
            bind=self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )
        self._reads = sessionmaker(bind=self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Session]:
        """Yield a session in a write transaction, committed on success, rolled back on any
        error. Does not translate errors (callers know what was attempted)."""
        with self._writes.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """Yield a session for queries; DB errors are translated (see :func:`translate`)."""
        with self.translated(), self._reads.begin() as session:
            yield session

    @contextmanager
    def translated(self) -> Iterator[None]:
        """Translate DB errors raised in the block (see :func:`translate`), e.g. around
        migrations, which bring their own connection."""
        try:
            yield
        except exc.SQLAlchemyError as err:
            raise translate(err, self.url) from err

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def translate(err: exc.SQLAlchemyError, url: str, refusal: str = "") -> BentogateError:
    """Return the bentogate error for a SQLAlchemy error.

    A privilege PostgreSQL refuses (a GRANT, the duties trigger of
    :mod:`bentogate.governance.roles`) → :class:`SeparationOfDuties`; constraint violations and lock
    conflicts → :class:`ConcurrentChange` naming the rule;
    a missing schema, or one older than the code (a missing column) → :class:`ConfigError`
    saying to upgrade; an unreachable database →
    :class:`DatabaseUnavailable`; anything else →
    :class:`GovernanceError`. ``refusal`` (e.g. ``"refused: promote fraud:3 — "``) prefixes
    the message.
    """
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err).strip().splitlines()[0]
    sqlstate = getattr(orig, "sqlstate", None) or ""
    if "append-only" in text or "immutable" in text:  # the guards of migration 0002
        return GovernanceError(f"{refusal}{text} (enforced by the database)")
    if sqlstate == "42501":  # insufficient privilege: a GRANT or the duties trigger (roles.py)
        return SeparationOfDuties(f"{refusal}{text} (enforced by the database)")
    if isinstance(err, exc.IntegrityError):
        rule = next((r for n, r in CONSTRAINT_RULES.items() if n in str(orig)), None)
        what = f"{rule} (enforced by the database)" if rule else f"database constraint: {text}"
        return ConcurrentChange(f"{refusal}another change committed first; {what}")
    if sqlstate in _PG_CONFLICT or "database is locked" in text:
        return ConcurrentChange(f"{refusal}another change holds the lock ({text}); retry")
    if sqlstate == "42P01" or "no such table" in text:
        return ConfigError(
            f"the governance schema is missing in {_safe(url)}: call Registry.upgrade() ({text})"
        )
    if sqlstate == "42703" or "no such column" in text or "has no column named" in text:
        return ConfigError(
            f"the governance schema in {_safe(url)} is older than this code: "
            f"call Registry.upgrade() ({text})"
        )
    if isinstance(err, exc.OperationalError | exc.InterfaceError):
        return DatabaseUnavailable(f"cannot use the governance database {_safe(url)}: {text}")
    return GovernanceError(f"{refusal}database error: {text}")


def _safe(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "<unparseable URL>"
