"""The per-server fields a status view reads, parsed from a real ``show stat`` (2.6.12)."""

from __future__ import annotations

from pathlib import Path

from bentogate.haproxy.runtime import parse_stat_csv
from bentogate.haproxy.stats import PortCounts, port_counts, server_statuses

STAT = (Path(__file__).with_name("data") / "show_stat.csv").read_text()


def test_status_view_fields_of_an_up_and_a_down_server() -> None:
    servers = {s.backend: s for s in server_statuses(parse_stat_csv(STAT))}
    up, down = servers["be_fraud_3"], servers["be_fraud_4"]
    assert (up.status, up.check_status, up.check_code, up.check_duration_ms) == (
        "UP",
        "L7OK",
        200,
        1,
    )
    assert (up.scur, up.rate, up.rate_max, up.stot, up.hrsp_2xx) == (0, 1, 1, 1, 1)
    assert (up.hrsp_4xx, up.hrsp_5xx, up.econ, up.eresp, up.srv_abrt) == (0, 0, 0, 0, 0)
    assert (up.qtime_ms, up.ctime_ms, up.rtime_ms, up.ttime_ms) == (0, 0, 1, 1)
    assert (up.lastchg_s, up.downtime_s) == (2, 1)
    # A body mismatch has no status code to show; last_chk says why.
    assert (down.status, down.check_status, down.check_code) == ("DOWN", "L7RSP", None)
    assert "wrong model or version" in down.last_chk


def test_a_ports_requests_and_5xx_come_from_its_frontend_row() -> None:
    rows = parse_stat_csv(STAT)
    assert port_counts(rows, "fe_fraud") == PortCounts(requests=1, errors=0)
    assert port_counts(rows, "fe_fraud_candidate") == PortCounts(requests=0, errors=0)
    assert port_counts(rows, "fe_nope") is None
