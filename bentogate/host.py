"""This host's versions: the one place that starts, adopts, replaces, drains, stops and cuts
over Bentos, and renders the sidecar from the governance DB.

The release workflow (:mod:`bentogate.release`), the warm-version expiry
(:mod:`bentogate.warm`) and the fleet agent (:mod:`bentogate.agent`) all call these; nothing
else starts or stops a Bento or moves a route. Who calls what:

    release.deploy    start → apply_routes → wait_healthy → route the candidate
    release.promote   ensure_running → (DB: promote) → cut_over
    release.rollback  ensure_running → (DB: rollback) → cut_over
    release.retire    (DB: retire) → stop → apply_routes
    release.shutdown  stop_all
    warm.stop_expired stop → apply_routes
    agent             adopt → ensure_bento → start → apply_routes → cut_over → stop

A start records each deployment as soon as its process exists, so an interrupted start
(a killed agent, a Ctrl-C) leaves records that the next :func:`adopt` keeps or ends, never a
process nobody knows about.
"""

from __future__ import annotations

import contextlib
import io
import urllib.request
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass

import numpy as np
import orjson

from bentogate.bentos import (
    Handle,
    archive_path,
    bento_path,
    http_status,
    image_id,
    import_bento,
)
from bentogate.context import Context, Progress, Ref, no_progress
from bentogate.errors import BentogateError, IntegrityError, NotFoundError
from bentogate.governance import DeploymentInfo, Role
from bentogate.haproxy import backend_name, route_key
from bentogate.routing import desired_spec

Routed = MutableMapping[str, str | None]


def served_model(ctx: Context, ref: Ref) -> tuple[str, str]:
    """sha256 of the model this host would serve for ``ref`` (in its Bento store, or in the
    version's image with the container runtime) and what was measured. IntegrityError if
    there is none: nothing could be verified, so nothing is served."""
    try:
        return ctx.runtime.model_sha256(str(ref))
    except NotFoundError as exc:
        raise IntegrityError(f"{ref}: nothing to serve on this host ({exc})") from exc


def served_sha256(ctx: Context, ref: Ref) -> str:
    """sha256 of the model this host would serve for ``ref`` (:func:`served_model`)."""
    return served_model(ctx, ref)[0]


def ensure_bento(ctx: Context, ref: Ref) -> str:
    """Make this host able to serve ``ref``: its Bento store holds the Bento (its archive
    imported from the shared store, ``settings.bentos_dir``, if needed: HAProxy's config
    reads the version's body limit and canary from it), and with the container runtime the
    engine's store holds the version's image. Returns the Bento tag. Raises
    :class:`NotFoundError` (no build or image recorded, no archive, the image missing) or
    :class:`BuildError`."""
    info = ctx.registry.get_version(ref.model, ref.version)
    if info.bento_tag is None:
        raise NotFoundError(f"{ref} has no recorded build: run `bentogate build {ref}`")
    if ctx.containers:
        if info.image_id is None:
            raise NotFoundError(f"{ref} has no recorded image: run `bentogate build {ref} "
                                "--containerize`")  # fmt: skip
        if image_id(ctx.settings.container, info.image_id) is None:
            raise NotFoundError(f"{ref}'s image {info.image_id} is not on this host")
    try:
        bento_path(ctx.settings.bentoml_home, info.bento_tag)
    except NotFoundError:
        import_bento(
            ctx.settings.bentoml_home, archive_path(ctx.settings.bentos_dir, info.bento_tag)
        )
    return info.bento_tag


def _handle(ctx: Context, deployment: DeploymentInfo) -> Handle:
    return ctx.handle(f"{deployment.model}:{deployment.version}", deployment.port, deployment.pid)


def _deployments(ctx: Context, ref: Ref) -> list[DeploymentInfo]:
    found = ctx.registry.deployments(host=ctx.settings.host, model=ref.model)
    return [d for d in found if d.version == ref.version]


def _stop_process(ctx: Context, handle: Handle) -> None:
    ctx.runtime.stop(handle, ctx.settings.bento.stop_timeout_s)


