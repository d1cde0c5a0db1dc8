"""``bentogate``: a thin shell over :mod:`bentogate.release`. Parse, call, print, exit.

Exit codes: 0 success; 1 a refusal or failure (including a failed gate); 2 an inconclusive
gate or a usage error. Errors are printed as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bentogate import bake, gating, release, warm
from bentogate.context import Context, Ref
from bentogate.errors import AuditChainBroken, BentogateError, FleetDiverged, RolloutFailed
from bentogate.inventory import audit_rows, inventory_rows, table, version_story
from bentogate.settings import Settings
from bentogate.status import status_rows, status_table
from governance import RolloutStatus


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


def _say_warm(ctx: Context) -> None:
    """Name the versions a cutover left warm and when their scheduled expiry stops them."""
    log_path = ctx.settings.logs_dir / "expire.log"
    for entry in warm.warm_versions(ctx):
        _echo(
            f"{entry.ref} stays warm for an instant rollback until {entry.until:%H:%M:%S} UTC,"
            f" then stops (log: {log_path})"
        )


def _ref(_: click.Context, __: click.Parameter, value: str) -> Ref:
    try:
        return Ref.parse(value)
    except BentogateError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.group()
@click.option("--home", type=click.Path(path_type=Path), help="State directory (BENTOGATE_HOME).")
@click.pass_context
def cli(click_ctx: click.Context, home: Path | None) -> None:
    """Governed, load-gated, zero-downtime releases of BentoML models."""
    click_ctx.ensure_object(dict)
    click_ctx.obj["home"] = home
    click_ctx.call_on_close(
        lambda: click_ctx.obj["ctx"].close() if "ctx" in click_ctx.obj else None
    )


@cli.command()
@click.pass_obj
def init(obj: dict[str, Any]) -> None:
    """Create the state directory and the governance DB schema."""
    ctx = _context(obj)
    release.init(ctx)
    click.echo(f"initialised {ctx.settings.home} ({ctx.settings.database_url.split('://')[0]})")


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
@click.option("--developer", required=True, help="Who developed the model (the registrant).")
@click.option("--owner", help="Accountable owner (default: the developer).")
@click.option("--purpose", default="", help="What the model is for.")
@click.option("--threshold", default=0.5, show_default=True, type=float)
@click.option("--version", help="Version label (default: the next integer).")
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
    info = release.register(
        _context(obj),
        model,
        model_file,
        reference_csv,
        developer=developer,
        owner=owner,
        purpose=purpose,
        threshold=threshold,
        version=version,
    )
    click.echo(f"registered {info.model}:{info.version} sha256 {info.sha256[:12]}")


@cli.command()
@click.argument("ref", callback=_ref)
@click.option("--holdout", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--actor", required=True, help="The validator (not the developer).")
@click.pass_obj
def validate(obj: dict[str, Any], ref: Ref, holdout: Path, actor: str) -> None:
    """Check parity and quality of REF (model:version) and record the validation."""
    info = release.validate(_context(obj), ref, holdout, actor=actor)
    click.echo(f"{ref}: {info.state}")


@cli.command()
@click.argument("ref", callback=_ref)
@click.option("--actor", required=True, help="The approver (neither developer nor validator).")
@click.option("--comment", default="")
@click.pass_obj
def approve(obj: dict[str, Any], ref: Ref, actor: str, comment: str) -> None:
    """Sign off REF for release."""
    info = release.approve(_context(obj), ref, actor=actor, comment=comment)
    click.echo(f"{ref}: {info.state} by {info.approver}")


@cli.command()
@click.argument("ref", callback=_ref)
@click.option("--actor", required=True)
@click.option(
    "--containerize",
    "image_tag",
    flag_value="auto",
    default=None,
    help="Also build a container image (needs a Docker engine).",
)
@click.pass_obj
def build(obj: dict[str, Any], ref: Ref, actor: str, image_tag: str | None) -> None:
    """bentoml build REF into a versioned Bento (and export its .bento archive)."""
    tag = f"{ref.model}:{ref.version}" if image_tag else None
    info, archive = release.build(_context(obj), ref, actor=actor, image_tag=tag)
    click.echo(f"built Bento {info.bento_tag}; archive {archive}")


@cli.command()
@click.argument("ref", callback=_ref)
@click.option("--actor", required=True)
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(1, 16))
@click.pass_obj
def deploy(obj: dict[str, Any], ref: Ref, actor: str, replicas: int) -> None:
    """Serve REF on its own port(s) behind HAProxy as the candidate."""
    ctx = _context(obj)
    release.deploy(ctx, ref, actor=actor, replicas=replicas)
    model = ctx.registry.get_model(ref.model)
    click.echo(f"{ref} staged; candidate port {ctx.candidate_port(model.production_port)}")


@cli.command()
@click.argument("ref", callback=_ref)
@click.option("--actor", required=True)
@click.pass_obj
def gate(obj: dict[str, Any], ref: Ref, actor: str) -> None:
    """Load-test REF through HAProxy with Locust; exit 0 pass, 1 fail, 2 inconclusive."""
    result = gating.gate(_context(obj), ref, actor=actor, progress=_echo)
    click.echo(f"gate {result.verdict}: report {result.report_html}")


@cli.command()
@click.argument("ref", callback=_ref)
@click.option("--actor", required=True)
@click.pass_obj
def shadow(obj: dict[str, Any], ref: Ref, actor: str) -> None:
    """Score live clients' recent rows on REF and on production; exit 0 pass, 1 fail, 2
    inconclusive."""
    result = gating.shadow(_context(obj), ref, actor=actor)
    c = result.comparison
    click.echo(
        f"shadow {result.verdict}: {c.rows} rows, {c.flips} flipped decisions, "
        f"p99 |delta| {c.p99_abs_delta:.4f}; report {result.report_html}"
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
@click.option("--actor", help="Who changes the policy (required with --set).")
@click.pass_obj
def policy(obj: dict[str, Any], model: str, changes: tuple[str, ...], actor: str | None) -> None:
    """Show MODEL's gate policy, or change fields of it (stored in the governance DB)."""
    ctx = _context(obj)
    if not changes:
        _print(gating.gate_policy(ctx, model).to_dict(), True)
        return
    if actor is None:
        raise click.UsageError("--set needs --actor")
    parsed: dict[str, float] = {}
    for change in changes:
        key, _, value = change.partition("=")
        try:
            number = float(value)
        except ValueError:
            raise click.BadParameter(f"{change!r}: expected FIELD=NUMBER") from None
        parsed[key] = int(number) if number.is_integer() else number
    _print(gating.set_gate_policy(ctx, model, parsed, actor=actor).to_dict(), True)


