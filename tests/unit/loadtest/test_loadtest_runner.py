"""run_gate's process handling (with stand-in commands) and the package's boundaries."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bentogate import loadtest
from bentogate.errors import ConfigError, LoadTestError
from bentogate.loadtest import GatePolicy, Target, run_gate
from bentogate.loadtest.runner import _ProgressTail, _run_locust, format_progress, locust_command
from bentogate.settings import GateSettings

LOADTEST = Path(loadtest.__file__).parent
POLICY = GatePolicy.from_settings(GateSettings())


def test_public_api() -> None:
    for name in loadtest.__all__:
        assert hasattr(loadtest, name), name
    assert {"GatePolicy", "Target", "TargetFigures", "GateResult", "run_gate", "evaluate"} <= set(
        loadtest.__all__
    )


def test_nothing_but_the_locustfile_imports_locust() -> None:
    for path in LOADTEST.glob("*.py"):
        if path.name != "locustfile.py":
            imports = re.findall(r"^\s*(?:from|import)\s+(\w+)", path.read_text(), re.M)
            assert not {"locust", "gevent"} & set(imports), path
    imported = "any(m in sys.modules for m in ('locust', 'gevent'))"
    code = f"import sys, bentogate.loadtest; sys.exit({imported})"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_no_rows_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        run_gate(Target("candidate", "http://127.0.0.1:1", "1"), [], POLICY, tmp_path)


def test_locust_command_is_headless_with_report_and_config(tmp_path: Path) -> None:
    cmd = locust_command(tmp_path / "c.json", Target("candidate", "http://h:1/", "3"), POLICY,
                         tmp_path / "l.html", 23.0)  # fmt: skip
    assert cmd[:3] == [sys.executable, "-m", "locust"]
    assert cmd[cmd.index("--run-time") + 1] == "56s"  # a backstop: 23 s + drain + slack / 2
    assert "--headless" in cmd and cmd[cmd.index("--users") + 1] == str(POLICY.users)
    assert cmd[cmd.index("--host") + 1] == "http://h:1"
    assert "--html" in cmd and "--gate-config" in cmd


def test_a_failing_locust_raises_with_its_log_tail(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; print('boom: bad locustfile'); sys.exit(3)"]
    with pytest.raises(LoadTestError, match=r"(?s)code 3.*boom: bad locustfile"):
        _run_locust(cmd, tmp_path, tmp_path / "log", 30.0, None)


def test_a_hanging_locust_is_killed_at_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    started = time.monotonic()
    with pytest.raises(LoadTestError, match="did not finish within 1 s"):
        _run_locust([sys.executable, "-c", code], tmp_path, tmp_path / "log", 1.0, None)
    assert time.monotonic() - started < 10
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_progress_lines_are_forwarded_whole(tmp_path: Path) -> None:
    path = tmp_path / "progress-local.jsonl"
    got: list[str] = []
    tail = _ProgressTail(path, got.append)
    tail.poll()  # no file yet
    line = {"t": 1.0, "done": 200, "rate": 200, "errors": 1, "cpu": 0.2, "p99_ms": 3.25}
    path.write_text(json.dumps(line) + "\n" + '{"t": 2.0, "do')
    tail.poll()
    assert got == ["  t=   1.0s rate=   200/s p99=  3.2 ms errors=1 done=200 cpu=20%"]
    with path.open("a") as f:
        f.write('ne": 400, "rate": 200, "errors": 1, "cpu": null, "p99_ms": null}\n')
    tail.poll()
    assert len(got) == 2 and "p99=  n/a" in got[1] and "cpu=n/a" in got[1]


def test_format_progress() -> None:
    text = format_progress({"t": 3.0, "done": 9, "rate": 3, "errors": 0, "cpu": None,
                            "p99_ms": 12.0})  # fmt: skip
    assert "p99= 12.0 ms" in text
