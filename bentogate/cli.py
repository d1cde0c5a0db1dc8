"""``bentogate``: a thin shell over :mod:`bentogate.release`. Parse, call, print, exit.

Exit codes: :class:`bentogate.errors.ExitCode` (0 ok, 1 error, 2 usage, 3 refused by
governance, 4 validation/gate/shadow failed, 5 inconclusive). Errors are printed as one line
on stderr, never as a traceback; ``--json`` output goes through :mod:`bentogate.output`.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bentogate import bake, gating, output, release, warm
from bentogate.context import Context, Ref
from bentogate.errors import (
    AuditChainBroken,
    BentogateError,
    ExitCode,
    FleetDiverged,
    HAProxyError,
    RolloutFailed,
)
from bentogate.governance import RolloutStatus
from bentogate.inventory import audit_rows, inventory_rows, version_story
from bentogate.progress import progress_view
from bentogate.settings import Settings
from bentogate.status import host_status, status_table
from bentogate.tables import (
    audit_text,
    inventory_text,
    status_renderable,
    story_text,
    to_text,
    utc_moment,
    watch,
)

F = TypeVar("F", bound=Callable[..., Any])


def _context(obj: dict[str, Any]) -> Context:
    if "ctx" not in obj:
        overrides: dict[str, Any] = {}
        if obj.get("home"):
            overrides["home"] = Path(obj["home"])
        if obj.get("host"):
            overrides["host"] = obj["host"]
        obj["ctx"] = Context(Settings(**overrides))
    return obj["ctx"]


def _echo(message: str) -> None:
    click.echo(message, err=True)


def _say_warm(ctx: Context) -> list[dict[str, Any]]:
    """Name the versions a cutover left warm and when their scheduled expiry stops them;
    return them as ``warm`` rows of the JSON output."""
    log_path = ctx.settings.logs_dir / "expire.log"
    rows = _warm_rows(ctx)
    for row in rows:
        _echo(
            f"{row['model']}:{row['version']} stays warm for an instant rollback until "
            f"{utc_moment(row['until'])}, then stops (log: {log_path})"
        )
    return rows


def _warm_rows(ctx: Context) -> list[dict[str, Any]]:
    return [
        {"model": e.ref.model, "version": e.ref.version, "until": e.until}
        for e in warm.warm_versions(ctx)
    ]


def _authenticated(click_ctx: click.Context, _: click.Parameter, value: str | None) -> str:
    """The actor named, else who the governance DB authenticates this command as."""
    return value or _context(click_ctx.find_root().obj).registry.whoami()


_NAMING = (
    " Default: who you are authenticated as (your PostgreSQL role; on SQLite your OS user). "
    "Naming someone else is recorded as unauthenticated, and refused on PostgreSQL "
    "(require_authenticated)."
)


def _actor(text: str = "Who does it (audited).", *, flag: str = "--actor") -> Callable[[F], F]:
    """An actor option: given, else ``$BENTOGATE_ACTOR``, else the authenticated identity
    (governance records a named actor as unauthenticated and, on PostgreSQL, refuses it)."""
    return click.option(
        flag,
        envvar="BENTOGATE_ACTOR",
        show_envvar=True,
        callback=_authenticated,
        help=text + _NAMING,
    )


def _ref(_: click.Context, __: click.Parameter, value: str) -> Ref:
    try:
        return Ref.parse(value)
    except BentogateError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.group()
@click.option("--home", type=click.Path(path_type=Path), help="State directory (BENTOGATE_HOME).")
@click.version_option(
    package_name="bentogate", prog_name="bentogate", message="%(prog)s %(version)s"
)
@click.pass_context
def cli(click_ctx: click.Context, home: Path | None) -> None:
    """Governed, load-gated, zero-downtime releases of BentoML models."""
    click_ctx.ensure_object(dict)
    click_ctx.obj["home"] = home
    click_ctx.call_on_close(
        lambda: click_ctx.obj["ctx"].close() if "ctx" in click_ctx.obj else None
    )


@cli.command()
@output.json_option
@click.pass_obj
def init(obj: dict[str, Any]) -> None:
    """Create the state directory and the governance DB schema."""
    ctx = _context(obj)
    release.init(ctx)
    database = ctx.settings.database_url.split("://")[0]
    output.emit(
        {"home": ctx.settings.home, "database": database, "schema": ctx.registry.schema_revision()},
        f"initialised {ctx.settings.home} ({database})",
    )


@cli.command()
@click.argument("model")
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--reference",
    "reference_csv",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with the feature columns (and is_fraud): schema and reference rows.",
)
@_actor("Who developed the model (the registrant).", flag="--developer")
@click.option("--owner", help="Accountable owner (default: the developer).")
@click.option("--purpose", default="", help="What the model is for.")
@click.option("--threshold", default=0.5, show_default=True, type=float)
@click.option("--version", help="Version label (default: the next integer).")
@output.json_option
@click.pass_obj
def register(
    obj: dict[str, Any],
    model: str,
    model_file: Path,
    reference_csv: Path,
    developer: str,
    owner: str | None,
    purpose: str,
    threshold: float,
    version: str | None,
) -> None:
    """Import an XGBoost model file (ONNX + parity) as a new version of MODEL."""
    ctx = _context(obj)
    info = release.register(
        ctx,
        model,
        model_file,
        reference_csv,
        developer=developer,
        owner=owner,
        purpose=purpose,
        threshold=threshold,
        version=version,
    )
    output.emit(
        {**output.version_fields(info), **_ports(ctx, info.model)},
        f"registered {info.model}:{info.version} sha256 {info.sha256[:12]}",
    )


def _ports(ctx: Context, model: str) -> dict[str, int]:
    """Where this host serves ``model``: its production and candidate ports."""
    port = ctx.registry.get_model(model).production_port
    return {
        "production_port": port,
        "candidate_port": ctx.candidate_port(port),
    }


@cli.command()
@click.argument("ref", callback=_ref)
@click.option("--holdout", required=True, type=click.Path(exists=True, path_type=Path))
@_actor("The validator (not the developer).")
@output.json_option
@click.pass_obj
def validate(obj: dict[str, Any], ref: Ref, holdout: Path, actor: str) -> None:
    """Check parity and quality of REF (model:version) and record the validation."""
    info = release.validate(_context(obj), ref, holdout, actor=actor)
    output.emit({**output.version_fields(info), "metrics": info.metrics}, f"{ref}: {info.state}")


@cli.command()
@click.argument("ref", callback=_ref)
@_actor("The approver (neither developer nor validator).")
@click.option("--comment", default="")
@output.json_option
@click.pass_obj
def approve(obj: dict[str, Any], ref: Ref, actor: str, comment: str) -> None:
    """Sign off REF for release."""
    info = release.approve(_context(obj), ref, actor=actor, comment=comment)
    output.emit(output.version_fields(info), f"{ref}: {info.state} by {info.approver}")


@cli.command()
@click.argument("ref", callback=_ref)
@_actor()
@click.option(
    "--containerize",
    is_flag=True,
    help="Also build its container image, <container.repository>/<model>:<version>, with "
    "the engine of the container settings (podman: `./run containers` sets it up). Always "
    'with bento.runtime = "container".',
)
@output.json_option
@click.pass_obj
def build(obj: dict[str, Any], ref: Ref, actor: str, containerize: bool) -> None:
    """bentoml build REF into a versioned Bento (and export its .bento archive)."""
    ctx = _context(obj)
    with progress_view() as progress:
        info, archive = release.build(
            ctx, ref, actor=actor, containerize=containerize or ctx.containers, progress=progress
        )
    image = f"; image {info.image_tag} ({info.image_id})" if info.image_tag else ""
    output.emit(
        {**output.version_fields(info), "archive": archive},
        f"built Bento {info.bento_tag}; archive {archive}{image}",
    )


@cli.command()
@click.argument("ref", callback=_ref)
@_actor()
@click.option(
    "--replicas",
    type=click.IntRange(1, 16),
    help="Replicas to start (default: bento.replicas, one per core of this host).",
)
@output.json_option
@click.pass_obj
def deploy(obj: dict[str, Any], ref: Ref, actor: str, replicas: int | None) -> None:
    """Serve REF on its own port(s) behind HAProxy as the candidate."""
    ctx = _context(obj)
    with progress_view() as progress:
        info = release.deploy(ctx, ref, actor=actor, replicas=replicas, progress=progress)
    ports = _ports(ctx, ref.model)
    mine = ctx.registry.deployments(host=ctx.settings.host, model=ref.model)
    backends = sorted(d.port for d in mine if d.version == ref.version)
    output.emit(
        {**output.version_fields(info), **ports, "backend_ports": backends},
        f"{ref} staged; candidate port {ports['candidate_port']}",
    )


@cli.command()
@click.argument("ref", callback=_ref)
@_actor()
@output.json_option
@click.pass_obj
def gate(obj: dict[str, Any], ref: Ref, actor: str) -> None:
    """Load-test REF through HAProxy with Locust; exit 0 pass, 4 fail, 5 inconclusive."""
    with progress_view() as progress:
        result = gating.gate(_context(obj), ref, actor=actor, progress=progress)
    output.emit(
        gating.run_fields(ref, result), f"gate {result.verdict}: report {result.report_html}"
    )


@cli.command()
@click.argument("ref", callback=_ref)
@_actor()
@output.json_option
@click.pass_obj
def shadow(obj: dict[str, Any], ref: Ref, actor: str) -> None:
    """Score live clients' recent rows on REF and on production; exit 0 pass, 4 fail, 5
    inconclusive."""
    result = gating.shadow(_context(obj), ref, actor=actor)
    c = result.comparison
    output.emit(
        gating.run_fields(ref, result),
        f"shadow {result.verdict}: {c.rows} rows, {c.flips} flipped decisions, "
        f"p99 |delta| {c.p99_abs_delta:.4f}; report {result.report_html}",
    )


@cli.command()
@click.argument("model")
@click.option(
    "--set",
    "changes",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Change one field (rate, duration_s, p99_ms, max_error_ratio, ...).",
)
@_actor("Who changes the policy (with --set).")
@output.json_option
@click.pass_obj
def policy(obj: dict[str, Any], model: str, changes: tuple[str, ...], actor: str) -> None:
    """Show MODEL's gate policy, or change fields of it (stored in the governance DB).
    Printed as JSON either way: the policy's fields."""
    ctx = _context(obj)
    if not changes:
        shown = gating.gate_policy(ctx, model).to_dict()
        output.emit(shown, output.dumps(shown))
        return
    parsed: dict[str, float] = {}
    for change in changes:
        key, _, value = change.partition("=")
        try:
            number = float(value)
        except ValueError:
            raise click.BadParameter(f"{change!r}: expected FIELD=NUMBER") from None
        parsed[key] = int(number) if number.is_integer() else number
    stored = gating.set_gate_policy(ctx, model, parsed, actor=actor).to_dict()
    output.emit(stored, output.dumps(stored))


