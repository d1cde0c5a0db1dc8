"""The agent's parts without real processes: the container backend chosen from settings, and
a reconciliation that changes nothing while the governance DB is unreachable."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import pytest
from fleet_unit_support import RecordingRuntime, context, gated

from bentogate import agent
from bentogate.bentos import ContainerBackend, container_name
from bentogate.context import Context
from bentogate.errors import DatabaseUnavailable, RuntimeBackendError
from bentogate.settings import Settings


def test_the_container_runtime_runs_the_image_id_recorded_in_the_db(tmp_path: Path) -> None:
    ctx = context(tmp_path, bento={"runtime": "container"})
    image = "sha256:" + "7" * 64
    version = gated(ctx.registry, image_tag="bentogate/fraud:7", image_id=image)
    runtime = ctx.runtime
    assert isinstance(runtime, ContainerBackend)
    command = runtime.run_command(f"fraud:{version}", 3005)
    assert command[command.index(image) :] == [
        image, "serve", "--host", "127.0.0.1", "--port", "3005",
    ]  # fmt: skip
    handle = ctx.handle(f"fraud:{version}", 3005, None)
    assert handle.container == container_name(f"fraud:{version}", 3005)
    ctx.close()


def test_the_container_runtime_refuses_a_version_without_an_image(tmp_path: Path) -> None:
    ctx = context(tmp_path, bento={"runtime": "container"})
    version = gated(ctx.registry)
    with pytest.raises(RuntimeBackendError, match="no container image recorded"):
        ctx.runtime.run_command(f"fraud:{version}", 3005)  # type: ignore[attr-defined]
    ctx.close()


def _unreachable_db(tmp_path: Path) -> Context:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/none?connect_timeout=2"
    ctx = Context(Settings(home=tmp_path / "home", db_url=url, host="h1"))
    ctx.__dict__["runtime"] = RecordingRuntime()
    return ctx


def test_fleet_agent_changes_nothing_while_the_db_is_unreachable(tmp_path: Path) -> None:
    ctx = _unreachable_db(tmp_path)
    with pytest.raises(DatabaseUnavailable, match="cannot use the governance database"):
        agent.reconcile_once(ctx, adopt=True)
    assert ctx.runtime.calls == []  # type: ignore[attr-defined]
    ctx.close()


def test_fleet_agent_loop_backs_off_and_keeps_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = _unreachable_db(tmp_path)
    ctx.settings.agent.interval_s = 0.05
    ctx.settings.agent.max_backoff_s = 0.2
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(ctx, stop))
    with caplog.at_level(logging.INFO, logger="bentogate.agent"):
        thread.start()
        threading.Event().wait(1.0)
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    waits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert len(waits) >= 3
    assert waits[-1] == "retrying in 0.2 s"  # doubled up to the ceiling
    assert any("keeping what runs" in r.getMessage() for r in caplog.records)
    assert ctx.runtime.calls == []  # type: ignore[attr-defined]
    ctx.close()
