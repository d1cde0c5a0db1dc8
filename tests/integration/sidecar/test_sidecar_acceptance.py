"""Sidecar acceptance with the real haproxy and real Bentos, driven by bentogate's workflow.

One module-scoped host (own BENTOGATE_HOME, a block of free ports; ``tests/hosts.py``):
fraud v1 goes to production through the whole release; v2 is built, deployed with two
replicas and gated, so both versions run healthy side by side. Each test first brings the
host to the state it needs through the release workflow (``hosts.reach``, a function-scoped
fixture named after the state) and then works under a steady load on the production port
where it matters, so the tests pass in any order and one at a time:

    two_versions     v1 live (1 replica), v2 gated and deployed (2), nothing warm
    v2_live_on_two   v2 live on 2 replicas
    v2_live_v1_warm  v2 live, v1 warm (the previous version, running unrouted)
    v1_live_v2_warm  v1 live (1 replica), v2 warm
    v1_live          v1 live (1 replica)

A second model (``model_b``, released on first use) shares the sidecar on its own port.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import stat
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
from free_ports import free_port
from hosts import (
    ACTORS,
    HOST_PORTS,
    Models,
    Want,
    host_settings,
    reach,
    register,
    running_host,
    stop_sidecar,
)
from sidecar_load import PacedLoad, PacedWrk

from bench.stack import post as post_once
from bentogate import gating, release, warm
from bentogate import host as this_host
from bentogate.bentos import max_body_bytes, pid_alive, process_tree
from bentogate.context import Context, Ref, artifact_dir
from bentogate.errors import CutoverError, HAProxyError
from bentogate.governance import DeploymentInfo, Role
from bentogate.haproxy import ModelRoute, ProxyPaths, ProxySpec, ServerStatus, Sidecar
from bentogate.haproxy import backend_name as be
from bentogate.modelimport import load_artifact
from bentogate.routing import desired_spec, version_backend

pytestmark = pytest.mark.integration

MODEL = "fraud"
MODEL_B = "chargeback"  # the second model on the same sidecar
RATE = 240.0  # req/s of the Python client: a steady load, well below a 1-worker Bento's limit


@dataclass
class Host:
    ctx: Context
    v1: str
    v2: str
    bodies: list[bytes]  # real rows of the model's schema

    @property
    def port(self) -> int:
        return self.ctx.registry.get_model(MODEL).production_port

    def deployments(self, version: str, model: str = MODEL) -> list[DeploymentInfo]:
        return [
            d
            for d in self.ctx.registry.deployments(host=self.ctx.settings.host, model=model)
            if d.version == version
        ]

    def server(self, version: str, port: int, model: str = MODEL) -> ServerStatus:
        key = (be(model, version), f"v{version}_{port}")
        return next(s for s in self.ctx.sidecar.server_status() if (s.backend, s.server) == key)

    def db_live(self) -> str:
        live = self.ctx.registry.production_version(MODEL)
        assert live is not None
        return live.version

    def routed(self) -> str | None:
        """The backend the running haproxy routes the production port to."""
        return self.ctx.sidecar.routes().get(MODEL)


def post(port: int, body: bytes) -> tuple[int, bytes]:
    """One POST /predict on a fresh connection, waiting up to 10 s: (status, body)."""
    return post_once(port, body, timeout=10)


def assert_cut_over(host: Host, load: PacedLoad, done: float, to: str) -> None:
    """Nothing failed under ``load``; every request sent after ``done`` (when the step
    returned) reached ``to``, and the DB and HAProxy both name ``to``."""
    assert load.failures() == [], load.failures()[:5]
    assert set(load.versions(done)) == {to}
    assert host.db_live() == to and host.routed() == be(MODEL, to)


def answering_version(host: Host) -> str:
    status, body = post(host.port, host.bodies[0])
    assert status == 200, body
    return str(json.loads(body)["model_version"])


def kill_tree(pid: int) -> None:
    """SIGKILL a Bento and all its workers at once (they run in sessions of their own)."""
    for member in process_tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def wait_down(host: Host, version: str, port: int, since: float, limit: float = 10.0) -> float:
    """Seconds from ``since`` until HAProxy reports the server DOWN (polled every 20 ms)."""
    while not (server := host.server(version, port)).status.startswith("DOWN"):
        assert time.monotonic() - since < limit, server
        time.sleep(0.02)
    assert server.check_status != "L7OK", server
    return time.monotonic() - since


def _bodies(ctx: Context, ref: Ref) -> list[bytes]:
    """Request bodies of real rows of ``ref``'s schema (its reference rows)."""
    info = ctx.registry.get_version(ref.model, ref.version)
    rows = load_artifact(artifact_dir(info.artifact_uri)).reference_rows.astype(float)
    return [json.dumps({"features": row}).encode() for row in rows.tolist()[:8]]


