"""The sidecar against the real haproxy 2.6 binary and stand-in Bentos."""

from __future__ import annotations

import http.client
import signal
import socket
import stat
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from hosts import stop_sidecar
from hx_support import (
    MAX_BODY,
    LoadClient,
    Ports,
    StandIn,
    post,
    spec_of,
    start_wrk,
    version_backend,
    wrk_result,
)

from bentogate.errors import CutoverError, HAProxyError
from bentogate.haproxy import ProxyPaths, ProxySpec, Server, Sidecar, VersionBackend, render
from bentogate.haproxy.process import check_config
from bentogate.settings import HAProxySettings

pytestmark = pytest.mark.integration
StartStandIn = Callable[[str, str], StandIn]


def two_versions(ports: Ports, v3: StandIn, v4: StandIn, live: str = "3") -> ProxySpec:
    backends = [version_backend("fraud", "3", v3), version_backend("fraud", "4", v4)]
    return spec_of(ports, backends, live=live)


def status_of(car: Sidecar, backend: str, server: str = "r1") -> tuple[str, str, str]:
    row = next(s for s in car.server_status() if (s.backend, s.server) == (backend, server))
    return row.status, row.check_status, row.last_chk


def test_config_with_awkward_strings_passes_haproxy_check(tmp_path: Path, ports: Ports) -> None:
    backend = VersionBackend(
        model="fraud",
        version="3 rc/1",
        servers=(Server("r1", 3003),),
        canary_body='{"features":[1e-05,-2.5E+3,"it\'s, #1 $HOME \\\\ \\"q\\""]}',
        expect_strings=('"model":"fraud","model_version":"3 rc/1"', "it's $HOME #"),
        max_body_bytes=MAX_BODY,
        expect_rstring=r'"score":(0|0\.\d+|[0-9.]+e-?\d+),',
    )
    spec = spec_of(ports, [backend], live="3 rc/1")
    paths = ProxyPaths(tmp_path)
    paths.map_file.write_text("fraud be_fraud_3_rc_1\n")
    paths.state_file.write_text("1\n")
    paths.in_service_file.write_text("")
    paths.config.write_text(render(spec, HAProxySettings(), paths))
    check_config("/usr/sbin/haproxy", paths.config)


def test_health_check_sends_the_canary_byte_for_byte(sidecar: Sidecar, ports: Ports) -> None:
    """The quoting in haproxy.cfg must not alter the body: capture what the check sends."""
    canary = '{"features":[1e-05,-2.5E+3,"it\'s, #1 $HOME \\\\ \\"q\\""]}'
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(5)
    backend = VersionBackend(
        "fraud", "3", (Server("r1", listener.getsockname()[1]),), canary, ('"x"',), MAX_BODY
    )
    try:
        sidecar.apply(spec_of(ports, [backend], live=None))
        sidecar.runtime().set_server_state("be_fraud_3", "r1", "drain")
        conn, _ = listener.accept()
        data = b""
        conn.settimeout(2)
        while canary.encode() not in data and len(data) < 4096:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        conn.close()
    finally:
        listener.close()
    head, _, body = data.partition(b"\r\n\r\n")
    # The query string marks it as no client's (a Bento does not keep its row).
    assert head.startswith(b"POST /predict?from=check HTTP/1.1\r\n")
    assert b"\r\nx-health-check: 1" in head.lower()
    assert b"\r\nhost: localhost" in head.lower()
    assert body == canary.encode()


def test_admin_and_master_sockets_are_private_and_stats_served(
    sidecar: Sidecar, ports: Ports, standin: StartStandIn
) -> None:
    sidecar.apply(spec_of(ports, [version_backend("fraud", "3", standin("fraud", "3"))], "3"))
    for sock in (sidecar.paths.admin_socket, sidecar.paths.master_socket):
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    base = f"http://127.0.0.1:{ports.stats}"
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        assert b"haproxy_server_check_status" in r.read()
    with urllib.request.urlopen(base + "/stats;csv", timeout=5) as r:
        assert b"be_fraud_3,r1," in r.read()
    assert post(ports.candidate)[0] == 503  # no candidate routed: fast 503


