"""What callers get back: plain, frozen records (no ORM object ever leaves
:mod:`bentogate.governance`), and the one function per record that makes it from its row (JSON
fields deep-copied, so a caller can never alias a row)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

from bentogate.governance import schema
from bentogate.governance.states import Role, State


@dataclass(frozen=True)
class ModelInfo:
    """A model in the inventory of one environment."""

    name: str
    owner: str
    purpose: str
    production_port: int
    created_at: datetime
    environment: str = "prod"
    intended_use: str = ""
    use_restrictions: str = ""
    inventory_status: str = "active"
    next_review_due: date | None = None
    gate_policy: dict[str, Any] | None = None


@dataclass(frozen=True)
class VersionInfo:
    """One immutable model version and where it is in its lifecycle."""

    model: str
    version: str
    state: State
    sha256: str
    feature_names: list[str]
    threshold: float
    metrics: dict[str, Any]
    developer: str
    validator: str | None
    approver: str | None
    bento_tag: str | None
    built_at: datetime | None
    image_tag: str | None
    registered_at: datetime
    artifact_uri: str
    demoted_at: datetime | None = None
    capacity_rps: float | None = None
    #: when an automatic rollback took it out of production; it needs a passed gate newer
    #: than that to take production again (``None``: it never failed a bake)
    bake_failed_at: datetime | None = None
    #: the id (``sha256:<hex>``) of the image built as ``image_tag``: what the container
    #: runtime runs (a tag can be moved, an id cannot)
    image_id: str | None = None

    @property
    def ref(self) -> str:
        """``model:version``, the way messages and Bento tags name a version."""
        return f"{self.model}:{self.version}"


@dataclass(frozen=True)
class _RunInfo:
    """What a stored gate or shadow run holds: the policy it was judged against (frozen into
    it), the figures and the verdict."""

    id: int
    model: str
    version: str
    verdict: str
    policy: dict[str, Any]
    results: dict[str, Any]
    report_path: str
    compared_with: str | None
    created_at: datetime
    actor: str


RunInfo = TypeVar("RunInfo", bound=_RunInfo)


@dataclass(frozen=True)
class GateRunInfo(_RunInfo):
    """A stored gate run: the policy it was judged against, the figures and the verdict."""


@dataclass(frozen=True)
class ShadowRunInfo(_RunInfo):
    """A stored shadow run: the version's scores vs the production version's
    (``compared_with``) on the same live requests; the policy it was judged against, the
    figures and the verdict."""

    compared_with: str  # a shadow run always compares with a production version


@dataclass(frozen=True)
class DeploymentInfo:
    """A version running (or having run) on a host's backend port."""

    id: int
    host: str
    model: str
    version: str
    port: int
    role: Role
    pid: int | None
    started_at: datetime
    stopped_at: datetime | None


@dataclass(frozen=True)
class AuditEntry:
    """One row of the append-only, hash-chained audit log."""

    id: int
    at: datetime
    actor: str
    action: str
    model: str | None
    version: str | None
    from_state: str | None
    to_state: str | None
    outcome: str
    reason: str
    payload: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""
    environment: str = "prod"
    #: the actor is the authenticated identity (False: someone was named; None: not recorded)
    authenticated: bool | None = None


@dataclass(frozen=True)
class HostInfo:
    """An API host of the fleet: when its agent last reported, and what it reported."""

    name: str
    first_seen: datetime
    last_heartbeat: datetime
    report: dict[str, Any]
    environment: str = "prod"


@dataclass(frozen=True)
class RolloutInfo:
    """A fleet promotion of ``model`` to ``version`` on ``hosts`` (status: in_progress,
    complete, rolled_back or failed)."""

    id: int
    model: str
    version: str
    from_version: str | None
    actor: str
    status: str
    hosts: tuple[str, ...]
    started_at: datetime
    deadline: datetime
    finished_at: datetime | None
    outcome: dict[str, Any]


