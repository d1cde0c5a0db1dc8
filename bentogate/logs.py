"""What an operator reads afterwards (``bentogate logs``): HAProxy's request log, one line
per request, and where each Bento's own log is, per version.

The request log's lines are HAProxy's own, drained into the file by the sidecar's log writer
(:mod:`bentogate.haproxy.accesslog`); this module finds the file and picks the lines of one model:
those of its two ports' frontends and of its versions' backends (a 503 of an unrouted port
has no backend of a version, a server going DOWN has no frontend).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bentogate.bentos import container_name, log_path
from bentogate.context import Context
from bentogate.errors import HAProxyError
from bentogate.haproxy import backend_name, follow_log, frontend_name, lines_about, tail_log


@dataclass(frozen=True)
class BentoLog:
    """Where the output of one Bento (a version on a backend port) of this host goes."""

    model: str
    version: str
    port: int
    running: bool
    path: Path | None  # the file (process backend); None for a container
    where: str  # the path, or the command that shows a container's log


def request_log(ctx: Context) -> Path:
    """This host's HAProxy request log (``<home>/logs/haproxy.log``)."""
    return ctx.sidecar.paths.access_log


def model_lines(ctx: Context, model: str) -> Callable[[str], bool]:
    """A filter keeping the request-log lines of ``model``: requests on its production and
    candidate ports, and state changes of its versions' servers. NotFoundError for a model
    the governance DB does not know."""
    ctx.registry.get_model(model)
    frontends = (frontend_name(model, "live"), frontend_name(model, "candidate"))
    backends = [backend_name(model, v.version) for v in ctx.registry.versions(model)]
    return lines_about(frontends, backends)


def last_lines(ctx: Context, model: str | None, lines: int) -> list[str]:
    """The last ``lines`` request-log lines (of ``model``, if given), oldest first, rotated
    copies included."""
    keep = model_lines(ctx, model) if model else None
    return tail_log(request_log(ctx), lines, keep)


def follow(
    ctx: Context, model: str | None, *, stop: Callable[[], bool] = lambda: False
) -> Iterator[str]:
    """The request-log lines (of ``model``, if given) appended from now on, until ``stop()``
    (or the caller stops iterating); a rotation meanwhile is followed."""
    keep = model_lines(ctx, model) if model else None
    yield from follow_log(request_log(ctx), keep, stop=stop)


def bento_logs(ctx: Context, model: str | None = None) -> list[BentoLog]:
    """The log of every Bento this host runs or ran (of ``model``, if given), by model,
    version and port; files that do not exist (any more) are left out."""
    found: dict[tuple[str, str, int], BentoLog] = {}
    # podman writes a container's output to the file a process would (bentos.container)
    engine_logs = ctx.containers and ctx.settings.container.engine == "docker"
    for deployment in ctx.registry.deployments(
        host=ctx.settings.host, model=model, active_only=False
    ):
        key = (deployment.model, deployment.version, deployment.port)
        running = deployment.stopped_at is None or (key in found and found[key].running)
        tag = f"{deployment.model}:{deployment.version}"
        if engine_logs:
            path, where = None, f"docker logs {container_name(tag, deployment.port)}"
        else:
            path = log_path(ctx.settings.logs_dir, tag, deployment.port)
            if not path.exists():
                continue
            where = str(path)
        found[key] = BentoLog(*key, running=running, path=path, where=where)
    return sorted(found.values(), key=lambda b: (b.model, _version_key(b.version), b.port))


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def notes(ctx: Context, model: str | None = None) -> list[str]:
    """What ``bentogate logs`` says before the lines (on stderr): each Bento's log (of
    ``model``, if given), the request log's path, and why it may stay empty. A log writer
    found dead (killed) is started again here (what it missed meanwhile waited in the FIFO,
    up to its capacity)."""
    lines = [
        f"Bento log of {b.model}:{b.version} on :{b.port} "
        f"({'running' if b.running else 'stopped'}): {b.where}"
        for b in bento_logs(ctx, model)
    ]
    lines.append(f"HAProxy request log: {request_log(ctx)}")
    if not ctx.settings.haproxy.access_log:
        lines.append("requests are not logged: haproxy.access_log is off")
    elif ctx.sidecar.is_running() and not ctx.sidecar.logs_requests():
        lines.append(
            "the running HAProxy was started without the request log (by an older bentogate):"
            " it logs no request until it is restarted (`bentogate shutdown`, then deploy)"
        )
    elif ctx.sidecar.is_running() and not ctx.sidecar.process.log_writer_pid():
        try:
            started = ctx.sidecar.ensure_log_writer()
        except HAProxyError:  # a change holds the sidecar: it starts the writer itself
            started = False
        lines.append(
            "the request log's writer was not running: "
            + ("started again" if started else "it could not be started (see haproxy/haproxy.log)")
        )
    return lines
