"""The sidecar HAProxy of one host: apply a spec, switch routes, drain, read status.

Every change takes a file lock in the sidecar directory (one change at a time, also across
processes) and is confirmed by reading HAProxy back.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bentogate.errors import HAProxyError, NotFoundError
from bentogate.locks import file_lock
from bentogate.settings import HAProxySettings

from . import cutover, ring
from .config import in_service_entry, render, render_map
from .process import HAProxyProcess, atomic_write, check_config
from .runtime import RuntimeAPI, parse_servers_state
from .spec import ProxyPaths, ProxySpec, backend_name, frontend_name, route_key
from .stats import PortCounts, ServerStatus, backend_names, port_counts, server_statuses

_CONFIG_MAINT = 0x4  # SRV_ADMF_CMAINT: "disabled" in the config
_EMPTY_STATE = "1\n"


class Sidecar:
    """Render, run and steer the real haproxy for ``paths`` with ``settings``."""

    def __init__(self, paths: ProxyPaths, settings: HAProxySettings) -> None:
        self.paths = paths
        self.settings = settings
        self.process = HAProxyProcess(
            paths,
            settings.binary,
            settings.command_timeout_s,
            log_max_bytes=settings.access_log_max_bytes,
            log_keep=settings.access_log_keep,
        )

    def runtime(self) -> RuntimeAPI:
        """The Runtime API on the admin socket (default timeout from settings)."""
        return RuntimeAPI(self.paths.admin_socket, self.settings.command_timeout_s)

    def is_running(self) -> bool:
        """True if this sidecar's haproxy master process is alive."""
        return self.process.is_running()

    def stop(self, timeout: float = 10.0) -> None:
        """Soft-stop haproxy (in-flight requests finish), harder after ``timeout``."""
        self.process.stop(timeout)

    def apply(self, spec: ProxySpec, *, timeout: float = 30.0) -> None:
        """Make the running haproxy serve ``spec``.

        Renders the config, checks it with ``haproxy -c`` (warnings are errors), writes config
        and map atomically, starts haproxy or reloads it seamlessly (server states carried
        over), then confirms the running routes and backends equal the spec's. Servers
        haproxy did not run yet come up in ``drain`` (checked, no traffic); in backends the
        spec routes to, they are set ready once L7OK (waited for here); in others,
        ``wait_healthy`` does it. Raises ``HAProxyError`` (config refused, process failed,
        not confirmed or routed servers unhealthy in time).
        """
        deadline = time.monotonic() + timeout
        self.paths.make_sockets_directory()
        with file_lock(self.paths.lock_file, timeout, error=HAProxyError):
            running = self.is_running()
            state = self.runtime().show_servers_state() if running else _EMPTY_STATE
            wanted = {(b.backend_name, s.name): s.port for b in spec.backends() for s in b.servers}
            kept = _kept_servers(state, wanted)
            new = set(wanted) - kept
            self._check(spec, new)
            carried = _carry_state(state, kept)
            atomic_write(self.paths.state_file, carried)
            atomic_write(self.paths.in_service_file, _in_service(carried))
            atomic_write(self.paths.map_file, render_map(spec.routing()))
            config = render(spec, self.settings, self.paths, start_disabled=new)
            atomic_write(self.paths.config, config)
            if running:
                self.process.reload(_left(deadline))
            else:
                self.process.start(_left(deadline))
            self._confirm(spec, deadline)
            runtime = self.runtime()
            for backend, server in sorted(new):
                cutover.warm_servers(runtime, self.paths.in_service_file, backend, [server])
            routed = set(spec.routing().values())
            for backend in sorted(routed & {b for b, _ in new}):
                cutover.bring_up(runtime, self.paths.in_service_file, backend, _left(deadline))

    def _check(self, spec: ProxySpec, new: set[tuple[str, str]]) -> None:
        """``haproxy -c`` on a staged copy (own map and empty state file, never the live ones)
        in a short temporary directory: its sockets' paths fit wherever the real ones do."""
        with tempfile.TemporaryDirectory(prefix="bentogate-check-") as directory:
            staged = ProxyPaths(Path(directory))
            atomic_write(staged.state_file, _EMPTY_STATE)
            atomic_write(staged.in_service_file, "")
            atomic_write(staged.map_file, render_map(spec.routing()))
            config = render(spec, self.settings, staged, start_disabled=new)
            atomic_write(staged.config, config)
            check_config(self.settings.binary, staged.config)

    def _confirm(self, spec: ProxySpec, deadline: float) -> None:
        """Wait until the running map and backends are the spec's."""
        runtime = self.runtime()
        wanted = spec.routing()
        expected = {b.backend_name for b in spec.backends()}
        while True:
            routes = runtime.show_map(self.paths.map_file)
            missing = expected - backend_names(runtime.show_stat())
            if routes == wanted and not missing:
                return
            if time.monotonic() > deadline:
                raise HAProxyError(
                    f"running haproxy differs from the spec: routes {routes} (want {wanted}),"
                    f" missing backends {sorted(missing)}"
                )
            time.sleep(0.05)

    def switch(
        self, model: str, version: str, *, role: str = "live", timeout: float = 15.0
    ) -> None:
        """Route ``model``'s ``role`` port (live → key ``<model>``, candidate →
        ``<model>.candidate``) to ``version`` in one ``set map``, confirmed by ``show map``;
        the map file is rewritten too, so the route survives a reload.

        Raises ``CutoverError`` naming why if the version's backend does not exist, any of its
        servers is not UP with L7OK, or HAProxy does not confirm.
        """
        key = route_key(model, role)
        with file_lock(self.paths.lock_file, timeout, error=HAProxyError):
            cutover.switch_route(
                self.runtime(), self.paths.map_file, key, backend_name(model, version), timeout
            )

    def drain(self, model: str, version: str, *, timeout: float = 30.0) -> None:
        """Stop sending ``version`` traffic without cutting a request: drain, wait until
        nothing is in flight, then maint. Refuses (``CutoverError``) while a route points at
        it; ``NotFoundError`` for an unknown version; ``HAProxyError`` on timeout."""
        with file_lock(self.paths.lock_file, timeout, error=HAProxyError):
            cutover.drain_backend(
                self.runtime(),
                self.paths.map_file,
                self.paths.in_service_file,
                backend_name(model, version),
                timeout,
            )

    def wait_healthy(self, model: str, version: str, *, timeout: float = 30.0) -> None:
        """Wait until every server of ``version`` is UP with L7OK, bringing servers in drain
        (new) or maint (drained) into service safely: drain → passed check → ready.

        Raises ``NotFoundError`` for an unknown version and ``HAProxyError`` with each
        failing server's ``last_chk`` (e.g. the expect comment that failed) on timeout.
        """
        with file_lock(self.paths.lock_file, timeout, error=HAProxyError):
            cutover.bring_up(
                self.runtime(), self.paths.in_service_file, backend_name(model, version), timeout
            )

    def save_request_log(self, timeout: float = 10.0) -> int:
        """Save the lines HAProxy holds in memory and its file lacks (``paths.access_log``);
        returns how many. Under the sidecar's lock (no reload meanwhile); ``HAProxyError`` if
        another holds it past ``timeout``."""
        with file_lock(self.paths.lock_file, timeout, error=HAProxyError):
            return self.process.save_request_log()

    def follow_requests(
        self, keep: Callable[[str], bool] | None = None, *, stop: Callable[[], bool]
    ) -> Iterator[str]:
        """The request lines HAProxy writes from now on (those ``keep`` keeps), across
        reloads, until ``stop()`` (:func:`bentogate.haproxy.ring.follow`)."""
        return ring.follow(self.paths.admin_socket, self.process.worker_pid, keep, stop=stop)

    def server_status(self) -> list[ServerStatus]:
        """Every server's status and counters, from ``show stat``.

        Counters are the current worker's: a reload starts them from zero.
        """
        return server_statuses(self.runtime().show_stat())

    def port_counts(self, model: str, role: str = "live") -> PortCounts:
        """Requests and 5xx answered on ``model``'s production (or candidate) port since the
        worker started; ``NotFoundError`` if haproxy serves no such port."""
        counts = port_counts(self.runtime().show_stat(), frontend_name(model, role))
        if counts is None:
            raise NotFoundError(f"haproxy serves no {role} port for {model}")
        return counts

    def routes(self) -> dict[str, str]:
        """What the running haproxy routes now (``show map``): route key (``<model>``,
        ``<model>.candidate``) → backend. Raises ``HAProxyError`` if it does not answer."""
        return self.runtime().show_map(self.paths.map_file)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise HAProxyError("apply timed out")
    return left


