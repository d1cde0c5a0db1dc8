"""Load for the sidecar acceptance tests: a paced Python client that records every answer,
and ``wrk`` held to a steady rate by its ``delay()`` hook.

The Python client is open-loop-ish: each thread sends on a fixed schedule (it does not burst
to catch up), half the threads reuse one keep-alive connection, half open a new connection
per request. Every request is recorded with the time it was sent, so a test can ask "which
versions answered requests sent after this moment".
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Answer:
    """One request: when it was sent, on which kind of connection, what came back."""

    sent: float  # time.monotonic() just before the request was written
    fresh: bool  # sent on a connection opened for it (not a reused keep-alive one)
    status: int  # 0: transport error (refused, reset, timeout, …)
    version: str  # the answering model_version ("" unless 200)
    error: str = ""
    model: str = ""  # the answering model ("" unless 200)


class PacedLoad:
    """``threads`` threads POSTing /predict to ``port`` at ``rate`` req/s in total. Each
    thread walks ``bodies`` from its own start; with ``spread`` they take turns instead
    (thread i sends bodies i, i + threads, …): the load walks the list once, in order, so
    every request carries another body while the list lasts (the bake's score comparison
    counts each distinct row once)."""

    def __init__(
        self,
        port: int,
        bodies: list[bytes],
        *,
        rate: float = 240.0,
        threads: int = 4,
        spread: bool = False,
    ) -> None:
        self.port = port
        self.bodies = bodies
        self.step = threads if spread else 1
        self.period = threads / rate
        self.answers: list[Answer] = []  # list.append is atomic: no lock needed to add
        self.started = 0.0
        self.stopped = 0.0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i, i % 2 == 0), daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> PacedLoad:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        self.stopped = time.monotonic()

    @property
    def total(self) -> int:
        return len(self.answers)

    def rate(self) -> float:
        """Requests per second actually sent."""
        end = self.stopped or time.monotonic()
        return self.total / max(1e-9, end - self.started)

    def failures(self) -> list[Answer]:
        """Every answer that is not a 200 (HTTP errors and transport errors)."""
        return [a for a in list(self.answers) if a.status != 200]

    def versions(
        self, since: float = 0.0, until: float = float("inf"), *, fresh_only: bool = False
    ) -> Counter[str]:
        """Versions of the 200s to requests sent in ``[since, until)``."""
        return Counter(
            a.version
            for a in list(self.answers)
            if a.status == 200 and since <= a.sent < until and (a.fresh or not fresh_only)
        )

    def served(self, since: float = 0.0, until: float = float("inf")) -> Counter[tuple[str, str]]:
        """(model, version) of the 200s to requests sent in ``[since, until)``."""
        return Counter(
            (a.model, a.version)
            for a in list(self.answers)
            if a.status == 200 and since <= a.sent < until
        )

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Block until ``count`` more answers have arrived."""
        target = self.total + count
        deadline = time.monotonic() + timeout
        while self.total < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"load stuck at {self.total} answers (waiting for {target})")
            time.sleep(0.01)

    def summary(self) -> str:
        statuses = Counter((a.status, a.version) for a in list(self.answers))
        failed = [f"{a.sent - self.started:.3f}s {a.status} {a.error}" for a in self.failures()]
        text = f"{self.total} requests at {self.rate():.0f} req/s: {dict(statuses)}"
        return text + (f"; failures (s after start): {failed[:5]}" if failed else "")

    def _run(self, index: int, keep_alive: bool) -> None:
        conn: http.client.HTTPConnection | None = None
        headers = {"Content-Type": "application/json"}
        due = time.monotonic() + self.period * index / len(self._threads)
        n = index
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due = max(due + self.period, time.monotonic())  # late: no burst to catch up
            body = self.bodies[n % len(self.bodies)]
            n += self.step
            fresh = conn is None
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            sent = time.monotonic()
            try:
                conn.request("POST", "/predict", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.answers.append(Answer(sent, fresh, 0, "", repr(exc)))
                conn.close()
                conn = None
                continue
            if response.status == 200:
                answer = json.loads(payload)
                version, model = str(answer["model_version"]), str(answer["model"])
                self.answers.append(Answer(sent, fresh, 200, version, model=model))
            else:
                error = payload[:200].decode(errors="replace")
                self.answers.append(Answer(sent, fresh, response.status, "", error))
            if not keep_alive or response.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()


@dataclass(frozen=True)
class WrkResult:
    requests: int
    non_2xx: int
    socket_errors: int
    output: str


class PacedWrk:
    """``wrk`` POSTing ``body`` over ``connections`` keep-alive connections, each waiting
    ``delay_ms`` between requests (about connections * 1000 / (delay_ms + latency) req/s).

    Runs until ``stop()`` (SIGINT: wrk prints its summary) or ``max_seconds``.
    """

    def __init__(
        self,
        port: int,
        body: bytes,
        script_dir: Path,
        *,
        connections: int = 2,
        delay_ms: int = 10,
        max_seconds: int = 120,
    ) -> None:
        script = script_dir / "paced_post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = [==[{body.decode()}]==]\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"function delay() return {delay_ms} end\n"
        )
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{max_seconds}s", "-s", str(script)]
        self.proc = subprocess.Popen(
            [*argv, f"http://127.0.0.1:{port}/predict"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def stop(self, timeout: float = 15.0) -> WrkResult:
        """Stop wrk (SIGINT) and parse its summary; killed if it does not finish."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        done = re.search(r"(\d+) requests in", out)
        if done is None:
            raise AssertionError(f"wrk printed no summary:\n{out}")
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        sock = re.search(
            r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
        )
        return WrkResult(
            requests=int(done.group(1)),
            non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
            socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
            output=out,
        )