@pytest.fixture(scope="module")
def host(
    tmp_path_factory: pytest.TempPathFactory,
    port_block: Callable[[int], int],
    trained_models: Models,
) -> Iterator[Host]:
    settings = host_settings(tmp_path_factory.mktemp("sidecar-home"), port_block(HOST_PORTS))
    models = trained_models
    with running_host(settings) as ctx:
        v1 = register(ctx, MODEL, models.v1, models.holdout)
        release.release(ctx, v1, models.holdout, actors=ACTORS)
        v2 = register(ctx, MODEL, models.v2, models.holdout)
        release.validate(ctx, v2, models.holdout, actor=ACTORS.validator)
        release.approve(ctx, v2, actor=ACTORS.approver)
        release.build(ctx, v2, actor=ACTORS.release)
        release.deploy(ctx, v2, actor=ACTORS.release, replicas=2)
        gating.gate(ctx, v2, actor=ACTORS.release)
        yield Host(ctx, v1.version, v2.version, _bodies(ctx, v1))


def _reach(host: Host, want: Want) -> Host:
    reach(host.ctx, MODEL, want)
    return host


@pytest.fixture
def two_versions(host: Host) -> Host:
    """v1 live on one replica, v2 gated and deployed on two, nothing warm."""
    return _reach(
        host,
        Want(host.v1, 1, other=host.v2, other_as="candidate", other_replicas=2),
    )


@pytest.fixture
def v2_live_on_two(host: Host) -> Host:
    return _reach(host, Want(host.v2, 2))


@pytest.fixture
def v2_live_v1_warm(host: Host) -> Host:
    return _reach(host, Want(host.v2, other=host.v1, other_as="warm", other_replicas=1))


@pytest.fixture
def v1_live_v2_warm(host: Host) -> Host:
    return _reach(host, Want(host.v1, 1, other=host.v2, other_as="warm"))


@pytest.fixture
def v1_live(host: Host) -> Host:
    return _reach(host, Want(host.v1, 1))


@pytest.mark.usefixtures("two_versions")
def test_sidecar_two_versions_run_healthy_side_by_side(host: Host) -> None:
    assert host.db_live() == host.v1
    assert host.routed() == be(MODEL, host.v1)
    assert len(host.deployments(host.v1)) == 1 and len(host.deployments(host.v2)) == 2
    for version in (host.v1, host.v2):
        for d in host.deployments(version):
            assert host.server(version, d.port).healthy
    assert str(host.ctx.registry.get_version(MODEL, host.v2).state) == "gated"


