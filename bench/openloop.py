"""An open-loop load generator: requests start on a fixed schedule, whatever the server does.

Request ``i`` is *due* at ``start + i / rate``. It goes out on an idle keep-alive connection
as soon as one is free; with every connection busy it waits in a queue. Its latency counts
from when the generator found it due, not from when it was sent, so a slow server cannot
slow the generator down and hide its own queueing (the "coordinated omission" of
closed-loop tools such as ``wrk``, where each connection waits for its answer before
sending again).

Python's event loop sleeps in whole milliseconds (epoll), so the generator finds a request
due up to ~1 ms after its time when idle; that lag is the generator's, not the server's, and
is reported apart (``late_us``) instead of being added to every latency. A generator that
falls behind its schedule shows there, and the step is not trusted.

Run as its own process: ``python -m bench.openloop --port P --rate R ...`` prints one JSON
object with the figures of the measured window (after the warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import socket
import sys
import time
from pathlib import Path

from bench.wire import predict_request, split_response


class _Connection(asyncio.Protocol):
    def __init__(self, generator: OpenLoop) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.index = 0
        self.since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, request: bytes, index: int, since: float) -> None:
        """Send request ``index``, waiting (for its latency) ``since`` then."""
        assert self.transport is not None
        self.index = index
        self.since = since
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        parsed = split_response(self.buffer)
        if parsed is None:
            return
        status, length = parsed
        self.buffer = self.buffer[length:]
        self.generator.done(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.generator.lost(self)


class OpenLoop:
    """Send ``requests`` (cycled) at ``rate`` per second for ``warmup + duration`` seconds
    over at most ``connections`` keep-alive connections; keep the measured window's figures."""

    def __init__(
        self,
        port: int,
        requests: list[bytes],
        *,
        rate: float,
        duration: float,
        warmup: float,
        connections: int,
    ) -> None:
        self.port = port
        self.requests = requests
        self.rate = rate
        self.warmup = warmup
        self.total = int(rate * (warmup + duration))
        self.measured_from = int(rate * warmup)
        self.n_connections = connections
        self.loop = asyncio.get_running_loop()
        self.connections: list[_Connection] = []
        self.idle: collections.deque[_Connection] = collections.deque()
        self.waiting: collections.deque[tuple[int, float]] = collections.deque()
        self.scheduled = 0
        self.start = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.finished = self.loop.create_future()
        self.outstanding = 0
        self.latencies: list[float] = []
        self.late: list[float] = []
        self.errors = 0
        self.lost_connections = 0
        self.completed = 0

    async def run(self, drain_timeout: float = 5.0) -> dict[str, object]:
        """Open the connections, run the schedule, wait for the answers; the figures."""
        for _ in range(self.n_connections):
            _, connection = await self.loop.create_connection(
                lambda: _Connection(self), "127.0.0.1", self.port
            )
            self.idle.append(connection)
            self.connections.append(connection)
        cpu0 = time.process_time()
        self.start = self.loop.time() + 0.01
        self._arm()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(self.finished), self.total / self.rate + drain_timeout + 0.5
            )
        wall = self.loop.time() - self.start
        cpu = time.process_time() - cpu0
        unanswered = self.total - self.completed
        for connection in self.connections:
            if connection.transport is not None:
                connection.transport.close()
        await asyncio.sleep(0)  # let the transports finish closing
        return {
            "rate": self.rate,
            "scheduled": self.total - self.measured_from,
            "measured": len(self.latencies),
            "errors": self.errors + unanswered,
            "lost_connections": self.lost_connections,
            "generator_cpu": cpu / wall if wall > 0 else 0.0,
            "latencies_us": self.latencies,
            "late_us": self.late,
            "window_s": (self.total - self.measured_from) / self.rate,
        }

    def _arm(self) -> None:
        if self.scheduled >= self.total:
            return
        due = self.start + self.scheduled / self.rate
        if self.timer is None or self.timer.when() > due:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(due, self._tick)

    def _tick(self) -> None:
        self.timer = None
        self.pump()

    def pump(self) -> None:
        """Queue every request that is due, send as many as there are idle connections."""
        now = self.loop.time()
        while self.scheduled < self.total:
            due = self.start + self.scheduled / self.rate
            if due > now:
                break
            if self.scheduled >= self.measured_from:
                self.late.append((now - due) * 1e6)
            self.waiting.append((self.scheduled, now))
            self.scheduled += 1
        while self.waiting and self.idle:
            index, found_due = self.waiting.popleft()
            self.outstanding += 1
            self.idle.popleft().send(self.requests[index % len(self.requests)], index, found_due)
        self._arm()

    def done(self, connection: _Connection, status: int) -> None:
        now = self.loop.time()
        self.outstanding -= 1
        self.completed += 1
        if connection.index >= self.measured_from:
            self.latencies.append((now - connection.since) * 1e6)
            self.errors += status != 200
        self.idle.append(connection)
        if self.completed >= self.total:
            if not self.finished.done():
                self.finished.set_result(None)
            return
        self.pump()

    def lost(self, connection: _Connection) -> None:
        if connection in self.idle:
            self.idle.remove(connection)
        elif self.outstanding > 0 and not self.finished.done():
            self.lost_connections += 1


async def _main(args: argparse.Namespace) -> dict[str, object]:
    bodies = json.loads(args.bodies.read_text())
    requests = [predict_request(args.path, body.encode()) for body in bodies]
    generator = OpenLoop(
        args.port,
        requests,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
    )
    return await generator.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/predict")
    parser.add_argument("--bodies", type=Path, required=True, help="JSON list of bodies")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=0.5, help="discarded seconds first")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    gc.disable()  # a collection here would show up as server latency
    json.dump(asyncio.run(_main(args)), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
