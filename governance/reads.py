"""The read side of :class:`governance.Registry`: inventory, versions, gate runs, deployments
and the audit trail. Reads never lock; each is one short transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from governance import audit, deployments, queries, records
from governance.db import Database
from governance.records import AuditEntry, DeploymentInfo, GateRunInfo, ModelInfo, VersionInfo
from governance.schema import GateRun, Model


class RegistryReads:
    """Queries of one environment; :class:`governance.Registry` adds the writes."""

    environment: str
    _db: Database

    def deployments(
        self, *, host: str | None = None, model: str | None = None, active_only: bool = True
    ) -> list[DeploymentInfo]:
        """Return deployments of this environment, oldest first."""
        with self._db.read() as s:
            return deployments.listing(
                s, self.environment, host=host, model=model, active_only=active_only
            )

    def models(self) -> list[ModelInfo]:
        """Return the inventory of this environment, by name."""
        with self._db.read() as s:
            query = (
                select(Model)
                .where(Model.environment == self.environment)
                .options(selectinload(Model.gate_policy))
            )
            return [records.model_info(m) for m in s.execute(query.order_by(Model.name)).scalars()]

    def get_model(self, name: str) -> ModelInfo:
        """Return the model. Raises :class:`NotFoundError`."""
        with self._db.read() as s:
            return records.model_info(queries.model_row(s, self.environment, name))

    def gate_policy(self, model: str) -> dict[str, Any] | None:
        """Return the model's gate policy (a copy; ``None`` if never set). Raises NotFoundError."""
        return self.get_model(model).gate_policy

    def get_version(self, model: str, version: str) -> VersionInfo:
        """Return the version. Raises :class:`NotFoundError` naming the unknown model/version."""
        with self._db.read() as s:
            row = queries.model_row(s, self.environment, model)
            return records.version_info(queries.version_row(s, row, version), model)

    def versions(self, model: str) -> list[VersionInfo]:
        """Return every version of ``model`` in registration order. Raises NotFoundError."""
        with self._db.read() as s:
            row = queries.model_row(s, self.environment, model)
            return [records.version_info(v, model) for v in queries.version_rows(s, row)]

    def production_version(self, model: str) -> VersionInfo | None:
        """Return the production version of ``model`` (None if none). Raises NotFoundError."""
        return self._one(model, queries.production_row)

    def previous_version(self, model: str) -> VersionInfo | None:
        """Return the version :meth:`rollback` would restore (None if none)."""
        return self._one(model, queries.previous_row)

    def gate_runs(self, model: str, version: str) -> list[GateRunInfo]:
        """Return the gate runs of ``model:version``, oldest first. Raises NotFoundError."""
        with self._db.read() as s:
            row = queries.version_row(s, queries.model_row(s, self.environment, model), version)
            runs = s.execute(
                select(GateRun).where(GateRun.version_id == row.id).order_by(GateRun.id)
            ).scalars()
            return [records.gate_info(r, model, version) for r in runs]

    def audit(self, model: str | None = None, version: str | None = None) -> list[AuditEntry]:
        """Return this environment's audit rows (optionally of one model/version), oldest first."""
        with self._db.read() as s:
            return audit.entries(s, self.environment, model, version)

    def verify_audit(self) -> tuple[bool, int | None, str]:
        """Check the whole hash chain. Returns ``(ok, first broken or missing row id, message)``."""
        with self._db.read() as s:
            return audit.verify(s)

    def _one(self, model: str, find: Callable[[Session, Model], Any]) -> VersionInfo | None:
        with self._db.read() as s:
            found = find(s, queries.model_row(s, self.environment, model))
            return None if found is None else records.version_info(found, model)
