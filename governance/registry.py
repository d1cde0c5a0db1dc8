"""The public face of the governance database: :class:`Registry`, the one class. Each method
opens a transaction and calls one function of the module that holds its concept: a write runs
as one audited attempt (:func:`bentogate.governance.attempt.transaction`; a refusal is rolled back
and audited), a read in a read session (:mod:`bentogate.governance.queries`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from bentogate.governance import (
    deployments,
    gates,
    heartbeats,
    lifecycle,
    promotion,
    queries,
    records,
    registration,
    rollouts,
    shadow,
)
from bentogate.governance.documents import RunReport
from bentogate.governance.states import Action, Role
from bentogate.governance.store import Store

SYSTEM_ACTOR = "bentogate"


class Registry(Store):
    """Models, versions, evidence, deployments and the audit trail of one environment, in the
    database at ``url`` (``sqlite:///…`` or ``postgresql+psycopg://…``; no connection until the
    first call; call :meth:`upgrade` once before use, it is idempotent). Failures:
    :class:`NotFoundError` for unknown names, :class:`GovernanceError` subclasses for refused
    actions, :class:`ConfigError` for an unusable or un-migrated database. The database, the
    audited writes and the audit trail: :class:`bentogate.governance.store.Store`."""

    # -- models & versions (registration, lifecycle, promotion) ------------------------------
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
    ) -> records.ModelInfo:
        """Return the model ``name``, adding it to the inventory if new (idempotent).
        Raises :class:`GovernanceError` if it exists with another production port or the
        port belongs to another model."""
        with self._write(Action.CREATE_MODEL, actor, name) as (s, a):
            entry = registration.Entry(
                owner, production_port, purpose, intended_use, use_restrictions, next_review_due
            )
            return registration.ensure_model(s, a, entry)

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
    ) -> records.VersionInfo:
        """Register an immutable version (``version`` None → next integer) and return it.
        Raises :class:`NotFoundError` (model), :class:`GovernanceError` (duplicate or invalid
        fields), :class:`ConcurrentChange` (a racing registration won)."""
        with self._write(Action.REGISTER, developer, model, version) as (s, a):
            new = registration.NewVersion(sha256, feature_names, threshold, metrics, artifact_uri)
            return registration.register_version(s, a, new)

    def validate(
        self,
        model: str,
        version: str,
        *,
        actor: str,
        results: dict[str, Any],
        passed: bool,
        why: str = "",
    ) -> records.VersionInfo:
        """registered → validated (or rejected if not ``passed``, ``why`` naming the measured
        reason: the audit row says it); returns the version. Raises
        :class:`IllegalTransition`, :class:`SeparationOfDuties` (actor is developer)."""
        with self._write(Action.VALIDATE, actor, model, version) as (s, a):
            return lifecycle.validate(s, a, results=results, passed=passed, why=why)

    def approve(
        self,
        model: str,
        version: str,
        *,
        actor: str,
        comment: str = "",
        valid_until: datetime | None = None,
    ) -> records.VersionInfo:
        """validated → approved, binding the approval to the version's sha256 (optionally
        expiring). Raises :class:`IllegalTransition`, :class:`SeparationOfDuties`."""
        with self._write(Action.APPROVE, actor, model, version) as (s, a):
            return lifecycle.approve(s, a, comment=comment, valid_until=valid_until)

    def record_build(
        self, model: str, version: str, *, actor: str, bento_tag: str,
        image_tag: str | None = None, image_id: str | None = None,
    ) -> records.VersionInfo:  # fmt: skip
        """Record the Bento (and image: its tag and id) built for an approved-or-later
        version; sets ``built_at``, so only gate passes after it allow promotion. Raises
        :class:`IllegalTransition` before approval or after rejection/retirement,
        :class:`GovernanceError` for an image tag without its id or the reverse."""
        with self._write(Action.BUILD, actor, model, version) as (s, a):
            return lifecycle.record_build(
                s, a, bento_tag=bento_tag, image_tag=image_tag, image_id=image_id
            )

    def stage(self, model: str, version: str, *, actor: str) -> records.VersionInfo:
        """approved → staged; staged/gated/production: unchanged. Raises
        :class:`IllegalTransition` otherwise."""
        with self._write(Action.STAGE, actor, model, version) as (s, a):
            return lifecycle.stage(s, a)

    def promote(self, model: str, version: str, *, actor: str, sha256: str) -> records.VersionInfo:
        """gated → production, demoting the old production version (→ gated) and moving
        deployment roles, in one transaction; returns the new production version.
        ``sha256`` is what the caller measured on the artifact. Raises :class:`IntegrityError`
        (sha256 differs), :class:`IllegalTransition` (state, approval, build, gate, bake or
        shadow rule), :class:`ConcurrentChange` (a concurrent promotion won)."""
        with self._write(Action.PROMOTE, actor, model, version) as (s, a):
            return promotion.promote(s, a, sha256=sha256)

    def rollback(
        self,
        model: str,
        *,
        actor: str,
        sha256: str | None = None,
        reason: str | None = None,
        evidence: dict[str, Any] | None = None,
        replacing: str | None = None,
    ) -> records.VersionInfo:
        """The most recently demoted version back to production under promote's rules but the
        shadow rule (``sha256``, if given, checked too); returns it. ``reason``: the audit row's;
        ``evidence`` (the bake watcher's figures, audited) makes it automatic: the version leaving
        production failed its bake (:mod:`bentogate.governance.promotion`); ``replacing``: only
        while it is production. Raises NotFoundError (no previous version), GovernanceError
        (evidence not JSON; ConcurrentChange: ``replacing`` not production), the errors of
        :meth:`promote`."""
        with self._write(Action.ROLLBACK, actor, model) as (s, a):
            return promotion.rollback(
                s, a, sha256=sha256, reason=reason, evidence=evidence, replacing=replacing
            )

    def retire(self, model: str, version: str, *, actor: str, reason: str) -> records.VersionInfo:
        """Any state except production → retired; returns the version. Raises
        :class:`IllegalTransition` for production (or already retired) versions."""
        with self._write(Action.RETIRE, actor, model, version) as (s, a):
            return lifecycle.retire(s, a, reason=reason)

    def models(self) -> list[records.ModelInfo]:
        """Return the inventory of this environment, by name."""
        return self._read(queries.models)

    def get_model(self, name: str) -> records.ModelInfo:
        """Return the model. Raises :class:`NotFoundError`."""
        return self._read(queries.get_model, name)

    def get_version(self, model: str, version: str) -> records.VersionInfo:
        """Return the version. Raises :class:`NotFoundError` naming the unknown model/version."""
        return self._read(queries.get_version, model, version)

    def versions(self, model: str) -> list[records.VersionInfo]:
        """Return every version of ``model`` in registration order. Raises NotFoundError."""
        return self._read(queries.versions, model)

    def production_version(self, model: str) -> records.VersionInfo | None:
        """Return the production version of ``model`` (None if none). Raises NotFoundError."""
        return self._read(queries.production_version, model)

    def previous_version(self, model: str) -> records.VersionInfo | None:
        """Return the version :meth:`rollback` would restore if its rules hold (None if none)."""
        return self._read(queries.previous_version, model)

    # -- evidence: the gate policy, gate and shadow runs, capacity (gates, shadow) -------------
    def set_gate_policy(
        self, model: str, policy: dict[str, Any], *, actor: str
    ) -> records.ModelInfo:
        """Store ``policy`` (JSON, opaque but for ``require_shadow``) as the model's gate policy,
        replacing any; the audit row holds the old and new policy. Returns the model. Raises
        :class:`NotFoundError`, :class:`GovernanceError` (not a JSON object, NaN/infinity,
        ``require_shadow`` not a boolean)."""
        with self._write(Action.SET_POLICY, actor, model) as (s, a):
            return gates.set_gate_policy(s, a, policy=policy)

    def gate_policy(self, model: str) -> dict[str, Any] | None:
        """Return the model's gate policy (a copy; ``None`` if never set). Raises NotFoundError."""
        return self.get_model(model).gate_policy

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
    ) -> records.GateRunInfo:
        """Store a gate run of a staged/gated version and apply its verdict (pass → gated,
        fail → rejected, inconclusive → unchanged); returns the stored run. Raises
        :class:`IllegalTransition` for other states, :class:`GovernanceError` for a bad verdict."""
        with self._write(Action.GATE, actor, model, version) as (s, a):
            run = RunReport(policy, results, verdict, report_path, compared_with)
            return gates.record_gate(s, a, run)

    def gate_runs(self, model: str, version: str) -> list[records.GateRunInfo]:
        """Return the gate runs of ``model:version``, oldest first. Raises NotFoundError."""
        return self._read(queries.gate_runs, model, version)

    def record_shadow(
        self,
        model: str,
        version: str,
        *,
        actor: str,
        policy: dict[str, Any],
        results: dict[str, Any],
        verdict: str,
        report_path: str,
        compared_with: str,
    ) -> records.ShadowRunInfo:
        """Store a shadow run of a staged/gated version (its scores vs the production version
        ``compared_with``'s on the same live requests); returns it. No state changes: under
        the policy's ``require_shadow``, :meth:`promote` needs a pass newer than the build.
        Raises :class:`IllegalTransition` (other states), :class:`GovernanceError` (bad
        verdict, ``compared_with`` not the production version, policy/results not JSON)."""
        with self._write(Action.SHADOW, actor, model, version) as (s, a):
            run = RunReport(policy, results, verdict, report_path, compared_with)
            return shadow.record(s, a, run)

    def shadow_runs(self, model: str, version: str) -> list[records.ShadowRunInfo]:
        """Return the shadow runs of ``model:version``, oldest first. Raises NotFoundError."""
        return self._read(queries.shadow_runs, model, version)

    def record_capacity(
        self, model: str, version: str, *, actor: str, rate: float, details: dict[str, Any]
    ) -> None:
        """Store a measured capacity of ``model:version`` (the highest req/s that met the
        policy); the latest one shows as :attr:`VersionInfo.capacity_rps`. Any state is
        accepted. Raises :class:`NotFoundError`, :class:`GovernanceError` (rate not finite or
        negative, details not a JSON object)."""
        with self._write(Action.CAPACITY, actor, model, version) as (s, a):
            gates.record_capacity(s, a, rate=rate, details=details)

    # -- what runs where: deployments, fleet hosts, rollouts (deployments, heartbeats, rollouts)
    def verify_artifact(
        self, model: str, version: str, *, actor: str, sha256: str, what: str = "served model"
    ) -> None:
        """Audit the sha256 measured on the model about to be served or built (``what`` names
        those bytes). Raises :class:`IntegrityError` (audited as refused) if it differs from
        the registered one."""
        with self._write(Action.VERIFY_ARTIFACT, actor, model, version) as (s, a):
            deployments.verify_artifact(s, a, sha256=sha256, what=what)

    def record_deployment(
        self, model: str, version: str, *, host: str, port: int, pid: int | None, role: Role,
        actor: str | None = None,
    ) -> records.DeploymentInfo:  # fmt: skip
        """Record that ``model:version`` runs on ``host:port``; returns the deployment.
        Raises :class:`IllegalTransition` (unapproved version; live but not production),
        :class:`GovernanceError` (port held by another active deployment)."""
        with self._write(Action.DEPLOY, actor, model, version) as (s, a):
            return deployments.record(s, a, host=host, port=port, pid=pid, role=role)

    def end_deployment(self, deployment_id: int, *, actor: str | None = None) -> None:
        """Mark a deployment stopped (no-op if it already is; ``actor`` None: the
        authenticated identity). Raises :class:`NotFoundError`."""
        with self._write(Action.UNDEPLOY, actor) as (s, a):
            deployments.end(s, a, deployment_id)

    def deployments(
        self, *, host: str | None = None, model: str | None = None, active_only: bool = True
    ) -> list[records.DeploymentInfo]:
        """Return deployments of this environment, oldest first."""
        return self._read(queries.deployments, host=host, model=model, active_only=active_only)

    def heartbeat(self, host: str, report: dict[str, Any]) -> records.HostInfo:
        """Record that ``host``'s agent is alive now and what it reports (a JSON object:
        what it serves, health, errors). Not audited. Returns the host. Raises
        :class:`GovernanceError` (not a JSON object), :class:`ConfigError` (DB unreachable)."""
        with self._write(Action.HEARTBEAT, None) as (s, a):
            return heartbeats.heartbeat(s, a, host=host, report=report)

    def hosts(self) -> list[records.HostInfo]:
        """Return every host that ever sent a heartbeat in this environment, by name."""
        return self._read(queries.hosts)

    def start_rollout(
        self, model: str, version: str, *, actor: str, sha256: str, hosts: list[str],
        deadline_s: float,
    ) -> records.RolloutInfo:  # fmt: skip
        """Promote ``model:version`` (every rule of :meth:`promote`) and record a fleet
        rollout that ``hosts`` must carry out within ``deadline_s``; one audited promotion
        naming the rollout and its hosts. Raises :class:`ConcurrentChange` while another
        rollout of the model is in progress, the errors of :meth:`promote` otherwise."""
        with self._write(Action.PROMOTE, actor, model, version) as (s, a):
            return rollouts.start(s, a, sha256=sha256, hosts=hosts, deadline_s=deadline_s)

    def settle_rollout(
        self, model: str, rollout_id: int, *, actor: str, complete: bool, reason: str,
        results: dict[str, Any],
    ) -> records.RolloutInfo:  # fmt: skip
        """Finish an in-progress rollout: complete, or roll ``model`` back to the version it
        replaced (audited as a rollback and a rollout row with ``results`` per host).
        Idempotent: a settled rollout is returned unchanged. Raises :class:`NotFoundError`."""
        with self._write(Action.ROLLOUT, actor, model) as (s, a):
            return rollouts.settle(
                s, a, rollout_id=rollout_id, complete=complete, reason=reason, results=results
            )

    def record_start_failure(
        self, model: str, version: str, *, host: str, tries: int, of: int, error: str,
        retry_in_s: float | None,
    ) -> None:  # fmt: skip
        """Audit ``host``'s failed start ``tries`` of ``of`` of ``model:version`` (and the
        rollout of it in progress); ``retry_in_s``: None if the host gives up. NotFoundError."""
        with self._write(Action.START_FAILED, self.acting_as(host), model, version) as (s, a):
            rollouts.start_failed(s, a, host, tries, of, error, retry_in_s)

    def db_now(self) -> datetime:
        """Return the DB's clock (aware UTC), which judges heartbeats' ages and deadlines."""
        with self._db.read() as s:
            return queries.db_now(s)

    def rollouts(
        self, model: str | None = None, *, active_only: bool = False
    ) -> list[records.RolloutInfo]:
        """Return fleet rollouts (of ``model``; only in-progress ones), oldest first."""
        return self._read(queries.rollouts, model, active_only)
