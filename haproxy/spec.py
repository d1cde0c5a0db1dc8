"""What the sidecar should run: the spec (built by the caller from the governance DB) and paths.

A ``ProxySpec`` is a plain value: every model's ports, which version each port routes to,
and one ``VersionBackend`` per deployed version with its replicas and health-check canary.
Names end up inside haproxy.cfg, map keys and sample expressions, so they are validated here
once: a model name is ``[A-Za-z0-9_-]+`` (it is a map key and a ``str()`` argument), a server
name is a HAProxy identifier, a version may hold anything and is sanitized into the backend
name.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bentogate.errors import HAProxyError

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
UNAVAILABLE_BACKEND = "be_unavailable"
LOCAL = "127.0.0.1"  # where every port of the sidecar listens (all but production only there)
CANDIDATE_SUFFIX = ".candidate"
# sun_path is 108 bytes on Linux, including the terminating NUL; HAProxy binds a socket under a
# temporary name (the path + ".<pid>.tmp") and renames it, so it refuses paths over 97 bytes
# ("socket path ... too long (max 97)", HAProxy 2.6).
_MAX_SOCKET_PATH = 97
_LONGEST_SOCKET = "master.sock"


def backend_name(model: str, version: str) -> str:
    """The HAProxy backend of one model version: ``be_<model>_<version>``, sanitized."""
    return f"be_{model}_{_UNSAFE.sub('_', version)}"


def frontend_name(model: str, role: str = "live") -> str:
    """The frontend of ``model``'s production (``live``) or candidate port."""
    return f"fe_{model}" + ("" if role == "live" else "_candidate")


def server_name(version: str, port: int) -> str:
    """The name of one replica of ``version`` in its backend: ``v<version>_<port>``."""
    return f"v{version}_{port}"


def route_key(model: str, role: str = "live") -> str:
    """The map key a role reads: ``<model>`` for ``live``, ``<model>.candidate`` for ``candidate``.

    Raises ``HAProxyError`` for any other role.
    """
    if role == "live":
        return model
    if role == "candidate":
        return model + CANDIDATE_SUFFIX
    raise HAProxyError(f"unknown role {role!r}: expected 'live' or 'candidate'")


@dataclass(frozen=True)
class Server:
    """One replica of a version: a Bento listening on 127.0.0.1:``port``."""

    name: str
    port: int


@dataclass(frozen=True)
class VersionBackend:
    """One deployed model version: its replicas and what its health check expects."""

    model: str
    version: str
    servers: tuple[Server, ...]
    canary_body: str
    expect_strings: tuple[str, ...]
    max_body_bytes: int  # the Bento's own limit: HAProxy answers 413 above it, never below
    expect_rstring: str | None = None

    @property
    def backend_name(self) -> str:
        """``be_<model>_<version>``, sanitized for HAProxy."""
        return backend_name(self.model, self.version)


@dataclass(frozen=True)
class ModelRoute:
    """One model's ports and which of its versions each port routes to (None → 503)."""

    model: str
    production_port: int
    candidate_port: int
    live: str | None
    candidate: str | None
    backends: tuple[VersionBackend, ...]

    def backend_for(self, version: str | None) -> str | None:
        """The backend name of ``version`` (None stays None)."""
        return None if version is None else backend_name(self.model, version)


@dataclass(frozen=True)
class ProxySpec:
    """Everything one host's sidecar HAProxy serves. The models' production ports listen on
    127.0.0.1 and, when ``address`` is another (the host's own, clients reach it there), on
    it too; candidate and stats ports on 127.0.0.1 only (a candidate is gated from the host
    itself, never served to the network)."""

    routes: tuple[ModelRoute, ...]
    stats_port: int
    address: str = LOCAL

    def production_binds(self, port: int) -> tuple[str, ...]:
        """``<address>:<port>`` of each address a model's production ``port`` listens on."""
        addresses = (LOCAL,) if self.address == LOCAL else (LOCAL, self.address)
        return tuple(f"{address}:{port}" for address in addresses)

    def routing(self) -> dict[str, str]:
        """The map file's content as a dict: route key → backend name."""
        entries: dict[str, str] = {}
        for route in self.routes:
            for role, version in (("live", route.live), ("candidate", route.candidate)):
                backend = route.backend_for(version)
                if backend is not None:
                    entries[route_key(route.model, role)] = backend
        return entries

    def backends(self) -> tuple[VersionBackend, ...]:
        """Every version backend of every model."""
        return tuple(b for route in self.routes for b in route.backends)


