"""The reference floor: bare uvicorn + onnxruntime, no framework, no input checks.

``python -m bench.bare --model model.onnx --port P`` serves ``POST /predict`` with the
same JSON contract as the Bento (a list of features in, score and label out) and nothing
else: it is what the hardware, the HTTP stack and the model cost, the best any Bento can do.

``--processes N`` serves the port from N such processes (the first one's children), each
with its own listening socket bound with ``SO_REUSEPORT``: the kernel spreads connections
over them, the bare equivalent of N replicas behind one port. Not uvicorn's ``--workers``:
those share one socket and whichever wakes first accepts, which splits connections
unevenly (the reason bentogate deploys N replicas x 1 worker rather than 1 x N). HAProxy
gives each request to the replica with the fewest in flight (``leastconn``); a floor has no
proxy to do that, and the kernel's hash of each connection over the N sockets is the
nearest it gets: the capacity search's 32 keep-alive connections split about evenly, each
process serving its share. (One connection, as in the serial figures, is served by one
process: the serial floor is the single-process one.)
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
_HEADERS = [(b"content-type", b"application/json")]


def make_app(model: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A raw ASGI app scoring one row per ``POST /predict`` with ``model`` (an ONNX file)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        row = np.asarray([orjson.loads(body)["features"]], dtype=np.float32)
        score = float(session.run(["probabilities"], {name: row})[0][0, 1])
        payload = orjson.dumps({"score": score, "label": int(score >= 0.5)})
        headers = [*_HEADERS, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1, help="processes serving the port")
    args = parser.parse_args(argv)
    others = [
        subprocess.Popen([sys.executable, "-m", "bench.bare", "--model", args.model,
                          "--port", str(args.port)])
        for _ in range(args.processes - 1)
    ]  # fmt: skip
    # uvicorn ends on SIGTERM, then raises it again under the handler it found: this one,
    # so that the others are stopped below (the default handler would end this at once).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve(args.model, args.port)
    finally:
        _stop(others)  # they go with this one
    return 0


def serve(model: str, port: int) -> None:
    """Serve ``model`` on ``port`` from this process, on a socket of its own that other
    processes may bind too (``SO_REUSEPORT``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    app = make_app(model)
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def _stop(others: list[subprocess.Popen[bytes]]) -> None:
    for other in others:
        if other.poll() is None:
            os.kill(other.pid, signal.SIGTERM)
    for other in others:
        other.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
