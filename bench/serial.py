"""Serial latency: one request at a time over one keep-alive connection.

Run as its own process (``python -m bench.serial``) so the measuring interpreter holds
nothing but this loop; it prints ``{"latencies_us": [...], "errors": n}`` as JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import socket
import sys
import time
from pathlib import Path

from bench.wire import predict_request, split_response


def measure(port: int, requests: list[bytes], count: int, warmup: int) -> dict[str, object]:
    """Send ``warmup + count`` requests (cycling ``requests``); latencies of the last ``count``.

    A non-200 answer counts as an error (its latency is kept). Raises OSError if the
    server closes the connection.
    """
    latencies: list[float] = []
    errors = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        gc.disable()  # the client's own collections must not show up as server latency
        try:
            for i in range(warmup + count):
                request = requests[i % len(requests)]
                buffer = b""
                started = time.perf_counter_ns()
                sock.sendall(request)
                while (parsed := split_response(buffer)) is None:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise OSError("server closed the connection")
                    buffer += chunk
                elapsed = time.perf_counter_ns() - started
                if i >= warmup:
                    latencies.append(elapsed / 1000)
                    errors += parsed[0] != 200
        finally:
            gc.enable()
    return {"latencies_us": latencies, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/predict")
    parser.add_argument("--bodies", type=Path, required=True, help="JSON list of bodies")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    args = parser.parse_args(argv)
    bodies = json.loads(args.bodies.read_text())
    requests = [predict_request(args.path, body.encode()) for body in bodies]
    json.dump(measure(args.port, requests, args.count, args.warmup), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
