"""The reference floor: bare uvicorn + onnxruntime, no framework, no input checks.

``python -m bench.bare --model model.onnx --port P`` serves ``POST /predict`` with the
same JSON contract as the Bento (a list of features in, score and label out) and nothing
else: it is what the hardware, the HTTP stack and the model cost, the best any Bento can do.
"""

from __future__ import annotations

import argparse
import gc
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
    args = parser.parse_args(argv)
    app = make_app(args.model)
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
