"""Every refusal says why, with what was measured, and leaves an audit row (SQLite, CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from cli_support import run
from sqlalchemy.orm import Session

from bentogate.context import Context
from bentogate.governance.audit import row_hash
from bentogate.governance.schema import GENESIS_HASH, AuditHead, AuditRow
from bentogate.settings import Settings


@pytest.fixture
def registered(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_files: tuple[Path, Path]
) -> list[str]:
    """``--home`` of a state directory where fraud:1 is registered by dana."""
    model, data = model_files
    home = ["--home", str(tmp_path)]
    code, _, err = run(capsys, *home, "register", "fraud", str(model), "--reference", str(data),
                       "--developer", "dana")  # fmt: skip
    assert code == 0, err
    return home


def _audit(capsys: pytest.CaptureFixture[str], home: list[str]) -> list[dict[str, object]]:
    code, out, err = run(capsys, *home, "audit", "fraud:1", "--json")
    assert code == 0, err
    return list(json.loads(out)["entries"])


def test_release_of_a_rejected_version_names_the_measured_reason(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    registered: list[str],
    model_files: tuple[Path, Path],
) -> None:
    why = "AUC 0.7012 < production 2's 0.8120 - 0.005"
    ctx = Context(Settings(home=tmp_path))
    ctx.registry.validate("fraud", "1", actor="vic", results={}, passed=False, why=why)
    ctx.close()
    code, _, err = run(capsys, *registered, "release", "fraud:1", "--holdout", str(model_files[1]),
                       "--validator", "vic", "--approver", "ana", "--actor", "rel")  # fmt: skip
    assert code == 3
    assert "a rejected version cannot be released" in err
    assert f"validation failed: {why}" in err
    rejected = [e for e in _audit(capsys, registered) if e["to_state"] == "rejected"]
    assert [e["reason"] for e in rejected] == [f"validation failed: {why}"]


def test_a_model_file_swapped_after_approval_is_refused_and_audited_at_build(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    registered: list[str],
    model_files: tuple[Path, Path],
) -> None:
    home = registered
    code, _, err = run(capsys, *home, "validate", "fraud:1", "--holdout", str(model_files[1]),
                       "--actor", "vic")  # fmt: skip
    assert code == 0, err
    assert run(capsys, *home, "approve", "fraud:1", "--actor", "ana")[0] == 0
    (onnx,) = (tmp_path / "artifacts").glob("*/model.onnx")
    onnx.write_bytes(onnx.read_bytes() + b"\0")  # swapped after approval
    code, _, err = run(capsys, *home, "build", "fraud:1", "--actor", "rel")
    assert code == 3, err
    assert "differs from the registered" in err and "artifact integrity" in err
    last = _audit(capsys, home)[-1]
    assert (last["action"], last["outcome"], last["actor"]) == ("verify_artifact", "refused", "rel")
    assert str(onnx) in str(last["reason"])


def test_audit_verify_names_a_history_rewritten_and_rechained(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, registered: list[str]
) -> None:
    """A retirement is checkpointed (signed, in the DB and in the log outside it); then row 1
    is edited and every hash after it recomputed with the project's own code."""
    home = registered
    assert run(capsys, *home, "retire", "fraud:1", "--reason", "superseded")[0] == 0
    code, out, err = run(capsys, *home, "audit", "verify")
    assert code == 0 and "1 signed checkpoints verified" in out, err
    assert (tmp_path / "audit-checkpoints.jsonl").read_text().count("\n") == 1
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'governance.db'}")
    with Session(engine) as session, session.begin():
        session.execute(sa.text("DROP TRIGGER audit_log_no_update"))
        rows = list(session.scalars(sa.select(AuditRow).order_by(AuditRow.id)))
        rows[0].reason = "nothing was added"
        previous = GENESIS_HASH
        for row in rows:
            row.prev_hash = previous
            row.hash = previous = row_hash(row)
            session.flush()
        head = session.get(AuditHead, 1)
        assert head is not None
        head.last_hash = previous
    engine.dispose()
    code, _, err = run(capsys, *home, "audit", "verify")
    assert code == 3
    assert f"the history up to audit row {len(rows)} was rewritten and re-chained" in err