@cli.command()
@click.argument("ref", callback=_ref)
@click.option("--actor", required=True)
@click.option("--max-rate", default=5000.0, show_default=True, type=float)
@click.pass_obj
def capacity(obj: dict[str, Any], ref: Ref, actor: str, max_rate: float) -> None:
    """Find the highest rate at which REF meets its policy's p99; record it in the inventory."""
    result = gating.capacity(_context(obj), ref, actor=actor, max_rate=max_rate, progress=_echo)
    click.echo(f"{ref}: {result.rate:g} req/s (limited by {result.limited_by})")


@cli.command()
@click.argument("ref", callback=_ref)
@click.option("--actor", required=True)
@click.option("--fleet", "on_fleet", is_flag=True, help="Every host's agent cuts over.")
@click.option("--deadline", type=float, help="Fleet: roll back unless live everywhere by then (s).")
@click.option("--no-wait", is_flag=True, help="Fleet: record the rollout and return.")
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
        info = release.promote(ctx, ref, actor=actor)
        click.echo(f"{info.model}:{info.version} is live")
        _say_warm(ctx)
        return
    from bentogate import fleet

    rollout = fleet.promote(ctx, ref, actor=actor, deadline_s=deadline)
    click.echo(f"rollout {rollout.id}: {ref} on {', '.join(rollout.hosts)}")
    if no_wait:
        return
    done = fleet.wait_rollout(ctx, rollout, actor=actor, progress=_echo)
    outcome = f"rollout {done.id}: {done.status} ({done.outcome.get('reason', '')})"
    if done.status != RolloutStatus.COMPLETE:
        raise RolloutFailed(outcome)
    click.echo(outcome)


