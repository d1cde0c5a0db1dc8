"""The inventory: a model's entry (owner, purpose, its one production port) and the
registration of its immutable versions (artifact sha256, feature schema, threshold).

Each function runs inside the caller's write transaction, checks its rules, adds the rows and
appends its ``ok`` audit row; a refusal raises (the registry rolls back and audits it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bentogate.errors import GovernanceError
from bentogate.governance import queries, records
from bentogate.governance.attempt import Attempt
from bentogate.governance.records import ModelInfo, VersionInfo
from bentogate.governance.schema import AuditHead, Model, Version
from bentogate.governance.states import State

_SHA256 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Entry:
    """A model's inventory entry, as ``Registry.ensure_model`` is given it."""

    owner: str
    production_port: int
    purpose: str
    intended_use: str
    use_restrictions: str
    next_review_due: date | None


@dataclass(frozen=True)
class NewVersion:
    """A version to register, as ``Registry.register_version`` is given it."""

    sha256: str
    feature_names: list[str]
    threshold: float
    metrics: dict[str, Any]
    artifact_uri: str


def ensure_model(session: Session, attempt: Attempt, entry: Entry) -> ModelInfo:
    """Return the model, creating it if new. Refuses a different production port for an
    existing model, or a port another model of the environment already uses."""
    production_port = entry.production_port
    # The head lock serializes model creation (every writer takes it), so two concurrent
    # ensure_model calls for one name cannot both insert.
    session.execute(sa.select(AuditHead.id).where(AuditHead.id == 1).with_for_update())
    assert attempt.model is not None
    query = sa.select(Model).where(Model.environment == attempt.environment)
    existing = {m.name: m for m in session.execute(query).scalars()}
    if attempt.model in existing:
        model = existing[attempt.model]
        if model.production_port != production_port:
            attempt.refuse(
                GovernanceError,
                f"{model.name} already has production port "
                f"{model.production_port}, not {production_port}",
                "one production port per model",
            )
        return records.model_info(model)
    if not 1 <= production_port <= 65535:
        attempt.refuse(GovernanceError, f"port {production_port} is not 1..65535", "valid ports")
    taken = next((m for m in existing.values() if m.production_port == production_port), None)
    if taken is not None:
        attempt.refuse(
            GovernanceError,
            f"port {production_port} is {taken.name}'s production port",
            "production ports are unique per environment",
        )
    model = Model(
        environment=attempt.environment,
        name=attempt.model,
        owner=entry.owner,
        purpose=entry.purpose,
        intended_use=entry.intended_use,
        use_restrictions=entry.use_restrictions,
        inventory_status="active",
        next_review_due=entry.next_review_due,
        production_port=production_port,
        created_at=attempt.now(),
    )
    session.add(model)
    session.flush()
    attempt.record(
        session,
        reason="model added to the inventory",
        payload={
            "owner": entry.owner,
            "production_port": production_port,
            "purpose": entry.purpose,
        },
    )
    return records.model_info(model)


def register_version(session: Session, attempt: Attempt, new: NewVersion) -> VersionInfo:
    """Create the next (or the given) version in state registered and return it."""
    sha256, feature_names, threshold = new.sha256, new.feature_names, new.threshold
    assert attempt.model is not None
    model = queries.model_row(session, attempt.environment, attempt.model, lock=True)
    existing = queries.version_rows(session, model)
    if attempt.version is None:
        numbers = [int(v.version) for v in existing if v.version.isdigit()]
        attempt.version = str(max(numbers, default=0) + 1)
    attempt.to_state = State.REGISTERED
    _check_new_version(attempt, existing, sha256, feature_names, threshold)
    now = attempt.now()
    row = Version(
        model_id=model.id,
        version=attempt.version,
        state=State.REGISTERED,
        sha256=sha256,
        feature_names=list(feature_names),
        threshold=float(threshold),
        metrics=dict(new.metrics),
        developer=attempt.actor,
        registered_at=now,
        state_changed_at=now,
        artifact_uri=new.artifact_uri,
    )
    session.add(row)
    session.flush()
    attempt.record(
        session,
        reason="version registered",
        to_state=State.REGISTERED,
        payload={
            "sha256": sha256,
            "features": len(feature_names),
            "threshold": threshold,
            "artifact_uri": new.artifact_uri,
            "metrics": new.metrics,
        },
    )
    return records.version_info(row, model.name)


def _check_new_version(
    attempt: Attempt, existing: list[Version], sha256: str, features: list[str], threshold: float
) -> None:
    assert attempt.version is not None
    if not _VERSION.fullmatch(attempt.version):
        attempt.refuse(
            GovernanceError,
            f"version {attempt.version!r} is not 1-64 letters, digits, '.', '_' or '-'",
            "version names",
        )
    if any(v.version == attempt.version for v in existing):
        attempt.refuse(
            GovernanceError, f"{attempt.subject} already exists", "versions are immutable"
        )
    if not _SHA256.fullmatch(sha256):
        attempt.refuse(
            GovernanceError,
            f"sha256 {sha256!r} is not 64 lowercase hex digits",
            "artifact identity",
        )
    if not features or len(set(features)) != len(features) or not all(features):
        attempt.refuse(
            GovernanceError,
            "feature names must be a non-empty list of unique non-empty names",
            "feature schema",
        )
    if not math.isfinite(threshold):
        attempt.refuse(GovernanceError, f"threshold {threshold} is not finite", "threshold")