@cli.command()
@click.argument("ref", callback=_ref)
@_actor()
@click.option("--max-rate", default=5000.0, show_default=True, type=float)
@output.json_option
@click.pass_obj
def capacity(obj: dict[str, Any], ref: Ref, actor: str, max_rate: float) -> None:
    """Find the highest rate at which REF meets its policy's p99; record it in the inventory."""
    ctx = _context(obj)
    with progress_view() as progress:
        result = gating.capacity(ctx, ref, actor=actor, max_rate=max_rate, progress=progress)
    runs = [{"rate": r, "verdict": v, "p99_ms": p99} for r, v, p99 in result.runs]
    found = {"model": ref.model, "version": ref.version, "rate": result.rate,
             "limited_by": result.limited_by, "runs": runs}  # fmt: skip
    output.emit(found, f"{ref}: {result.rate:g} req/s (limited by {result.limited_by})")


@cli.command()
@click.argument("ref", callback=_ref)
@_actor()
@click.option("--fleet", "on_fleet", is_flag=True, help="Every host's agent cuts over.")
@click.option("--deadline", type=float, help="Fleet: roll back unless live everywhere by then (s).")
@click.option("--no-wait", is_flag=True, help="Fleet: record the rollout and return.")
@output.json_option
@click.pass_obj
def promote(
    obj: dict[str, Any],
    ref: Ref,
    actor: str,
    on_fleet: bool,
    deadline: float | None,
    no_wait: bool,
) -> None:
    """Cut production traffic over to the gated REF (blue-green), here or on every host."""
    ctx = _context(obj)
    if not on_fleet:
        with progress_view() as progress:
            info = release.promote(ctx, ref, actor=actor, progress=progress)
        click.echo(f"{info.model}:{info.version} is live")  # prose: on stderr under --json
        warm_rows = _say_warm(ctx)
        output.emit({**_live_fields(ctx, ref), "warm": warm_rows, "rollout": None})
        return
    from bentogate import fleet

    rollout = fleet.promote(ctx, ref, actor=actor, deadline_s=deadline)
    started = f"rollout {rollout.id}: {ref} on {', '.join(rollout.hosts)}"
    if no_wait:
        output.emit({**_live_fields(ctx, ref), "warm": [], "rollout": rollout}, started)
        return
    click.echo(started)
    with progress_view() as progress:
        done = fleet.wait_rollout(ctx, rollout, actor=actor, progress=progress)
    outcome = f"rollout {done.id}: {done.status} ({done.outcome.get('reason', '')})"
    fields = {**_live_fields(ctx, ref), "warm": [], "rollout": done}
    if done.status != RolloutStatus.COMPLETE:
        raise RolloutFailed(outcome, details=fields)
    output.emit(fields, outcome)


