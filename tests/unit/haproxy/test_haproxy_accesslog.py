"""The request log: its lines parsed, picked per model, read back across rotations and
followed; its writer draining a FIFO and rotating the file (HAProxy writing into it is in
tests/integration/haproxy)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bentogate.haproxy import RequestLine, lines_about, tail_log
from bentogate.haproxy._logwriter import rotate, run
from bentogate.haproxy.accesslog import follow_log, rotation

# Lines as HAProxy 2.6.12 writes them (log fd@9 format iso, option httplog).
OK = (
    "2026-12-06T02:22:12.993181+00:00 127.0.0.1:37250 [06/Dec/2026:02:22:12.992] fe_fraud "
    'be_fraud_2/v2_3005 0/0/1/2/3 200 187 - - ---- 2/1/0/0/0 0/0 "POST /predict HTTP/1.1"'
)
UNROUTED = (
    "2026-12-06T02:22:13.000000+00:00 127.0.0.1:37252 [06/Dec/2026:02:22:13.000] "
    "fe_fraud_candidate be_unavailable/<NOSRV> 0/-1/-1/-1/0 503 120 - - LR-- 1/1/0/0/0 0/0 "
    '"POST /predict HTTP/1.1"'
)
DOWN = (
    "2026-12-06T02:22:14.000000+00:00 Server be_fraud_2/v2_3005 is DOWN, reason: Layer7 "
    "wrong status, code: 503, check duration: 1ms. 0 active and 0 backup servers left."
)
OTHER_MODEL = OK.replace("fe_fraud ", "fe_fraud_x ").replace("be_fraud_2/", "be_fraud_x_2/")


def test_a_request_line_gives_frontend_backend_server_timers_status_bytes() -> None:
    line = RequestLine.parse(OK)
    assert line is not None
    assert (line.frontend, line.backend, line.server) == ("fe_fraud", "be_fraud_2", "v2_3005")
    assert line.timers_ms == (0, 0, 1, 2, 3)
    assert (line.status, line.bytes_read, line.termination, line.retries) == (200, 187, "----", 0)
    assert line.request == "POST /predict HTTP/1.1"
    assert line.at.startswith("2026-12-06T02:22:12")


def test_haproxys_own_answers_and_state_changes_parse_as_such() -> None:
    unrouted = RequestLine.parse(UNROUTED)
    assert unrouted is not None
    assert (unrouted.backend, unrouted.server, unrouted.status) == (
        "be_unavailable",
        "<NOSRV>",
        503,
    )
    assert unrouted.timers_ms[2:4] == (-1, -1)  # never connected to a server
    assert RequestLine.parse(DOWN) is None


def test_a_models_lines_are_its_ports_and_its_versions_servers_not_a_similar_name() -> None:
    keep = lines_about(["fe_fraud", "fe_fraud_candidate"], ["be_fraud_1", "be_fraud_2"])
    assert keep(OK) and keep(UNROUTED) and keep(DOWN)
    assert not keep(OTHER_MODEL)  # model "fraud_x": a prefix is no match


def write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{ln}\n" for ln in lines))


def test_tail_reads_back_through_rotated_copies_oldest_first(tmp_path: Path) -> None:
    log = tmp_path / "haproxy.log"
    write(rotation(log, 2), ["a1", "a2"])
    write(rotation(log, 1), ["b1", OK])
    write(log, ["c1", "c2"])
    assert tail_log(log, 3) == [OK, "c1", "c2"]
    assert tail_log(log, 10) == ["a1", "a2", "b1", OK, "c1", "c2"]
    assert tail_log(log, 10, lambda ln: ln.endswith("1")) == ["a1", "b1", "c1"]
    assert tail_log(log, 0) == []
    assert tail_log(tmp_path / "missing.log", 5) == []


def test_rotation_renames_keeping_n_copies(tmp_path: Path) -> None:
    log = tmp_path / "haproxy.log"
    for generation in range(4):
        write(log, [f"gen{generation}"])
        rotate(log, 2)
        assert not log.exists()
    assert rotation(log, 1).read_text() == "gen3\n"
    assert rotation(log, 2).read_text() == "gen2\n"
    assert not rotation(log, 3).exists()
    write(log, ["x"])
    rotate(log, 0)  # keeping none: dropped
    assert not log.exists() and rotation(log, 1).read_text() == "gen3\n"


def test_the_writer_drains_the_fifo_into_the_file_rotates_it_and_ends_with_haproxy(
    tmp_path: Path,
) -> None:
    fifo, log = tmp_path / "requests.fifo", tmp_path / "logs" / "haproxy.log"
    os.mkfifo(fifo)
    haproxy = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # as haproxy holds it
    writer = threading.Thread(target=run, args=(fifo, log, 300, 2, 0.01))
    writer.start()
    try:
        lines = [f"request {i:03d} " + "x" * 40 for i in range(20)]  # 53 bytes each
        for line in lines[:3]:
            os.write(haproxy, f"{line}\n".encode())
        _wait_until(lambda: log.exists() and log.read_text().count("\n") == 3)
        for line in lines[3:]:
            os.write(haproxy, f"{line}\n".encode())
            time.sleep(0.003)
        _wait_until(lambda: tail_log(log, 100) == lines[-len(tail_log(log, 100)) :])
        kept = tail_log(log, 100)
        assert kept == lines[-len(kept) :] and len(kept) >= 10  # in order, none doubled
        assert rotation(log, 1).exists() and rotation(log, 2).exists()
        assert not rotation(log, 3).exists()  # older ones dropped
        assert all(path.stat().st_size < 300 + 20 * 53 for path in (log, rotation(log, 1)))
    finally:
        os.close(haproxy)  # haproxy gone: no writer holds the FIFO
        writer.join(5)
    assert not writer.is_alive()


def test_follow_yields_new_lines_only_and_survives_a_rotation(tmp_path: Path) -> None:
    log = tmp_path / "haproxy.log"
    write(log, ["old"])
    done = threading.Event()
    got: list[str] = []

    def read() -> None:
        for line in follow_log(log, lambda ln: ln != "skip", stop=done.is_set, poll_s=0.01):
            got.append(line)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        with open(log, "a") as out:
            _wait_until(lambda: True, 0.1)  # the reader is at the end
            out.write("one\nskip\ntw")
            out.flush()
            _wait_until(lambda: got == ["one"])
            out.write("o\n")
            out.flush()
            _wait_until(lambda: got == ["one", "two"])
        rotate(log, 1)  # renamed away, as the writer does; a new file follows
        write(log, ["three"])
        _wait_until(lambda: got == ["one", "two", "three"])
    finally:
        done.set()
        reader.join(5)
    assert got == ["one", "two", "three"]


def _wait_until(condition: Callable[[], bool], at_least: float = 0.0, timeout: float = 5.0) -> None:
    time.sleep(at_least)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
