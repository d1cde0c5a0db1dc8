"""HAProxy's request log against the real haproxy 2.6: one line per request, kept in the
worker's ring and saved to the file, each line once, across reloads under load and at
stop; followed live across a reload; no process beside haproxy."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hosts import stop_sidecar
from hx_support import LoadClient, Ports, StandIn, post, spec_of, version_backend

from bentogate.haproxy import ProxyPaths, RequestLine, Sidecar, lines_about, tail_log
from bentogate.haproxy.accesslog import rotation
from bentogate.settings import HAProxySettings

pytestmark = pytest.mark.integration
StartStandIn = Callable[[str, str], StandIn]


def requests_in(sidecar: Sidecar, count: int, timeout: float = 5.0) -> list[RequestLine]:
    """The request lines of the log once there are ``count`` (saved from the ring first:
    haproxy writes a line once the response has gone out)."""
    deadline = time.monotonic() + timeout
    while True:
        sidecar.save_request_log()
        found = parsed(sidecar.paths.access_log)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {count} lines"
        time.sleep(0.05)


def parsed(log: Path) -> list[RequestLine]:
    """Every request line of ``log`` and its rotated copies, oldest first."""
    return [r for r in map(RequestLine.parse, tail_log(log, 1_000_000)) if r is not None]


def test_each_request_is_one_line_with_backend_server_status_timers_and_bytes(
    sidecar: Sidecar, ports: Ports, standin: StartStandIn
) -> None:
    v3 = standin("fraud", "3")
    sidecar.apply(spec_of(ports, [version_backend("fraud", "3", v3)], live="3"))
    assert post(ports.production)[0] == 200
    assert post(ports.candidate)[0] == 503  # no candidate routed: HAProxy answers itself
    served, unrouted = requests_in(sidecar, 2)
    assert (served.frontend, served.backend, served.server) == ("fe_fraud", "be_fraud_3", "r1")
    assert served.status == 200 and served.bytes_read > 0 and served.termination == "----"
    tr, tw, tc, tresp, ta = served.timers_ms
    assert min(tr, tw, tc, tresp) >= 0 and ta >= tresp
    assert served.request == "POST /predict HTTP/1.1"
    assert (unrouted.frontend, unrouted.backend, unrouted.server, unrouted.status) == (
        "fe_fraud_candidate",
        "be_unavailable",
        "<NOSRV>",
        503,
    )
    assert unrouted.timers_ms[2] == -1  # never connected to a server
    # The stats port is no model's: not logged.
    urllib.request.urlopen(f"http://127.0.0.1:{ports.stats}/metrics", timeout=5).read()
    post(ports.production)
    lines = requests_in(sidecar, 3)
    assert [r.frontend for r in lines] == ["fe_fraud", "fe_fraud_candidate", "fe_fraud"]
    assert sidecar.save_request_log() == 0  # saved already: never twice


@pytest.fixture
def small_log_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """A sidecar whose request log is rotated past 64 KiB, three copies kept."""
    settings = HAProxySettings(
        binary="/usr/sbin/haproxy", access_log_max_bytes=64 * 1024, access_log_keep=3
    )
    car = Sidecar(ProxyPaths(tmp_path_factory.mktemp("hxlog")), settings)
    yield car
    stop_sidecar(car, timeout=3)


def test_every_answer_under_load_is_logged_once_across_reloads_and_the_stop(
    small_log_sidecar: Sidecar, ports: Ports, standin: StartStandIn
) -> None:
    """Six clients (half of them keep-alive) through two seamless reloads and the stop:
    the lines saved are exactly the answers they got, none lost, none twice, and nothing
    of bentogate's runs beside haproxy."""
    car = small_log_sidecar
    v3, v4 = standin("fraud", "3"), standin("fraud", "4")
    one = [version_backend("fraud", "3", v3)]
    both = [*one, version_backend("fraud", "4", v4)]
    car.apply(spec_of(ports, one, live="3"))
    assert _processes_of(car) == {"haproxy"}
    with LoadClient(ports.production) as load:
        load.wait_for(200)
        car.apply(spec_of(ports, both, live="3", candidate="4"))  # a reload mid-load
        load.wait_for(200)
        car.apply(spec_of(ports, one, live="3"))  # and another
        load.wait_for(200)
    car.stop()
    assert load.failed() == 0, load.errors
    lines = [r for r in parsed(car.paths.access_log) if r.frontend == "fe_fraud"]
    assert len(lines) == load.total and all(r.status == 200 for r in lines)
    assert len({(r.at, r.client) for r in lines}) == len(lines)  # none twice
    log = car.paths.access_log
    assert rotation(log, 1).exists() and not rotation(log, 4).exists()
    assert b"\0" not in b"".join(p.read_bytes() for p in log.parent.glob(f"{log.name}*"))


def _processes_of(car: Sidecar) -> set[str]:
    """The names of the live processes whose command line names the sidecar's directory."""
    directory = str(car.paths.directory).encode()
    names = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if directory in (proc / "cmdline").read_bytes():
                names.add((proc / "comm").read_text().strip())
        except OSError:
            continue
    return names


def test_following_sees_each_new_line_once_across_a_reload(
    sidecar: Sidecar, ports: Ports, standin: StartStandIn
) -> None:
    v3, v4 = standin("fraud", "3"), standin("fraud", "4")
    one = [version_backend("fraud", "3", v3)]
    sidecar.apply(spec_of(ports, one, live="3"))
    post(ports.production)  # before the follower: not shown
    seen: list[str] = []
    done = threading.Event()

    def follow() -> None:
        seen.extend(sidecar.follow_requests(lines_about(["fe_fraud"], []), stop=done.is_set))

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        time.sleep(0.5)  # the follower is attached
        post(ports.production, b'{"features":[1]}')
        sidecar.apply(spec_of(ports, [*one, version_backend("fraud", "4", v4)], live="3"))
        post(ports.production, b'{"features":[2]}')
        deadline = time.monotonic() + 5
        while len(requests := [r for r in map(RequestLine.parse, seen) if r]) < 2:
            assert time.monotonic() < deadline, seen
            time.sleep(0.05)
        time.sleep(0.5)  # nothing more comes
    finally:
        done.set()
        follower.join(5)
    assert not follower.is_alive()
    requests = [r for r in map(RequestLine.parse, seen) if r is not None]
    assert len(requests) == 2, "\n".join(seen)  # the one before the follower not shown
    assert any("Proxy fe_fraud stopped" in line for line in seen)  # the reload's own line


def test_a_server_going_down_is_logged_with_why(
    sidecar: Sidecar, ports: Ports, standin: StartStandIn
) -> None:
    v3 = standin("fraud", "3")
    sidecar.apply(spec_of(ports, [version_backend("fraud", "3", v3)], live="3"))
    v3.set_mode("503")
    keep = lines_about(["fe_fraud"], ["be_fraud_3"])
    log = sidecar.paths.access_log
    deadline = time.monotonic() + 10
    while not (down := [ln for ln in tail_log(log, 20, keep) if "be_fraud_3/r1 is DOWN" in ln]):
        assert time.monotonic() < deadline, log.read_text() if log.exists() else "(no file)"
        time.sleep(0.1)
        sidecar.save_request_log()
    assert "503" in down[0] or "did not answer 200" in down[0]
