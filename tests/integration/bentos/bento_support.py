"""Helpers of the Bento integration tests: ports, HTTP, serving Bentos, schemathesis runs."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from free_ports import free_port

from bentogate.bentos.runtime import Handle, ProcessBackend, http_status
from bentogate.modelimport import Artifact


@dataclass(frozen=True)
class Built:
    """A Bento built for a test: its tag, the BentoML home it is in, its model's artifact."""

    tag: str
    home: Path
    artifact: Artifact

    @property
    def model(self) -> str:
        return self.tag.split(":", 1)[0]

    @property
    def version(self) -> str:
        return self.tag.split(":", 1)[1]


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """One HTTP request to 127.0.0.1:``port``; status and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def post_json(port: int, path: str, document: Any) -> tuple[int, dict[str, Any]]:
    status, body = request(port, "POST", path, json.dumps(document).encode())
    return status, json.loads(body)


def get_json(port: int, path: str) -> tuple[int, dict[str, Any]]:
    status, body = request(port, "GET", path)
    return status, json.loads(body)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def serving(
    pairs: Sequence[tuple[ProcessBackend, str]], timeout: float = 90.0
) -> Iterator[list[Handle]]:
    """Start every (backend, tag) at once on its own free port, wait until all are ready,
    and stop them all afterwards, also when starting fails."""
    started: list[tuple[ProcessBackend, Handle]] = []
    try:
        for backend, tag in pairs:
            started.append((backend, backend.start(tag, free_port())))
        for backend, handle in started:
            backend.wait_ready(handle, timeout)
        yield [handle for _, handle in started]
    finally:
        for backend, handle in started:
            backend.stop(handle, 10)


def wait_live(backend: ProcessBackend, handle: Handle, timeout: float = 60.0) -> None:
    """Wait until the Bento answers ``/livez`` (its service is loaded), ready or not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not backend.is_alive(handle):
            raise AssertionError(f"{handle.tag} exited:\n{handle.log_path.read_text()[-3000:]}")
        if http_status(handle.port, "/livez") == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"{handle.tag} not live after {timeout} s")


@dataclass(frozen=True)
class FuzzRun:
    """The outcome of one ``st run``: exit code, its JSON report and its console output."""

    exit_code: int
    report: dict[str, Any]
    output: str

    @property
    def generated(self) -> int:
        return int(self.report["test_cases"]["generated"])

    def problems(self) -> str:
        """Failures and errors as schemathesis reported them (with the request to replay)."""
        found = self.report.get("failures", []) + self.report.get("errors", [])
        return json.dumps(found, indent=1, default=str)[:6000] + "\n" + self.output[-4000:]


def schemathesis_run(
    schema_url: str, work_dir: Path, *, max_examples: int = 100, timeout: float = 120.0
) -> FuzzRun:
    """``st run <schema_url> --checks not_a_server_error`` in its own process.

    Bounded by ``max_examples`` per operation (plus the deterministic coverage phase) and
    a fixed seed; runs in ``work_dir`` so hypothesis' database and the report stay there.
    """
    reports = work_dir / "schemathesis"
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", schema_url,
        "--checks", "not_a_server_error",
        "--max-examples", str(max_examples),
        "--seed", "1",
        "--workers", "1",
        "--request-timeout", "10",
        "--report", "json",
        "--report-json-path", str(reports / "report.json"),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=work_dir, capture_output=True, text=True, timeout=timeout, check=False
    )
    report_file = reports / "report.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    return FuzzRun(done.returncode, report, done.stdout + done.stderr)
