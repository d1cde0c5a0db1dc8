"""One audited attempt: who tries what on which version, the one transaction it runs in, and
how it is recorded either way.

Every write of :class:`bentogate.governance.Registry` runs in :func:`transaction`: one write
transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``SELECT … FOR UPDATE`` on the model row, see
:func:`bentogate.governance.queries.locked_version`) in which it checks its rules and appends its
audit rows. A refused attempt is rolled back completely and then audited as ``refused`` in a
transaction of its own. SQLAlchemy errors of a write are translated here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from sqlalchemy import exc
from sqlalchemy.orm import Session

from bentogate.errors import BentogateError, ConfigError, GovernanceError, NotFoundError
from bentogate.governance import audit, checkpoints
from bentogate.governance.checkpoints import Anchor
from bentogate.governance.db import Database, translate
from bentogate.governance.states import Action, Outcome, State, refusal_message

#: the audit payload key saying whether the row's actor was the authenticated identity
AUTHENTICATED = "authenticated"


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC (the registry's default clock)."""
    return datetime.now(UTC)


@dataclass
class Attempt:
    """Context of one public write call; lifecycle code fills in states as it learns them."""

    action: Action
    environment: str
    actor: str
    clock: Callable[[], datetime]
    model: str | None = None
    version: str | None = None
    from_state: State | None = None
    to_state: State | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    #: whether this attempt appended an audit row (a checkpoint may then be due)
    appended: bool = False
    #: whether ``actor`` is the identity the database authenticated (bentogate.governance.identity);
    #: ``actor`` is empty until then when nobody was named
    authenticated: bool | None = None

    def now(self) -> datetime:
        """Return the current UTC time (the registry's clock)."""
        return self.clock()

    @property
    def subject(self) -> str:
        """``model:version``, or the model name, or ``"-"``."""
        if self.model is None:
            return "-"
        return self.model if self.version is None else f"{self.model}:{self.version}"

    def refuse(self, error: type[BentogateError], reason: str, rule: str) -> NoReturn:
        """Raise ``error`` with the standard refusal message naming ``rule``."""
        raise error(refusal_message(self.action, self.subject, reason, rule))

    def record(
        self,
        session: Session,
        *,
        reason: str,
        from_state: State | None = None,
        to_state: State | None = None,
        action: Action | None = None,
        version: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Append an ``ok`` audit row for this attempt (or a side effect of it, e.g. the demotion
        a promotion causes, via ``action``/``version``) in the caller's transaction."""
        self.appended = True
        audit.append(
            session,
            audit.Record(
                environment=self.environment,
                actor=self.actor,
                action=action or self.action,
                outcome=Outcome.OK,
                reason=reason,
                at=self.clock(),
                model=self.model,
                version=version or self.version,
                from_state=from_state,
                to_state=to_state,
                payload=self._stamped(self.payload if payload is None else payload),
            ),
        )

    def refusal_record(self, error: BaseException) -> audit.Record:
        """Return the ``refused`` audit record for ``error``."""
        return audit.Record(
            environment=self.environment,
            actor=self.actor,
            action=self.action,
            outcome=Outcome.REFUSED,
            reason=str(error),
            at=self.clock(),
            model=self.model,
            version=self.version,
            from_state=self.from_state,
            to_state=self.to_state,
            payload=self._stamped({**self.payload, "error": type(error).__name__}),
        )

    def _stamped(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload`` with whether the actor was authenticated (:data:`AUTHENTICATED`), hashed
        into the chain with it; unchanged while that is unknown."""
        if self.authenticated is None:
            return payload
        return {**payload, AUTHENTICATED: self.authenticated}


@contextmanager
def transaction(
    db: Database,
    attempt: Attempt,
    anchor: Anchor | None = None,
    identify: Callable[[Session, Attempt], None] | None = None,
) -> Iterator[tuple[Session, Attempt]]:
    """Yield a session in a write transaction for ``attempt`` (and the attempt), committed when
    the block ends. A :class:`GovernanceError` or :class:`NotFoundError` raised in the block
    rolls it back and is audited as ``refused``; a SQLAlchemy error is translated first
    (:func:`bentogate.governance.db.translate`), and audited if it is a refusal. With ``anchor``, a
    checkpoint that falls due is signed in the transaction and appended to the log after it.
    ``identify`` settles who acts first (:func:`bentogate.governance.identity.identify`; it may
    refuse)."""
    sealed = None
    try:
        with db.write() as session:
            if identify is not None:
                identify(session, attempt)
            yield session, attempt
            if anchor is not None and attempt.appended:
                sealed = checkpoints.seal(session, anchor, attempt.now())
    except exc.SQLAlchemyError as err:
        prefix = f"refused: {attempt.action} {attempt.subject} — "
        translated = translate(err, db.url, prefix)
        if isinstance(translated, GovernanceError):
            _audit_refusal(db, attempt, translated, anchor, identify)
        raise translated from err
    except (GovernanceError, NotFoundError) as err:
        _audit_refusal(db, attempt, err, anchor, identify)
        raise
    if anchor is not None and sealed is not None:
        checkpoints.publish(anchor, sealed)


def _audit_refusal(
    db: Database,
    attempt: Attempt,
    error: Exception,
    anchor: Anchor | None,
    identify: Callable[[Session, Attempt], None] | None,
) -> None:
    sealed = None
    try:
        with db.write() as session:
            if identify is not None and attempt.authenticated is None:
                identify(session, attempt)  # the first transaction failed before it could
            audit.append(session, attempt.refusal_record(error))
            if anchor is not None:
                sealed = checkpoints.seal(session, anchor, attempt.now())
        if anchor is not None and sealed is not None:
            checkpoints.publish(anchor, sealed)
    except exc.SQLAlchemyError as err:  # the refusal stands; say it was not audited
        error.add_note(f"the refusal could not be audited: {translate(err, db.url)}")
    except ConfigError as err:  # the key or the checkpoint log is unusable
        error.add_note(f"the refusal could not be audited and checkpointed: {err}")
