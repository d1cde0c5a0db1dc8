"""The fleet part of :class:`governance.Registry`: heartbeats, hosts and fleet rollouts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.orm import Session

from governance import fleet
from governance.attempt import Attempt
from governance.db import Database
from governance.records import HostInfo, RolloutInfo
from governance.states import Action

T = TypeVar("T")


class FleetRegistry:
    """Mixed into :class:`governance.Registry`; every write is one audited attempt."""

    environment: str
    _db: Database

    if TYPE_CHECKING:

        def _attempt(
            self,
            action: Action,
            actor: str,
            model: str | None,
            version: str | None,
            step: Callable[[Session, Attempt], T],
        ) -> T: ...

    def heartbeat(self, host: str, report: dict[str, Any]) -> HostInfo:
        """Record that ``host``'s agent is alive now and what it reports (a JSON object:
        what it serves, health, errors). Not audited. Returns the host. Raises
        :class:`GovernanceError` (not a JSON object), :class:`ConfigError` (DB unreachable)."""
        return self._attempt(
            Action.HEARTBEAT,
            host,
            None,
            None,
            lambda s, a: fleet.heartbeat(s, a, host=host, report=report),
        )

    def hosts(self) -> list[HostInfo]:
        """Return every host that ever sent a heartbeat in this environment, by name."""
        with self._db.read() as s:
            return fleet.host_rows(s, self.environment)

    def start_rollout(
        self,
        model: str,
        version: str,
        *,
        actor: str,
        sha256: str,
        hosts: list[str],
        deadline_s: float,
    ) -> RolloutInfo:
        """Promote ``model:version`` (every rule of :meth:`promote`) and record a fleet
        rollout that ``hosts`` must carry out within ``deadline_s``; one audited promotion
        naming the rollout and its hosts. Raises :class:`ConcurrentChange` while another
        rollout of the model is in progress, the errors of :meth:`promote` otherwise."""
        return self._attempt(
            Action.PROMOTE,
            actor,
            model,
            version,
            lambda s, a: fleet.start(s, a, sha256=sha256, hosts=hosts, deadline_s=deadline_s),
        )

    def settle_rollout(
        self,
        model: str,
        rollout_id: int,
        *,
        actor: str,
        complete: bool,
        reason: str,
        results: dict[str, Any],
    ) -> RolloutInfo:
        """Finish an in-progress rollout: complete, or roll ``model`` back to the version it
        replaced (audited as a rollback and a rollout row with ``results`` per host).
        Idempotent: a settled rollout is returned unchanged. Raises :class:`NotFoundError`."""
        return self._attempt(
            Action.ROLLOUT,
            actor,
            model,
            None,
            lambda s, a: fleet.settle(
                s, a, rollout_id=rollout_id, complete=complete, reason=reason, results=results
            ),
        )

    def rollouts(self, model: str | None = None, *, active_only: bool = False) -> list[RolloutInfo]:
        """Return fleet rollouts (of ``model``; only in-progress ones), oldest first."""
        with self._db.read() as s:
            return fleet.rollout_rows(s, self.environment, model, active_only)