def _kept_servers(state: str, wanted: dict[tuple[str, str], int]) -> set[tuple[str, str]]:
    """Servers haproxy runs now at the address the spec wants (their state carries over)."""
    kept = set()
    for row in parse_servers_state(state):
        key = (row["be_name"], row["srv_name"])
        if key in wanted and row.get("srv_port") == str(wanted[key]):
            kept.add(key)
    return kept


def _in_service(carried: str) -> str:
    """The in-service ACL file for the reload: the servers of the carried state
    (:func:`_carry_state`) with no admin flag, that is ``ready`` (neither drain nor any
    maint); new servers start ``disabled``."""
    return "".join(
        in_service_entry(row["be_name"], row["srv_name"]) + "\n"
        for row in parse_servers_state(carried)
        if row["srv_admin_state"] == "0"
    )


def _carry_state(state: str, kept: set[tuple[str, str]]) -> str:
    """The server-state file for the reload: only kept servers, config-maint bit cleared.

    A kept server is rendered without ``disabled``; if its saved state still had the
    config-maint bit, haproxy would see a config change and reset it to ready, losing a
    drain or maint set at runtime.
    """
    lines = state.splitlines()
    header = next((ln for ln in lines if ln.startswith("# ")), None)
    if header is None:
        return _EMPTY_STATE
    columns = header[2:].split()
    admin = columns.index("srv_admin_state")
    out = [lines[0], header]
    for line in lines:
        fields = line.split()
        if line.startswith("#") or len(fields) != len(columns):
            continue
        if (fields[columns.index("be_name")], fields[columns.index("srv_name")]) in kept:
            fields[admin] = str(int(fields[admin]) & ~_CONFIG_MAINT)
            out.append(" ".join(fields))
    return "\n".join(out) + "\n"
