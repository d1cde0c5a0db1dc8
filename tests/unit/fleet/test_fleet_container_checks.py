"""The container runtime's checks in host operations, without an engine: the model each
ready container says it loaded (its ``GET /model``, here a small HTTP server) is audited
against the approved sha256 before anything routes to it, and a version's image must be on
the host before the agent serves it."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_unit_support import SHA, context, gated

from bentogate import host
from bentogate.bentos import Handle
from bentogate.context import Context, Ref
from bentogate.errors import IntegrityError, NotFoundError


@contextlib.contextmanager
def _serving(sha256: str) -> Iterator[int]:
    """A port whose ``GET /model`` answers that the model loaded has ``sha256``."""
    body = json.dumps({"name": "fraud", "version": "1", "sha256": sha256}).encode()

    class Model(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/model" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            """Quiet."""

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Model) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            thread.join()


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    ctx = context(tmp_path, bento={"runtime": "container"})
    yield ctx
    ctx.close()


def _handle(port: int) -> Handle:
    return Handle(tag="fraud:1", port=port, pid=None, log_path=Path(), container="c")


def test_the_model_a_container_loaded_is_audited_when_it_is_the_approved_one(
    ctx: Context,
) -> None:
    version = gated(ctx.registry)
    with _serving(SHA) as port:
        host._verify_loaded(ctx, Ref("fraud", version), [_handle(port)], actor="rel")
        last = ctx.registry.audit("fraud", version)[-1]
        assert (last.action, last.outcome) == ("verify_artifact", "ok")
        assert f"loaded by the container(s) of fraud:{version} on :{port}" in last.reason


def test_a_container_that_loaded_another_model_is_refused_and_audited(ctx: Context) -> None:
    version = gated(ctx.registry)
    refusal = r"sha256 cccccccccccc… differs from the registered"
    with _serving("c" * 64) as port, pytest.raises(IntegrityError, match=refusal):
        host._verify_loaded(ctx, Ref("fraud", version), [_handle(port)], actor="rel")
    refused = ctx.registry.audit("fraud", version)[-1]
    assert (refused.action, refused.outcome) == ("verify_artifact", "refused")
    assert (refused.payload["measured_sha256"], refused.payload["registered_sha256"]) == (
        "c" * 64, SHA,
    )  # fmt: skip


def test_a_container_that_does_not_say_is_refused(ctx: Context) -> None:
    version = gated(ctx.registry)
    with _serving(SHA) as closed:
        pass  # it stops at the block's end: nothing answers there any more
    with pytest.raises(IntegrityError, match="differs from the registered"):
        host._verify_loaded(ctx, Ref("fraud", version), [_handle(closed)], actor="rel")
    assert ctx.registry.audit("fraud", version)[-1].payload["measured_sha256"].startswith(
        "unreadable"
    )


def test_the_agent_needs_the_versions_image_on_its_host(ctx: Context) -> None:
    version = gated(ctx.registry)
    with pytest.raises(NotFoundError, match=r"has no recorded image: run `bentogate build"):
        host.ensure_bento(ctx, Ref("fraud", version))
