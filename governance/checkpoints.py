"""Signed checkpoints of the audit chain's head: the evidence kept outside the database.

A checkpoint is ``(row id, that row's hash, time)`` signed with an Ed25519 key that lives in a
file outside the database (mode 600). One is written in the same transaction as every
promotion, rollback and retirement, and whenever ``every`` rows have been appended since the
last one; it is stored in ``audit_checkpoints`` *and*, once the transaction has committed,
appended as one JSON line to the checkpoint log (a file a WORM store or another host can hold).

Somebody with full rights on the database can rewrite a row and recompute every later hash
(the chain then verifies), or delete the newest rows and fix the head; they cannot sign. So
:func:`verify` compares the chain with every checkpoint of the log and of the table and names
what it finds: a rewritten-and-rechained history (a signed hash differs from the row's), a
truncated tail (a signed row is gone), a forged checkpoint (its signature does not verify) and
a missing one (in one place but not the other; a promotion, rollback or retirement without
one; more than ``every`` rows without one).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.orm import Session

from bentogate.errors import ConfigError
from bentogate.governance.audit import canonical_json
from bentogate.governance.schema import AuditCheckpoint, AuditHead, AuditRow
from bentogate.governance.states import Action, Outcome

#: the actions that are checkpointed in their own transaction
ANCHORED = frozenset({Action.PROMOTE, Action.ROLLBACK, Action.RETIRE})
#: rows one write may append beyond ``every`` before a checkpoint counts as missing
#: (a promotion appends its row, the demotion's and the checkpoint follows them)
SLACK = 8

Finding = tuple[int, str]  # (the audit row it concerns, what is wrong)


@dataclass(frozen=True)
class Anchor:
    """Where the checkpoints' key and log live, and how often a checkpoint is due."""

    key_path: Path
    log_path: Path
    every: int = 100

    def signing_key(self) -> Ed25519PrivateKey:
        """Return the private key, creating it (mode 600) if the file does not exist yet.
        Raises ConfigError if the file is readable by others or is not an Ed25519 key."""
        if not self.key_path.exists():
            _create_key(self.key_path)
        return _load_key(self.key_path)

    def public_key(self) -> Ed25519PublicKey:
        """Return the public key of the existing key file (ConfigError if there is none)."""
        if not self.key_path.exists():
            raise ConfigError(
                f"no checkpoint key at {self.key_path}: the audit checkpoints cannot be checked"
            )
        return _load_key(self.key_path).public_key()


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: audit row ``row`` had hash ``hash`` at ``at``."""

    row: int
    hash: str
    at: str  # ISO 8601, UTC: signed as text, exactly as stored
    key_id: str
    signature: str  # base64 of the Ed25519 signature of :meth:`message`

    def message(self) -> bytes:
        """The signed bytes: canonical JSON of ``[row, hash, at]``."""
        return canonical_json([self.row, self.hash, self.at]).encode("utf-8")

    def signed_by(self, key: Ed25519PublicKey) -> bool:
        """Whether the signature verifies with ``key``."""
        try:
            key.verify(base64.b64decode(self.signature, validate=True), self.message())
        except (InvalidSignature, ValueError):
            return False
        return True


def key_id(key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the sha256 of the raw public key: which key signed."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def seal(session: Session, anchor: Anchor, at: datetime) -> Checkpoint | None:
    """In the caller's write transaction (which appended audit rows, so holds the head lock):
    store a signed checkpoint of the head if one is due and return it (None if not due).
    Append it to the log with :func:`publish` once the transaction has committed."""
    head = session.get(AuditHead, 1)
    assert head is not None
    last = session.scalar(sa.select(sa.func.max(AuditCheckpoint.row_id))) or 0
    if head.last_id <= last:
        return None
    anchored = session.scalar(
        sa.select(
            sa.exists().where(
                AuditRow.id > last,
                AuditRow.action.in_([str(a) for a in ANCHORED]),
                AuditRow.outcome == Outcome.OK,
            )
        )
    )
    if not anchored and head.last_id - last < anchor.every:
        return None
    key = anchor.signing_key()
    unsigned = Checkpoint(
        head.last_id, head.last_hash, at.isoformat(), key_id(key.public_key()), ""
    )
    signature = base64.b64encode(key.sign(unsigned.message())).decode("ascii")
    checkpoint = Checkpoint(**{**asdict(unsigned), "signature": signature})
    session.add(
        AuditCheckpoint(
            row_id=checkpoint.row,
            row_hash=checkpoint.hash,
            at=checkpoint.at,
            key_id=checkpoint.key_id,
            signature=checkpoint.signature,
        )
    )
    session.flush()
    return checkpoint


def publish(anchor: Anchor, checkpoint: Checkpoint) -> None:
    """Append ``checkpoint`` to the log as one JSON line (one ``write`` in append mode, so
    concurrent writers never interleave). Raises ConfigError if the file cannot be written."""
    line = (json.dumps(asdict(checkpoint), sort_keys=True) + "\n").encode("utf-8")
    try:
        anchor.log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(anchor.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise ConfigError(
            f"checkpoint of audit row {checkpoint.row} is stored in the database but could not "
            f"be appended to {anchor.log_path} ({err}); `bentogate audit verify` reports it "
            "missing from the log"
        ) from err


def verify(session: Session, anchor: Anchor) -> tuple[list[Finding], str]:
    """Check the chain against the checkpoints of the table and of the log. Return what is
    wrong, by row (empty: all hold), and a summary of what was checked. Raises ConfigError
    without the key file."""
    last_row = session.scalar(sa.select(sa.func.max(AuditRow.id))) or 0
    stored = {
        c.row_id: Checkpoint(c.row_id, c.row_hash, c.at, c.key_id, c.signature)
        for c in session.execute(sa.select(AuditCheckpoint)).scalars()
    }
    logged, findings = _read_log(anchor.log_path)
    if not (stored or logged or findings or anchor.key_path.exists()):
        # nothing was ever signed: only a run of rows long enough to need one is a finding
        return _coverage(session, anchor, [], last_row), "no checkpoint is due yet"
    key = anchor.public_key()
    valid: dict[int, Checkpoint] = {}
    for row in sorted(stored.keys() | logged.keys()):
        found = _check_one(row, stored.get(row), logged.get(row), key, anchor.log_path)
        findings.extend(found)
        signed = [c for c in (logged.get(row), stored.get(row)) if c and c.signed_by(key)]
        if signed:  # the log's copy first: it is the one kept outside the database
            valid[row] = signed[0]
    findings.extend(_against_chain(session, valid, last_row))
    findings.extend(_coverage(session, anchor, sorted(valid), last_row))
    newest = f", the newest at row {max(valid)}" if valid else ""
    summary = f"{len(valid)} signed checkpoints verified (key {key_id(key)}{newest})"
    return sorted(findings), summary


def _check_one(
    row: int,
    stored: Checkpoint | None,
    logged: Checkpoint | None,
    key: Ed25519PublicKey,
    log_path: Path,
) -> list[Finding]:
    found: list[Finding] = []
    for where, checkpoint in (("the database", stored), (str(log_path), logged)):
        if checkpoint is not None and not checkpoint.signed_by(key):
            found.append(
                (row, f"checkpoint of audit row {row} in {where} is forged: its signature "
                 f"does not verify with the checkpoint key {key_id(key)}")
            )  # fmt: skip
    if stored is None:
        found.append((row, f"checkpoint of audit row {row} is missing from the database"))
    elif logged is None:
        found.append((row, f"checkpoint of audit row {row} is missing from the log {log_path}"))
    elif stored != logged:
        found.append((row, f"checkpoint of audit row {row} differs between the database and "
                      f"the log {log_path}"))  # fmt: skip
    return found


def _against_chain(session: Session, valid: dict[int, Checkpoint], last_row: int) -> list[Finding]:
    query = sa.select(AuditRow.id, AuditRow.hash).where(AuditRow.id.in_(valid))
    hashes = {row.id: row.hash for row in session.execute(query)}
    found: list[Finding] = []
    beyond = [row for row in valid if row > last_row]
    if beyond:
        found.append(
            (last_row + 1, f"the audit log was truncated: it ends at row {last_row}, but a "
             f"signed checkpoint names row {max(beyond)} (rows {last_row + 1}..{max(beyond)} "
             "were deleted)")
        )  # fmt: skip
    for row, checkpoint in valid.items():
        if row > last_row:
            continue
        if row not in hashes:
            found.append((row, f"audit row {row}, signed by a checkpoint, was deleted"))
        elif hashes[row] != checkpoint.hash:
            found.append(
                (row, f"the history up to audit row {row} was rewritten and re-chained: the "
                 f"checkpoint signed hash {checkpoint.hash[:12]}…, the row now has "
                 f"{hashes[row][:12]}…")
            )  # fmt: skip
    return found


def _coverage(session: Session, anchor: Anchor, rows: list[int], last_row: int) -> list[Finding]:
    """Promotions, rollbacks and retirements without a checkpoint right after them, and runs
    of more than ``every`` rows without one (from the first checkpoint on: rows before it
    were written before checkpoints began)."""
    found: list[Finding] = []
    anchored = session.scalars(
        sa.select(AuditRow.id)
        .where(AuditRow.action.in_([str(a) for a in ANCHORED]), AuditRow.outcome == Outcome.OK)
        .order_by(AuditRow.id)
    ).all()
    for row in anchored:
        if rows and row >= rows[0] and not any(row <= c < row + SLACK for c in rows):
            found.append((row, f"audit row {row} (a promotion, rollback or retirement) has no "
                          "checkpoint: it is missing"))  # fmt: skip
    if not rows:
        if last_row > anchor.every + SLACK:
            found.append((1, f"no checkpoint at all for {last_row} audit rows: they are missing"))
        return found
    for start, end in zip(rows, [*rows[1:], last_row], strict=True):
        if end - start > anchor.every + SLACK:
            found.append((start + 1, f"no checkpoint between audit rows {start} and {end} "
                          f"(one is due every {anchor.every} rows): missing"))  # fmt: skip
    return found


def _read_log(path: Path) -> tuple[dict[int, Checkpoint], list[Finding]]:
    if not path.exists():
        return {}, []
    logged: dict[int, Checkpoint] = {}
    found: list[Finding] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            checkpoint = Checkpoint(**json.loads(line))
        except (ValueError, TypeError) as err:
            found.append((0, f"line {number} of the checkpoint log {path} is unreadable ({err})"))
            continue
        logged[checkpoint.row] = checkpoint
    return logged, found


def _create_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)


def _load_key(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            f"the checkpoint key {path} has mode {mode:o}: others may read it (chmod 600 {path})"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{path} is not a usable checkpoint key: {err}") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key
