"""`bentogate status` exit codes (HAProxy's view faked) and `bentogate logs` (a request log
written by hand), over a real SQLite governance DB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import run

from bentogate import cli, tables
from bentogate.bentos import log_path
from bentogate.context import Context
from bentogate.errors import ExitCode
from bentogate.governance import Role
from bentogate.settings import Settings
from bentogate.status import Problem, Status

REQUEST = (
    "2026-12-06T02:22:12.993181+00:00 127.0.0.1:37250 [06/Dec/2026:02:22:12.992] {fe} "
    '{be}/v1_3001 0/0/0/1/1 200 187 - - ---- 2/1/0/0/0 0/0 "POST /predict HTTP/1.1"'
)


def down_row() -> dict[str, Any]:
    return {
        "model": "fraud", "version": "2", "state": "production", "role": "live",
        "warm_until": None, "bake": None, "production_port": 10000, "candidate_port": 10001,
        "backend_port": 3002, "health": "DOWN", "check": "L7RSP", "check_ms": 1,
        "last_check": "wrong model or version", "sessions": 0, "req_per_s": 3, "5xx": 0,
        "rtime_ms": 1, "ttime_ms": 1, "memory_mb": 250.0,
    }  # fmt: skip


def fake_status(monkeypatch: pytest.MonkeyPatch, problems: list[Problem]) -> None:
    seen = Status([down_row()], problems)
    monkeypatch.setattr(cli, "host_status", lambda ctx: seen)


def test_status_of_a_host_running_nothing_exits_0(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "--home", str(tmp_path), "status")
    assert (code, out.strip()) == (0, "nothing deployed on this host"), err


def test_status_exits_non_zero_while_a_routed_server_is_not_up(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    why = Problem("fraud:2 on :3002 takes the traffic of production :10000 but is DOWN")
    fake_status(monkeypatch, [why])
    code, out, err = run(capsys, "--home", str(tmp_path), "status")
    assert code == ExitCode.ERROR
    assert "wrong model or version" in out and "✗ fraud:2 on :3002" in out
    assert err.strip() == f"error: {why.text}"
    code, out, _ = run(capsys, "--home", str(tmp_path), "status", "--json")
    assert code == ExitCode.ERROR and '"health": "DOWN"' in out
    fake_status(monkeypatch, [])  # the same rows, none of them routed
    assert run(capsys, "--home", str(tmp_path), "status")[0] == 0


@pytest.mark.parametrize("problems", [[], [Problem("fraud:2 … is DOWN")]])
def test_status_watch_ends_at_ctrl_c_with_the_exit_code_of_its_last_look(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    problems: list[Problem],
) -> None:
    fake_status(monkeypatch, problems)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(tables.time, "sleep", sleep)
    code, out, _ = run(capsys, "--home", str(tmp_path), "status", "--watch", "0.5")
    assert sleeps == [0.5, 0.5]
    assert out.count("every 0.5 s") == 2 and out.count("wrong model or version") == 2
    assert code == (ExitCode.ERROR if problems else 0)


def test_logs_prints_a_models_requests_and_names_each_bento_log(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ctx = Context(Settings(home=tmp_path))
    try:
        reg = ctx.registry
        reg.ensure_model("fraud", owner="risk", production_port=10000, actor="admin")
        reg.register_version("fraud", sha256="a" * 64, feature_names=["f1"], threshold=0.5,
                             metrics={}, developer="dana", artifact_uri="/nowhere")  # fmt: skip
        reg.validate("fraud", "1", actor="vic", results={}, passed=True)
        reg.approve("fraud", "1", actor="ana")
        reg.record_deployment("fraud", "1", host="local", port=3001, pid=None,
                              role=Role.CANDIDATE)  # fmt: skip
        bento_log = log_path(ctx.settings.logs_dir, "fraud:1", 3001)
        bento_log.write_text("bentoml serve output\n")
        mine = [REQUEST.format(fe="fe_fraud", be="be_fraud_1"),
                REQUEST.format(fe="fe_fraud_candidate", be="be_fraud_1")]  # fmt: skip
        other = REQUEST.format(fe="fe_other", be="be_other_1")
        ctx.sidecar.paths.access_log.write_text("\n".join([mine[0], other, mine[1]]) + "\n")
    finally:
        ctx.close()
    home = ["--home", str(tmp_path)]
    code, out, err = run(capsys, *home, "logs", "fraud")
    assert code == 0, err
    assert out.splitlines() == mine
    assert f"Bento log of fraud:1 on :3001 (running): {bento_log}" in err
    assert f"HAProxy request log: {tmp_path / 'logs' / 'haproxy.log'}" in err
    code, out, _ = run(capsys, *home, "logs", "-n", "2")
    assert (code, out.splitlines()) == (0, [other, mine[1]])
    code, _, err = run(capsys, *home, "logs", "nosuch")
    assert code == ExitCode.ERROR and "nosuch" in err
