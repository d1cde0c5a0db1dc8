"""Running the ``bentoml`` command line against one BentoML home (the only way in here)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
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
    args: Sequence[str], bentoml_home: Path, *, cwd: Path | None = None, timeout: float = 600.0
) -> str:
    """Run ``bentoml <args>``; return stdout. Raises BuildError with the output's tail."""
    return run_python(bentoml_command()[1:] + list(args), bentoml_home, cwd=cwd, timeout=timeout)


def run_python(
    args: Sequence[str], bentoml_home: Path, *, cwd: Path | None = None, timeout: float = 600.0
) -> str:
    """Run ``python <args>`` with the BentoML environment; return stdout or raise BuildError."""
    command = [sys.executable, *args]
    try:
        done = subprocess.run(
            command,
            env=bentoml_env(bentoml_home),
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