def _live_fields(ctx: Context, ref: Ref) -> dict[str, Any]:
    """A version's fields after a cutover (promote, rollback, release): its record (the
    state says whether it is production) and the ports of its model on this host."""
    info = ctx.registry.get_version(ref.model, ref.version)
    return {**output.version_fields(info), **_ports(ctx, ref.model)}


@cli.command()
@click.argument("model")
@_actor()
@output.json_option
@click.pass_obj
def rollback(obj: dict[str, Any], model: str, actor: str) -> None:
    """Give MODEL's production port back to its previous version."""
    ctx = _context(obj)
    with progress_view() as progress:
        info = release.rollback(ctx, model, actor=actor, progress=progress)
    click.echo(f"{info.model}:{info.version} is live again")
    warm_rows = _say_warm(ctx)
    output.emit({**_live_fields(ctx, Ref(info.model, info.version)), "warm": warm_rows})


@cli.command()
@output.json_option
@click.pass_obj
def shutdown(obj: dict[str, Any]) -> None:
    """Stop every Bento of this host and its HAProxy (the DB records them as stopped)."""
    ctx = _context(obj)
    stopped = release.shutdown(ctx, actor=ctx.registry.acting_as(ctx.settings.host))
    lines = [f"stopped {d.model}:{d.version} on port {d.port}" for d in stopped]
    output.emit(
        {"host": ctx.settings.host,
         "stopped": [{"model": d.model, "version": d.version, "port": d.port} for d in stopped]},
        "\n".join([*lines, f"{ctx.settings.host}: nothing runs any more"]),
    )  # fmt: skip