@cli.command()
@click.argument("model")
@click.option("--actor", required=True)
@click.pass_obj
def rollback(obj: dict[str, Any], model: str, actor: str) -> None:
    """Give MODEL's production port back to its previous version."""
    ctx = _context(obj)
    info = release.rollback(ctx, model, actor=actor)
    click.echo(f"{info.model}:{info.version} is live again")
    _say_warm(ctx)


@cli.command()
@click.pass_obj
def shutdown(obj: dict[str, Any]) -> None:
    """Stop every Bento of this host and its HAProxy (the DB records them as stopped)."""
    ctx = _context(obj)
    for deployment in release.shutdown(ctx, actor=ctx.settings.host):
        click.echo(f"stopped {deployment.model}:{deployment.version} on port {deployment.port}")
    click.echo(f"{ctx.settings.host}: nothing runs any more")


@cli.command()
@click.option(
    "--wait",
    is_flag=True,
    help="Stay until every warm version has reached its time, watching the bake of the "
    "versions that replaced them meanwhile (automatic rollback on a breach).",
)
@click.pass_obj
def expire(obj: dict[str, Any], wait: bool) -> None:
    """Stop the previous production versions whose warm time (bento.keep_previous_s) is over."""
    ctx = _context(obj)
    stopped = bake.watch_then_expire(ctx, progress=_echo) if wait else warm.stop_expired(ctx)
    for ref in stopped:
        click.echo(f"{ref} stopped")
    for entry in warm.warm_versions(ctx):
        click.echo(f"{entry.ref} warm until {entry.until.isoformat(timespec='seconds')}")


@cli.command()
@click.argument("ref", callback=_ref)
@click.option("--actor", required=True)
@click.option("--reason", required=True)
@click.pass_obj
def retire(obj: dict[str, Any], ref: Ref, actor: str, reason: str) -> None:
    """Stop REF and mark it retired (it stays in the inventory)."""
    info = release.retire(_context(obj), ref, actor=actor, reason=reason)
    click.echo(f"{ref}: {info.state}")


