"""Helpers for the real-haproxy tests: stand-in Bentos, specs, a load client, wrk."""

from __future__ import annotations

import http.client
import json
import re
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from free_ports import free_port

from bentogate.haproxy import ModelRoute, ProxySpec, Server, VersionBackend

STANDIN = Path(__file__).with_name("standin.py")
CANARY = '{"features":[0.5,-1.25e-05,3.0E+2,"x,y",-7]}'
MAX_BODY = 65536  # the stand-ins' "Bento" limit


class StandIn:
    """A stand-in Bento in its own process, answering as ``model`` ``version``."""

    def __init__(self, model: str, version: str, timeout: float = 10.0) -> None:
        self.model, self.version = model, version
        self.proc = subprocess.Popen(
            [sys.executable, str(STANDIN), model, version],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.stop()
            raise RuntimeError(f"stand-in {model}:{version} did not start")
        self.port = int(self.proc.stdout.readline())

    def set_mode(self, mode: str) -> None:
        """``ok``, ``503``, ``500``, ``hang``, ``slow`` (predictions, not checks, answered
        after 3 s) or ``wrong`` (another version's identity)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("POST", "/_mode", body=mode)
        assert conn.getresponse().status == 200
        conn.close()

    def stop(self) -> None:
        """Kill the process (like a crashed Bento)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()


def version_backend(model: str, version: str, *servers: StandIn) -> VersionBackend:
    """The backend of stand-ins answering as ``model`` ``version``."""
    return VersionBackend(
        model=model,
        version=version,
        servers=tuple(Server(f"r{i}", s.port) for i, s in enumerate(servers, 1)),
        canary_body=CANARY,
        expect_strings=(f'"model":"{model}","model_version":"{version}"',),
        max_body_bytes=MAX_BODY,
        expect_rstring=r'"score":[0-9.eE+-]+,',
    )


@dataclass
class Ports:
    production: int = field(default_factory=free_port)
    candidate: int = field(default_factory=free_port)
    stats: int = field(default_factory=free_port)


def spec_of(
    ports: Ports,
    backends: list[VersionBackend],
    live: str | None,
    candidate: str | None = None,
    model: str = "fraud",
) -> ProxySpec:
    """A one-model spec."""
    route = ModelRoute(model, ports.production, ports.candidate, live, candidate, tuple(backends))
    return ProxySpec(routes=(route,), stats_port=ports.stats)


def post(port: int, body: bytes = b'{"features":[1,2]}', timeout: float = 5) -> tuple[int, bytes]:
    """One POST /predict on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class LoadClient:
    """Threads POSTing /predict in a loop; counts answers by (status, model_version).

    Half the threads use keep-alive connections, half a new connection per request.
    Transport errors are counted under status 0.
    """

    def __init__(self, port: int, threads: int = 6) -> None:
        self.port = port
        self.results: Counter[tuple[int, str]] = Counter()
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i % 2 == 0,), daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> LoadClient:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.results.values())

    def failed(self) -> int:
        """Answers that are not 200."""
        with self._lock:
            return sum(n for (status, _), n in self.results.items() if status != 200)

    def versions(self) -> set[str]:
        with self._lock:
            return {v for (status, v) in self.results if status == 200}

    def _record(self, status: int, version: str, error: str = "") -> None:
        with self._lock:
            self.results[(status, version)] += 1
            if error and len(self.errors) < 20:
                self.errors.append(error)

    def _run(self, keep_alive: bool) -> None:
        conn: http.client.HTTPConnection | None = None
        body = b'{"features":[1,2]}'
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("POST", "/predict", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                version = ""
                if response.status == 200:
                    version = json.loads(payload)["model_version"]
                self._record(
                    response.status, version, "" if response.status == 200 else str(payload)
                )
                if not keep_alive or response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self._record(0, "", repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Block until ``count`` more answers have arrived."""
        target = self.total + count
        deadline = time.monotonic() + timeout
        while self.total < target:
            assert time.monotonic() < deadline, f"load client stuck at {self.total}"
            time.sleep(0.01)


@dataclass
class WrkResult:
    requests: int
    non_2xx: int
    socket_errors: int
    output: str


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"features":[1,2]}'
wrk.headers["Content-Type"] = "application/json"
"""


def start_wrk(
    port: int, seconds: float, script_dir: Path, connections: int = 8
) -> subprocess.Popen[str]:
    """Start ``wrk`` POSTing /predict over keep-alive connections for ``seconds``."""
    script = script_dir / "post.lua"
    script.write_text(WRK_SCRIPT)
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script)]
    return subprocess.Popen(
        [*argv, f"http://127.0.0.1:{port}/predict"], stdout=subprocess.PIPE, text=True
    )


def wrk_result(proc: subprocess.Popen[str], timeout: float = 30) -> WrkResult:
    """Wait for ``wrk`` and parse its summary."""
    out, _ = proc.communicate(timeout=timeout)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(g) for g in sock.groups()) if sock else 0
    return WrkResult(requests, int(non_2xx.group(1)) if non_2xx else 0, errors, out)