@cli.command()
@click.option(
    "--wait",
    is_flag=True,
    help="Stay until every warm version has reached its time, watching the bake of the "
    "versions that replaced them meanwhile (automatic rollback on a breach).",
)
@output.json_option
@click.pass_obj
def expire(obj: dict[str, Any], wait: bool) -> None:
    """Stop the previous production versions whose warm time (bento.keep_previous_s) is over."""
    ctx = _context(obj)
    with progress_view() as progress:
        stopped = bake.watch_then_expire(ctx, progress) if wait else warm.stop_expired(ctx)
    still = _warm_rows(ctx)
    lines = [f"{ref} stopped" for ref in stopped] + [
        f"{r['model']}:{r['version']} warm until {utc_moment(r['until'])}" for r in still
    ]
    output.emit(
        {"stopped": [{"model": r.model, "version": r.version} for r in stopped], "warm": still},
        "\n".join(lines),
    )


@cli.command()
@click.argument("ref", callback=_ref)
@_actor()
@click.option("--reason", required=True)
@output.json_option
@click.pass_obj
def retire(obj: dict[str, Any], ref: Ref, actor: str, reason: str) -> None:
    """Stop REF and mark it retired (it stays in the inventory)."""
    info = release.retire(_context(obj), ref, actor=actor, reason=reason)
    output.emit(output.version_fields(info), f"{ref}: {info.state}")


