"""What the figures were measured on, and how busy the machine was besides the benchmark."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over ``seconds`` (0..1), whoever uses them."""
    busy0, total0 = _cpu_times()
    time.sleep(seconds)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(total1 - total0, 1)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _haproxy_version() -> str | None:
    binary = shutil.which("haproxy")
    if binary is None:
        return None
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    first = done.stdout.splitlines()[0] if done.stdout else ""
    return first.split()[2] if len(first.split()) > 2 else first


def revision(directory: Path) -> str | None:
    """The commit ``directory``'s tree is checked out at, with " + uncommitted changes" if
    its tracked files differ from it; None outside a git checkout."""
    git = ["git", "-C", str(directory)]
    head = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=False)  # fmt: skip
    if head.returncode != 0:
        return None
    changed = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True, check=False)  # fmt: skip
    return head.stdout.strip() + (" + uncommitted changes" if changed.stdout.strip() else "")


def describe() -> dict[str, object]:
    """CPU count and model, load average, Python and the versions that shape the figures."""
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((ln.split(":", 1)[1].strip() for ln in handle if "model name" in ln), "")
    except OSError as exc:
        model = f"unknown ({exc})"
    packages = (
        "bentoml", "onnxruntime", "xgboost", "scikit-learn", "uvicorn", "starlette", "h11",
        "httptools", "uvloop", "orjson", "numpy",
    )  # fmt: skip
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "load_average_1m": os.getloadavg()[0],
        "haproxy": _haproxy_version(),
        "packages": {name: _version(name) for name in packages},
    }
