"""HAProxy's request log against the real haproxy 2.6: one line per request, written by
haproxy into the FIFO it was started with and drained into the file by the log writer,
across reloads and rotations."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hosts import stop_sidecar
from hx_support import Ports, StandIn, post, spec_of, version_backend

from bentogate.haproxy import ProxyPaths, RequestLine, Sidecar, lines_about, tail_log
from bentogate.haproxy.accesslog import rotation
from bentogate.settings import HAProxySettings

pytestmark = pytest.mark.integration
StartStandIn = Callable[[str, str], StandIn]


def requests_in(path: Path, count: int, timeout: float = 5.0) -> list[RequestLine]:
    """The first ``count`` request lines of ``path``, waiting for them (haproxy writes a
    line once the response has gone out)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        found = [r for r in map(RequestLine.parse, text.splitlines()) if r is not None]
        if len(found) >= count:
            return found[:count]
        assert time.monotonic() < deadline, f"{len(found)} of {count} lines:\n{text}"
        time.sleep(0.05)


def test_each_request_is_one_line_with_backend_server_status_timers_and_bytes(
    sidecar: Sidecar, ports: Ports, standin: StartStandIn
) -> None:
    v3 = standin("fraud", "3")
    sidecar.apply(spec_of(ports, [version_backend("fraud", "3", v3)], live="3"))
    assert sidecar.logs_requests()
    assert post(ports.production)[0] == 200
    assert post(ports.candidate)[0] == 503  # no candidate routed: HAProxy answers itself
    served, unrouted = requests_in(sidecar.paths.access_log, 2)
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
    lines = requests_in(sidecar.paths.access_log, 3)
    assert [r.frontend for r in lines] == ["fe_fraud", "fe_fraud_candidate", "fe_fraud"]


@pytest.fixture
def small_log_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """A sidecar whose request log is rotated past 4 KiB, three copies kept."""
    settings = HAProxySettings(
        binary="/usr/sbin/haproxy", access_log_max_bytes=4096, access_log_keep=3
    )
    car = Sidecar(ProxyPaths(tmp_path_factory.mktemp("hxlog")), settings)
    yield car
    stop_sidecar(car, timeout=3)


def test_the_log_goes_on_across_reloads_and_rotations_and_ends_with_haproxy(
    small_log_sidecar: Sidecar, ports: Ports, standin: StartStandIn
) -> None:
    car = small_log_sidecar
    v3, v4 = standin("fraud", "3"), standin("fraud", "4")
    log = car.paths.access_log
    car.apply(spec_of(ports, [version_backend("fraud", "3", v3)], live="3"))
    post(ports.production)
    assert requests_in(log, 1)[0].backend == "be_fraud_3"
    backends = [version_backend("fraud", "3", v3), version_backend("fraud", "4", v4)]
    car.apply(spec_of(ports, backends, live="3", candidate="4"))  # a seamless reload
    assert car.logs_requests()
    for _ in range(30):  # 31 lines of ≈ 205 bytes, and the reload's: rotated past 4 KiB
        assert post(ports.candidate)[0] == 200
    lines = _all_requests(log, 31)
    assert [r.backend for r in lines] == ["be_fraud_3"] + ["be_fraud_4"] * 30  # the new worker
    copies = [log] + [rotation(log, n) for n in (1, 2, 3) if rotation(log, n).exists()]
    assert len(copies) >= 2 and not rotation(log, 4).exists()
    assert all(c.stat().st_size <= 4096 + 31 * 256 for c in copies)  # max + one batch
    assert b"\0" not in b"".join(c.read_bytes() for c in copies)
    writer = car.process.log_writer_pid()
    assert writer is not None
    car.stop()
    assert car.process.log_writer_pid() is None and not _running(writer)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


def _all_requests(log: Path, count: int, timeout: float = 5.0) -> list[RequestLine]:
    """The request lines of ``log`` and its copies, oldest first, once there are ``count``
    (the other lines say what HAProxy did: a reload, a server coming up)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in map(RequestLine.parse, tail_log(log, 10_000)) if r is not None]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def test_a_killed_writer_is_started_again_and_a_server_going_down_is_logged_with_why(
    sidecar: Sidecar, ports: Ports, standin: StartStandIn
) -> None:
    v3 = standin("fraud", "3")
    log = sidecar.paths.access_log
    sidecar.apply(spec_of(ports, [version_backend("fraud", "3", v3)], live="3"))
    writer = sidecar.process.log_writer_pid()
    assert writer is not None
    os.kill(writer, signal.SIGKILL)
    post(ports.production)  # its line waits in the FIFO
    deadline = time.monotonic() + 5
    while sidecar.process.log_writer_pid() is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert sidecar.ensure_log_writer()
    assert requests_in(log, 1)[0].status == 200
    v3.set_mode("503")
    keep = lines_about(["fe_fraud"], ["be_fraud_3"])
    deadline = time.monotonic() + 10
    while not (down := [ln for ln in tail_log(log, 20, keep) if "be_fraud_3/r1 is DOWN" in ln]):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    assert "503" in down[0] or "did not answer 200" in down[0]
