"""Real processes for the end-to-end benchmarks: a bentogate host (governance DB, Bentos
built and served by BentoML, the sidecar HAProxy) on ports the OS hands out, and the bare
uvicorn + onnxruntime reference endpoint."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from bentogate import release
from bentogate.context import PROJECT_DIR, Context
from bentogate.settings import GateSettings, Settings

MODEL = "fraud"
ACTORS = release.Actors(developer="dana", validator="vic", approver="ana", release="rel")
# A short gate with limits a 2-core machine running the whole stack meets: the benchmark
# times the release path, the gate's strictness is tested elsewhere.
BENCH_GATE = {
    "rate": 100,
    "duration_s": 4,
    "warmup_s": 1,
    "min_samples": 100,  # per target: with live in the run, each gets half of the rate
    "p50_ms": 100,
    "p95_ms": 250,
    "p99_ms": 500,
    "max_regression": 50,
    "max_tail_regression": 50,
}


_BACKEND_WINDOW = 200


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, also_next: bool = False) -> int:
    """A port the OS hands out (free right now); with ``also_next``, one whose successor is
    free too (a model's production port and its candidate port)."""
    for _ in range(500):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if not also_next or (port < 65535 and _bindable(port + 1)):
            return port
    raise RuntimeError("the OS handed out no port with a free successor")


@contextlib.contextmanager
def bentogate_host(
    home: Path,
    *,
    workers: int,
    project_dir: Path = PROJECT_DIR,
    gate: Mapping[str, float] | None = BENCH_GATE,
) -> Iterator[Context]:
    """A bentogate host under ``home`` building Bentos from ``project_dir`` (its service.py),
    with ``gate`` as its default gate policy (None: GateSettings' defaults); every Bento and
    HAProxy it starts is stopped after."""
    production = free_port(also_next=True)
    stats = free_port()
    taken = {production, production + 1, stats}
    backends = free_port()
    while taken & set(range(backends, backends + _BACKEND_WINDOW + 1)):
        backends = free_port()
    settings = Settings(
        home=home,
        ports={
            "production_start": production,
            "production_step": 2,
            "stats": stats,
            # bentogate takes the first bindable port of the range (the OS handed out its
            # start): ports of the ephemeral range may be held by connections in TIME_WAIT.
            "backend_start": backends,
            "backend_end": min(backends + _BACKEND_WINDOW, 65535),
        },
        bento={"workers": workers},
        # explicit defaults: an environment's BENTOGATE_GATE__* must not change a benchmark
        gate=GateSettings() if gate is None else dict(gate),
    )
    ctx = Context(settings, project_dir=project_dir)
    release.init(ctx)
    try:
        yield ctx
    finally:
        try:
            release.shutdown(ctx, actor="bench")
        finally:
            ctx.close()


def production_port(ctx: Context) -> int:
    return ctx.registry.get_model(MODEL).production_port


def post(port: int, body: bytes, timeout: float = 2.0) -> tuple[int, bytes]:
    """``POST /predict`` once on a fresh connection: status and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _listening_sockets(port: int) -> set[str]:
    """The sockets listening on 127.0.0.1:``port``, as ``/proc/<pid>/fd`` links name them."""
    local = f"0100007F:{port:04X}"
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":  # 0A: LISTEN
            found.add(f"socket:[{fields[9]}]")
    return found


def listening(port: int) -> int:
    """How many sockets listen on 127.0.0.1:``port``."""
    return len(_listening_sockets(port))


def listeners(port: int) -> list[int]:
    """The pids of the processes that listen on 127.0.0.1:``port``."""
    sockets = _listening_sockets(port)
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in sockets for fd in (proc / "fd").iterdir()):
                found.append(int(proc.name))
    return sorted(found)


@contextlib.contextmanager
def bare_endpoint(
    onnx: Path, log: Path, probe: bytes, *, processes: int = 1, timeout: float = 30.0
) -> Iterator[int]:
    """Run ``bench.bare`` (``processes`` of them on one port) on a free port until the block
    ends; yields the port once every process listens and one has answered ``probe``."""
    port = free_port()
    command = [
        sys.executable, "-m", "bench.bare", "--model", str(onnx), "--port", str(port),
        "--processes", str(processes),
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"bench.bare exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                if listening(port) >= processes and post(port, probe)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"bench.bare not ready after {timeout:.0f} s")
            time.sleep(0.1)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
