"""Plain, frozen results of the public API: no ORM object ever leaves :mod:`governance`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from governance.states import Role, State


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

    @property
    def ref(self) -> str:
        """``model:version``, the way messages and Bento tags name a version."""
        return f"{self.model}:{self.version}"


@dataclass(frozen=True)
class GateRunInfo:
    """A stored gate run: the policy it was judged against, the figures and the verdict."""

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
