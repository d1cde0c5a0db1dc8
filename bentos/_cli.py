"""Running the ``bentoml`` command line against one BentoML home (the only way in here)."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bentogate.errors import BuildError


def bentoml_env(bentoml_home: Path) -> dict[str, str]:
    """The environment of every BentoML process bentogate starts: its own store, no tracking."""
    env = dict(os.environ)
    env["BENTOML_HOME"] = str(bentoml_home.resolve())
    env["BENTOML_DO_NOT_TRACK"] = "True"
    return env


def bentoml_command() -> list[str]:
    """``bentoml`` from the interpreter running bentogate (the venv's, not whatever is on PATH)."""
    return [sys.executable, "-m", "bentoml"]


def run_bentoml(
    args: Sequence[str],
    bentoml_home: Path,
    *,
    cwd: Path | None = None,
    timeout: float = 600.0,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """Run ``bentoml <args>``; return stdout. Raises BuildError with the output's tail.
    ``env`` is added to the environment; with ``on_line`` each line of its output goes
    there as it comes (a long step's progress) and nothing is returned."""
    return run_python(
        bentoml_command()[1:] + list(args),
        bentoml_home,
        cwd=cwd,
        timeout=timeout,
        env=env,
        on_line=on_line,
    )


def run_python(
    args: Sequence[str],
    bentoml_home: Path,
    *,
    cwd: Path | None = None,
    timeout: float = 600.0,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """Run ``python <args>`` with the BentoML environment (and ``env``); return stdout or
    raise BuildError. With ``on_line``, see :func:`run_bentoml`."""
    command = [sys.executable, *args]
    environment = {**bentoml_env(bentoml_home), **(env or {})}
    if on_line is not None:
        code, tail = stream_lines(command, environment, timeout, on_line, cwd=cwd)
        if code != 0:
            raise BuildError(f"{' '.join(args[:3])} failed (exit {code}):\n{tail}")
        return ""
    try:
        done = subprocess.run(
            command,
            env=environment,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{' '.join(args[:3])} did not finish in {timeout:.0f} s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise BuildError(f"{' '.join(args[:3])} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def stream_lines(
    command: Sequence[str],
    env: Mapping[str, str],
    timeout: float,
    on_line: Callable[[str], None],
    *,
    cwd: Path | None = None,
) -> tuple[int, str]:
    """Run ``command``, handing each line of its output (stdout and stderr) to ``on_line``
    as it comes; killed after ``timeout`` s. Returns its exit code (-9 when killed, with a
    line saying so) and the last 15 lines. OSError if it cannot be started."""
    tail: collections.deque[str] = collections.deque(maxlen=15)
    with subprocess.Popen(
        list(command),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                tail.append(line.rstrip())
                on_line(line.rstrip())
            code = process.wait()
        finally:
            killer.cancel()
    if code == -signal.SIGKILL:
        tail.append(f"(killed: not finished after {timeout:.0f} s)")
    return code, "\n".join(tail)
