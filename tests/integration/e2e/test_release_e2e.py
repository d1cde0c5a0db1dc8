"""The whole release on real parts: governance DB, bentoml build/serve, haproxy, Locust.

One module-scoped host (own BENTOGATE_HOME, a block of free ports; ``tests/hosts.py``) takes
v1 and then v2 through register → … → promote with ``release.release``. Each test first
brings the host to the state it needs through the release workflow (a function-scoped
fixture named after it, ``hosts.reach``), so the tests pass in any order and one at a time:

    released           v2 live, v1 warm: as the two releases left the host
    v1_gone            v2 live, v1 (the previous version) no longer running
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hosts import (
    ACTORS,
    HOST_PORTS,
    Models,
    Want,
    host_settings,
    reach,
    register,
    running_host,
    settings_env,
)

from bentogate import release, warm
from bentogate.bentos import process_tree
from bentogate.context import Context, Ref
from bentogate.errors import GovernanceError, IntegrityError, NotFoundError
from bentogate.governance import Role

pytestmark = pytest.mark.integration

MODEL = "fraud"


def post(port: int, path: str, body: bytes, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


@dataclass(frozen=True)
class Story:
    """The host after the two releases, and what each release left behind at once."""

    ctx: Context
    models: Models
    v1: Ref
    v2: Ref
    after: dict[str, tuple[str, str]]  # release → (its state, the version the port answered)


@pytest.fixture(scope="module")
def story(
    tmp_path_factory: pytest.TempPathFactory,
    port_block: Callable[[int], int],
    trained_models: Models,
) -> Iterator[Story]:
    settings = host_settings(tmp_path_factory.mktemp("home"), port_block(HOST_PORTS))
    with running_host(settings) as ctx:
        refs, after = {}, {}
        for name in ("v1", "v2"):
            ref = register(ctx, MODEL, getattr(trained_models, name), trained_models.holdout)
            release.release(ctx, ref, trained_models.holdout, actors=ACTORS)
            state = str(ctx.registry.get_version(MODEL, ref.version).state)
            refs[name], after[name] = ref, (state, _live_version(ctx))
        yield Story(ctx, trained_models, refs["v1"], refs["v2"], after)


@pytest.fixture
def released(story: Story) -> Context:
    """v2 live (one replica), v1 warm (one replica): as the two releases left the host."""
    reach(
        story.ctx,
        MODEL,
        Want(story.v2.version, 1, other=story.v1.version, other_as="warm", other_replicas=1),
    )
    return story.ctx


@pytest.fixture
def v1_gone(story: Story) -> Context:
    """v2 live, v1 (the previous version) stopped: its warm time is over."""
    reach(story.ctx, MODEL, Want(story.v2.version, 1, other=story.v1.version, other_as="stopped"))
    previous = story.ctx.registry.previous_version(MODEL)
    assert previous is not None and previous.version == story.v1.version
    return story.ctx


def _live_version(ctx: Context) -> str:
    port = ctx.registry.get_model(MODEL).production_port
    status, body = post(port, "/predict", json.dumps({"features": [0.0] * 220}).encode())
    assert status == 200, body
    return str(body["model_version"])


def test_v1_then_v2_reach_production_through_the_gate(story: Story, released: Context) -> None:
    ctx, v1, v2 = released, story.v1, story.v2
    # Each release took its version to production and the port answered with it at once.
    assert story.after == {"v1": ("production", v1.version), "v2": ("production", v2.version)}
    assert _live_version(ctx) == v2.version
    assert str(ctx.registry.get_version(MODEL, v1.version).state) == "gated"
    runs = ctx.registry.gate_runs(MODEL, v2.version)
    assert runs and runs[-1].verdict == "pass"
    assert Path(runs[-1].report_path).is_file()
    # v1 stays warm for an instant rollback: running, health-checked, routed nothing.
    [previous] = [d for d in ctx.registry.deployments() if d.version == v1.version]
    assert str(previous.role) == "previous"
    [server] = [
        s for s in ctx.sidecar.server_status() if s.server == f"v{v1.version}_{previous.port}"
    ]
    assert server.healthy and ctx.sidecar.routes()[MODEL] == f"be_fraud_{v2.version}"
    [entry] = warm.warm_versions(ctx)
    demoted_at = ctx.registry.get_version(MODEL, v1.version).demoted_at
    assert demoted_at is not None
    assert (entry.ref, entry.until) == (v1, demoted_at + timedelta(seconds=300))


def test_a_warm_version_is_stopped_once_its_time_is_over(released: Context) -> None:
    ctx = released
    [entry] = warm.warm_versions(ctx)
    assert warm.stop_expired(ctx) == []  # not yet: nothing changes
    assert warm.warm_versions(ctx) == [entry]
    # The detached expirer promote leaves behind, here told the warm time is 0.1 s.
    env = settings_env(ctx.settings) | {"BENTOGATE_BENTO__KEEP_PREVIOUS_S": "0.1"}
    done = subprocess.run(
        [sys.executable, "-m", "bentogate.expirer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"{entry.ref} stopped" in done.stdout
    live = ctx.registry.production_version("fraud")
    assert live is not None
    assert {d.version for d in ctx.registry.deployments()} == {live.version}
    assert {s.backend for s in ctx.sidecar.server_status()} == {f"be_fraud_{live.version}"}
    assert warm.warm_versions(ctx) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"features": [1, 2', "malformed JSON"),
        (b'{"features": [1.0, 2.0]}', "expected 220 features, got 2"),
        (b'{"features": {"nope": 1}}', "unknown feature(s): nope"),
        (json.dumps({"features": ["a"] + [0.0] * 219}).encode(), "must be a number, got a string"),
        (b'{"features": [NaN' + b", 0" * 219 + b"]}", "NaN and Infinity"),
        (b'{"rows": []}', 'with a "features" field'),
    ],
)
def test_bad_input_through_haproxy_is_a_400_naming_the_problem(
    released: Context, body: bytes, message: str
) -> None:
    port = released.registry.get_model("fraud").production_port
    status, answer = post(port, "/predict", body)
    assert status == 400
    assert message in answer["error"]


def test_oversized_body_is_refused(released: Context) -> None:
    port = released.registry.get_model("fraud").production_port
    limit = released.settings.bento.max_body_bytes  # built into the Bento; HAProxy enforces it
    head, answer = post_reading_early(port, b'{"features": [' + b"1," * (limit // 2) + b"1]}")
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert b"larger than" in answer


def post_reading_early(port: int, body: bytes, timeout: float = 5.0) -> tuple[bytes, bytes]:
    """POST ``body`` as a careful client does (curl, browsers): the server's answer is read
    as soon as it comes, also while the body is still being sent. A refusal of an oversized
    body comes after the first 16 KiB, and the server then closes with the rest unread (a
    reset), so a client that only reads once it has sent everything may lose the answer.
    Returns the status line and the body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        sent = 0
        while sent < len(body):
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sent += sock.send(body[sent : sent + 16384])
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
    head, _, rest = answer.partition(b"\r\n")
    return head, rest


