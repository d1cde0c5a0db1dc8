"""What a bentogate host runs: every process pointing into its home, one row per tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import processes

_SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
# A parent holding a child: one tree, counted once.
_TREE = [sys.executable, "-c",
         "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
         "'import time; time.sleep(60)']); time.sleep(60)"]  # fmt: skip


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for child in children:
        child.kill()
        child.wait()


def _start(
    children: list[subprocess.Popen[bytes]], argv: list[str], **kwargs: Any
) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kwargs)
    children.append(child)
    return child


def _rows(
    home: Path, bentos: Iterable[int] = (), haproxy: int | None = None
) -> dict[int, dict[str, Any]]:
    return {row["pid"]: row for row in processes.processes_of(home, bentos=bentos, haproxy=haproxy)}


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def test_a_process_is_the_hosts_by_env_cwd_open_file_or_argv(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "homes"  # a prefix is not "under"
    home.mkdir()
    elsewhere.mkdir()
    env = {**os.environ, "BENTOGATE_CONFIG": str(home / "run" / "settings.json")}
    by_env = _start(started, _SLEEP, env=env)
    by_cwd = _start(started, _SLEEP, cwd=home)
    with (home / "expire.log").open("ab") as log:
        by_file = _start(started, _SLEEP, stdout=log)
    by_argv = _start(started, [*_SLEEP, f"--home={home}"])
    unrelated = _start(started, _SLEEP, cwd=elsewhere)
    _wait_for(lambda: len(_rows(home)) >= 4)
    rows = _rows(home)
    assert {by_env.pid, by_cwd.pid, by_file.pid, by_argv.pid} <= set(rows)
    assert unrelated.pid not in rows and os.getpid() not in rows
    row = rows[by_env.pid]
    assert row["kind"] == "other"
    assert row["name"] == f"{os.path.basename(sys.executable)} -c import time; time.sleep(60)"
    assert isinstance(row["resident_mib"], float) and row["resident_mib"] > 1


def test_a_tree_is_one_row_and_known_pids_name_its_kind(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    tree = _start(started, _TREE, cwd=tmp_path, start_new_session=True)
    alone = _start(started, _SLEEP, cwd=tmp_path)
    try:
        _wait_for(lambda: any(processes.parent(p) == tree.pid for p in processes._pids()))
        rows = _rows(tmp_path, bentos=[tree.pid], haproxy=alone.pid)
        assert set(rows) == {tree.pid, alone.pid}  # the tree's child is not a row of its own
        assert rows[tree.pid]["kind"] == "bento" and rows[alone.pid]["kind"] == "haproxy"
        only = processes.resident_bytes([tree.pid])[tree.pid]
        assert only is not None and rows[tree.pid]["resident_mib"] == pytest.approx(
            only / 2**20, rel=0.2
        )
    finally:
        os.killpg(tree.pid, 9)  # its child too


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (["/v/bin/python", "-m", "bentoml", "serve", "fraud:1", "--port", "3001"], "bento"),
        (["/usr/sbin/haproxy", "-W", "-D", "-f", "/h/haproxy.cfg"], "haproxy"),
        (["/v/bin/bentogate", "agent", "--host", "h1"], "agent"),
        (["/v/bin/python", "-m", "bentogate.expirer"], "other"),
        (["/v/bin/python", "/h/_logwriter.py", "/h/run/log.fifo"], "other"),
    ],
)
def test_the_kind_of_a_tree_nobody_named(argv: list[str], kind: str) -> None:
    assert processes._kind(argv) == kind


def test_short_names_drop_the_paths() -> None:
    argv = ["/x/.venv/bin/python", "-m", "bentogate.expirer"]
    assert processes.short_name(argv) == "python -m bentogate.expirer"
    assert processes.short_name(["a" * 100], limit=10) == "a" * 9 + "…"