def test_body_over_limit_gets_413(sidecar: Sidecar, ports: Ports, standin: StartStandIn) -> None:
    sidecar.apply(spec_of(ports, [version_backend("fraud", "3", standin("fraud", "3"))], "3"))
    limit = MAX_BODY  # the version's own limit (a Bento's is read from its build)
    assert post(ports.production, b"1" * limit)[0] == 200
    assert post(ports.production, b"1" * (limit + 1))[0] == 413
    # A chunked body has no Content-Length: HAProxy streams it on and the Bento judges it
    # (test_sidecar_admin_and_stats_are_local_only_and_big_bodies_get_413).


def test_wrong_version_never_becomes_up(
    sidecar: Sidecar, ports: Ports, standin: StartStandIn
) -> None:
    v3, v4 = standin("fraud", "3"), standin("fraud", "4")
    v4.set_mode("wrong")
    sidecar.apply(two_versions(ports, v3, v4))
    seen = set()
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        seen.add(status_of(sidecar, "be_fraud_4")[0])
        time.sleep(0.02)
    assert not any(s.startswith("UP") for s in seen), seen
    with pytest.raises(HAProxyError, match="wrong model or version"):
        sidecar.wait_healthy("fraud", "4", timeout=1)
    with pytest.raises(CutoverError, match="be_fraud_4/r1"):
        sidecar.switch("fraud", "4")
    with pytest.raises(CutoverError, match="no backend be_fraud_9"):
        sidecar.switch("fraud", "9")
    assert post(ports.production)[0] == 200


@pytest.mark.parametrize("failure", ["kill", "503", "hang"])
def test_failing_server_is_marked_down_within_3s(
    sidecar: Sidecar, ports: Ports, standin: StartStandIn, failure: str
) -> None:
    v3 = standin("fraud", "3")
    sidecar.apply(spec_of(ports, [version_backend("fraud", "3", v3)], "3"))
    assert status_of(sidecar, "be_fraud_3")[:2] == ("UP", "L7OK")
    if failure == "kill":
        v3.stop()
    else:
        v3.set_mode(failure)
    started = time.monotonic()
    while status_of(sidecar, "be_fraud_3")[0] != "DOWN":
        assert time.monotonic() - started < 3.0, status_of(sidecar, "be_fraud_3")
        time.sleep(0.02)
    _, check, last_chk = status_of(sidecar, "be_fraud_3")
    print(f"{failure}: DOWN after {time.monotonic() - started:.2f}s ({check} {last_chk})")
    assert check != "L7OK"


def test_cutover_and_rollback_under_load_lose_nothing(
    sidecar: Sidecar, ports: Ports, standin: StartStandIn
) -> None:
    v3, v4 = standin("fraud", "3"), standin("fraud", "4")
    sidecar.apply(spec_of(ports, [version_backend("fraud", "3", v3)], "3"))
    with LoadClient(ports.production) as load:
        load.wait_for(200)
        sidecar.apply(two_versions(ports, v3, v4))  # reload while v3 serves
        sidecar.wait_healthy("fraud", "4")
        load.wait_for(200)
        sidecar.switch("fraud", "4")
        sidecar.drain("fraud", "3")
        assert status_of(sidecar, "be_fraud_3")[0] == "MAINT"
        before = load.results.copy()
        load.wait_for(300)
        after_switch = load.results - before
        sidecar.apply(two_versions(ports, v3, v4, live="4"))  # reload keeps MAINT and route
        assert status_of(sidecar, "be_fraud_3")[0] == "MAINT"
        sidecar.wait_healthy("fraud", "3")  # rollback: maint → drain → L7OK → ready
        sidecar.switch("fraud", "3")
        sidecar.drain("fraud", "4")
        load.wait_for(300)
    print(f"cutover+rollback: {load.total} requests, {dict(load.results)}, errors {load.errors}")
    assert load.failed() == 0, load.errors
    assert load.versions() == {"3", "4"}
    assert {v for _, v in after_switch} == {"4"}  # nothing reaches the old version after
    assert sidecar.runtime().show_map(sidecar.paths.map_file) == {"fraud": "be_fraud_3"}
    assert "fraud be_fraud_3" in sidecar.paths.map_file.read_text()


