"""One expirer per host: a cutover while one runs starts no second one."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bentogate import warm
from bentogate.context import Context, Ref
from bentogate.locks import file_lock
from bentogate.settings import Settings


def test_a_cutover_starts_an_expirer_only_when_none_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = Context(Settings(home=tmp_path))
    pending = [warm.Warm(Ref("fraud", "1"), datetime.now(UTC))]
    monkeypatch.setattr(warm, "warm_versions", lambda _ctx: pending)
    started: list[list[str]] = []

    class Started:
        pid = 999_999_999

        def __init__(self, argv: list[str], **_: Any) -> None:
            started.append(argv)

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", Started)
    try:
        with file_lock(warm.expirer_lock(ctx), 0):  # as a running expirer holds it
            assert warm.expirer_runs(ctx)
            assert warm.schedule_expiry(ctx) == pending
            assert started == []
        assert not warm.expirer_runs(ctx)
        assert warm.schedule_expiry(ctx) == pending
        assert [argv[1:] for argv in started] == [["-m", "bentogate.expirer"]]
    finally:
        ctx.close()