@cli.command(name="release")
@click.argument("ref", callback=_ref)
@click.option("--holdout", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--validator", required=True)
@click.option("--approver", required=True)
@click.option("--actor", required=True, help="The release engineer.")
@click.pass_obj
def release_command(
    obj: dict[str, Any], ref: Ref, holdout: Path, validator: str, approver: str, actor: str
) -> None:
    """validate → approve → build → deploy → gate → promote REF, resuming where it stopped."""
    ctx = _context(obj)
    actors = release.Actors(validator=validator, approver=approver, release=actor)
    info = release.release(ctx, ref, holdout, actors=actors, progress=_echo)
    click.echo(f"{info.model}:{info.version}: {info.state}")
    _say_warm(ctx)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--fleet", "on_fleet", is_flag=True, help="Every host: version, health, heartbeat.")
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
    """Per port: model, version, role, state, and HAProxy's live view of each server.

    With --fleet: per model and host, the version served, health and heartbeat age; rows
    breaking "one port, one version across the fleet" are flagged (exit 1 if any)."""
    ctx = _context(obj)
    rows_of, table_of = status_rows, status_table
    if on_fleet:
        from bentogate import fleet

        rows_of, table_of = fleet.fleet_rows, fleet.fleet_table
    while True:
        rows = rows_of(ctx)
        if interval is None:
            click.echo(json.dumps(rows, indent=2) if as_json else table_of(rows))
            flagged = sorted({f for r in rows for f in r["flags"]}) if on_fleet else []
            if flagged:
                raise FleetDiverged(f"the fleet is not consistent: {', '.join(flagged)}")
            return
        click.clear()
        click.echo(f"bentogate status (every {interval:g} s, Ctrl-C to stop)\n")
        click.echo(table_of(rows))
        time.sleep(interval)


def _print(rows: Any, as_json: bool, columns: tuple[str, ...] | None = None) -> None:
    if as_json or columns is None:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        click.echo(table(rows, columns))


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def inventory(obj: dict[str, Any], as_json: bool) -> None:
    """Every model: in use / in development / retired, owner, validator, review, live port."""
    _print(inventory_rows(_context(obj)), as_json, _INVENTORY_COLUMNS)


_INVENTORY_COLUMNS = (
    "model", "use", "owner", "live_version", "live_port", "versions", "validator",
    "last_validation", "next_review_due",
)  # fmt: skip


@cli.command()
@click.argument("ref", callback=_ref)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(obj: dict[str, Any], ref: Ref, as_json: bool) -> None:
    """The whole story of one version: facts, gate runs, deployments, audit trail."""
    story = version_story(_context(obj), ref)
    if as_json:
        _print(story, True)
        return
    version = story["version"]
    for key in (
        "model",
        "version",
        "state",
        "sha256",
        "developer",
        "validator",
        "approver",
        "bento_tag",
        "built_at",
        "registered_at",
    ):
        click.echo(f"{key:>14}: {version[key]}")
    for kind in ("gate_runs", "shadow_runs"):
        click.echo(f"\n{kind.replace('_', ' ')}:")
        click.echo(table(story[kind], ("created_at", "verdict", "compared_with", "report_path")))
    click.echo("\ndeployments:")
    click.echo(table(story["deployments"], ("host", "port", "role", "started_at", "stopped_at")))
    click.echo("\naudit:")
    click.echo(table(story["audit"], _AUDIT_COLUMNS))


_AUDIT_COLUMNS = (
    "id",
    "at",
    "actor",
    "action",
    "model",
    "version",
    "from_state",
    "to_state",
    "outcome",
    "reason",
)


@cli.command()
@click.argument("target", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def audit(obj: dict[str, Any], target: str | None, as_json: bool) -> None:
    """The audit trail (all, MODEL or MODEL:VERSION); `audit verify` checks its hash chain."""
    ctx = _context(obj)
    if target == "verify":
        ok, row, message = ctx.registry.verify_audit()
        if as_json:
            _print({"ok": ok, "first_broken_row": row, "message": message}, True)
        if not ok:
            raise AuditChainBroken(message)
        if not as_json:
            click.echo(message)
        return
    _print(audit_rows(ctx, target), as_json, _AUDIT_COLUMNS)


@cli.command()
@click.option("--host", help="This host's name in the governance DB (BENTOGATE_HOST).")
@click.option("--once", is_flag=True, help="Reconcile once, print the report, exit.")
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
        _print(report.to_json(), True)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    fleet_agent.run(ctx, stop)


@cli.group()
def db() -> None:
    """The governance database schema (Alembic migrations)."""


@db.command()
@click.pass_obj
def upgrade(obj: dict[str, Any]) -> None:
    """Run the migrations up to the newest schema (idempotent)."""
    ctx = _context(obj)
    ctx.registry.upgrade()
    click.echo(f"schema at {ctx.registry.schema_revision()}")


@cli.command()
@click.option("--keep-running", is_flag=True, help="Leave HAProxy and the live Bento up.")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=Path("demo-data"),
    show_default=True,
    help="Where the demo writes its models and data.",
)
@click.pass_obj
def demo(obj: dict[str, Any], keep_running: bool, workdir: Path) -> None:
    """The whole story: train v1 and v2, v1 to production, then v2 through gate and cutover."""
    from bentogate.demo import run_demo

    ctx = _context(obj)
    run_demo(ctx, workdir, keep_running=keep_running, progress=_echo)
    if keep_running:
        _say_warm(ctx)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turn bentogate errors into a message and exit code."""
    run: Callable[..., Any] = cli.main
    try:
        run(args=argv, prog_name="bentogate", standalone_mode=False)
    except click.exceptions.Abort:
        _echo("aborted")
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BentogateError as exc:
        _echo(f"error: {exc}")
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