def test_reloads_under_wrk_load_lose_nothing(
    sidecar: Sidecar, ports: Ports, standin: StartStandIn, tmp_path: Path
) -> None:
    v3, v4 = standin("fraud", "3"), standin("fraud", "4")
    one, two = spec_of(ports, [version_backend("fraud", "3", v3)], "3"), two_versions(ports, v3, v4)
    sidecar.apply(one)
    # Six reloads however long each takes (0.3-0.8 s here), every one under load: wrk runs
    # until stopped (SIGINT: it prints its summary) or, at the latest, 30 s.
    wrk = start_wrk(ports.production, 30, tmp_path)
    try:
        time.sleep(0.5)
        for reloads in range(1, 7):
            sidecar.apply(two if reloads % 2 else one)
            time.sleep(0.2)
        still_loading = wrk.poll() is None
    finally:
        wrk.send_signal(signal.SIGINT)
        result = wrk_result(wrk)
    print(f"{reloads} reloads under wrk: {result.requests} requests, {result.non_2xx} non-2xx,")
    print(f"{result.socket_errors} socket errors")
    assert still_loading, "wrk stopped before the last reload"
    assert result.requests > 1000
    assert (result.non_2xx, result.socket_errors) == (0, 0), result.output


@pytest.mark.parametrize("dead", ["r1", "r2"])
def test_dead_replica_is_retried_elsewhere(
    sidecar: Sidecar, ports: Ports, standin: StartStandIn, dead: str
) -> None:
    """Either replica, while the client keeps six requests in flight: every retry finds
    the live one (a `balance first` with a small maxconn per replica failed this for the
    last replica: bench/README.md, routing to a hot replica)."""
    replicas = {"r1": standin("fraud", "3"), "r2": standin("fraud", "3")}
    sidecar.apply(spec_of(ports, [version_backend("fraud", "3", *replicas.values())], "3"))
    with LoadClient(ports.production) as load:
        load.wait_for(200)
        replicas[dead].stop()
        load.wait_for(500)
    assert load.failed() == 0, load.errors
    assert status_of(sidecar, "be_fraud_3", dead)[0].startswith("DOWN")


def test_one_request_at_a_time_goes_to_the_first_replica_concurrent_ones_to_both(
    sidecar: Sidecar, ports: Ports, standin: StartStandIn
) -> None:
    """The first idle replica in service takes a request (its caches stay warm at a low
    rate), also after a reload; leastconn spreads the rest."""
    v3 = version_backend("fraud", "3", standin("fraud", "3"), standin("fraud", "3"))
    sidecar.apply(spec_of(ports, [v3], "3"))

    def served() -> dict[str, int]:
        return {s.server: s.stot for s in sidecar.server_status() if s.backend == "be_fraud_3"}

    def one_at_a_time(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ports.production, timeout=5)
        try:  # one keep-alive connection (a new one may meet the last stream still on r1)
            for _ in range(count):
                conn.request("POST", "/predict", body=b'{"features":[1,2]}')
                response = conn.getresponse()
                response.read()
                assert response.status == 200
        finally:
            conn.close()

    one_at_a_time(200)
    assert served() == {"r1": 200, "r2": 0}
    # a reload (another version deployed beside it) carries the servers' states and the
    # in-service list; counters restart
    sidecar.apply(spec_of(ports, [v3, version_backend("fraud", "4", standin("fraud", "4"))], "3"))
    one_at_a_time(200)
    assert served() == {"r1": 200, "r2": 0}
    with LoadClient(ports.production) as load:
        load.wait_for(300)
    assert load.failed() == 0, load.errors
    assert served()["r2"] > 0


