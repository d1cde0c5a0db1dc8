"""``bentogate demo --fleet`` itself, as a user runs it: three hosts in network namespaces
with their agents, the machine's PostgreSQL, v1 rolled out, then v2 under load on every
host's address; its JSON says what happened, and nothing of it is left afterwards.

The demo runs in this process (the CLI's ``main``) with the CI gate policy (``hosts.CI_GATE``,
through ``BENTOGATE_GATE__*``, as a user would set it) and a schema of its own; its gates take
the machine alone (tests/machine.py), as every gate of the suite does. Where network
namespaces cannot be created, or no PostgreSQL answers, it skips, saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cli_docs import json_fields
from hosts import CI_GATE, HOST_PORTS, port_layout

from bentogate.cli import main
from bentogate.netns import netns_problem

pytestmark = pytest.mark.integration


@pytest.fixture
def schema(pg_base_url: str) -> Iterator[str]:
    """A schema name of this test's own on the PostgreSQL server (the demo makes it; dropped
    at the end)."""
    name = f"fleetdemo_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        engine = sa.create_engine(pg_base_url, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()


def test_fleet_demo_promotes_v2_on_three_namespaced_hosts_under_load(
    tmp_path: Path,
    pg_base_url: str,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    port_block: Callable[[int], int],
) -> None:
    problem = netns_problem()
    if problem is not None:
        pytest.skip(f"the fleet demo needs network namespaces, which cannot be made: {problem}")
    for field, value in CI_GATE.items():
        monkeypatch.setenv(f"BENTOGATE_GATE__{field.upper()}", str(value))
    # The workstation serves on this machine's 127.0.0.1 beside the other worker's tests: a
    # port block of its own, not the defaults (a CI run once had a container test's Bento
    # find its port taken). The hosts, in namespaces of their own, take the same numbers.
    for field, port in port_layout(port_block(HOST_PORTS), models=1).items():
        monkeypatch.setenv(f"BENTOGATE_PORTS__{field.upper()}", str(port))
    argv = ["demo", "--fleet", "--workdir", str(tmp_path), "--db-url", pg_base_url]
    try:
        main([*argv, "--schema", schema, "--json"])
    except SystemExit as exit_:
        captured = capsys.readouterr()
        pytest.fail(f"the fleet demo exited {exit_.code}:\n{captured.err[-6000:]}")
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert set(result) == {"status", "rollouts", "promotion", "port", "example"}
    assert set(result) <= json_fields()["demo"], "the README's JSON fields of `demo`"
    rows, promotion = result["status"], result["promotion"]
    [v1_rollout, v2_rollout] = result["rollouts"]
    assert [r["status"] for r in result["rollouts"]] == ["complete", "complete"]
    assert v1_rollout["hosts"] == v2_rollout["hosts"] == ["h1", "h2", "h3"]
    v2 = v2_rollout["version"]
    assert v2 != v1_rollout["version"]
    # every host, at its own address, on the model's one production port: v2, by its agent's
    # report and by its answer over the network
    port = result["port"]
    assert {(r["host"], r["port"], r["version"], r["answers"]) for r in rows} == {
        (name, port, v2, v2) for name in ("h1", "h2", "h3")
    }, rows
    assert len({r["address"] for r in rows}) == 3
    assert all(r["healthy"] and r["reachable"] and r["flags"] == [] for r in rows), rows
    # load on every host's address during v2's promotion: none failed, each switched
    for name, figures in promotion["hosts"].items():
        assert figures["failed"] == 0, (name, figures)
        assert figures["requests"] > 40 and figures["first_answer_s"] is not None, figures
        assert figures["first_answer_s"] <= promotion["wall_s"] + 1, (name, promotion)
    assert "h1" in captured.err and "rollout" in captured.err  # progress on stderr
    # torn down: no namespace, bridge or process of the demo is left
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert f"bgfleet-{os.getpid()}-" not in listed.stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert f"bgb{os.getpid()}" not in links.stdout
    print(f"\nfleet demo: v2's promotion {json.dumps(promotion)}")
