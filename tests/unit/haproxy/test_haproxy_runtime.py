"""Runtime API parsing, the unix-socket client, and the cutover logic on a recording fake."""

from __future__ import annotations

import csv
import io
import socket
import threading
from pathlib import Path

import pytest

from bentogate.errors import CutoverError, HAProxyError, NotFoundError
from bentogate.haproxy import RuntimeAPI
from bentogate.haproxy.cutover import bring_up, drain_backend, switch_route
from bentogate.haproxy.runtime import parse_servers_state, parse_show_map, parse_stat_csv
from bentogate.haproxy.sidecar import _carry_state, _in_service, _kept_servers
from bentogate.haproxy.stats import server_statuses

DATA = Path(__file__).with_name("data")
STAT = (DATA / "show_stat.csv").read_text()
HEADER = STAT.splitlines()[0][2:].split(",")
ACL = Path("/srv/hx/in-service.acl")


def test_parse_real_show_stat() -> None:
    rows = parse_stat_csv(STAT)
    servers = {(s.backend, s.server): s for s in server_statuses(rows)}
    ok, wrong = servers["be_fraud_3", "r1"], servers["be_fraud_4", "r1"]
    assert ok.healthy and ok.check_status == "L7OK" and ok.stot == 1 and ok.hrsp_2xx == 1
    assert ok.address.startswith("127.0.0.1:")
    assert not wrong.healthy and wrong.status == "DOWN" and wrong.check_status == "L7RSP"
    assert "wrong model or version" in wrong.last_chk  # the expect's comment, commas and all
    assert "wrong model or version" in wrong.reason


def test_parse_show_map_and_servers_state() -> None:
    text = "0x55df67b9d2b0 fraud be_fraud_3\n0x55df67b9d2c0 fraud.candidate be_fraud_4\n\n"
    assert parse_show_map(text) == {"fraud": "be_fraud_3", "fraud.candidate": "be_fraud_4"}
    rows = parse_servers_state((DATA / "servers_state.txt").read_text())
    assert [(r["be_name"], r["srv_name"], r["srv_admin_state"]) for r in rows] == [
        ("be_fraud_3", "r1", "4"),
        ("be_fraud_4", "r1", "12"),
    ]


def test_carried_state_keeps_runtime_states_but_not_config_maint() -> None:
    state = (DATA / "servers_state.txt").read_text()
    wanted = {("be_fraud_3", "r1"): 33093, ("be_fraud_4", "r1"): 1}  # v4 moved port: new
    kept = _kept_servers(state, wanted)
    assert kept == {("be_fraud_3", "r1")}
    carried = parse_servers_state(_carry_state(state, kept))
    assert [(r["be_name"], r["srv_admin_state"]) for r in carried] == [("be_fraud_3", "0")]
    assert _carry_state("", set()) == "1\n"


def test_only_kept_ready_servers_stay_in_service_across_a_reload() -> None:
    # be_fraud_3/r1: set ready at runtime after starting disabled (HAProxy keeps the config-
    # maint bit: admin 4, measured on 2.6); be_fraud_4/r1: drained (12)
    state = (DATA / "servers_state.txt").read_text()
    both = {("be_fraud_3", "r1"), ("be_fraud_4", "r1")}
    assert _in_service(_carry_state(state, both)) == "be_fraud_3/r1\n"
    assert _in_service(_carry_state(state, {("be_fraud_4", "r1")})) == ""
    assert _in_service(_carry_state("", set())) == ""


def test_stat_parse_rejects_garbage() -> None:
    with pytest.raises(HAProxyError, match="unexpected"):
        parse_stat_csv("Unknown command")