def test_the_first_replica_takes_a_second_request_in_flight_the_next_replica_a_third(
    sidecar: Sidecar, ports: Ports, standin: StartStandIn
) -> None:
    """A replica already busy with one request takes the next before an idle replica is
    woken for it (less CPU per request under load: haproxy/config.py); with two in flight
    the next replica in service takes the third."""
    r1, r2 = standin("fraud", "3"), standin("fraud", "3")
    sidecar.apply(spec_of(ports, [version_backend("fraud", "3", r1, r2)], "3"))
    r1.set_mode("slow")  # predictions answered after 3 s, health checks at once
    r2.set_mode("slow")
    answers: list[tuple[int, bytes]] = []
    clients = [threading.Thread(target=lambda: answers.append(post(ports.production)))
               for _ in range(3)]  # fmt: skip

    def in_flight() -> dict[str, int]:
        return {s.server: s.scur for s in sidecar.server_status() if s.backend == "be_fraud_3"}

    seen = []
    for client in clients:  # one at a time, each in flight before the next is sent
        client.start()
        deadline = time.monotonic() + 1.0
        while sum(in_flight().values()) < len(seen) + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(in_flight())
    for client in clients:
        client.join(timeout=10)
    assert seen == [{"r1": 1, "r2": 0}, {"r1": 2, "r2": 0}, {"r1": 2, "r2": 1}]
    assert [status for status, _ in answers] == [200, 200, 200]


def test_a_500_is_not_retried(sidecar: Sidecar, ports: Ports, standin: StartStandIn) -> None:
    a, b = standin("fraud", "3"), standin("fraud", "3")
    sidecar.apply(spec_of(ports, [version_backend("fraud", "3", a, b)], "3"))
    a.set_mode("500")
    b.set_mode("500")
    assert post(ports.production)[0] == 500
    assert sum(s.wretr + s.wredis for s in sidecar.server_status()) == 0


def test_new_replica_in_live_backend_takes_traffic_only_after_a_passed_check(
    sidecar: Sidecar, ports: Ports, standin: StartStandIn
) -> None:
    good, wrong = standin("fraud", "3"), standin("fraud", "3")
    wrong.set_mode("wrong")
    sidecar.apply(spec_of(ports, [version_backend("fraud", "3", good)], "3"))
    stop = threading.Event()
    statuses: list[int] = []

    def hammer() -> None:
        while not stop.is_set():
            statuses.append(post(ports.production)[0])

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        grown = spec_of(ports, [version_backend("fraud", "3", good, wrong)], "3")
        with pytest.raises(HAProxyError, match="r2"):
            sidecar.apply(grown, timeout=3)
    finally:
        stop.set()
        thread.join()
    assert status_of(sidecar, "be_fraud_3", "r2")[0] == "DOWN"
    assert set(statuses) == {200}
    srv = next(s for s in sidecar.server_status() if s.server == "r2")
    assert srv.stot == 0  # the wrong replica never got a request


def test_a_deep_state_directory_leaves_no_sockets_directory_once_stopped(
    tmp_path: Path, ports: Ports, standin: StartStandIn
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # too long a path for a unix socket in it
    car = Sidecar(ProxyPaths(deep), HAProxySettings(binary="/usr/sbin/haproxy"))
    assert car.paths.sockets != deep
    try:
        car.apply(spec_of(ports, [version_backend("fraud", "3", standin("fraud", "3"))], "3"))
        assert post(ports.production)[0] == 200 and car.paths.admin_socket.exists()
    finally:
        stop_sidecar(car, timeout=3)
    assert not car.paths.sockets.exists()
