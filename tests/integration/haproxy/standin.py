"""A stand-in Bento for the HAProxy tests: ``python standin.py <model> <version>``.

Answers ``POST /predict`` with ``{"score":…,"label":0,"model":…,"model_version":…}``
(compact JSON, like orjson). ``POST /_mode`` with a body ``ok``, ``503``, ``500``, ``hang``,
``slow`` or ``wrong`` changes how it answers (``wrong`` reports another version; ``slow``
answers a prediction after 3 s, but not HAProxy's health check, ``?from=check``). Binds a
free port on 127.0.0.1 and prints it as the first line on stdout.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOW_S = 3.0


class _State:
    mode = "ok"
    lock = threading.Lock()


def make_handler(model: str, version: str) -> type[BaseHTTPRequestHandler]:
    """The request handler class answering as ``model`` ``version``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 65536  # one write per response: no Nagle/delayed-ACK stalls on keep-alive

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length)
            if self.path == "/_mode":
                _State.mode = payload.decode().strip()
                self._reply(200, b"{}")
                return
            mode = _State.mode
            if mode == "hang":
                time.sleep(3600)
            if mode == "slow" and not self.path.endswith("from=check"):
                time.sleep(SLOW_S)
            if mode in ("503", "500"):
                self._reply(int(mode), b'{"error":"stand-in told to fail"}')
                return
            shown = f"{version}-wrong" if mode == "wrong" else version
            body = {"score": 0.0012345, "label": 0, "model": model, "model_version": shown}
            self._reply(200, json.dumps(body, separators=(",", ":")).encode())

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients (haproxy checks, killed connections) hang up: not our concern


def main() -> None:
    """Serve forever on a free port, printing the port first."""
    model, version = sys.argv[1], sys.argv[2]
    server = _Server(("127.0.0.1", 0), make_handler(model, version))
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
