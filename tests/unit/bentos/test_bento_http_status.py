"""http_status: an HTTP server's status, None for no server and for a peer that is not one
(a self-connected socket on a free ephemeral port reads back its own request)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bentogate.bentos.runtime import http_status


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP peer that answers each connection with what it was sent (not HTTP)."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(conn.recv(4096))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    thread.join(5)


class _Teapot(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(418)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_an_http_server_answers_with_its_status() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Teapot)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert http_status(server.server_address[1], "/livez") == 418
    finally:
        server.shutdown()
        server.server_close()


def test_a_peer_that_echoes_the_request_is_no_http_server(echo_port: int) -> None:
    assert http_status(echo_port, "/livez") is None


def test_a_port_nobody_listens_on_has_no_status() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert http_status(port, "/livez") is None