@cli.command(name="release")
@click.argument("ref", callback=_ref)
@click.option("--holdout", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--validator", help="Who validates, if it is still to do (not the developer).")
@click.option("--approver", help="Who approves, if it is still to do (nor the validator).")
@_actor("The release engineer.")
@output.json_option
@click.pass_obj
def release_command(
    obj: dict[str, Any],
    ref: Ref,
    holdout: Path,
    validator: str | None,
    approver: str | None,
    actor: str,
) -> None:
    """validate → approve → build → deploy → gate → promote REF, resuming where it stopped
    (steps still to do are done by --validator, --approver, else by you)."""
    ctx = _context(obj)
    actors = release.Actors(validator=validator or actor, approver=approver or actor, release=actor)
    with progress_view() as progress:
        info = release.release(ctx, ref, holdout, actors=actors, progress=progress)
    click.echo(f"{info.model}:{info.version}: {info.state}")
    warm_rows = _say_warm(ctx)
    output.emit({**_live_fields(ctx, ref), "warm": warm_rows})


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--fleet", "on_fleet", is_flag=True, help="Every host: address, version, reach, heartbeat."
)
@click.option(
    "--watch",
    "interval",
    type=float,
    default=None,
    is_flag=False,
    flag_value=1.0,
    help="Refresh every N seconds (default 1) until interrupted.",
)
@click.pass_obj
def status(obj: dict[str, Any], as_json: bool, on_fleet: bool, interval: float | None) -> None:
    """Per port: model, version, role, state, and HAProxy's live view of each server (check
    and its reason, sessions, request rate, 5xx, response time). Exits 1 while a server
    HAProxy routes a port's traffic to is not UP (or HAProxy is not running), naming it.

    With --fleet: per model and host, the host's address, the version its agent reports live
    and the one its production port answers over the network (or that it is unreachable),
    health and heartbeat age; rows breaking "one port, one version across the fleet" are
    flagged (exit 1 if any).
    With --watch: refreshed in place until Ctrl-C, then the exit code of the last look."""
    ctx = _context(obj)

    def look() -> tuple[Any, list[dict[str, Any]], BentogateError | None]:
        if on_fleet:
            from bentogate import fleetstatus

            rows = fleetstatus.fleet_rows(ctx)
            flagged = sorted({f for r in rows for f in r["flags"]})
            why = f"the fleet is not consistent: {', '.join(flagged)}"
            return fleetstatus.fleet_table(rows), rows, FleetDiverged(why) if flagged else None
        seen = host_status(ctx)
        why = "; ".join(p.text for p in seen.problems)
        error = HAProxyError(why) if seen.problems else None
        return status_renderable(seen.rows, seen.problems), seen.rows, error

    if interval is not None:
        error = watch(lambda: look()[::2], interval)
    else:
        view, rows, error = look()
        click.echo(json.dumps(rows, indent=2) if as_json else to_text(view))
    if error is not None:
        raise error


