"""Inventory, version history and audit views of the governance DB (what an auditor reads)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from enum import Enum
from typing import Any

from bentogate.context import Context, Ref
from bentogate.governance import Action, AuditEntry, Outcome, State

_IN_USE = {State.PRODUCTION}
_IN_DEVELOPMENT = {State.REGISTERED, State.VALIDATED, State.APPROVED, State.STAGED, State.GATED}


def plain(value: Any) -> Any:
    """JSON-ready copy of dataclasses, enums, dates (for ``--json``)."""
    if hasattr(value, "__dataclass_fields__"):
        return plain(asdict(value))
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _last(entries: list[AuditEntry], action: Action) -> AuditEntry | None:
    done = [e for e in entries if e.action == action and e.outcome == Outcome.OK]
    return done[-1] if done else None


#: the sign-offs whose actor must be an authenticated identity to count for an auditor
_SIGN_OFFS = (Action.REGISTER, Action.VALIDATE, Action.APPROVE)


def unauthenticated(entries: list[AuditEntry]) -> dict[str, list[str]]:
    """Version → its sign-offs (registration, validation, approval) done by an actor who was
    named, not authenticated, as ``"approve by ana"``."""
    found: dict[str, list[str]] = {}
    for e in entries:
        if e.action in _SIGN_OFFS and e.outcome == Outcome.OK and e.authenticated is False:
            found.setdefault(str(e.version), []).append(f"{e.action} by {e.actor}")
    return found


def inventory_rows(ctx: Context) -> list[dict[str, Any]]:
    """One row per model: use, owner, live version and port, last validation, next review,
    and the versions whose sign-offs were not authenticated."""
    rows = []
    for model in ctx.registry.models():
        versions = ctx.registry.versions(model.name)
        live = ctx.registry.production_version(model.name)
        entries = ctx.registry.audit(model.name)
        validation = _last(entries, Action.VALIDATE)
        states = {v.state for v in versions}
        if states & _IN_USE:
            use = "in use"
        elif states & _IN_DEVELOPMENT:
            use = "in development"
        else:
            use = "retired"
        rows.append(
            {
                "model": model.name,
                "use": use,
                "owner": model.owner,
                "purpose": model.purpose,
                "live_version": live.version if live else None,
                "live_port": model.production_port if live else None,
                "versions": len(versions),
                "validator": validation.actor if validation else None,
                "last_validation": validation.at.isoformat() if validation else None,
                "next_review_due": plain(model.next_review_due),
                "unauthenticated": sorted(unauthenticated(entries)),
            }
        )
    return rows


def version_story(ctx: Context, ref: Ref) -> dict[str, Any]:
    """Everything recorded about one version: facts, gate and shadow runs, deployments,
    audit trail."""
    info = ctx.registry.get_version(ref.model, ref.version)
    entries = ctx.registry.audit(ref.model, ref.version)
    return {
        "version": plain(info),
        "unauthenticated": unauthenticated(entries).get(ref.version, []),
        "gate_runs": [
            {k: v for k, v in plain(run).items() if k != "results"}
            for run in ctx.registry.gate_runs(ref.model, ref.version)
        ],
        "shadow_runs": [
            {k: v for k, v in plain(run).items() if k != "results"}
            for run in ctx.registry.shadow_runs(ref.model, ref.version)
        ],
        "deployments": [
            plain(d)
            for d in ctx.registry.deployments(model=ref.model, active_only=False)
            if d.version == ref.version
        ],
        "audit": [plain(e) for e in entries],
    }


def audit_rows(ctx: Context, target: str | None) -> list[dict[str, Any]]:
    """The audit trail of everything, a model, or one ``model:version``."""
    if target is None:
        entries = ctx.registry.audit()
    elif ":" in target:
        ref = Ref.parse(target)
        entries = ctx.registry.audit(ref.model, ref.version)
    else:
        entries = ctx.registry.audit(target)
    return [plain(e) for e in entries]


def table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """A plain-text table of ``rows`` limited to ``columns``."""
    if not rows:
        return "(none)"
    cells = [list(columns)] + [["" if r[c] is None else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )
