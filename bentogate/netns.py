"""Hosts with addresses of their own on one machine: one Linux network namespace per fleet
host, on a bridge of the root namespace, and the local PostgreSQL reachable from each through
a relay. The fleet demo (:mod:`bentogate.fleetdemo`) and the fleet tests make their hosts so.

    problem = netns_problem()          why namespaces cannot be made here (None: they can)
    with Network.create(["h1", "h2"], ("127.0.0.1", 5432)) as net:   (then all deleted)
        net.address("h1")              10.77.<n>.1: the host's own address (eth0)
        net.exec_prefix("h1")          ["ip", "netns", "exec", <namespace>]: run a process there
        net.db_address                 10.77.<n>.253: the relay to the DB (port 5432)
        net.client_address             10.77.<n>.254: where clients (the test) connect from
        net.cut_db("h1") / net.restore_db("h1")       h1's packets to the DB are dropped
        net.cut_link("h1") / net.restore_link("h1")   h1's cable: cut off from everything
        net.restore_all()                             every cut undone
    AgentProcess(settings, net.exec_prefix("h1")).start()   the host's `bentogate agent`

Only iproute2 (``ip``) and root. The bridge carries two addresses: clients' and the DB
relay's, so that cutting a host off from the DB (its packets to the relay's address go to a
MAC address nobody has: dropped, as on a broken network, so TCP times out rather than being
refused) leaves its clients' traffic alone. Pulling the host's cable (its veth, root side,
down) cuts it off from both.

Names carry this process's pid (``bgfleet-<pid>-<host>``, ``bgb<pid>``, ``bgv<pid>x<i>``);
at start, what an earlier run whose process is gone left behind (namespaces with the
processes in them, links) is deleted. The subnet is the first ``10.77.<n>.0/24`` no address
of this machine is in, so runs of several worktrees at once do not meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from bentogate.bentos import pid_alive
from bentogate.errors import BentogateError
from bentogate.settings import Settings

log = logging.getLogger("bentogate.netns")
_NETNS = re.compile(r"^bgfleet-(\d+)-\S+")
_LINK = re.compile(r"^bg[bv](\d+)(?:x\d+)?$")
_NOWHERE = "02:00:00:00:00:01"  # a MAC address nobody on the bridge has: frames vanish
PG_PORT = 5432


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def netns_problem() -> str | None:
    """Why network namespaces with a veth link cannot be created here (``ip``'s error, e.g.
    no privilege), or None."""
    probe, link = f"bgfleet-{os.getpid()}-probe", f"bgv{os.getpid()}x99"
    try:
        made = _ip("netns", "add", probe, check=False)
    except FileNotFoundError:
        return "no `ip` command (iproute2)"
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip() or made.returncode}"
    try:
        linked = _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", probe,
                     check=False)  # fmt: skip
        if linked.returncode != 0:
            return f"`ip link add … type veth` failed: {linked.stderr.strip() or linked.returncode}"
        _ip("link", "del", link)
        return None
    finally:
        _ip("netns", "del", probe)


def _gone(pid: int) -> bool:
    """True if the run of ``pid`` is over: its process is gone, or it was an earlier holder
    of this process's pid (this one has made nothing yet when it looks)."""
    return pid == os.getpid() or not pid_alive(pid)


def delete_leftovers() -> None:
    """Delete the namespaces (killing the processes in them) and links that runs whose
    process is gone left behind."""
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = _NETNS.match(name)
        if match and _gone(int(match.group(1))):
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", name, check=False)
    for line in _ip("-o", "link", "show").stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        match = _LINK.match(name)
        if match and _gone(int(match.group(1))):
            _ip("link", "del", name, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    used = _ip("-o", "-4", "addr", "show").stdout
    for n in range(10, 250):
        subnet = ipaddress.IPv4Network(f"10.77.{n}.0/24")
        if f" 10.77.{n}." not in used:
            return subnet
    raise RuntimeError("no free 10.77.<n>.0/24 subnet for the fleet's bridge")


@dataclass
class Network:
    """A bridge and one namespace per host (see the module docstring); :meth:`close` (or the
    ``with`` block's end) deletes everything, the relay and the processes left inside too."""

    hosts: list[str]
    subnet: ipaddress.IPv4Network
    upstream: tuple[str, int]
    tag: str = field(default_factory=lambda: str(os.getpid()))
    relay: Relay | None = None
    cuts: set[tuple[str, str]] = field(default_factory=set)  # ("db" or "link", host)

    @classmethod
    def create(cls, hosts: list[str], upstream: tuple[str, int]) -> Network:
        """Make the bridge, the namespaces and the relay to ``upstream`` (the DB's host and
        port here). Raises ``CalledProcessError`` (``ip``'s error) after deleting what it
        made."""
        delete_leftovers()
        net = cls(hosts, _free_subnet(), upstream)
        try:
            net._build()
        except BaseException:
            net.close()
            raise
        return net

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def bridge(self) -> str:
        return f"bgb{self.tag}"

    @property
    def client_address(self) -> str:
        return str(self.subnet.network_address + 254)

    @property
    def db_address(self) -> str:
        return str(self.subnet.network_address + 253)

    def namespace(self, host: str) -> str:
        return f"bgfleet-{self.tag}-{host}"

    def veth(self, host: str) -> str:
        """The root side of ``host``'s cable (inside, it is ``eth0``)."""
        return f"bgv{self.tag}x{self.hosts.index(host)}"

    def address(self, host: str) -> str:
        return str(self.subnet.network_address + 1 + self.hosts.index(host))

    def exec_prefix(self, host: str) -> list[str]:
        """The argv prefix that runs a command inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def _in(self, host: str, *args: str, check: bool = True) -> None:
        _ip("-n", self.namespace(host), *args, check=check)

    def _build(self) -> None:
        prefix = self.subnet.prefixlen
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.client_address}/{prefix}", "dev", self.bridge)
        _ip("addr", "add", f"{self.db_address}/{prefix}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for host in self.hosts:
            ns = self.namespace(host)
            _ip("netns", "add", ns)
            _ip("link", "add", self.veth(host), "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", self.veth(host), "master", self.bridge, "up")
            self._in(host, "link", "set", "lo", "up")
            self._in(host, "addr", "add", f"{self.address(host)}/{prefix}", "dev", "eth0")
            self._in(host, "link", "set", "eth0", "up")
        self.relay = Relay((self.db_address, PG_PORT), self.upstream)
        self.relay.start()

    def cut_db(self, host: str) -> None:
        """From now on ``host``'s packets to the DB relay are sent to a MAC address nobody
        has: lost, like on a broken network (its clients' traffic goes on)."""
        self._in(host, "neigh", "replace", self.db_address, "lladdr", _NOWHERE, "dev", "eth0",
                 "nud", "permanent")  # fmt: skip
        self.cuts.add(("db", host))

    def restore_db(self, host: str) -> None:
        """``host`` reaches the DB relay again (its address is resolved afresh)."""
        self._in(host, "neigh", "del", self.db_address, "dev", "eth0")
        self.cuts.discard(("db", host))

    def cut_link(self, host: str) -> None:
        """Pull ``host``'s cable: nothing reaches it, it reaches nothing (the DB neither)."""
        _ip("link", "set", self.veth(host), "down")
        self.cuts.add(("link", host))

    def restore_link(self, host: str) -> None:
        _ip("link", "set", self.veth(host), "up")
        self.cuts.discard(("link", host))

    def restore_all(self) -> None:
        """Undo every cut still in place."""
        for kind, host in sorted(self.cuts):
            (self.restore_db if kind == "db" else self.restore_link)(host)

    def close(self) -> None:
        """Stop the relay, kill what still runs in the namespaces, delete them and the
        bridge. Idempotent."""
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        for host in self.hosts:
            ns = self.namespace(host)
            for pid in _ip("netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", self.bridge, check=False)


class Relay:
    """A TCP relay in a thread of its own (asyncio): each connection to ``listen`` is joined
    to a new one to ``upstream``; one whose upstream refuses (PostgreSQL stopped) is closed
    at once, and a reset on either side closes both (logged)."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        self.listen, self.upstream = listen, upstream
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pg-relay", daemon=True)

    def start(self) -> None:
        """Listen; raises the bind's error."""
        self._thread.start()
        self._started.wait(timeout=10)
        if self._error is not None:
            raise self._error
        assert self._server is not None, "the relay did not start in 10 s"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._join, *self.listen)
            )
        except OSError as err:
            self._error = err
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.close()

    async def _join(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._open -= {writer, up_writer}

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except ConnectionError as err:  # a reset: the relayed connection ends, both sides
            log.info("relayed connection reset: %s", err)
        finally:
            sink.close()

    def close(self) -> None:
        """Stop listening and end every relayed connection."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _shut(self) -> None:
        """Close the listener and every relayed connection; each pump then reads its end."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)


@dataclass
class AgentProcess:
    """A host's ``bentogate agent`` as a process of its own, started with ``prefix`` (e.g.
    ``ip netns exec <namespace>``) and exactly ``settings`` (a JSON file named by
    ``BENTOGATE_CONFIG``; no ``BENTOGATE_*`` variable of this process reaches it). Its output
    goes to ``<home>/agent.log``."""

    settings: Settings
    prefix: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.settings.home / "agent.log"

    def start(self, program: list[str] | None = None) -> None:
        """Start the agent (it must not be running): ``program`` (default ``python -m
        bentogate.cli agent``) in the namespace."""
        if self.alive():
            raise BentogateError(f"the agent of {self.settings.host} is already running")
        self.settings.home.mkdir(parents=True, exist_ok=True)
        config = self.settings.home / "agent-settings.json"
        config.write_text(self.settings.model_dump_json())
        env = {k: v for k, v in os.environ.items() if not k.startswith("BENTOGATE_")}
        env |= {"BENTOGATE_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            # `ip netns exec` execs the agent: the process is the agent itself (a kill hits it)
            self.process = subprocess.Popen(
                [*self.prefix, *(program or [sys.executable, "-m", "bentogate.cli", "agent"])],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (the agent ends its pass's wait and exits), SIGKILL after ``timeout`` s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None
