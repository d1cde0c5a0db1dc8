"""The sidecar HAProxy of one host.

Render haproxy.cfg from a spec, check it with the real binary, run it (master-worker,
seamless reloads), talk to its Runtime API, and move traffic between model versions with
zero failed requests. The spec is built by the caller (from the governance DB); this part
reads no database.

    spec = ProxySpec(routes=(ModelRoute(...),), stats_port=9901)
    sidecar = Sidecar(ProxyPaths(settings.haproxy_dir), settings.haproxy)
    sidecar.apply(spec)                 # new version's backend added, not routed yet
    sidecar.wait_healthy("fraud", "4")  # drain → passed canary check → ready
    sidecar.switch("fraud", "4")        # one `set map`, confirmed by `show map`
    sidecar.drain("fraud", "3")         # in-flight requests finish, then maint
    sidecar.save_request_log()          # HAProxy's in-memory request log to its file
    tail_log(paths.access_log, 20, lines_about(["fe_fraud"], ["be_fraud_4"]))  # requests
"""

from __future__ import annotations

from .accesslog import RequestLine, lines_about, tail_log
from .config import quote, render, render_map
from .runtime import RuntimeAPI
from .sidecar import Sidecar
from .spec import (
    ModelRoute,
    ProxyPaths,
    ProxySpec,
    Server,
    VersionBackend,
    backend_name,
    frontend_name,
    route_key,
    server_name,
)
from .stats import PortCounts, ServerStatus

__all__ = [
    "ModelRoute",
    "PortCounts",
    "ProxyPaths",
    "ProxySpec",
    "RequestLine",
    "RuntimeAPI",
    "Server",
    "ServerStatus",
    "Sidecar",
    "VersionBackend",
    "backend_name",
    "frontend_name",
    "lines_about",
    "quote",
    "render",
    "render_map",
    "route_key",
    "server_name",
    "tail_log",
]
