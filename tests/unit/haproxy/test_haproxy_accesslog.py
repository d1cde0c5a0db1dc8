"""The request log: its lines parsed, picked per model, saved once each and rotated, read
back across rotations (HAProxy's ring and its saving across reloads are in
tests/integration/haproxy)."""

from __future__ import annotations

from pathlib import Path

from bentogate.haproxy import RequestLine, lines_about, tail_log
from bentogate.haproxy.accesslog import LogFile, after, rotate, rotation

# Lines as HAProxy 2.6.12 writes them (ring format iso, option httplog).
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


def test_saving_a_ring_twice_appends_each_line_once_and_a_new_worker_starts_afresh(
    tmp_path: Path,
) -> None:
    log = LogFile(tmp_path / "logs" / "haproxy.log", max_bytes=1 << 20, keep=2)
    assert log.save(["a", "b"], worker=10) == 2
    assert log.save(["a", "b", "c"], worker=10) == 1  # the ring grew by one
    assert log.save(["a", "b", "c"], worker=10) == 0
    assert log.save(["a"], worker=11) == 1  # a new worker's ring: every line is new
    assert log.save(["a", "d"], worker=11) == 1
    assert tail_log(log.path, 10) == ["a", "b", "c", "a", "d"]


def test_a_ring_that_went_round_past_the_last_saved_line_is_saved_whole(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "haproxy.log", max_bytes=1 << 20, keep=2)
    log.save(["a", "b"], worker=10)
    assert log.save(["x", "y"], worker=10) == 2  # "b" was overwritten: nothing to skip
    assert after(["b", "c", "b", "d"], "b") == ["d"]  # the last occurrence counts
    assert after(["c"], None) == ["c"]


def test_saving_rotates_past_max_bytes_and_keeps_n_copies(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "haproxy.log", max_bytes=100, keep=2)
    lines = [f"request {i:03d} " + "x" * 40 for i in range(20)]  # 53 bytes each
    for worker, start in enumerate(range(0, 20, 2)):
        log.save(lines[start : start + 2], worker)
    kept = tail_log(log.path, 100)
    assert kept == lines[-len(kept) :] and len(kept) >= 4  # in order, none doubled
    assert rotation(log.path, 2).exists() and not rotation(log.path, 3).exists()
