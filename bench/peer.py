"""The peer a user would pick instead: MLServer with its XGBoost runtime, serving the same
model (the XGBoost file bentogate's v1 is imported from), measured in the same run.

MLServer's pins clash with BentoML's (it brings its own uvicorn, starlette and FastAPI), so
it lives in a virtualenv of its own, ``.venv-peer`` at the project's root (git-ignored), which
:func:`peer_python` creates and installs on first use: ``./run bench`` pays for it once
(about a minute and 1.2 GB, most of it XGBoost's NCCL), ``./run test`` and ``./run demo``
never. The venv gets the XGBoost version of bentogate's environment, so both sides score
with the same library; uvloop is held at 0.21 because MLServer 1.7.1's inference worker
asks for the event loop in a way uvloop 0.22+ refuses (its workers crash at start).

MLServer runs with its defaults (one inference worker process beside the HTTP process,
XGBoost with all cores) except ``debug: false``: its default writes an access-log line per
request, and bentogate's Bentos write none either. Requests use the V2 inference protocol
(``POST /v2/models/fraud/infer``, the row as one FP32 tensor); its default output,
``predict``, is the fraud probability (the runtime loads a ``binary:logistic`` model as an
``XGBRegressor``), the figure bentogate's ``/predict`` answers as ``score``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from bench.stack import free_port

# Beside the project's .venv, not under bench/: tools that walk bench/'s sources must not
# walk 1.2 GB of site-packages.
VENV = Path(__file__).resolve().parent.parent / ".venv-peer"
MLSERVER = "1.7.1"
MODEL = "fraud"
INFER_PATH = f"/v2/models/{MODEL}/infer"


def requirements() -> list[str]:
    """What the peer's venv holds: MLServer and its XGBoost runtime, pinned, with this
    environment's XGBoost."""
    return [
        f"mlserver=={MLSERVER}",
        f"mlserver-xgboost=={MLSERVER}",
        f"xgboost=={metadata.version('xgboost')}",
        "uvloop==0.21.0",
    ]


def _environment() -> dict[str, str]:
    """This process's environment without PYTHONPATH: nothing of bentogate's leaks in."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def peer_python(venv: Path = VENV, progress: Callable[[str], None] = lambda _: None) -> Path:
    """The peer venv's python, created and installed first if it is missing or holds other
    pins (a stamp file lists what was installed). Raises CalledProcessError if pip fails."""
    wanted = "\n".join(requirements()) + "\n"
    stamp = venv / ".bench-installed"
    python = venv / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    progress(f"installing the peer (MLServer {MLSERVER}) into {venv}: once, about a minute")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # Run from the venv: pip would take the project directory (on sys.path as the working
    # directory) for installed packages and complain about bentogate's requirements.
    subprocess.run(
        [*install, *requirements()], check=True, stdout=sys.stderr, cwd=venv, env=_environment()
    )
    stamp.write_text(wanted)
    return python


def infer_body(row: np.ndarray) -> str:
    """One row as a V2 inference request body."""
    values = row.astype(float).tolist()
    tensor = {"name": "features", "shape": [1, len(values)], "datatype": "FP32", "data": values}
    return json.dumps({"inputs": [tensor]})


def write_bodies(rows: np.ndarray, path: Path) -> Path:
    """The same rows bentogate's bodies carry, as V2 request bodies (a JSON list)."""
    path.write_text(json.dumps([infer_body(row) for row in rows]))
    return path


def _repository(directory: Path, model_file: Path, ports: dict[str, int]) -> Path:
    """MLServer's model repository: server settings, one model and its settings."""
    model_dir = directory / MODEL
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_file, model_dir / "model.json")
    settings = {"debug": False, "host": "127.0.0.1", **ports}
    (directory / "settings.json").write_text(json.dumps(settings))
    model = {
        "name": MODEL,
        "implementation": "mlserver_xgboost.XGBoostModel",
        "parameters": {"uri": "./model.json"},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model))
    return directory


@dataclass(frozen=True)
class Peer:
    """A running MLServer: its HTTP port and what it was started with."""

    port: int
    pid: int
    settings: dict[str, object]

    def score(self, row: np.ndarray, timeout: float = 5.0) -> float:
        """The probability MLServer answers for ``row``. Raises RuntimeError on a non-200."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"}
            connection.request("POST", INFER_PATH, infer_body(row).encode(), headers)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"MLServer answered {response.status}: {body[:300]!r}")
        return float(json.loads(body)["outputs"][0]["data"][0])


def _ready(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        connection.request("GET", f"/v2/models/{MODEL}/ready")
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        connection.close()


@contextlib.contextmanager
def mlserver(python: Path, model_file: Path, work: Path, timeout: float = 120.0) -> Iterator[Peer]:
    """``mlserver start`` serving ``model_file`` on free ports until the block ends (its
    whole process group is stopped after). Raises RuntimeError if it exits or is not
    ready within ``timeout``, with the end of its log."""
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    repository = _repository(work / "mlserver", model_file, ports)
    log = work / "mlserver.log"
    command = [str(python.parent / "mlserver"), "start", str(repository)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=work,  # MLServer keeps its environments directory under the working one
            env=_environment(),
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while not _ready(ports["http_port"]):
            if process.poll() is not None:
                raise RuntimeError(f"mlserver exited: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlserver not ready after {timeout:.0f} s")
            time.sleep(0.25)
        settings = json.loads((repository / "settings.json").read_text())
        yield Peer(port=ports["http_port"], pid=process.pid, settings=settings)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # its inference workers too
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def versions(python: Path) -> dict[str, str]:
    """The versions the peer's venv serves with."""
    names = ("mlserver", "mlserver-xgboost", "xgboost", "uvicorn", "fastapi", "uvloop")
    script = (
        "import json\nfrom importlib import metadata\n"
        f"print(json.dumps({{n: metadata.version(n) for n in {names!r}}}))"
    )
    done = subprocess.run(
        [str(python), "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=python.parent,
        env=_environment(),
    )
    return dict(json.loads(done.stdout))