@cli.command()
@output.json_option
@click.pass_obj
def inventory(obj: dict[str, Any]) -> None:
    """Every model: in use / in development / retired, owner, validator, review, live port."""
    rows = inventory_rows(_context(obj))
    output.emit({"models": rows}, inventory_text(rows))


@cli.command()
@click.argument("ref", callback=_ref)
@output.json_option
@click.pass_obj
def show(obj: dict[str, Any], ref: Ref) -> None:
    """The whole story of one version: facts, gate runs, deployments, audit trail."""
    story = version_story(_context(obj), ref)
    output.emit(story, story_text(story))


@cli.command()
@click.argument("target", required=False)
@output.json_option
@click.pass_obj
def audit(obj: dict[str, Any], target: str | None) -> None:
    """The audit trail (all, MODEL or MODEL:VERSION); `audit verify` checks its hash chain."""
    ctx = _context(obj)
    if target == "verify":
        ok, row, message = ctx.registry.verify_audit()
        verdict = {"ok": ok, "first_broken_row": row, "message": message}
        if not ok:
            raise AuditChainBroken(message, details=verdict)
        output.emit(verdict, message)
        return
    rows = audit_rows(ctx, target)
    output.emit({"entries": rows}, audit_text(rows))


@cli.command()
@click.argument("model", required=False)
@click.option("-n", "--lines", "count", default=50, show_default=True, type=click.IntRange(0))
@click.option("-f", "--follow", is_flag=True, help="Then print new lines as they come, to Ctrl-C.")
@click.pass_obj
def logs(obj: dict[str, Any], model: str | None, count: int, follow: bool) -> None:
    """HAProxy's request log, one line per request (frontend, backend/server, timers
    TR/Tw/Tc/Tr/Ta in ms, status, bytes, termination state), of MODEL's ports and versions
    if given; on stderr first, where each Bento's own log is, per version and port."""
    from bentogate import logs as host_logs

    ctx = _context(obj)
    for note in host_logs.notes(ctx, model):
        _echo(note)
    for line in host_logs.last_lines(ctx, model, count):
        click.echo(line)
    if follow:
        with contextlib.suppress(KeyboardInterrupt):
            for line in host_logs.follow(ctx, model):
                click.echo(line)


@cli.command()
@click.option("--host", help="This host's name in the governance DB (BENTOGATE_HOST).")
@click.option("--once", is_flag=True, help="Reconcile once, print the report (JSON), exit.")
@output.json_option
@click.pass_obj
def agent(obj: dict[str, Any], host: str | None, once: bool) -> None:
    """Run this API host's fleet agent: serve what the governance DB says, report back."""
    import logging
    import signal
    import threading

    from bentogate import agent as fleet_agent

    if host:
        obj["host"] = host
    ctx = _context(obj)
    if once:
        report = fleet_agent.reconcile_once(ctx, adopt=True)
        ctx.registry.heartbeat(ctx.settings.host, report.to_json())
        output.emit(report.to_json(), output.dumps(report.to_json()))
        return
    if output.wants_json():
        raise click.UsageError("--json reports a pass: it needs --once")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    fleet_agent.run(ctx, stop)


@cli.group()
def db() -> None:
    """The governance database schema (Alembic migrations)."""


@db.command()
@output.json_option
@click.pass_obj
def upgrade(obj: dict[str, Any]) -> None:
    """Run the migrations up to the newest schema (idempotent)."""
    ctx = _context(obj)
    ctx.registry.upgrade()
    revision = ctx.registry.schema_revision()
    output.emit({"schema": revision}, f"schema at {revision}")


@db.command()
@click.option("--prefix", default="bentogate", show_default=True, help="Group role names' prefix.")
@output.json_option
@click.pass_obj
def roles(obj: dict[str, Any], prefix: str) -> None:
    """PostgreSQL: create the group roles (developer, validator, approver, release, agent,
    admin), their GRANTs and the duties trigger; then GRANT a group to each person's role."""
    names = _context(obj).registry.create_roles(prefix)
    output.emit({"roles": names}, "group roles: " + ", ".join(names))


