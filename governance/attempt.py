"""One audited attempt: who tries what on which version, and how it is recorded either way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy.orm import Session

from bentogate.errors import BentogateError
from governance import audit
from governance.states import Action, Outcome, State, refusal_message


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
                payload=self.payload if payload is None else payload,
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
            payload={**self.payload, "error": type(error).__name__},
        )
