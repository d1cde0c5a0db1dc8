"""What every release step works with: settings, the governance DB and this host's parts."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

from bentogate.bentos import ContainerBackend, Handle, ProcessBackend, Runtime, container_name
from bentogate.errors import ConcurrentChange, ConfigError, NotFoundError
from bentogate.governance import Anchor, Registry
from bentogate.haproxy import ProxyPaths, Sidecar
from bentogate.locks import file_lock
from bentogate.settings import Settings

# What a Bento is built from (service.py, bentofile.yaml, serving/, the serving requirements):
# the package's _bento, links to the checkout's top level there, the files themselves in an
# installed wheel. pip installs unpacked, so it is a directory (str: a Traversable's path).
PROJECT_DIR = Path(str(resources.files("bentogate") / "_bento"))

Progress = Callable[[str], None]
"""Where a long step reports what it is doing, one line each: a line names what starts now
("waiting for fraud:2 on :3005 to be ready"), and lasts until the next one; a line that
starts with a space is a *detail* of the step before it (the gate's figures of each second),
which a live view shows beside that step rather than as a step of its own
(:mod:`bentogate.progress`). Parts that take such a callback follow the same two rules."""


def no_progress(_: str) -> None:
    """The default :data:`Progress`: reports nothing."""


def detail(progress: Progress) -> Progress:
    """``progress`` for the details of the current step: each line indented."""
    return lambda line: progress("  " + line)


@dataclass(frozen=True)
class Ref:
    """``<model>:<version>`` as the user types it."""

    model: str
    version: str

    @classmethod
    def parse(cls, text: str) -> Ref:
        model, sep, version = text.partition(":")
        if not sep or not model or not version:
            raise ConfigError(f"expected <model>:<version>, got {text!r}")
        return cls(model, version)

    def __str__(self) -> str:
        return f"{self.model}:{self.version}"


@dataclass
class Context:
    """One host's view: built once by the CLI (or a test) and passed to every step."""

    settings: Settings
    project_dir: Path = PROJECT_DIR
    _registry: Registry | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for directory in (
            self.settings.home,
            self.settings.artifacts_dir,
            self.settings.haproxy_dir,
            self.settings.run_dir,
            self.settings.logs_dir,
            self.settings.reports_dir,
        ):
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            settings = self.settings
            anchor = Anchor(
                settings.checkpoint_key, settings.checkpoint_log, settings.audit.checkpoint_every
            )
            registry = Registry(
                settings.database_url,
                environment=settings.environment,
                anchor=anchor,
                require_authenticated=settings.require_authenticated,
            )
            if self.settings.db_url is None:
                # The embedded SQLite DB belongs to this host alone: keep it migrated. A shared
                # DB is migrated on purpose, with `bentogate db upgrade`.
                registry.upgrade()
            self._registry = registry
        return self._registry

    @property
    def containers(self) -> bool:
        """True when this host serves versions from their images (``bento.runtime``)."""
        return self.settings.bento.runtime == "container"

    @cached_property
    def runtime(self) -> Runtime:
        """How this host runs Bentos: processes, or containers (``bento.runtime =
        "container"``) of the image recorded for the version in the governance DB."""
        if self.containers:
            return ContainerBackend(
                self.settings.container,
                self.settings.logs_dir,
                images=_Images(self),
                workers=self.settings.bento.workers,
            )
        return ProcessBackend(
            self.settings.bentoml_home, self.settings.logs_dir, workers=self.settings.bento.workers
        )

    def handle(self, tag: str, port: int, pid: int | None) -> Handle:
        """The handle of a recorded deployment, for this host's runtime backend."""
        container = container_name(tag, port) if self.containers else None
        return Handle(tag=tag, port=port, pid=pid, log_path=Path(), container=container)

    @cached_property
    def sidecar(self) -> Sidecar:
        paths = ProxyPaths(self.settings.haproxy_dir, self.settings.logs_dir / "haproxy.log")
        return Sidecar(paths, self.settings.haproxy)

    def host_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held by every step that moves this host's traffic or stops its versions (promote,
        rollback, retire, the expiry of a warm version), across processes: one at a time.
        Raises ConcurrentChange if another holds it past the slowest such step's bound."""
        bento = self.settings.bento
        timeout = bento.ready_timeout_s + 2 * bento.stop_timeout_s + 60
        return file_lock(self.settings.run_dir / "host.lock", timeout, error=ConcurrentChange)

    def candidate_port(self, production_port: int) -> int:
        """The candidate port of the model whose production port is ``production_port``."""
        return production_port + 1

    def next_production_port(self) -> int:
        """The production port for a model not seen before: the first free slot in the plan."""
        used = {model.production_port for model in self.registry.models()}
        ports = self.settings.ports
        port = ports.production_start
        while port in used:
            port += ports.production_step
        return port

    def free_backend_port(self, taken: set[int] = frozenset()) -> int:  # type: ignore[assignment]
        """The lowest backend port neither recorded as in use on this host nor bound."""
        recorded = {d.port for d in self.registry.deployments(host=self.settings.host)}
        ports = self.settings.ports
        for port in range(ports.backend_start, ports.backend_end + 1):
            if port not in recorded and port not in taken and _bindable(port):
                return port
        raise ConfigError(
            f"no free backend port in {ports.backend_start}-{ports.backend_end} "
            "(settings ports.backend_start/backend_end)"
        )

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):
            probe.bind(("127.0.0.1", port))
            return True
    return False


def artifact_dir(uri: str) -> Path:
    """The artifact directory a version's ``artifact_uri`` names."""
    path = Path(uri)
    if not path.is_dir():
        raise NotFoundError(f"artifact directory {path} is missing")
    return path


class _Images(dict[str, str]):
    """``bento tag → image id`` for :class:`ContainerBackend`, looked up in the governance DB
    at each use (recorded by ``build --containerize``: the id, which no tag can move)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__()
        self._ctx = ctx

    def __missing__(self, tag: str) -> str:
        model, _, version = tag.partition(":")
        image = self._ctx.registry.get_version(model, version).image_id
        if image is None:
            raise KeyError(tag)
        return image  # not kept: a later build of the version records another image
