"""On SQLite the actor is the OS user; naming someone else is allowed there and recorded as
unauthenticated, and inventory and show flag such sign-offs."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
from cli_support import run


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return dict(json.loads(out))


def test_named_sign_offs_are_unauthenticated_and_flagged(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_files: tuple[Path, Path]
) -> None:
    model, data = model_files
    home = ["--home", str(tmp_path)]
    me = getpass.getuser()
    code, _, err = run(capsys, *home, "register", "fraud", str(model), "--reference", str(data))
    assert code == 0, err  # registered by the OS user: authenticated
    code, _, err = run(capsys, *home, "validate", "fraud:1", "--holdout", str(data),
                       "--actor", "vic")  # fmt: skip
    assert code == 0, err
    assert run(capsys, *home, "approve", "fraud:1", "--actor", "ana")[0] == 0
    entries = _json(capsys, *home, "audit", "fraud:1")["entries"]
    assert isinstance(entries, list)
    marks = [(e["action"], e["actor"], e["authenticated"]) for e in entries]
    assert marks == [("register", me, True), ("validate", "vic", False),
                     ("approve", "ana", False)]  # fmt: skip
    story = _json(capsys, *home, "show", "fraud:1")
    assert story["unauthenticated"] == ["validate by vic", "approve by ana"]
    (row,) = _json(capsys, *home, "inventory")["models"]  # type: ignore[misc]
    assert row["unauthenticated"] == ["1"]
    code, out, _ = run(capsys, *home, "show", "fraud:1")
    assert "unauthenticated" in out and "approve by ana" in out
