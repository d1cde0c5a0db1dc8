"""`bentogate status --fleet`: rows from the agents' reports joined with what each host's port
answers over the network, their flags and their table; :func:`fleetstatus.reach` against a
real local HTTP server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fleet_unit_support import SHA, context, gated, report
from free_ports import free_port

from bentogate import fleetstatus
from bentogate.fleetstatus import Reach


def _reacher(answers: dict[str, Reach]) -> fleetstatus.Reacher:
    def reach(address: str, port: int, timeout: float) -> Reach:
        assert (port, timeout) == (10000, 1.0)
        return answers[address]

    return reach


def test_fleet_rows_join_reports_with_what_each_address_answers(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    one, two = gated(ctx.registry), gated(ctx.registry)
    ctx.registry.promote("fraud", one, actor="rel", sha256=SHA)
    ctx.registry.promote("fraud", two, actor="rel", sha256=SHA)
    for name in ("h1", "h2", "h3"):
        address = {"h1": "10.0.0.1", "h2": "10.0.0.2", "h3": "10.0.0.3"}[name]
        ctx.registry.heartbeat(name, {**report("fraud", two), "address": address})
    ctx.registry.heartbeat("old", report("fraud", two))  # an agent that names no address
    answers = {
        "10.0.0.1": Reach(True, version=two),
        "10.0.0.2": Reach(False, error="TimeoutError: timed out"),
        # its last report says two, its clients get one: what clients get wins
        "10.0.0.3": Reach(True, version=one),
    }
    rows = {r["host"]: r for r in fleetstatus.fleet_rows(ctx, reacher=_reacher(answers))}
    assert {h: r["flags"] for h, r in rows.items()} == {
        "h1": [],
        "h2": ["UNREACHABLE"],
        "h3": ["DIVERGED"],
        "old": [],
    }
    assert rows["h1"]["address"] == "10.0.0.1" and rows["h1"]["reachable"] is True
    assert (rows["h1"]["version"], rows["h1"]["answers"]) == (two, two)
    assert rows["h2"]["reachable"] is False and rows["h2"]["reach_error"].startswith("Timeout")
    assert rows["old"]["address"] is None and rows["old"]["reachable"] is None
    assert all(r["port"] == 10000 and r["desired"] == two for r in rows.values())
    # Cut off from the DB an hour ago but still serving: stale, and still asked.
    later = ctx.registry.db_now() + timedelta(hours=1)
    stale = {r["host"]: r for r in fleetstatus.fleet_rows(ctx, later, reacher=_reacher(answers))}
    assert stale["h1"]["flags"] == ["STALE"] and stale["h1"]["answers"] == two
    assert stale["h3"]["flags"] == ["STALE", "DIVERGED"]
    ctx.close()


def test_fleet_table_shows_address_reach_and_flags() -> None:
    row = {
        "model": "fraud", "port": 10000, "host": "h2", "address": "10.0.0.2",
        "reachable": False, "desired": "2", "version": "2", "answers": None,
        "reach_error": "ConnectionRefusedError", "healthy": True, "heartbeat_age_s": 31.0,
        "flags": ["STALE", "UNREACHABLE"], "error": None, "rollout": "",
    }  # fmt: skip
    unknown = {**row, "host": "h9", "address": None, "reachable": None, "flags": []}
    lines = fleetstatus.fleet_table([row, unknown]).splitlines()
    assert lines[0].split() == [
        "port", "model", "host", "address", "reachable", "desired", "version", "answers",
        "healthy", "heartbeat_age_s", "flags", "rollout",
    ]  # fmt: skip
    assert lines[1].split() == [
        "10000", "fraud", "h2", "10.0.0.2", "no", "2", "2", "True", "31.0", "STALE,UNREACHABLE"
    ]  # fmt: skip
    assert lines[2].split() == ["10000", "fraud", "h9", "?", "?", "2", "2", "True", "31.0", "ok"]
    assert "no host has sent a heartbeat" in fleetstatus.fleet_table([])
    assert not fleetstatus.consistent([row]) and fleetstatus.consistent([unknown])


class _Model(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the server's ``answer`` (status, body)."""

    def do_GET(self) -> None:
        status, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        """Quiet: the test reads answers, not logs."""


@pytest.fixture
def model_port() -> Iterator[tuple[http.server.HTTPServer, int]]:
    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), _Model)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_reach_reads_the_version_a_port_serves(
    model_port: tuple[http.server.HTTPServer, int],
) -> None:
    server, port = model_port
    server.answer = (200, b'{"name":"fraud","version":"7","sha256":"x"}')  # type: ignore[attr-defined]
    assert fleetstatus.reach("127.0.0.1", port, 2.0) == Reach(True, version="7")
    server.answer = (503, b'{"error":"no model version is routed to this port"}')  # type: ignore[attr-defined]
    answered = fleetstatus.reach("127.0.0.1", port, 2.0)
    assert (answered.reachable, answered.version) == (True, None)
    assert answered.error is not None and answered.error.startswith("503: ")
    server.answer = (200, b"<html>")  # type: ignore[attr-defined]
    assert fleetstatus.reach("127.0.0.1", port, 2.0).error == "not a model's answer: <html>"


def test_reach_calls_a_closed_port_unreachable() -> None:
    found = fleetstatus.reach("127.0.0.1", free_port(), 2.0)
    assert not found.reachable and found.version is None
    assert found.error is not None and found.error.startswith("ConnectionRefusedError")