class FakeRuntime(RuntimeAPI):
    """A recording stand-in for the admin socket: servers, a map, and the commands sent."""

    def __init__(self) -> None:
        super().__init__(Path("/nonexistent.sock"))
        self.commands: list[str] = []
        self.map: dict[str, str] = {}
        self.servers: dict[tuple[str, str], dict[str, str]] = {}
        self.ignore_set_map = False
        self.in_service: list[str] = []

    def server(self, backend: str, name: str, status: str = "UP", check: str = "L7OK") -> None:
        self.servers[backend, name] = {"status": status, "check_status": check, "scur": "0"}

    def execute(self, command: str) -> str:
        self.commands.append(command)
        words = command.split()
        if command == "show stat":
            return self._stat()
        if words[:2] == ["show", "map"]:
            return "".join(f"0x1 {k} {v}\n" for k, v in self.map.items())
        if words[:2] in (["set", "map"], ["add", "map"]) and not self.ignore_set_map:
            self.map[words[3]] = words[4]
        if words[:2] == ["add", "acl"]:
            self.in_service.append(words[3])
        if words[:2] == ["del", "acl"]:
            if words[3] not in self.in_service:
                return "Key not found.\n"
            self.in_service = [e for e in self.in_service if e != words[3]]
        if words[:2] == ["set", "server"]:
            backend, name = words[2].split("/")
            new = {"ready": "UP", "drain": "DRAIN", "maint": "MAINT"}[words[4]]
            self.servers[backend, name]["status"] = new
        return "\n"

    def _stat(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, HEADER, restval="")
        out.write("# ")
        writer.writeheader()
        for backend in sorted({b for b, _ in self.servers}):
            for (b, name), fields in self.servers.items():
                if b == backend:
                    writer.writerow({"pxname": b, "svname": name, "type": "2", **fields})
            writer.writerow({"pxname": backend, "svname": "BACKEND", "type": "1"})
        return out.getvalue()


@pytest.fixture
def fake() -> FakeRuntime:
    runtime = FakeRuntime()
    runtime.server("be_fraud_3", "r1")
    runtime.server("be_fraud_4", "r1")
    runtime.server("be_fraud_4", "r2")
    runtime.map = {"fraud": "be_fraud_3"}
    return runtime


def test_switch_is_one_set_map_confirmed_and_persisted(fake: FakeRuntime, tmp_path: Path) -> None:
    map_file = tmp_path / "routes.map"
    map_file.write_text("fraud be_fraud_3\n")
    switch_route(fake, map_file, "fraud", "be_fraud_4")
    changes = [c for c in fake.commands if not c.startswith("show")]
    assert changes == [f"set map {map_file} fraud be_fraud_4"]
    assert fake.commands[-1] == f"show map {map_file}"  # read back after the change
    assert map_file.read_text() == "fraud be_fraud_4\n"


def test_switch_adds_a_missing_key(fake: FakeRuntime, tmp_path: Path) -> None:
    map_file = tmp_path / "routes.map"
    switch_route(fake, map_file, "fraud.candidate", "be_fraud_4")
    assert f"add map {map_file} fraud.candidate be_fraud_4" in fake.commands
    assert "fraud.candidate be_fraud_4" in map_file.read_text()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda f: None, "no backend be_fraud_9"),
        (lambda f: f.server("be_fraud_9", "r1", "DOWN", "L7RSP"), "be_fraud_9/r1: DOWN L7RSP"),
        (lambda f: f.server("be_fraud_9", "r1", "UP 1/2", "L7STS"), "UP 1/2"),
        (lambda f: f.server("be_fraud_9", "r1", "DRAIN", "L7OK"), "DRAIN"),
        (lambda f: f.server("be_fraud_9", "r1", "UP", "INI"), "INI"),
    ],
)
def test_switch_refuses_without_touching_anything(
    fake: FakeRuntime, tmp_path: Path, setup: object, message: str
) -> None:
    setup(fake)  # type: ignore[operator]
    map_file = tmp_path / "routes.map"
    map_file.write_text("fraud be_fraud_3\n")
    with pytest.raises(CutoverError, match=message):
        switch_route(fake, map_file, "fraud", "be_fraud_9")
    assert not [c for c in fake.commands if c.startswith(("set", "add"))]
    assert map_file.read_text() == "fraud be_fraud_3\n"


def test_unconfirmed_switch_restores_the_map_file(fake: FakeRuntime, tmp_path: Path) -> None:
    fake.ignore_set_map = True
    map_file = tmp_path / "routes.map"
    map_file.write_text("fraud be_fraud_3\n")
    with pytest.raises(CutoverError, match="not confirmed"):
        switch_route(fake, map_file, "fraud", "be_fraud_4", timeout=0.2)
    assert map_file.read_text() == "fraud be_fraud_3\n"


