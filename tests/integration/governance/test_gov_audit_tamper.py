"""Editing or deleting audit rows by hand in the database is detected by verify_audit."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa

from bentogate.governance import Registry, State
from bentogate.governance.audit import row_hash
from bentogate.governance.schema import AuditRow

pytestmark = pytest.mark.integration


@pytest.fixture
def chain(reg: Registry, advance: Callable[..., str]) -> int:
    """A model in production and a refusal: returns the number of audit rows."""
    advance("fraud", State.PRODUCTION)
    with pytest.raises(Exception, match="refused"):
        reg.retire("fraud", "1", actor="boss", reason="no")
    ok, row, message = reg.verify_audit()
    assert (ok, row) == (True, None), message
    return len(reg.audit())


def _sql(raw: sa.Engine, statement: str, **params: object) -> None:
    with raw.begin() as conn:
        conn.execute(sa.text(statement), params)


@pytest.fixture
def unguarded(raw: sa.Engine, chain: int) -> int:
    """The chain with the append-only triggers removed, as a user with DDL rights could."""
    if raw.dialect.name == "postgresql":
        _sql(raw, "ALTER TABLE audit_log DISABLE TRIGGER USER")
    else:
        _sql(raw, "DROP TRIGGER audit_log_no_update")
        _sql(raw, "DROP TRIGGER audit_log_no_delete")
    return chain


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET reason = 'x' WHERE id = 2",
        "DELETE FROM audit_log WHERE id = 2",
        "UPDATE versions SET sha256 = :sha WHERE id = 1",
    ],
)
def test_database_refuses_edits(reg: Registry, raw: sa.Engine, chain: int, statement: str) -> None:
    with pytest.raises(sa.exc.DBAPIError, match=r"append-only|immutable"):
        _sql(raw, statement, sha="b" * 64)
    assert reg.verify_audit()[0]


@pytest.mark.parametrize(
    ("column", "expression", "where"),
    [
        ("reason", "'nothing happened'", "middle"),
        ("actor", "'mallory'", "first"),
        ("to_state", "'rejected'", "last"),
        ("payload", '\'{"sha256":"0"}\'', "middle"),
        ("hash", f"'{'f' * 64}'", "middle"),
        ("prev_hash", f"'{'e' * 64}'", "first"),
        ("outcome", "CASE WHEN outcome = 'ok' THEN 'refused' ELSE 'ok' END", "last"),
    ],
)
def test_edited_row_is_named(
    reg: Registry, raw: sa.Engine, unguarded: int, column: str, expression: str, where: str
) -> None:
    target = {"first": 1, "middle": unguarded // 2, "last": unguarded}[where]
    _sql(raw, f"UPDATE audit_log SET {column} = {expression} WHERE id = :id", id=target)
    ok, row, message = reg.verify_audit()
    assert (ok, row) == (False, target), message
    assert f"audit row {target}" in message


def test_edited_timestamp_is_detected(reg: Registry, raw: sa.Engine, unguarded: int) -> None:
    with sa.orm.Session(raw) as session, session.begin():
        row = session.get(AuditRow, 3)
        assert row is not None
        row.at += timedelta(seconds=1)
    assert reg.verify_audit()[:2] == (False, 3)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_deleted_row_is_named(reg: Registry, raw: sa.Engine, unguarded: int, where: str) -> None:
    target = {"first": 1, "middle": unguarded // 2, "last": unguarded}[where]
    _sql(raw, "DELETE FROM audit_log WHERE id = :id", id=target)
    ok, row, message = reg.verify_audit()
    assert (ok, row) == (False, target), message
    assert "missing" in message


def test_rehashed_row_is_named(reg: Registry, raw: sa.Engine, unguarded: int) -> None:
    """A forger who recomputes an edited row's own hash still breaks the next row's link."""
    target = unguarded // 2
    with sa.orm.Session(raw) as session, session.begin():
        forged = session.get(AuditRow, target)
        assert forged is not None
        forged.reason = "forged"
        forged.hash = row_hash(forged)
    ok, row, message = reg.verify_audit()
    assert (ok, row) == (False, target), message


def test_appended_forgery_is_detected(reg: Registry, raw: sa.Engine, unguarded: int) -> None:
    """A fully consistent row appended by hand is caught by the head row."""
    with sa.orm.Session(raw) as session, session.begin():
        last = session.get(AuditRow, unguarded)
        assert last is not None
        forged = AuditRow(
            id=unguarded + 1,
            at=last.at,
            environment="prod",
            actor="mallory",
            action="promote",
            outcome=last.outcome,
            reason="x",
            payload="{}",
            prev_hash=last.hash,
        )
        forged.hash = row_hash(forged)
        session.add(forged)
    assert reg.verify_audit()[:2] == (False, unguarded + 1)


def test_refused_rows_keep_the_chain(reg: Registry, chain: int) -> None:
    entries = reg.audit()
    assert entries[-1].outcome == "refused"
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert entries[0].prev_hash == "0" * 64