def start(
    ctx: Context,
    ref: Ref,
    *,
    role: Role,
    actor: str,
    replicas: int | None = None,
    progress: Progress = no_progress,
) -> list[DeploymentInfo]:
    """Start ``replicas`` Bentos of ``ref`` (default ``bento.replicas``: one per core of the
    host) on free backend ports and wait until each is
    ready (up to ``bento.ready_timeout_s``, reported to ``progress``); returns their
    deployments.

    The bytes about to be served are checked against the approved sha256 first (audited
    either way); with the container runtime, the model each container loaded is checked
    again once it is ready (its ``GET /model``), before anything routes to it. Each
    deployment is recorded as soon as its process exists. Raises what the checks, a start,
    a record or the readiness wait raise, after stopping what it started and ending those
    records.
    """
    sha256, what = served_model(ctx, ref)
    ctx.registry.verify_artifact(ref.model, ref.version, actor=actor, sha256=sha256, what=what)
    handles: list[Handle] = []
    started: list[DeploymentInfo] = []
    try:
        for _ in range(replicas or ctx.settings.bento.replica_count()):
            port = ctx.free_backend_port()
            progress(f"starting {ref} on :{port}")
            handles.append(ctx.runtime.start(str(ref), port))
            started.append(
                ctx.registry.record_deployment(
                    ref.model,
                    ref.version,
                    host=ctx.settings.host,
                    port=handles[-1].port,
                    pid=handles[-1].pid,
                    role=role,
                    actor=actor,
                )
            )
        for handle in handles:  # the start's own handles: they know the logs to read
            progress(f"waiting for {ref} on :{handle.port} to be ready")
            ctx.runtime.wait_ready(handle, ctx.settings.bento.ready_timeout_s)
        if ctx.containers:
            _verify_loaded(ctx, ref, handles, actor=actor)
    except BentogateError:
        for handle in handles:
            _stop_process(ctx, handle)
        for deployment in started:
            ctx.registry.end_deployment(deployment.id, actor=actor)
        raise
    return started


def _verify_loaded(ctx: Context, ref: Ref, handles: list[Handle], *, actor: str) -> None:
    """Audit the sha256 of the model each ready server of ``ref`` says it loaded (``GET
    /model``, on its own port) against the approved one: one row per distinct value, the
    first that differs refused (IntegrityError)."""
    ports: dict[str, list[int]] = {}
    for handle in handles:
        ports.setdefault(_loaded_sha256(handle), []).append(handle.port)
    for sha256, where in ports.items():
        served_on = ", ".join(f":{port}" for port in where)
        what = f"model loaded by the container(s) of {ref} on {served_on} (GET /model)"
        ctx.registry.verify_artifact(ref.model, ref.version, actor=actor, sha256=sha256, what=what)


