"""The public face of the governance database: :class:`Registry`.

Every write call is one *attempt*: it runs in one transaction (SQLite ``BEGIN IMMEDIATE``;
PostgreSQL ``SELECT … FOR UPDATE`` on the model row), checks its rules, and appends its audit
rows. A refused attempt is rolled back completely and then audited as ``refused`` in a
transaction of its own. SQLAlchemy errors are translated here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from sqlalchemy import exc
from sqlalchemy.orm import Session

from bentogate.errors import GovernanceError, NotFoundError
from governance import audit, deployments, gating, lifecycle, migrate, promotion
from governance.attempt import Attempt
from governance.db import Database, translate
from governance.fleetapi import FleetRegistry
from governance.reads import RegistryReads
from governance.records import DeploymentInfo, GateRunInfo, ModelInfo, VersionInfo
from governance.states import Action, Role

T = TypeVar("T")
SYSTEM_ACTOR = "bentogate"


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Registry(FleetRegistry, RegistryReads):
    """Models, versions, evidence, deployments and the audit trail of one environment.

    ``url`` is a SQLAlchemy URL (``sqlite:///…`` or ``postgresql+psycopg://…``); no connection
    is made until the first call. Call :meth:`upgrade` once before use (idempotent). Failures:
    :class:`NotFoundError` for unknown names, :class:`GovernanceError` subclasses for refused
    actions, :class:`ConfigError` for an unusable or un-migrated database.
    """

    def __init__(
        self, url: str, *, environment: str = "prod", clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.environment = environment
        self._db = Database(url)
        self._clock = clock

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._db.dialect

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema to ``revision`` (Alembic). Safe to call on every start."""
        self._migrate(migrate.upgrade, revision)

    def downgrade(self, revision: str = "base") -> None:
        """Migrate the schema down (``"base"`` drops every governance table and its data)."""
        self._migrate(migrate.downgrade, revision)

    def schema_revision(self) -> str | None:
        """Return the database's Alembic revision (``None``: never migrated)."""
        try:
            return migrate.current_revision(self._db.engine)
        except exc.SQLAlchemyError as err:
            raise translate(err, self._db.url) from err

    def close(self) -> None:
        """Release every pooled connection. The registry may not be used afterwards."""
        self._db.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- models & versions ------------------------------------------------------------------

    def ensure_model(
        self,
        name: str,
        *,
        owner: str,
        production_port: int,
        actor: str,
        purpose: str = "",
        intended_use: str = "",
        use_restrictions: str = "",
        next_review_due: date | None = None,
    ) -> ModelInfo:
        """Return the model ``name``, adding it to the inventory if new (idempotent).
        Raises :class:`GovernanceError` if it exists with another production port or the
        port belongs to another model."""
        return self._attempt(
            Action.CREATE_MODEL,
            actor,
            name,
            None,
            lambda s, a: lifecycle.ensure_model(
                s,
                a,
                owner=owner,
                production_port=production_port,
                purpose=purpose,
                intended_use=intended_use,
                use_restrictions=use_restrictions,
                next_review_due=next_review_due,
            ),
        )

    def register_version(
        self,
        model: str,
        *,
        sha256: str,
        feature_names: list[str],
        threshold: float,
        metrics: dict[str, Any],
        developer: str,
        artifact_uri: str,
        version: str | None = None,
    ) -> VersionInfo:
        """Register an immutable version (``version`` None → next integer) and return it.
        Raises :class:`NotFoundError` (model), :class:`GovernanceError` (duplicate or invalid
        fields), :class:`ConcurrentChange` (a racing registration won)."""
        return self._attempt(
            Action.REGISTER,
            developer,
            model,
            version,
            lambda s, a: lifecycle.register_version(
                s,
                a,
                sha256=sha256,
                feature_names=feature_names,
                threshold=threshold,
                metrics=metrics,
                artifact_uri=artifact_uri,
            ),
        )

    def validate(
        self, model: str, version: str, *, actor: str, results: dict[str, Any], passed: bool
    ) -> VersionInfo:
        """registered → validated (or rejected if not ``passed``); returns the version.
        Raises :class:`IllegalTransition`, :class:`SeparationOfDuties` (actor is developer)."""
        return self._attempt(
            Action.VALIDATE,
            actor,
            model,
            version,
            lambda s, a: lifecycle.validate(s, a, results=results, passed=passed),
        )

    def approve(
        self,
        model: str,
        version: str,
        *,
        actor: str,
        comment: str = "",
        valid_until: datetime | None = None,
    ) -> VersionInfo:
        """validated → approved, binding the approval to the version's sha256 (optionally
        expiring). Raises :class:`IllegalTransition`, :class:`SeparationOfDuties`."""
        return self._attempt(
            Action.APPROVE,
            actor,
            model,
            version,
            lambda s, a: lifecycle.approve(s, a, comment=comment, valid_until=valid_until),
        )

    def record_build(
        self, model: str, version: str, *, actor: str, bento_tag: str, image_tag: str | None = None
    ) -> VersionInfo:
        """Record the Bento (and image) built for an approved-or-later version; sets
        ``built_at``, so only gate passes after it allow promotion. Raises
        :class:`IllegalTransition` before approval or after rejection/retirement."""
        return self._attempt(
            Action.BUILD,
            actor,
            model,
            version,
            lambda s, a: lifecycle.record_build(s, a, bento_tag=bento_tag, image_tag=image_tag),
        )

    def stage(self, model: str, version: str, *, actor: str) -> VersionInfo:
        """approved → staged; staged/gated/production: unchanged. Raises
        :class:`IllegalTransition` otherwise."""
        return self._attempt(Action.STAGE, actor, model, version, lifecycle.stage)

    def record_gate(
        self,
        model: str,
        version: str,
        *,
        actor: str,
        policy: dict[str, Any],
        results: dict[str, Any],
        verdict: str,
        report_path: str,
        compared_with: str | None,
    ) -> GateRunInfo:
        """Store a gate run of a staged/gated version and apply its verdict (pass → gated,
        fail → rejected, inconclusive → unchanged); returns the stored run. Raises
        :class:`IllegalTransition` for other states, :class:`GovernanceError` for a bad verdict."""
        return self._attempt(
            Action.GATE,
            actor,
            model,
            version,
            lambda s, a: lifecycle.record_gate(
                s,
                a,
                policy=policy,
                results=results,
                verdict=verdict,
                report_path=report_path,
                compared_with=compared_with,
            ),
        )

    def promote(self, model: str, version: str, *, actor: str, sha256: str) -> VersionInfo:
        """gated → production, demoting the old production version (→ gated) and moving
        deployment roles, in one transaction; returns the new production version.
        ``sha256`` is what the caller measured on the artifact. Raises :class:`IntegrityError`
        (sha256 differs), :class:`IllegalTransition` (state, approval, build or gate rule),
        :class:`ConcurrentChange` (a concurrent promotion won)."""
        return self._attempt(
            Action.PROMOTE,
            actor,
            model,
            version,
            lambda s, a: promotion.promote(s, a, sha256=sha256),
        )

    def rollback(self, model: str, *, actor: str, sha256: str | None = None) -> VersionInfo:
        """Return the most recently demoted version to production (rules as for promote; if
        ``sha256`` is given it is checked too); returns it. Raises :class:`NotFoundError`
        when there is no previous version."""
        return self._attempt(
            Action.ROLLBACK,
            actor,
            model,
            None,
            lambda s, a: promotion.rollback(s, a, sha256=sha256),
        )

    def retire(self, model: str, version: str, *, actor: str, reason: str) -> VersionInfo:
        """Any state except production → retired; returns the version. Raises
        :class:`IllegalTransition` for production (or already retired) versions."""
        return self._attempt(
            Action.RETIRE, actor, model, version, lambda s, a: lifecycle.retire(s, a, reason=reason)
        )

    # -- gate policy & capacity --------------------------------------------------------------

    def set_gate_policy(self, model: str, policy: dict[str, Any], *, actor: str) -> ModelInfo:
        """Store ``policy`` (opaque JSON) as the model's gate policy, replacing any; the audit
        row holds the old and new policy. Returns the model. Raises :class:`NotFoundError`,
        :class:`GovernanceError` (not a JSON object, NaN/infinity)."""
        return self._attempt(
            Action.SET_POLICY,
            actor,
            model,
            None,
            lambda s, a: gating.set_gate_policy(s, a, policy=policy),
        )

    def record_capacity(
        self, model: str, version: str, *, actor: str, rate: float, details: dict[str, Any]
    ) -> None:
        """Store a measured capacity of ``model:version`` (the highest req/s that met the
        policy); the latest one shows as :attr:`VersionInfo.capacity_rps`. Any state is
        accepted. Raises :class:`NotFoundError`, :class:`GovernanceError` (rate not finite or
        negative, details not a JSON object)."""
        self._attempt(
            Action.CAPACITY,
            actor,
            model,
            version,
            lambda s, a: gating.record_capacity(s, a, rate=rate, details=details),
        )

    def verify_artifact(self, model: str, version: str, *, actor: str, sha256: str) -> None:
        """Audit the sha256 measured on the model about to be served. Raises
        :class:`IntegrityError` (audited as refused) if it differs from the registered one."""
        self._attempt(
            Action.VERIFY_ARTIFACT,
            actor,
            model,
            version,
            lambda s, a: promotion.verify_artifact(s, a, sha256=sha256),
        )

    # -- deployments -------------------------------------------------------------------------

    def record_deployment(
        self,
        model: str,
        version: str,
        *,
        host: str,
        port: int,
        pid: int | None,
        role: Role,
        actor: str = SYSTEM_ACTOR,
    ) -> DeploymentInfo:
        """Record that ``model:version`` runs on ``host:port``; returns the deployment.
        Raises :class:`IllegalTransition` (unapproved version; live but not production),
        :class:`GovernanceError` (port held by another active deployment)."""
        return self._attempt(
            Action.DEPLOY,
            actor,
            model,
            version,
            lambda s, a: deployments.record(s, a, host=host, port=port, pid=pid, role=role),
        )

    def end_deployment(self, deployment_id: int, *, actor: str = SYSTEM_ACTOR) -> None:
        """Mark a deployment stopped (no-op if it already is). Raises :class:`NotFoundError`."""
        self._attempt(
            Action.UNDEPLOY, actor, None, None, lambda s, a: deployments.end(s, a, deployment_id)
        )

    # -- plumbing ----------------------------------------------------------------------------

    def _attempt(
        self,
        action: Action,
        actor: str,
        model: str | None,
        version: str | None,
        step: Callable[[Session, Attempt], T],
    ) -> T:
        attempt = Attempt(
            action=action,
            environment=self.environment,
            actor=actor,
            clock=self._clock,
            model=model,
            version=version,
        )
        try:
            with self._db.write() as session:
                return step(session, attempt)
        except exc.SQLAlchemyError as err:
            prefix = f"refused: {attempt.action} {attempt.subject} — "
            translated = translate(err, self._db.url, prefix)
            if isinstance(translated, GovernanceError):
                self._audit_refusal(attempt, translated)
            raise translated from err
        except (GovernanceError, NotFoundError) as err:
            self._audit_refusal(attempt, err)
            raise

    def _audit_refusal(self, attempt: Attempt, error: Exception) -> None:
        try:
            with self._db.write() as session:
                audit.append(session, attempt.refusal_record(error))
        except exc.SQLAlchemyError as err:  # the refusal stands; say it was not audited
            error.add_note(f"the refusal could not be audited: {translate(err, self._db.url)}")

    def _migrate(self, step: Callable[[Any, str], None], revision: str) -> None:
        try:
            step(self._db.engine, revision)
        except exc.SQLAlchemyError as err:
            raise translate(err, self._db.url) from err