@pytest.mark.usefixtures("two_versions")
def test_sidecar_status_view_fields_under_load(host: Host) -> None:
    """Item 6: per server, what ``bentogate status --watch`` shows, measured under load."""
    [d] = host.deployments(host.v1)
    before = host.server(host.v1, d.port)
    with PacedLoad(host.port, host.bodies, rate=RATE) as load:
        load.wait_for(int(RATE))  # ≈ 1 s: HAProxy's rate is over the last second
        during = host.server(host.v1, d.port)
        load.wait_for(int(RATE / 2))
    after = host.server(host.v1, d.port)
    print(f"\nstatus view: {during}")
    assert load.failures() == []
    assert (during.status, during.check_status) == ("UP", "L7OK")
    assert during.check_duration_ms is not None and during.check_duration_ms < 500
    assert during.check_code == 200 and during.lastchg_s is not None
    # ``rate`` counts requests (one stream per HTTP request), not client connections.
    assert 0.5 * load.rate() <= during.rate <= 1.5 * load.rate(), (during.rate, load.rate())
    assert after.stot - before.stot == load.total  # health checks are not counted
    assert after.hrsp_2xx - before.hrsp_2xx == load.total
    assert after.hrsp_5xx == before.hrsp_5xx and after.econ == before.econ
    assert during.rtime_ms is not None and during.ttime_ms is not None
    # rtime: until the Bento's response headers (its latency). ttime spans the whole stream,
    # including a keep-alive client's idle time before its request: not a latency figure.
    assert 0 <= during.rtime_ms < 100 and during.ttime_ms >= during.rtime_ms
    assert during.scur >= 0 and during.qcur == 0