def _loaded_sha256(handle: Handle) -> str:
    url = f"{_replica_url(handle.port)}/model"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(orjson.loads(response.read())["sha256"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return f"unreadable ({exc})"


def stop_deployments(ctx: Context, deployments: list[DeploymentInfo], *, actor: str) -> None:
    """Stop these Bentos and end their records (no drain: for servers that never took
    traffic, or after :func:`stop` drained them)."""
    for deployment in deployments:
        _stop_process(ctx, _handle(ctx, deployment))
        ctx.registry.end_deployment(deployment.id, actor=actor)


def end_dead(ctx: Context, ref: Ref, *, actor: str) -> list[Handle]:
    """End the records of ``ref``'s deployments on this host whose process is gone (a crash,
    a kill, a reboot); returns the handles of those alive."""
    alive = []
    for deployment in _deployments(ctx, ref):
        handle = _handle(ctx, deployment)
        if ctx.runtime.is_alive(handle):
            alive.append(handle)
        else:
            ctx.registry.end_deployment(deployment.id, actor=actor)
    return alive


def ensure_running(
    ctx: Context, ref: Ref, role: Role, *, actor: str, progress: Progress = no_progress
) -> None:
    """Start ``bento.replicas`` replicas of ``ref`` if this host runs none alive (its backend
    joins HAProxy, routes unchanged); return once every server of it passes its health
    check."""
    if not end_dead(ctx, ref, actor=actor):
        start(ctx, ref, role=role, actor=actor, progress=progress)
        apply_routes(ctx, progress=progress)
    wait_healthy(ctx, ref, progress=progress)


def apply_routes(
    ctx: Context,
    live: Mapping[str, str | None] | None = None,
    *,
    progress: Progress = no_progress,
) -> None:
    """Render the sidecar from the DB and apply it (start or seamless reload); ``live``
    overrides the live route of the models it names (see :func:`routing.desired_spec`)."""
    running = ctx.sidecar.is_running()
    progress(f"HAProxy: {'reloading' if running else 'starting'} with the config from the DB")
    ctx.sidecar.apply(desired_spec(ctx, live))


def wait_healthy(ctx: Context, ref: Ref, *, progress: Progress = no_progress) -> None:
    """Return once every server of ``ref`` is UP with L7OK in HAProxy (within
    ``haproxy.healthy_timeout_s``); HAProxyError naming each failing check otherwise."""
    progress(f"waiting for HAProxy's canary health check to pass {ref}")
    ctx.sidecar.wait_healthy(ref.model, ref.version, timeout=ctx.settings.haproxy.healthy_timeout_s)


def route_candidate(ctx: Context, ref: Ref) -> None:
    """Point ``ref.model``'s candidate port at ``ref`` (confirmed by HAProxy)."""
    ctx.sidecar.switch(ref.model, ref.version, role="candidate")


def cut_over(
    ctx: Context,
    ref: Ref,
    *,
    leaving: str | None,
    actor: str,
    live: Routed | None = None,
    progress: Progress = no_progress,
) -> None:
    """Switch ``ref.model``'s production port to ``ref``: every server of it passes its
    canary check, then one ``set map`` that HAProxy confirms. The version it leaves
    (``leaving``) stops now, or stays warm (unrouted, health-checked) for
    ``bento.keep_previous_s``; then the sidecar is re-rendered (``live`` as in
    :func:`apply_routes`, updated to ``ref``). Raises CutoverError/HAProxyError if HAProxy
    refuses or does not confirm (the route is then unchanged).
    """
    wait_healthy(ctx, ref, progress=progress)
    progress(f"switching {ref.model}'s production port to {ref}")
    ctx.sidecar.switch(ref.model, ref.version, role="live")
    if live is not None:
        live[ref.model] = ref.version
    if leaving not in (None, ref.version) and ctx.settings.bento.keep_previous_s <= 0:
        stop(ctx, Ref(ref.model, leaving), actor=actor, progress=progress)
    apply_routes(ctx, live, progress=progress)


def stop(
    ctx: Context, ref: Ref, *, actor: str, progress: Progress = no_progress
) -> list[DeploymentInfo]:
    """Drain ``ref`` in HAProxy (in-flight requests finish; skipped where HAProxy does not
    have it), stop its Bentos on this host, end their records; returns them. The caller
    re-renders the sidecar (:func:`apply_routes`) once it has stopped what it stops."""
    deployments = _deployments(ctx, ref)
    if deployments and ctx.sidecar.is_running():
        progress(f"draining {ref}: its requests in flight finish")
        # Not in HAProxy: started by an agent or a deploy interrupted before it was routed.
        with contextlib.suppress(NotFoundError):
            ctx.sidecar.drain(ref.model, ref.version)
    if deployments:
        progress(f"stopping {ref}")
    stop_deployments(ctx, deployments, actor=actor)
    return deployments


def stop_all(ctx: Context, *, actor: str) -> list[DeploymentInfo]:
    """Stop every Bento this host runs and its HAProxy; the DB records them as stopped.
    Returns the deployments stopped."""
    deployments = ctx.registry.deployments(host=ctx.settings.host)
    stop_deployments(ctx, deployments, actor=actor)
    ctx.sidecar.stop()
    return deployments


@dataclass(frozen=True)
class Kept:
    """The client rows one replica kept, oldest first, and the score it answered each."""

    rows: np.ndarray  # float32, one row per request, features in schema order
    scores: np.ndarray  # float32, the model's score as answered

    def __len__(self) -> int:
        return len(self.rows)


def recent_rows(
    ctx: Context, ref: Ref, *, since_ns: int = 0, timeout: float = 10.0
) -> dict[int, Kept]:
    """The recent client rows each replica of ``ref`` on this host kept (``GET /_recent`` on
    its own port, never through HAProxy), those kept at or after ``since_ns`` (this host's
    monotonic clock), with their answered scores: backend port → what it kept. A replica
    that does not answer (or not with :func:`read_kept`'s matrix) is left out: its rows are
    in its memory only."""
    ports = {_replica_url(d.port): d.port for d in _deployments(ctx, ref)}
    found = kept_rows(ports, since_ns=since_ns, timeout=timeout)
    return {ports[url]: kept for url, kept in found.items()}


def kept_rows(
    urls: Iterable[str], *, since_ns: int = 0, limit: int | None = None, timeout: float = 10.0
) -> dict[str, Kept]:
    """What each replica at ``urls`` kept since ``since_ns`` (``GET /_recent``), at most the
    newest ``limit`` rows of each: URL → its rows. A replica that does not answer (or not
    with :func:`read_kept`'s matrix) is left out: its rows are in its memory only."""
    query = f"since={since_ns}" + ("" if limit is None else f"&limit={limit}")
    found: dict[str, Kept] = {}
    for url in urls:
        try:
            with urllib.request.urlopen(f"{url}/_recent?{query}", timeout=timeout) as got:
                found[url] = read_kept(got.read())
        except (OSError, ValueError):
            continue  # dead or unready: its rows are lost with it (in memory only)
    return found


def read_kept(answer: bytes) -> Kept:
    """A Bento's ``GET /_recent`` answer (serving/recent.py: a float32 matrix in ``.npy``
    format, a row per request, the answered score last); ValueError if it is not one."""
    try:
        matrix = np.load(io.BytesIO(answer), allow_pickle=False)
    except EOFError as exc:
        raise ValueError("an empty answer") from exc
    if matrix.dtype != np.float32 or matrix.ndim != 2 or matrix.shape[1] < 1:
        raise ValueError(f"not rows with their scores: {matrix.dtype} {matrix.shape}")
    return Kept(matrix[:, :-1], matrix[:, -1])


def backend_urls(ctx: Context, ref: Ref) -> list[str]:
    """``http://127.0.0.1:<port>`` of each replica of ``ref`` on this host (its own port,
    not through HAProxy)."""
    return [_replica_url(d.port) for d in _deployments(ctx, ref)]


def _replica_url(port: int) -> str:
    """A replica's own address on this host: its port, never through HAProxy."""
    return f"http://127.0.0.1:{port}"


def routed(ctx: Context) -> dict[str, str | None]:
    """model → the version its production port routes to in the running HAProxy (the map),
    for models with a deployment on this host; empty when HAProxy is not running."""
    if not ctx.sidecar.is_running():
        return {}
    try:
        routes = ctx.sidecar.routes()
    except NotFoundError:  # a sidecar with no model yet has no map
        return {}
    found: dict[str, str | None] = {}
    for deployment in ctx.registry.deployments(host=ctx.settings.host):
        if routes.get(route_key(deployment.model)) == backend_name(
            deployment.model, deployment.version
        ):
            found[deployment.model] = deployment.version
    return found


def adopt(
    ctx: Context, live: Mapping[str, str | None], *, actor: str, check_ready: bool
) -> list[str]:
    """Take stock of this host's recorded deployments: end the records of dead Bentos; with
    ``check_ready`` (an agent's first pass after a start), keep those alive and answering
    ``/readyz`` (whoever started them) and stop the others, except the versions ``live``
    routes (HAProxy's checks judge those). Returns what it did, one line each."""
    actions = []
    for deployment in ctx.registry.deployments(host=ctx.settings.host):
        tag = f"{deployment.model}:{deployment.version}"
        handle = _handle(ctx, deployment)
        try:
            alive = ctx.runtime.is_alive(handle)
        except BentogateError:
            alive = False
        if alive and (not check_ready or live.get(deployment.model) == deployment.version):
            continue
        if alive and http_status(deployment.port, "/readyz") == 200:
            actions.append(f"adopted {tag} on port {deployment.port}")
            continue
        if alive:
            _stop_process(ctx, handle)
        ctx.registry.end_deployment(deployment.id, actor=actor)
        actions.append(f"ended {'unready' if alive else 'dead'} {tag}:{deployment.port}")
    return actions
