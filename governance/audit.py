"""The append-only audit log: every transition and every refused attempt is one row, chained
to the previous row by sha256.

``hash = sha256(canonical JSON of [id, at, environment, actor, action, model, version,
from_state, to_state, outcome, reason, payload, prev_hash])``. The first row's ``prev_hash``
is 64 zeros. The one-row ``audit_head`` table holds the last id and hash: appends lock it (so
the chain is linear even on PostgreSQL, where writers of different models run concurrently),
and :func:`verify` compares it with the log, so deleting the newest rows is detected too.
Editing or deleting any row without recomputing every later hash (and the head) is detected.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bentogate.governance.schema import GENESIS_HASH, AuditHead, AuditRow, DatabaseRefusal
from bentogate.governance.states import Outcome

#: the payload key of a row appended for a refusal the database kept (``"database"``)
RECORDED_BY = "recorded_by"


@dataclass
class Record:
    """What one audit row says, before it is chained."""

    environment: str
    actor: str
    action: str
    outcome: Outcome
    reason: str
    at: datetime
    model: str | None = None
    version: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


def canonical_json(value: Any) -> str:
    """Return ``value`` as deterministic JSON (sorted keys, no spaces; non-JSON values as
    strings, non-finite floats as strings so every database and parser round-trips it)."""
    return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_jsonable(v) for v in items]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def row_hash(row: AuditRow) -> str:
    """Return the sha256 (hex) a row must carry, computed from its stored fields."""
    at = row.at.astimezone(UTC).isoformat(timespec="microseconds")
    fields = [
        row.id,
        at,
        row.environment,
        row.actor,
        str(row.action),
        row.model,
        row.version,
        row.from_state,
        row.to_state,
        str(row.outcome),
        row.reason,
        row.payload,
        row.prev_hash,
    ]
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def append(session: Session, record: Record) -> AuditRow:
    """Append ``record`` as the next chained row (inside the caller's transaction) and return it,
    after the refusals the database kept since the last append (:func:`seal_refusals`).

    Locks the head row (``SELECT … FOR UPDATE``), so it must come after any model row lock the
    transaction takes: every transaction locks models first, then the head, never the reverse.
    """
    head = _locked_head(session)
    _seal(session, head, record.environment)
    return _chain(session, head, record)


def seal_refusals(session: Session, environment: str) -> int:
    """Append the refusals the PostgreSQL duties trigger kept (``database_refusals``) that the
    chain does not hold yet, each as a ``refused`` row of its actor (payload: ``recorded_by``
    ``database`` and the refusal's id), in the caller's transaction; return how many."""
    return _seal(session, _locked_head(session), environment)


def _locked_head(session: Session) -> AuditHead:
    return session.execute(
        sa.select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one()


def _seal(session: Session, head: AuditHead, environment: str) -> int:
    if session.get_bind().dialect.name != "postgresql":
        return 0  # only PostgreSQL's duties trigger keeps refusals
    pending = session.execute(
        sa.select(DatabaseRefusal)
        .where(DatabaseRefusal.id > head.refusals_sealed)
        .order_by(DatabaseRefusal.id)
    ).scalars()
    sealed = 0
    for refusal in pending:
        record = Record(
            environment=refusal.environment or environment,
            actor=refusal.actor,
            action=refusal.action,
            outcome=Outcome.REFUSED,
            reason=refusal.reason,
            at=refusal.at,
            model=refusal.model,
            version=refusal.version,
            payload={RECORDED_BY: "database", "refusal": refusal.id, "authenticated": True},
        )
        _chain(session, head, record)
        head.refusals_sealed = refusal.id
        sealed += 1
    return sealed


def _chain(session: Session, head: AuditHead, record: Record) -> AuditRow:
    row = AuditRow(
        id=head.last_id + 1,
        at=record.at.astimezone(UTC),
        environment=record.environment,
        actor=record.actor,
        action=str(record.action),
        model=record.model,
        version=record.version,
        from_state=None if record.from_state is None else str(record.from_state),
        to_state=None if record.to_state is None else str(record.to_state),
        outcome=record.outcome,
        reason=record.reason,
        payload=canonical_json(record.payload),
        prev_hash=head.last_hash,
    )
    row.hash = row_hash(row)
    session.add(row)
    head.last_id, head.last_hash = row.id, row.hash
    session.flush()
    return row


def verify(session: Session) -> tuple[bool, int | None, str]:
    """Walk the whole chain (all environments). Return ``(True, None, summary)`` if intact,
    else ``(False, id of the first broken or missing row, what is wrong)``."""
    query = sa.select(AuditRow).order_by(AuditRow.id).execution_options(yield_per=500)
    result = session.execute(query)
    try:
        count, last_hash, broken = _walk(result.scalars())
    finally:
        result.close()  # a server-side cursor on PostgreSQL: close it even when stopping early
    if broken is not None:
        return False, broken[0], broken[1]
    ok, row, message = _check_head(session, count, last_hash)
    if not ok:
        return ok, row, message
    return _check_refusals(session, message)


def _walk(rows: Iterable[AuditRow]) -> tuple[int, str, tuple[int, str] | None]:
    """Return (rows checked, last hash, first problem as (row id, message) or None)."""
    expected_id, expected_prev = 1, GENESIS_HASH
    for row in rows:
        if row.id != expected_id:
            return (
                0,
                "",
                (
                    expected_id,
                    f"audit row {expected_id} is missing (next row is {row.id}): rows were deleted",
                ),
            )
        if row_hash(row) != row.hash:
            return 0, "", (row.id, f"audit row {row.id}: content does not match its hash (edited)")
        if row.prev_hash != expected_prev:
            # this row is self-consistent, so the link broke on the other side
            if row.id == 1:
                return 0, "", (1, "audit row 1 does not start the chain (prev_hash is not genesis)")
            return (
                0,
                "",
                (
                    row.id - 1,
                    f"audit row {row.id - 1}: its hash was rewritten "
                    f"(row {row.id} links to another)",
                ),
            )
        expected_id, expected_prev = row.id + 1, row.hash
    return expected_id - 1, expected_prev, None


def _check_head(session: Session, count: int, last_hash: str) -> tuple[bool, int | None, str]:
    head = session.get(AuditHead, 1)
    if head is None:
        return False, None, "audit head row is missing"
    if head.last_id > count:
        return (
            False,
            count + 1,
            (f"audit rows {count + 1}..{head.last_id} are missing: the newest rows were deleted"),
        )
    if head.last_id < count:
        return (
            False,
            head.last_id + 1,
            (
                f"audit row {head.last_id + 1} was not appended through governance "
                f"(the head ends at row {head.last_id})"
            ),
        )
    if head.last_hash != last_hash:
        return False, head.last_id, f"audit head does not match audit row {head.last_id}'s hash"
    return True, None, f"audit chain intact: {count} rows"


def _check_refusals(session: Session, summary: str) -> tuple[bool, int | None, str]:
    """Every refusal the database kept up to the head's ``refusals_sealed`` is in the chain
    exactly once; later ones are pending (named in the summary)."""
    head = session.get(AuditHead, 1)
    assert head is not None  # _check_head found it
    kept = set(
        session.execute(
            sa.select(DatabaseRefusal.id).where(DatabaseRefusal.id <= head.refusals_sealed)
        ).scalars()
    )
    pending = session.execute(
        sa.select(sa.func.count(DatabaseRefusal.id)).where(
            DatabaseRefusal.id > head.refusals_sealed
        )
    ).scalar_one()
    marker = f'%"{RECORDED_BY}":"database"%'
    payloads = session.execute(
        sa.select(AuditRow.payload).where(
            AuditRow.outcome == Outcome.REFUSED, AuditRow.payload.like(marker)
        )
    ).scalars()
    chained = Counter(json.loads(p)["refusal"] for p in payloads)
    missing = sorted(kept - set(chained))
    if missing:
        return False, None, (
            f"refusals {missing} kept by the database are not in the audit chain "
            "(the head was moved past them)"
        )
    twice = sorted(r for r, n in chained.items() if n > 1)
    if twice:
        return False, None, f"refusals {twice} kept by the database are in the chain twice"
    if pending:
        summary += f"; {pending} refusal(s) kept by the database await the next write"
    return True, None, summary