@pytest.mark.usefixtures("two_versions")
def test_sidecar_admin_and_stats_are_local_only_and_big_bodies_get_413(host: Host) -> None:
    car = host.ctx.sidecar
    for sock in (car.paths.admin_socket, car.paths.master_socket):
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    config = car.paths.config.read_text()
    assert "stats socket /" in config and "ipv4@" not in config and "ipv6@" not in config
    assert all(
        line.split()[1].startswith("127.0.0.1:")
        for line in config.splitlines()
        if line.strip().startswith("bind ")
    )
    stats_port = host.ctx.settings.ports.stats
    with urllib.request.urlopen(f"http://127.0.0.1:{stats_port}/stats;csv", timeout=5) as r:
        assert be(MODEL, host.v1).encode() in r.read()
    for port in (stats_port, host.port):
        # Bound to 127.0.0.1 itself, not 0.0.0.0: another loopback address is refused.
        with socket.socket() as other, pytest.raises(ConnectionRefusedError):
            other.settimeout(2)
            other.connect(("127.0.0.2", port))
        assert _listen_addresses(port) == {"127.0.0.1"}

    [d] = host.deployments(host.v1)
    limit = max_body_bytes(host.ctx.settings.bentoml_home, f"{MODEL}:{host.v1}")  # the Bento's
    before = host.server(host.v1, d.port).stot
    padded = host.bodies[0][:-1] + b" " * (limit - len(host.bodies[0])) + b"}"
    assert len(padded) == limit
    status, body = post(host.port, padded)
    assert status == 200 and json.loads(body)["model_version"] == host.v1
    # Over the limit, HAProxy (by Content-Length) or the Bento (chunked, no Content-Length:
    # streamed to it, it stops reading at its limit) answers 413 before the client has sent
    # everything, and closes; the client reads the answer.
    head = b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    declared = _early_answer(host.port, head + b"Content-Length: %d\r\n\r\n" % (limit + 1),
                             [padded + b" "])  # fmt: skip
    chunk = b" " * 10000
    chunked = _early_answer(host.port, head + b"Transfer-Encoding: chunked\r\n\r\n",
                            [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (limit // 10000 + 1)
                            + [b"0\r\n\r\n"])  # fmt: skip
    for answer in (declared, chunked):
        assert answer.startswith(b"HTTP/1.1 413") and b"larger than" in answer, answer[:200]
    # The Bento saw the first and the chunked one, not the one its Content-Length refused.
    assert host.server(host.v1, d.port).stot == before + 2


def _early_answer(port: int, head: bytes, parts: list[bytes]) -> bytes:
    """Send a request (``head``, then ``parts``) as far as the server lets it, and return
    its answer (head and Content-Length body): a server may answer and close before the
    body is all sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for part in parts:
                sock.sendall(part)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while not _complete(answer) and (data := sock.recv(65536)):
                answer += data
    return answer


def _complete(answer: bytes) -> bool:
    head, blank, body = answer.partition(b"\r\n\r\n")
    lengths = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
    return bool(blank and lengths) and len(body) >= int(lengths[0].split(b":")[1])


@pytest.mark.usefixtures("two_versions")
def test_sidecar_passes_every_batch_the_bento_accepts(host: Host) -> None:
    """One body limit: the Bento's. A batch as large as its build allows (rows, bytes) is
    scored through the production port, not refused by HAProxy."""
    args = host.ctx.settings.bento
    row = json.loads(host.bodies[0])["features"]
    rows = [row] * args.max_batch_rows
    body = json.dumps({"features": rows}).encode()
    while len(body) > args.max_body_bytes:  # as many rows as fit in the Bento's limit
        rows = rows[: len(rows) * 3 // 4]
        body = json.dumps({"features": rows}).encode()
    assert len(rows) >= 100 and len(body) > 65536, (len(rows), len(body))
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
    try:
        conn.request("POST", "/predict_batch", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    assert response.status == 200, answer[:200]
    assert len(json.loads(answer)["scores"]) == len(rows)


def _listen_addresses(port: int) -> set[str]:
    """Local addresses of every TCP socket LISTENing on ``port`` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            next(fh)
            for line in fh:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    if len(address) == 8:
                        found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                    else:
                        found.add(f"ipv6:{address}")
    return found


@pytest.mark.usefixtures("two_versions")
def test_sidecar_twenty_switches_under_load_lose_nothing(host: Host, tmp_path: Path) -> None:
    """10 cutovers and 10 rollbacks between two running versions, Python client + wrk."""
    ctx = host.ctx
    windows: list[tuple[float, float, str]] = []  # (switch returned, next switch called, to)
    switch_s: list[float] = []
    wrk = PacedWrk(host.port, host.bodies[0], tmp_path, connections=2, delay_ms=10)
    try:
        with PacedLoad(host.port, host.bodies, rate=RATE) as load:
            load.wait_for(100)
            for version in [host.v2, host.v1] * 10:
                called = time.monotonic()
                if windows:
                    windows[-1] = (*windows[-1][:1], called, windows[-1][2])
                ctx.sidecar.switch(MODEL, version)
                returned = time.monotonic()
                switch_s.append(returned - called)
                windows.append((returned, float("inf"), version))
                load.wait_for(100)  # ≈ 0.4 s on each version
    finally:
        result = wrk.stop()
    print(f"\n20 switches (max {max(switch_s) * 1000:.0f} ms each): python {load.summary()}")
    print(f"wrk: {result.requests} requests, {result.non_2xx} non-2xx,", end=" ")
    print(f"{result.socket_errors} socket errors")
    assert load.failures() == [], load.failures()[:5]
    assert set(load.versions()) == {host.v1, host.v2}
    for since, until, version in windows:
        # Once ``switch`` returned, every request sent reached the new version only.
        assert set(load.versions(since, until)) == {version}, (version, load.versions(since, until))
    assert (result.non_2xx, result.socket_errors) == (0, 0), result.output
    assert result.requests > 500, result.output
    assert host.routed() == be(MODEL, host.v1) and host.db_live() == host.v1


@pytest.mark.usefixtures("two_versions")
def test_sidecar_reloads_mid_load_lose_nothing_and_keep_the_db_route(host: Host) -> None:
    ctx = host.ctx
    with PacedLoad(host.port, host.bodies, rate=RATE) as load:
        load.wait_for(100)
        this_host.apply_routes(ctx)  # reload rendered from the DB, nothing changed
        load.wait_for(100)
        ctx.sidecar.process.reload()  # a forced reload of the same config
        load.wait_for(100)
        # The running map says v2 while the DB says v1 (e.g. a manual switch): the next
        # reload, rendered from the DB, routes v1 again.
        ctx.sidecar.switch(MODEL, host.v2)
        load.wait_for(100)
        ctx.sidecar.apply(desired_spec(ctx))
        reloaded = time.monotonic()
        load.wait_for(150)
    print(f"\n3 reloads: {load.summary()}")
    assert load.failures() == [], load.failures()[:5]
    assert host.routed() == be(MODEL, host.db_live()) == be(MODEL, host.v1)
    assert answering_version(host) == host.v1
    # New connections after the reload reach the DB's version; an old worker may answer one
    # more request on each kept-alive connection, then closes it (idle-close-on-response).
    assert set(load.versions(reloaded, fresh_only=True)) == {host.v1}
    assert load.versions(reloaded)[host.v2] <= 2


@pytest.mark.usefixtures("two_versions")
def test_sidecar_wrong_identity_or_changed_score_is_never_up(
    host: Host, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A second sidecar whose backends all point at the real v1 Bento: v1's own (control),
    v2's (as if v1's port were put in v2's backend), and two that differ from v1's in one
    expectation only: the identity (another version's), or the canary score (the record of
    a model that scores differently)."""
    ctx = host.ctx
    [d] = host.deployments(host.v1)
    true_v1 = version_backend(ctx, MODEL, host.v1, [d.port])
    v2_on_v1 = version_backend(ctx, MODEL, host.v2, [d.port])
    v1_score, v1_identity = true_v1.expect_strings
    v2_score, v2_identity = v2_on_v1.expect_strings
    assert v1_score != v2_score and true_v1.canary_body == v2_on_v1.canary_body
    identity = replace(true_v1, version="identity", expect_strings=(v1_score, v2_identity))
    rescored = replace(true_v1, version="rescored", expect_strings=(v2_score, v1_identity))
    wrong = {v2_on_v1.backend_name: v2_score, identity.backend_name: v2_identity}
    wrong[rescored.backend_name] = v2_score  # the text each one's failed check names
    route = ModelRoute(
        MODEL,
        free_port(),
        free_port(),
        live=host.v1,
        candidate=None,
        backends=(true_v1, v2_on_v1, identity, rescored),
    )
    probe = Sidecar(ProxyPaths(tmp_path_factory.mktemp("probe")), ctx.settings.haproxy)
    try:
        probe.apply(ProxySpec(routes=(route,), stats_port=free_port()))
        seen: dict[str, set[str]] = {backend: set() for backend in wrong}
        deadline = time.monotonic() + 3.0  # > 4 checks at fastinter: rise 2 would show UP
        while time.monotonic() < deadline:
            for s in probe.server_status():
                if s.backend in seen:
                    seen[s.backend].add(s.status)
            time.sleep(0.02)
        statuses = {s.backend: s for s in probe.server_status()}
        assert statuses[true_v1.backend_name].healthy  # the same Bento, right expectations
        for backend, states in seen.items():
            print(f"\nnever UP {sorted(states)}: {statuses[backend].reason}")
            assert not any(state.startswith("UP") for state in states), (backend, states)
            assert statuses[backend].check_status == "L7RSP"
            assert f"wrong model or version: the canary response lacks {wrong[backend]}" in (
                statuses[backend].last_chk
            )
            assert statuses[backend].stot == 0  # never given a request
        with pytest.raises(HAProxyError, match="wrong model or version"):
            probe.wait_healthy(MODEL, host.v2, timeout=1)
        for version in ("identity", "rescored"):
            with pytest.raises(CutoverError, match="wrong model or version"):
                probe.switch(MODEL, version)
        assert probe.routes() == {MODEL: true_v1.backend_name}
        status, body = post(route.production_port, host.bodies[0])
        assert status == 200 and json.loads(body)["model_version"] == host.v1
    finally:
        stop_sidecar(probe)


@dataclass(frozen=True)
class SecondModel:
    ref: Ref
    port: int  # its own production port
    bodies: list[bytes]


@pytest.fixture(scope="module")
def model_b(host: Host, trained_models: Models) -> SecondModel:
    """A second model on the same host and sidecar, released to production (on first use)."""
    ctx = host.ctx
    ref = register(ctx, MODEL_B, trained_models.b, trained_models.holdout)
    release.release(ctx, ref, trained_models.holdout, actors=ACTORS)
    return SecondModel(ref, ctx.registry.get_model(MODEL_B).production_port, _bodies(ctx, ref))


@pytest.mark.usefixtures("two_versions")
def test_sidecar_a_cutover_of_one_model_leaves_the_other_untouched(
    host: Host, model_b: SecondModel
) -> None:
    """Two models behind one sidecar, each on its own production port: fraud cuts over from
    v1 to v2 (a reload included) under load on both ports. Model B's port answers every
    request, each with B's own version, from the same process and server; its route, its
    backend and its record are as they were."""
    ctx, b = host.ctx, model_b
    reach(ctx, MODEL_B, Want(b.ref.version, 1))
    b_backend = be(MODEL_B, b.ref.version)
    [b_deployment] = host.deployments(b.ref.version, MODEL_B)
    b_before = host.server(b.ref.version, b_deployment.port, MODEL_B)
    assert b.port != host.port and ctx.sidecar.routes()[MODEL_B] == b_backend
    with (
        PacedLoad(host.port, host.bodies, rate=RATE / 2) as load,
        PacedLoad(b.port, b.bodies, rate=RATE / 2) as b_load,
    ):
        load.wait_for(50)
        b_load.wait_for(50)
        started = time.monotonic()
        release.promote(ctx, Ref(MODEL, host.v2), actor=ACTORS.release)
        done = time.monotonic()
        load.wait_for(100)
        b_load.wait_for(100)
    print(f"\npromote {MODEL} in {done - started:.2f} s: {load.summary()}")
    print(f"{MODEL_B} meanwhile: {b_load.summary()}")
    assert_cut_over(host, load, done, host.v2)
    # B: no failed request, every answer B's own version, also to requests sent during
    # the cutover.
    assert b_load.failures() == [], b_load.failures()[:5]
    assert set(b_load.served()) == {(MODEL_B, b.ref.version)}
    assert b_load.served(started, done).total() > 0
    assert ctx.sidecar.routes()[MODEL_B] == b_backend
    assert ctx.registry.production_version(MODEL_B).version == b.ref.version  # type: ignore[union-attr]
    assert host.deployments(b.ref.version, MODEL_B) == [b_deployment]  # same process, port
    assert b_deployment.pid is not None and pid_alive(b_deployment.pid)
    servers = [s for s in ctx.sidecar.server_status() if s.backend == b_backend]
    assert [s.server for s in servers] == [b_before.server]
    [b_after] = servers
    # Never down or drained: UP since before the cutover (its state carried over the reload),
    # nothing retried or failed on its way.
    assert (b_after.status, b_after.check_status) == ("UP", "L7OK"), b_after
    assert b_after.lastchg_s is not None and b_before.lastchg_s is not None
    assert b_after.lastchg_s >= b_before.lastchg_s, (b_before, b_after)
    assert (b_after.econ, b_after.eresp, b_after.wretr, b_after.wredis) == (0, 0, 0, 0)
    assert b_after.hrsp_5xx == 0


@pytest.mark.usefixtures("two_versions")
def test_sidecar_promote_under_load_keeps_the_old_version_warm(host: Host) -> None:
    ctx = host.ctx
    [old] = host.deployments(host.v1)
    with PacedLoad(host.port, host.bodies, rate=RATE) as load:
        load.wait_for(100)
        started = time.monotonic()
        release.promote(ctx, Ref(MODEL, host.v2), actor=ACTORS.release)
        done = time.monotonic()
        served = host.server(host.v1, old.port).stot
        load.wait_for(150)
    print(f"\npromote in {done - started:.2f} s: {load.summary()}")
    assert_cut_over(host, load, done, host.v2)
    assert set(load.versions()) == {host.v1, host.v2}
    # v1 drained and kept warm: the same process, still passing its canary check, and
    # given no request since the switch.
    [kept] = host.deployments(host.v1)
    assert (kept.id, str(kept.role)) == (old.id, "previous")
    assert old.pid is not None and pid_alive(old.pid)
    assert host.server(host.v1, old.port).healthy
    assert host.server(host.v1, old.port).stot == served
    assert [w.ref.version for w in warm.warm_versions(ctx)] == [host.v1]


@pytest.mark.usefixtures("v2_live_on_two")
def test_sidecar_kill_one_of_two_live_replicas_under_load_loses_nothing(host: Host) -> None:
    """kill -9 of one replica's whole process tree: HAProxy retries what that replica had
    not answered on the other one, and the client sees no failure. A replica sends each
    response in one write (service.py), so it dies having sent a whole response or none:
    never a head HAProxy has forwarded and cannot replay."""
    ctx = host.ctx
    victim, survivor = host.deployments(host.v2)
    assert victim.pid is not None
    with PacedLoad(host.port, host.bodies, rate=RATE) as load:
        load.wait_for(150)
        killed = time.monotonic()
        kill_tree(victim.pid)
        down_after = wait_down(host, host.v2, victim.port, killed)
        load.wait_for(200)
        # The record follows: the dead replica leaves the DB and, by a reload, HAProxy.
        alive = this_host.end_dead(ctx, Ref(MODEL, host.v2), actor=ACTORS.release)
        assert [handle.pid for handle in alive] == [survivor.pid]
        this_host.apply_routes(ctx)
        load.wait_for(100)
    print(f"\nkill 1 of 2 replicas: DOWN after {down_after:.2f} s; {load.summary()}")
    assert load.failures() == [], load.failures()[:5]
    assert set(load.versions()) == {host.v2}
    assert down_after < 3.0
    servers = [s for s in ctx.sidecar.server_status() if s.backend == be(MODEL, host.v2)]
    assert [s.server for s in servers] == [f"v{host.v2}_{survivor.port}"]
    assert servers[0].healthy


@pytest.mark.usefixtures("v2_live_v1_warm")
def test_sidecar_rollback_to_the_warm_version_under_load_is_instant(host: Host) -> None:
    ctx = host.ctx
    [warm_v1] = host.deployments(host.v1)
    current = host.deployments(host.v2)
    with PacedLoad(host.port, host.bodies, rate=RATE) as load:
        load.wait_for(100)
        started = time.monotonic()
        release.rollback(ctx, MODEL, actor=ACTORS.release)
        done = time.monotonic()
        load.wait_for(150)
    print(f"\nrollback to the warm v{host.v1} in {done - started:.2f} s: {load.summary()}")
    assert_cut_over(host, load, done, host.v1)
    assert set(load.versions()) == {host.v1, host.v2}
    # Nothing restarted: the warm process took the traffic back; v2 is warm in its turn.
    [live] = host.deployments(host.v1)
    assert (live.id, live.pid, str(live.role)) == (warm_v1.id, warm_v1.pid, "live")
    assert host.deployments(host.v2) == [replace(d, role=Role.PREVIOUS) for d in current]
    assert all(d.pid is not None and pid_alive(d.pid) for d in current)


@pytest.mark.usefixtures("v1_live_v2_warm")
def test_sidecar_a_warm_version_past_its_time_stops_under_load(host: Host) -> None:
    ctx = host.ctx
    [entry] = warm.warm_versions(ctx)
    previous = [d.pid for d in host.deployments(host.v2)]
    assert entry.ref == Ref(MODEL, host.v2) and previous and None not in previous
    with PacedLoad(host.port, host.bodies, rate=RATE) as load:
        load.wait_for(100)
        assert warm.stop_expired(ctx, now=entry.until - timedelta(seconds=1)) == []
        load.wait_for(50)
        assert warm.stop_expired(ctx, now=entry.until) == [entry.ref]
        load.wait_for(100)
    print(f"\nwarm v{host.v2} stopped: {load.summary()}")
    assert load.failures() == [], load.failures()[:5]
    assert set(load.versions()) == {host.v1}
    assert host.deployments(host.v2) == []
    assert not [pid for pid in previous if pid is not None and pid_alive(pid)]
    assert be(MODEL, host.v2) not in {s.backend for s in ctx.sidecar.server_status()}
    assert warm.warm_versions(ctx) == []


@pytest.mark.usefixtures("v1_live")
def test_sidecar_single_replica_killed_is_down_within_3s_and_a_redeploy_restores_it(
    host: Host,
) -> None:
    ctx = host.ctx
    [dead] = host.deployments(host.v1)
    assert dead.pid is not None
    killed = time.monotonic()
    kill_tree(dead.pid)
    down_after = wait_down(host, host.v1, dead.port, killed)
    status, _ = post(host.port, host.bodies[0])
    assert status == 503  # no server left: HAProxy answers at once, nothing hangs
    redeploy = time.monotonic()
    # `bentogate deploy fraud:<v1>`: the dead replica's record is ended, a new one serves.
    release.deploy(ctx, Ref(MODEL, host.v1), actor=ACTORS.release)
    restored = time.monotonic() - redeploy
    print(f"\nsingle replica killed: DOWN after {down_after:.2f} s; redeploy in {restored:.1f} s")
    assert down_after < 3.0
    assert answering_version(host) == host.v1
    [new] = host.deployments(host.v1)
    assert new.port != dead.port or new.pid != dead.pid
    assert new.role == Role.LIVE  # it serves production: the next cutover leaves it warm
    assert host.server(host.v1, new.port).healthy
    servers = [s.server for s in ctx.sidecar.server_status() if s.backend == be(MODEL, host.v1)]
    assert servers == [f"v{host.v1}_{new.port}"]  # the dead one left HAProxy too
    assert host.routed() == be(MODEL, host.db_live())


def _refusing(car: Sidecar, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``car.<method>`` fail as HAProxy would refuse it, for the live route only where
    the method takes a role: the database half of a step has committed, HAProxy's has not."""
    real = getattr(car, method)

    def refuse(model: str, version: str, **kwargs: object) -> None:
        if kwargs.get("role", "live") != "live":
            return real(model, version, **kwargs)  # type: ignore[no-any-return]
        raise CutoverError(f"{method} {model}:{version} refused (test)")

    monkeypatch.setattr(car, method, refuse)


@pytest.mark.usefixtures("v1_live")
def test_sidecar_a_refused_cutover_leaves_the_record_and_the_routing_agreeing(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every step that commits to the DB and then changes HAProxy puts the DB back when
    HAProxy refuses: promote, and rollback, broken between their two halves."""
    ctx, live = host.ctx, host.db_live()
    other = host.v2 if live == host.v1 else host.v1
    audit_before = len(ctx.registry.audit(MODEL))
    with monkeypatch.context() as patch:
        _refusing(ctx.sidecar, "switch", patch)
        with pytest.raises(CutoverError, match="refused"):
            release.promote(ctx, Ref(MODEL, other), actor=ACTORS.release)
    assert host.db_live() == live and host.routed() == be(MODEL, live)
    # The promotion and its undoing are both on the record.
    actions = [e.action for e in ctx.registry.audit(MODEL)[audit_before:]]
    assert "promote" in actions and "rollback" in actions

    release.promote(ctx, Ref(MODEL, other), actor=ACTORS.release)  # HAProxy agrees again
    assert host.db_live() == other and host.routed() == be(MODEL, other)
    with monkeypatch.context() as patch:
        _refusing(ctx.sidecar, "switch", patch)
        with pytest.raises(CutoverError, match="refused"):
            release.rollback(ctx, MODEL, actor=ACTORS.release)
    assert host.db_live() == other and host.routed() == be(MODEL, other)

    release.rollback(ctx, MODEL, actor=ACTORS.release)  # back to where the test began
    assert host.db_live() == live and host.routed() == be(MODEL, live)


@pytest.mark.usefixtures("v1_live")
def test_sidecar_a_deploy_haproxy_refuses_stops_what_it_started(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy starts replicas, then HAProxy must pass them: if it does not, they stop, their
    records end and the routes stay as they were."""
    ctx = host.ctx
    other = host.v2 if host.db_live() == host.v1 else host.v1
    before = {d.id for d in ctx.registry.deployments(host=ctx.settings.host)}
    routes = ctx.sidecar.routes()
    with monkeypatch.context() as patch:
        patch.setattr(
            ctx.sidecar,
            "wait_healthy",
            lambda *_, **__: (_ for _ in ()).throw(HAProxyError("never L7OK (test)")),
        )
        with pytest.raises(HAProxyError, match="never L7OK"):
            release.deploy(ctx, Ref(MODEL, other), actor=ACTORS.release)
    assert {d.id for d in ctx.registry.deployments(host=ctx.settings.host)} == before
    assert ctx.sidecar.routes() == routes