@dataclass(frozen=True)
class ProxyPaths:
    """All files of one sidecar, in one directory; the request log where the caller says
    (``access_log_path``; default ``<directory>/access.log``)."""

    directory: Path
    access_log_path: Path | None = None

    def __post_init__(self) -> None:
        for sock in (self.admin_socket, self.master_socket):
            if len(str(sock).encode()) > _MAX_SOCKET_PATH:
                raise HAProxyError(f"unix socket path too long (> {_MAX_SOCKET_PATH}): {sock}")
        if re.search(r"[\s,()'\"\\#]", str(self.directory.resolve())):
            # The map path sits inside a sample expression, where these cannot be quoted.
            raise HAProxyError(f"unusable characters in the HAProxy directory: {self.directory}")

    @property
    def config(self) -> Path:
        return self.directory / "haproxy.cfg"

    @property
    def map_file(self) -> Path:
        return self.directory / "routes.map"

    @property
    def sockets(self) -> Path:
        """Where the admin and master sockets are: in :attr:`directory`, unless their paths
        would be too long for a unix socket (a deep state directory); then in a directory of
        their own under the temporary directory, named by this one's path, so every process
        of the host finds them (:meth:`make_sockets_directory` makes it)."""
        if len(str(self.directory / _LONGEST_SOCKET).encode()) <= _MAX_SOCKET_PATH:
            return self.directory
        digest = hashlib.sha256(str(self.directory.resolve()).encode()).hexdigest()[:20]
        return Path(tempfile.gettempdir()) / f"bentogate-haproxy-{digest}"

    def make_sockets_directory(self) -> None:
        """Create :attr:`sockets` (mode 700 where it is not :attr:`directory`); HAProxyError if
        a directory of that name belongs to another user."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.sockets == self.directory:
            return
        self.sockets.mkdir(mode=0o700, exist_ok=True)
        if self.sockets.stat().st_uid != os.getuid():
            raise HAProxyError(f"{self.sockets} (this sidecar's sockets) belongs to another user")

    @property
    def admin_socket(self) -> Path:
        return self.sockets / "admin.sock"

    @property
    def master_socket(self) -> Path:
        return self.sockets / _LONGEST_SOCKET

    @property
    def pid_file(self) -> Path:
        return self.directory / "haproxy.pid"

    @property
    def state_file(self) -> Path:
        return self.directory / "server-state"

    @property
    def in_service_file(self) -> Path:
        """``<backend>/<server>`` of each server in service (``ready``), one a line: the
        ACL that lets a request prefer the first replica with room (:mod:`.config`)."""
        return self.directory / "in-service.acl"

    @property
    def log(self) -> Path:
        return self.directory / "haproxy.log"

    @property
    def access_log(self) -> Path:
        """HAProxy's request log, one line per request (:mod:`bentogate.haproxy.accesslog`)."""
        return self.access_log_path or self.directory / "access.log"

    @property
    def lock_file(self) -> Path:
        return self.directory / ".lock"


def validate(spec: ProxySpec) -> None:
    """Refuse a spec HAProxy could not express or that routes to nothing.

    Raises ``HAProxyError`` naming the first problem: a bad model or server name, a
    duplicate model, port or backend name, or a live/candidate version without a backend.
    """
    seen_models: set[str] = set()
    seen_backends: set[str] = set()
    ports = [spec.stats_port]
    for route in spec.routes:
        if not MODEL_NAME.fullmatch(route.model) or route.model in seen_models:
            raise HAProxyError(f"invalid or duplicate model name {route.model!r}")
        seen_models.add(route.model)
        ports += [route.production_port, route.candidate_port]
        names = set()
        for backend in route.backends:
            _validate_backend(route.model, backend, seen_backends)
            names.add(backend.version)
        for role, version in (("live", route.live), ("candidate", route.candidate)):
            if version is not None and version not in names:
                raise HAProxyError(f"{route.model}: {role} version {version!r} has no backend")
    if len(set(ports)) != len(ports):
        raise HAProxyError(f"two listeners share a port: {sorted(ports)}")


def _validate_backend(model: str, backend: VersionBackend, seen: set[str]) -> None:
    if backend.model != model:
        raise HAProxyError(f"backend of model {backend.model!r} listed under {model!r}")
    if backend.backend_name in seen:
        raise HAProxyError(f"two versions map to the backend name {backend.backend_name!r}")
    seen.add(backend.backend_name)
    server_names = [s.name for s in backend.servers]
    if len(set(server_names)) != len(server_names):
        raise HAProxyError(f"{backend.backend_name}: duplicate server names {server_names}")
    for server in backend.servers:
        if not SERVER_NAME.fullmatch(server.name) or not 0 < server.port < 65536:
            raise HAProxyError(f"{backend.backend_name}: invalid server {server}")
    if backend.max_body_bytes <= 0:
        raise HAProxyError(f"{backend.backend_name}: max_body_bytes must be > 0")
