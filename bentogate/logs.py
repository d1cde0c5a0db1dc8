"""What an operator reads afterwards (``bentogate logs``): HAProxy's request log, one line
per request, and where each Bento's own log is, per version.

The request log's lines are HAProxy's own, kept in its memory and saved to the file
(:mod:`bentogate.haproxy.ring`, :mod:`bentogate.haproxy.accesslog`); this module saves what
HAProxy holds, reads the file and picks the lines of one model:
those of its two ports' frontends and of its versions' backends (a 503 of an unrouted port
has no backend of a version, a server going DOWN has no frontend).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bentogate.bentos import container_name, log_path
from bentogate.context import Context
from bentogate.haproxy import backend_name, frontend_name, lines_about, tail_log


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
    copies included: what HAProxy holds in memory is saved to the file first."""
    keep = model_lines(ctx, model) if model else None
    if ctx.sidecar.is_running():
        ctx.sidecar.save_request_log()
    return tail_log(request_log(ctx), lines, keep)


def follow(
    ctx: Context, model: str | None, *, stop: Callable[[], bool] = lambda: False
) -> Iterator[str]:
    """The request-log lines (of ``model``, if given) HAProxy writes from now on, until
    ``stop()`` (or the caller stops iterating); a reload meanwhile is followed."""
    keep = model_lines(ctx, model) if model else None
    yield from ctx.sidecar.follow_requests(keep, stop=stop)


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
    ``model``, if given), the request log's path, and why it may stay empty."""
    lines = [
        f"Bento log of {b.model}:{b.version} on :{b.port} "
        f"({'running' if b.running else 'stopped'}): {b.where}"
        for b in bento_logs(ctx, model)
    ]
    lines.append(f"HAProxy request log: {request_log(ctx)}")
    if not ctx.settings.haproxy.access_log:
        lines.append("requests are not logged: haproxy.access_log is off")
    return lines
