"""The README's first command, `bentogate demo`, as a user runs it: its own process, the
default settings (only the ports moved to a free block, the state to a temporary home)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hosts import leftovers, port_layout

from bentogate.context import Context
from bentogate.settings import Settings

pytestmark = pytest.mark.integration


def test_the_demo_takes_v2_live_through_the_gate_and_leaves_nothing_running(
    tmp_path: Path, port_block: Callable[[int], int]
) -> None:
    home = tmp_path / "home"
    ports = port_layout(port_block(16), models=1)
    base = ports["production_start"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENTOGATE_")}
    env["BENTOGATE_HOME"] = str(home)
    env.update({f"BENTOGATE_PORTS__{key.upper()}": str(port) for key, port in ports.items()})
    done = subprocess.run(
        [sys.executable, "-m", "bentogate.cli", "demo", "--workdir", str(tmp_path / "demo")],
        cwd=tmp_path,  # no bentogate.toml of the checkout's working directory applies
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"fraud:1 is live on port {base}" in done.stderr
    assert f"fraud:2 is live on port {base}" in done.stderr
    header, *rows = done.stdout.strip().splitlines()[-3:]  # the status table: v2 and v1
    assert header.split()[:4] == ["production_port", "model", "version", "role"]
    assert {tuple(r.split()[1:4]) for r in rows} == {
        ("fraud", "2", "live"),
        ("fraud", "1", "previous"),
    }
    assert (tmp_path / "demo" / "example.json").is_file()  # what the README curls
    ctx = Context(Settings(home=home, ports=ports))
    try:
        live = ctx.registry.production_version("fraud")
        assert live is not None and live.version == "2"
        assert [r.verdict for r in ctx.registry.gate_runs("fraud", "2")] == ["pass"]
        assert ctx.registry.deployments(host=ctx.settings.host) == []  # shut down
        assert not ctx.sidecar.is_running()
        # one machine named four people: their sign-offs are recorded as unauthenticated
        assert "named, not authenticated" in done.stderr
        sign_offs = [e for e in ctx.registry.audit("fraud", "2") if e.action == "approve"]
        assert [(e.actor, e.authenticated) for e in sign_offs] == [("ana.approver", False)]
        ok, _, message = ctx.registry.verify_audit()  # and anchored by signed checkpoints
        assert ok and "signed checkpoints verified" in message, message
    finally:
        ctx.close()
    # Nothing of it runs: no Bento, no haproxy, no warm-version expirer.
    assert leftovers(home) == []