@cli.command()
@click.option(
    "--keep-running",
    is_flag=True,
    help="Leave HAProxy and the live Bento up; with --fleet, everything until Ctrl-C.",
)
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=Path("demo-data"),
    show_default=True,
    help="Where the demo writes its models and data (with --fleet: its hosts' state too).",
)
@click.option(
    "--fleet",
    "on_fleet",
    is_flag=True,
    help="Three API hosts in network namespaces (root), one PostgreSQL: v1 rolled out, "
    "then v2 under load on every host's address.",
)
@click.option(
    "--db-url",
    help="With --fleet: the PostgreSQL server (default: BENTOGATE_DB_URL, else the local one).",
)
@click.option(
    "--schema",
    default="bentogate_fleet_demo",
    show_default=True,
    help="With --fleet: the schema the demo makes afresh there for its governance DB.",
)
@output.json_option
@click.pass_obj
def demo(
    obj: dict[str, Any],
    keep_running: bool,
    workdir: Path,
    on_fleet: bool,
    db_url: str | None,
    schema: str,
) -> None:
    """The whole story: train v1 and v2, v1 to production, then v2 through gate and cutover."""
    if on_fleet:
        _fleet_demo(keep_running, workdir / "fleet", db_url, schema)
        return
    from bentogate.demo import example_path, run_demo

    ctx = _context(obj)
    with progress_view() as progress:
        rows = run_demo(ctx, workdir, keep_running=keep_running, progress=progress)
    warm_rows = _say_warm(ctx) if keep_running else []
    output.emit(
        {"status": rows, "example": example_path(workdir).resolve(), "warm": warm_rows},
        status_table(rows),
    )


def _fleet_demo(keep_running: bool, workdir: Path, db_url: str | None, schema: str) -> None:
    """`demo --fleet`: :mod:`bentogate.fleetdemo`, its end printed as `status --fleet`; with
    ``keep_running`` the hosts serve on until Ctrl-C, then everything stops."""
    from bentogate import fleetdemo
    from bentogate.fleetstatus import fleet_table

    base = Settings()
    url = db_url or base.db_url or fleetdemo.LOCAL_PG
    with (
        progress_view() as progress,
        fleetdemo.FleetDemo.up(
            base, workdir, db_url=url, schema=schema, progress=progress
        ) as fleet_demo,
    ):
        result = fleet_demo.run()
        if keep_running:
            output.emit(result.to_json(), fleet_table(result.rows))
            addresses = ", ".join(f["address"] for f in map(vars, result.hosts.values()))
            _echo(
                f"the hosts serve on until Ctrl-C: curl -s -XPOST <{addresses}>:"
                f"{result.port}/predict -d @{result.example} (from this machine); "
                f"BENTOGATE_DB_URL='{fleet_demo.ws.settings.database_url}' "
                "bentogate status --fleet"
            )
            fleet_demo.hold()
            return
    output.emit(result.to_json(), fleet_table(result.rows))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turn bentogate errors into a message and exit code
    (:class:`bentogate.errors.ExitCode`; with ``--json`` also a JSON object on stdout)."""
    args = sys.argv[1:] if argv is None else list(argv)
    state: dict[str, Any] = {}  # the root context's obj: what --json sets is seen here
    run: Callable[..., Any] = cli.main
    try:
        run(args=args, prog_name="bentogate", standalone_mode=False, obj=state)
    except click.exceptions.Abort:
        _echo("aborted")
        output.fail(state, args, "aborted", kind="Abort", exit_code=ExitCode.ERROR)
    except click.ClickException as exc:
        exc.show()
        kind = type(exc).__name__
        output.fail(state, args, exc.format_message(), kind=kind, exit_code=exc.exit_code)
    except BentogateError as exc:
        _echo(f"error: {exc}")
        kind = type(exc).__name__
        output.fail(state, args, str(exc), kind=kind, exit_code=exc.exit_code, details=exc.details)


if __name__ == "__main__":
    main()
