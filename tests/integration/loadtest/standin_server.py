"""A stand-in prediction server with controlled latency: the instrument the gate is tested on.

``python standin_server.py --version 3 --delay-ms 30 --error-fraction 0.05`` binds a free
port on 127.0.0.1 (the OS picks it), prints ``PORT <n>`` on stdout, and answers
``POST /predict`` like a Bento: ``{"score", "label", "model", "model_version"}`` with its own
time for the request in ``Server-Timing: svc;dur=<ms>`` (the delay included; left out with
``--no-server-timing``). Inputs whose body hash falls in the error fraction get a 500, the
same inputs every time.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
import zlib

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def make_app(
    version: str, delay_s: float, error_fraction: float, server_timing: bool = True
) -> Starlette:
    """The ASGI app: fixed answer, optional sleep, deterministic 500s for some inputs."""
    cutoff = int(error_fraction * 2**32)

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        body = await request.body()
        if delay_s:
            await asyncio.sleep(delay_s)
        if cutoff and zlib.crc32(body) < cutoff:
            return Response(b'{"detail":"boom"}', status_code=500, media_type="application/json")
        features = orjson.loads(body)["features"]
        score = (sum(features) % 1.0) if features else 0.0
        payload = {"score": score, "label": int(score > 0.5), "model": "fraud",
                   "model_version": version}  # fmt: skip
        content = orjson.dumps(payload)
        timing = {"server-timing": f"svc;dur={(time.perf_counter() - started) * 1e3:.3f}"}
        return Response(content, media_type="application/json",
                        headers=timing if server_timing else None)  # fmt: skip

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", default="1")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--error-fraction", type=float, default=0.0)
    parser.add_argument("--no-server-timing", action="store_true")
    args = parser.parse_args(argv)
    # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on such sockets, and without
    # it Nagle + delayed ACK add 40 ms to every response (measured: 44 ms vs 0.5 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    app = make_app(args.version, args.delay_ms / 1e3, args.error_fraction,
                   server_timing=not args.no_server_timing)  # fmt: skip
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