def test_promote_without_a_passed_gate_is_refused(story: Story) -> None:
    ctx = story.ctx
    ref = register(ctx, MODEL, story.models.v1, story.models.holdout)
    with pytest.raises(GovernanceError):
        release.promote(ctx, ref, actor=ACTORS.release)
    release.retire(ctx, ref, actor=ACTORS.release, reason="test")


def _pids(ctx: Context, version: str) -> set[int | None]:
    return {d.pid for d in ctx.registry.deployments() if d.version == version}


def test_rollback_restores_the_previous_version_and_promote_returns(
    v1_gone: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = v1_gone
    live = ctx.registry.production_version("fraud")
    previous = ctx.registry.previous_version("fraud")
    assert live is not None and previous is not None
    assert _pids(ctx, previous.version) == set()  # no longer warm: restarted for the rollback
    monkeypatch.setattr(ctx.settings.bento, "keep_previous_s", 0.0)
    release.rollback(ctx, "fraud", actor=ACTORS.release)
    assert _live_version(ctx) == previous.version
    assert _pids(ctx, live.version) == set()  # keep_previous_s 0: stopped once drained
    monkeypatch.undo()
    release.promote(ctx, Ref("fraud", live.version), actor=ACTORS.release)
    assert _live_version(ctx) == live.version
    # Warm again: a second rollback takes the very same processes back, nothing restarts.
    warm_pids = _pids(ctx, previous.version)
    live_pids = _pids(ctx, live.version)
    release.rollback(ctx, "fraud", actor=ACTORS.release)
    assert _live_version(ctx) == previous.version
    assert _pids(ctx, previous.version) == warm_pids and None not in warm_pids
    release.promote(ctx, Ref("fraud", live.version), actor=ACTORS.release)
    assert _live_version(ctx) == live.version and _pids(ctx, live.version) == live_pids


def test_a_killed_live_bento_leaves_the_rotation(released: Context) -> None:
    ctx = released
    live = ctx.registry.production_version("fraud")
    assert live is not None
    [deployment] = [
        d for d in ctx.registry.deployments(host=ctx.settings.host) if d.version == live.version
    ]
    assert deployment.pid is not None
    for pid in process_tree(deployment.pid):  # the server and its workers die at once
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        [server] = [
            s
            for s in ctx.sidecar.server_status()
            if s.server == f"v{live.version}_{deployment.port}"
        ]
        if server.status.startswith("DOWN"):
            break
        time.sleep(0.2)
    assert server.status.startswith("DOWN"), server
    assert server.check_status != "L7OK"
    # Deploying the version again replaces its dead replica (whose record is ended).
    release.deploy(ctx, Ref("fraud", live.version), actor=ACTORS.release)
    assert _live_version(ctx) == live.version
    [replacement] = [d for d in ctx.registry.deployments() if d.version == live.version]
    assert replacement.id != deployment.id
    assert replacement.role == Role.LIVE  # it serves production: the next cutover demotes it


def test_unknown_versions_are_named(story: Story) -> None:
    with pytest.raises(NotFoundError, match="fraud:99"):
        release.promote(story.ctx, Ref("fraud", "99"), actor=ACTORS.release)


def test_a_model_file_changed_after_approval_cannot_be_served(story: Story) -> None:
    ctx = story.ctx
    ref = register(ctx, MODEL, story.models.v2, story.models.holdout)
    release.validate(ctx, ref, story.models.holdout, actor="vic")
    release.approve(ctx, ref, actor="ana")
    release.build(ctx, ref, actor="rel")
    stored = ctx.settings.bentoml_home / "models" / "fraud" / ref.version / "model.onnx"
    stored.write_bytes(stored.read_bytes() + b"\0")  # tampered after approval
    with pytest.raises(IntegrityError, match="differs from the registered"):
        release.deploy(ctx, ref, actor="rel")
    refused = [e for e in ctx.registry.audit("fraud", ref.version) if e.outcome == "refused"]
    assert refused and refused[-1].action == "verify_artifact"
    assert not [d for d in ctx.registry.deployments() if d.version == ref.version]
    assert str(ctx.registry.get_version("fraud", ref.version).state) == "approved"


def test_two_promote_commands_racing_on_one_host_serialize(released: Context) -> None:
    """Two `bentogate promote` processes for the same gated version at once: the host lock
    and the DB serialize them; one cuts over, the other is refused with the rule (exit 3,
    audited), and the record and the routing agree afterwards."""
    ctx = released
    live = ctx.registry.production_version("fraud")
    previous = ctx.registry.previous_version("fraud")
    assert live is not None and previous is not None
    target = Ref("fraud", previous.version)
    env = settings_env(ctx.settings)
    command = [sys.executable, "-m", "bentogate.cli", "promote", str(target), "--actor", "rel"]
    racers = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=180), *(s.decode() for s in p.communicate())) for p in racers]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 3], results  # 3: refused by governance (ExitCode.REFUSED)
    [(_, _, refusal)] = [r for r in results if r[0] == 3]
    assert f"refused: promote {target}" in refusal and "production" in refusal, refusal
    assert ctx.registry.production_version("fraud").version == target.version  # type: ignore[union-attr]
    assert ctx.sidecar.routes()["fraud"] == f"be_fraud_{target.version}"
    assert _live_version(ctx) == target.version
    refused = [e for e in ctx.registry.audit("fraud", target.version) if e.outcome == "refused"]
    assert refused and refused[-1].action == "promote"
