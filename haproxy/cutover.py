"""Zero-loss traffic moves on a running HAProxy: switch a route, drain, bring servers up.

Each step is confirmed by reading HAProxy back (``show map``, ``show stat``), never assumed
from having sent a command. Lessons reproduced live on 2.6 (see DESIGN.md):

- a switch is ONE ``set map`` to a backend whose servers are all UP with L7OK: "drain old"
  then "ready new" as two calls loses requests in between;
- a server going from maint/new to ready counts as UP before its first check, so servers
  come up in ``drain`` (checked, no traffic) and are set ``ready`` only after L7OK;
- ``maint`` kills nothing only once in-flight requests are done: drain, wait for
  ``scur == 0``, then maint;
- every state change goes through :func:`set_server_state`, which keeps the in-service ACL
  (the servers set ``ready``, which a request may prefer when idle: :mod:`.config`) in step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bentogate.errors import CutoverError, HAProxyError, NotFoundError

from .config import in_service_entry, parse_map_file, render_map
from .process import atomic_write
from .runtime import RuntimeAPI
from .stats import ServerStatus, backend_names, server_statuses

_POLL_S = 0.05


def backend_servers(runtime: RuntimeAPI, backend: str) -> list[ServerStatus]:
    """The servers of ``backend`` as HAProxy reports them now.

    Raises ``NotFoundError`` if the running HAProxy has no such backend.
    """
    rows = runtime.show_stat()
    if backend not in backend_names(rows):
        raise NotFoundError(f"the running HAProxy has no backend {backend}")
    return [s for s in server_statuses(rows) if s.backend == backend]


def set_server_state(
    runtime: RuntimeAPI, in_service: Path, backend: str, server: str, state: str
) -> None:
    """Set ``server``'s state and its entry in the ``in_service`` ACL: into service after
    ``ready`` is set, out of it before ``drain`` or ``maint`` is (an interruption between
    the two leaves a server merely not preferred, never preferred out of service)."""
    entry = in_service_entry(backend, server)
    if state == "ready":
        runtime.set_server_state(backend, server, state)
        runtime.add_acl(in_service, entry)
    else:
        runtime.del_acl(in_service, entry)
        runtime.set_server_state(backend, server, state)


def switch_route(
    runtime: RuntimeAPI, map_file: Path, key: str, backend: str, timeout: float = 15.0
) -> None:
    """Route map ``key`` to ``backend``: map file rewritten atomically, ``set map``/``add map``,
    then ``show map`` read back until it says so.

    Raises ``CutoverError`` (nothing changed) if the backend is missing, has no servers or
    any server is not UP/L7OK, and ``CutoverError`` if HAProxy does not confirm in time
    (the map file is then restored).
    """
    try:
        servers = backend_servers(runtime, backend)
    except NotFoundError as exc:
        raise CutoverError(f"refusing to route {key} to {backend}: {exc}") from exc
    if not servers:
        raise CutoverError(f"refusing to route {key} to {backend}: it has no servers")
    unhealthy = [s.reason for s in servers if not s.healthy]
    if unhealthy:
        raise CutoverError(f"refusing to route {key} to {backend}: " + "; ".join(unhealthy))
    running = runtime.show_map(map_file)
    old_text = map_file.read_text() if map_file.exists() else ""
    entries = parse_map_file(old_text)
    entries[key] = backend
    # File first: a reload racing this switch then keeps the new route, not the old one.
    atomic_write(map_file, render_map(entries))
    try:
        if key in running:
            runtime.set_map(map_file, key, backend)
        else:
            runtime.add_map(map_file, key, backend)
        _confirm_route(runtime, map_file, key, backend, timeout)
    except HAProxyError as exc:
        atomic_write(map_file, old_text)
        raise CutoverError(f"routing {key} to {backend} was not confirmed: {exc}") from exc


def _confirm_route(
    runtime: RuntimeAPI, map_file: Path, key: str, backend: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        seen = runtime.show_map(map_file).get(key)
        if seen == backend:
            return
        if time.monotonic() > deadline:
            raise CutoverError(f"show map says {key} → {seen}, expected {backend}")
        time.sleep(_POLL_S)


def drain_backend(
    runtime: RuntimeAPI, map_file: Path, in_service: Path, backend: str, timeout: float = 30.0
) -> None:
    """Take every server of ``backend`` out of service without cutting a request:
    ``drain``, wait until no request is in flight or queued, then ``maint``.

    Raises ``CutoverError`` if a route still points at the backend (draining it would
    answer 503), ``NotFoundError`` if it does not exist, ``HAProxyError`` on timeout.
    """
    routed = [k for k, v in runtime.show_map(map_file).items() if v == backend]
    if routed:
        raise CutoverError(f"refusing to drain {backend}: still routed by {routed}")
    deadline = time.monotonic() + timeout
    for server in backend_servers(runtime, backend):
        if server.status != "MAINT":
            set_server_state(runtime, in_service, backend, server.server, "drain")
    while True:
        busy = [s for s in backend_servers(runtime, backend) if s.scur or s.qcur]
        if not busy:
            break
        if time.monotonic() > deadline:
            raise HAProxyError(f"{backend} still busy after {timeout}s: {busy[0].reason}")
        time.sleep(_POLL_S)
    for server in backend_servers(runtime, backend):
        set_server_state(runtime, in_service, backend, server.server, "maint")
    _wait_for(runtime, backend, lambda s: s.status == "MAINT", "MAINT", deadline)


def warm_servers(runtime: RuntimeAPI, in_service: Path, backend: str, servers: list[str]) -> None:
    """Move ``servers`` (new, in maint) to ``drain``: health-checked, but given no traffic."""
    for server in servers:
        set_server_state(runtime, in_service, backend, server, "drain")


def bring_up(runtime: RuntimeAPI, in_service: Path, backend: str, timeout: float = 30.0) -> None:
    """Bring every server of ``backend`` into service safely and wait until all are UP/L7OK.

    A server in ``maint`` goes to ``drain`` (checks resume, no traffic); a server in
    ``drain`` goes to ``ready`` only after a passed check (L7OK). Servers already UP are
    left alone. Raises ``NotFoundError`` for an unknown backend and ``HAProxyError``
    naming the failing server and its ``last_chk`` if not all are healthy in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        servers = backend_servers(runtime, backend)
        if not servers:
            raise HAProxyError(f"{backend} has no servers")
        for s in servers:
            if s.status == "MAINT":
                set_server_state(runtime, in_service, backend, s.server, "drain")
            elif s.status == "DRAIN" and s.check_status == "L7OK":
                set_server_state(runtime, in_service, backend, s.server, "ready")
        failing = [s for s in servers if not s.healthy]
        if not failing:
            return
        if time.monotonic() > deadline:
            reasons = "; ".join(s.reason for s in failing)
            raise HAProxyError(f"{backend} not healthy after {timeout}s: {reasons}")
        time.sleep(_POLL_S)


def _wait_for(
    runtime: RuntimeAPI,
    backend: str,
    ok: Callable[[ServerStatus], bool],
    what: str,
    deadline: float,
) -> None:
    while True:
        pending = [s for s in backend_servers(runtime, backend) if not ok(s)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise HAProxyError(f"{backend}: servers not {what} in time: {pending[0].reason}")
        time.sleep(_POLL_S)