def model_info(row: schema.Model) -> ModelInfo:
    """Return the public view of a model row."""
    return ModelInfo(
        name=row.name,
        owner=row.owner,
        purpose=row.purpose,
        production_port=row.production_port,
        created_at=row.created_at,
        environment=row.environment,
        intended_use=row.intended_use,
        use_restrictions=row.use_restrictions,
        inventory_status=row.inventory_status,
        next_review_due=row.next_review_due,
        gate_policy=None if row.gate_policy is None else _copy(row.gate_policy.policy),
    )


def version_info(row: schema.Version, model_name: str) -> VersionInfo:
    """Return the public view of a version row."""
    return VersionInfo(
        model=model_name,
        version=row.version,
        state=State(row.state),
        sha256=row.sha256,
        feature_names=list(row.feature_names),
        threshold=row.threshold,
        metrics=_copy(row.metrics),
        developer=row.developer,
        validator=row.validator,
        approver=row.approver,
        bento_tag=row.bento_tag,
        built_at=row.built_at,
        image_tag=row.image_tag,
        registered_at=row.registered_at,
        artifact_uri=row.artifact_uri,
        demoted_at=row.demoted_at,
        capacity_rps=row.capacity_rps,
        bake_failed_at=row.bake_failed_at,
        image_id=row.image_id,
    )


def gate_info(row: schema.GateRun, model_name: str, version: str) -> GateRunInfo:
    """Return the public view of a gate run row."""
    return _run_info(GateRunInfo, row, model_name, version)


def shadow_info(row: schema.ShadowRun, model_name: str, version: str) -> ShadowRunInfo:
    """Return the public view of a shadow run row."""
    return _run_info(ShadowRunInfo, row, model_name, version)


def _run_info(
    cls: type[RunInfo], row: schema.GateRun | schema.ShadowRun, model_name: str, version: str
) -> RunInfo:
    return cls(
        id=row.id,
        model=model_name,
        version=version,
        verdict=str(row.verdict),
        policy=_copy(row.policy),
        results=_copy(row.results),
        report_path=row.report_path,
        compared_with=row.compared_with,
        created_at=row.created_at,
        actor=row.actor,
    )


def deployment_info(row: schema.Deployment, model_name: str, version: str) -> DeploymentInfo:
    """Return the public view of a deployment row."""
    return DeploymentInfo(
        id=row.id,
        host=row.host,
        model=model_name,
        version=version,
        port=row.port,
        role=row.role,
        pid=row.pid,
        started_at=row.started_at,
        stopped_at=row.stopped_at,
    )


def audit_entry(row: schema.AuditRow) -> AuditEntry:
    """Return the public view of an audit row (its payload parsed from the hashed JSON; the
    ``authenticated`` mark governance stamps into it shown as :attr:`AuditEntry.authenticated`)."""
    payload = json.loads(row.payload)
    authenticated = payload.pop("authenticated", None)
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        model=row.model,
        version=row.version,
        from_state=row.from_state,
        to_state=row.to_state,
        outcome=str(row.outcome),
        reason=row.reason,
        payload=payload,
        prev_hash=row.prev_hash,
        hash=row.hash,
        environment=row.environment,
        authenticated=authenticated if isinstance(authenticated, bool) else None,
    )


def host_info(row: schema.Host) -> HostInfo:
    """Return the public view of a host row."""
    return HostInfo(
        name=row.name,
        environment=row.environment,
        first_seen=row.first_seen,
        last_heartbeat=row.last_heartbeat,
        report=copy.deepcopy(row.report),
    )


def rollout_info(row: schema.Rollout, model: str) -> RolloutInfo:
    """Return the public view of a rollout row."""
    return RolloutInfo(
        id=row.id,
        model=model,
        version=row.version,
        from_version=row.from_version,
        actor=row.actor,
        status=row.status,
        hosts=tuple(row.hosts),
        started_at=row.started_at,
        deadline=row.deadline,
        finished_at=row.finished_at,
        outcome=copy.deepcopy(row.outcome),
    )


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(value))