def test_drain_waits_for_in_flight_then_maint(fake: FakeRuntime, tmp_path: Path) -> None:
    fake.servers["be_fraud_4", "r1"]["scur"] = "2"
    timer = threading.Timer(0.2, lambda: fake.servers["be_fraud_4", "r1"].update(scur="0"))
    timer.start()
    fake.in_service = ["be_fraud_4/r1", "be_fraud_4/r2"]
    drain_backend(fake, tmp_path / "routes.map", ACL, "be_fraud_4", timeout=5)
    sets = [c for c in fake.commands if c.startswith("set")]
    assert sets[:2] == [
        "set server be_fraud_4/r1 state drain",
        "set server be_fraud_4/r2 state drain",
    ]
    assert sets[2:] == [
        "set server be_fraud_4/r1 state maint",
        "set server be_fraud_4/r2 state maint",
    ]
    # out of the in-service ACL before the drain: never preferred while draining
    changes = [c for c in fake.commands if c.startswith(("set", "del"))]
    assert changes[:2] == [f"del acl {ACL} be_fraud_4/r1", "set server be_fraud_4/r1 state drain"]
    assert fake.in_service == []


def test_drain_refuses_a_routed_backend(fake: FakeRuntime, tmp_path: Path) -> None:
    with pytest.raises(CutoverError, match="still routed"):
        drain_backend(fake, tmp_path / "routes.map", ACL, "be_fraud_3")
    with pytest.raises(NotFoundError):
        drain_backend(fake, tmp_path / "routes.map", ACL, "be_fraud_9")


def test_bring_up_goes_through_drain_and_waits_for_a_check(fake: FakeRuntime) -> None:
    fake.server("be_fraud_5", "r1", "MAINT", "")
    bring_up_thread = threading.Thread(target=bring_up, args=(fake, ACL, "be_fraud_5", 5.0))
    bring_up_thread.start()
    threading.Timer(
        0.2, lambda: fake.servers["be_fraud_5", "r1"].update(check_status="L7OK")
    ).start()
    bring_up_thread.join(timeout=6)
    sets = [c for c in fake.commands if c.startswith("set")]
    assert sets == ["set server be_fraud_5/r1 state drain", "set server be_fraud_5/r1 state ready"]
    # into the in-service ACL only once ready
    changes = [c for c in fake.commands if c.startswith(("set", "add", "del"))]
    assert changes[-2:] == ["set server be_fraud_5/r1 state ready", f"add acl {ACL} be_fraud_5/r1"]
    assert fake.in_service == ["be_fraud_5/r1"]


def test_bring_up_times_out_with_the_reason(fake: FakeRuntime) -> None:
    fake.server("be_fraud_5", "r1", "DOWN", "L7RSP")
    with pytest.raises(HAProxyError, match="be_fraud_5/r1: DOWN L7RSP"):
        bring_up(fake, ACL, "be_fraud_5", timeout=0.2)


def test_runtime_api_talks_one_command_per_connection(tmp_path: Path) -> None:
    path = tmp_path / "a.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    received: list[bytes] = []

    def answer() -> None:
        conn, _ = server.accept()
        data = b""
        while chunk := conn.recv(100):  # ends because the client shuts down its side
            data += chunk
        received.append(data)
        conn.sendall(b"0x1 fraud be_fraud_3\n")
        conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    assert RuntimeAPI(path).show_map("/m") == {"fraud": "be_fraud_3"}
    thread.join()
    server.close()
    assert received == [b"show map /m\n"]


def test_runtime_api_translates_socket_errors(tmp_path: Path) -> None:
    with pytest.raises(HAProxyError, match="show info"):
        RuntimeAPI(tmp_path / "missing.sock").show_info()
    with pytest.raises(HAProxyError, match="multi-command"):
        RuntimeAPI(tmp_path / "x.sock").execute("show info; shutdown frontend x")
    with pytest.raises(HAProxyError, match="unknown server state"):
        RuntimeAPI(tmp_path / "x.sock").set_server_state("b", "s", "up")


def test_runtime_api_times_out(tmp_path: Path) -> None:
    path = tmp_path / "slow.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    try:
        with pytest.raises(HAProxyError, match="timed out"):
            RuntimeAPI(path, timeout=0.2).execute("show stat")
    finally:
        server.close()
