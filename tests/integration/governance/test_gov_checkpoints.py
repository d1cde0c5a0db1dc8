"""Signed checkpoints anchor the audit chain outside the database: what a database
administrator who knows the hashing code can do to the log is detected by verify_audit."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bentogate.errors import ConfigError
from bentogate.governance import Anchor, Registry, State
from bentogate.governance.audit import row_hash
from bentogate.governance.checkpoints import ANCHORED, Checkpoint
from bentogate.governance.schema import AuditCheckpoint, AuditHead, AuditRow

pytestmark = pytest.mark.integration
EVERY = 5


@pytest.fixture
def anchor(tmp_path: Path) -> Anchor:
    return Anchor(tmp_path / "keys" / "checkpoint.pem", tmp_path / "worm" / "log.jsonl", EVERY)


@pytest.fixture
def reg(make_registry: Callable[..., Registry], anchor: Anchor) -> Registry:
    """A migrated registry that checkpoints its chain (every 5 rows, at each promotion)."""
    registry = make_registry(anchor=anchor)
    registry.upgrade()
    return registry


@pytest.fixture
def released(reg: Registry, advance: Callable[..., str]) -> int:
    """Two versions, each promoted in turn, and a retirement: returns the number of rows."""
    advance("fraud", State.PRODUCTION)
    advance("fraud", State.PRODUCTION)
    reg.retire("fraud", "1", actor="boss", reason="superseded")
    ok, row, message = reg.verify_audit()
    assert (ok, row) == (True, None), message
    return len(reg.audit())


def _unguard(raw: sa.Engine) -> None:
    """Remove the append-only triggers, as a user with DDL rights could."""
    with raw.begin() as conn:
        if raw.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
            conn.execute(sa.text("ALTER TABLE audit_checkpoints DISABLE TRIGGER USER"))
            return
        for trigger in ("audit_log_no_update", "audit_log_no_delete"):
            conn.execute(sa.text(f"DROP TRIGGER {trigger}"))
        for trigger in ("audit_checkpoints_no_update", "audit_checkpoints_no_delete"):
            conn.execute(sa.text(f"DROP TRIGGER {trigger}"))


def _logged(anchor: Anchor) -> list[dict[str, object]]:
    return [json.loads(line) for line in anchor.log_path.read_text().splitlines()]


def test_promotions_retirements_and_every_n_rows_are_checkpointed(
    reg: Registry, anchor: Anchor, raw: sa.Engine, released: int
) -> None:
    assert stat.S_IMODE(anchor.key_path.stat().st_mode) == 0o600
    entries = reg.audit()
    logged = sorted(int(str(c["row"])) for c in _logged(anchor))
    with sa.orm.Session(raw) as session:
        stored = sorted(session.scalars(sa.select(AuditCheckpoint.row_id)))
    assert logged == stored and logged[-1] == released
    for entry in entries:
        if entry.action in ANCHORED and entry.outcome == "ok":
            # sealed in the promotion's own transaction: the first checkpoint after its rows
            assert any(entry.id <= row <= entry.id + 2 for row in logged), entry
    gaps = [b - a for a, b in zip([0, *logged], logged, strict=False)]
    assert max(gaps) <= EVERY + 2
    assert "signed checkpoints verified" in reg.verify_audit()[2]


def test_a_history_rewritten_and_rechained_is_detected(
    reg: Registry,
    make_registry: Callable[..., Registry],
    raw: sa.Engine,
    released: int,
) -> None:
    """Row 3 edited, every later hash and the head recomputed with the project's own code:
    the plain chain verifies; the signed checkpoints do not."""
    _unguard(raw)
    with sa.orm.Session(raw) as session, session.begin():
        rows = list(session.scalars(sa.select(AuditRow).order_by(AuditRow.id)))
        rows[2].reason = "nothing happened here"
        previous = rows[1].hash
        for row in rows[2:]:
            row.prev_hash = previous
            row.hash = row_hash(row)
            previous = row.hash
            session.flush()
        head = session.get(AuditHead, 1)
        assert head is not None
        head.last_hash = previous
    unanchored = make_registry()
    assert unanchored.verify_audit()[0]  # the hash chain alone is fooled
    ok, row, message = reg.verify_audit()
    assert not ok
    assert "rewritten and re-chained" in message
    with sa.orm.Session(raw) as session:
        first = session.scalar(sa.select(sa.func.min(AuditCheckpoint.row_id)).where(
            AuditCheckpoint.row_id >= 3))  # fmt: skip
    assert row == first  # the first checkpoint the rewrite reaches


def test_a_truncated_tail_is_detected(reg: Registry, raw: sa.Engine, released: int) -> None:
    """The newest rows and their checkpoints deleted, the head set back: only the log outside
    the database still names the rows that were there."""
    _unguard(raw)
    keep = released - 4
    with sa.orm.Session(raw) as session, session.begin():
        session.execute(sa.delete(AuditRow).where(AuditRow.id > keep))
        session.execute(sa.delete(AuditCheckpoint).where(AuditCheckpoint.row_id > keep))
        last = session.get(AuditRow, keep)
        head = session.get(AuditHead, 1)
        assert last is not None and head is not None
        head.last_id, head.last_hash = keep, last.hash
    ok, row, message = reg.verify_audit()
    assert (ok, row) == (False, keep + 1), message
    assert f"truncated: it ends at row {keep}" in message


def test_a_forged_checkpoint_is_detected(reg: Registry, anchor: Anchor, released: int) -> None:
    """A checkpoint signed with another key, appended to the log to vouch for a rewrite."""
    other = Ed25519PrivateKey.generate()
    unsigned = Checkpoint(released + 1, "f" * 64, "2030-01-01T00:00:00+00:00", "other", "")
    signature = base64.b64encode(other.sign(unsigned.message())).decode()
    forged = {**unsigned.__dict__, "signature": signature}
    with anchor.log_path.open("a") as log:
        log.write(json.dumps(forged) + "\n")
    ok, row, message = reg.verify_audit()
    assert (ok, row) == (False, released + 1), message
    assert f"checkpoint of audit row {released + 1} in {anchor.log_path} is forged" in message


def test_a_checkpoint_missing_from_either_place_is_detected(
    reg: Registry, anchor: Anchor, raw: sa.Engine, released: int
) -> None:
    _unguard(raw)
    with raw.begin() as conn:
        conn.execute(sa.delete(AuditCheckpoint).where(AuditCheckpoint.row_id == released))
    ok, row, message = reg.verify_audit()
    assert (ok, row) == (False, released), message
    assert f"checkpoint of audit row {released} is missing from the database" in message
    anchor.log_path.unlink()
    message = reg.verify_audit()[2]
    assert "is missing from the log" in message


def test_a_key_others_can_read_is_refused(reg: Registry, anchor: Anchor, released: int) -> None:
    anchor.key_path.chmod(0o644)
    with pytest.raises(ConfigError, match="mode 644"):
        reg.verify_audit()
