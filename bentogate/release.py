"""The release workflow: each step is plain Python over the parts; the CLI only calls these.

register → validate → approve → build → deploy → gate → promote (→ rollback, retire); the
evidence steps (gate, shadow, capacity, the gate policy) are in :mod:`bentogate.gating`.
Every step checks the governance DB first (it refuses what the lifecycle forbids) and
verifies its effect on the real parts (a Bento is ready, HAProxy reports L7OK, the map
points at the new version) before it records or reports success.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bentogate import host, warm
from bentogate.bentos import VersionSpec, base_image, build_bento, export_bento
from bentogate.bentos import containerize as containerize_bento
from bentogate.context import Context, Progress, Ref, artifact_dir, no_progress
from bentogate.data import read_csv
from bentogate.errors import BentogateError, IllegalTransition, NotFoundError, ValidationFailed
from bentogate.gating import gate, gate_policy, needs_shadow, shadow
from bentogate.governance import (
    Action,
    DeploymentInfo,
    Role,
    State,
    VersionInfo,
    next_release_action,
)
from bentogate.modelimport import (
    check_parity,
    import_xgboost,
    load_artifact,
    quality,
    sha256_file,
)


def init(ctx: Context) -> None:
    """Create the state directories and bring the governance DB to the newest schema."""
    ctx.registry.upgrade()


def register(
    ctx: Context,
    model: str,
    model_file: Path,
    reference_csv: Path,
    *,
    developer: str,
    owner: str | None = None,
    purpose: str = "",
    threshold: float = 0.5,
    version: str | None = None,
) -> VersionInfo:
    """Import an XGBoost model file (ONNX export + parity) and register it as a new version."""
    artifact = import_xgboost(
        model_file, read_csv(reference_csv), ctx.settings.artifacts_dir, threshold=threshold
    )
    try:
        port = ctx.registry.get_model(model).production_port
    except NotFoundError:
        port = ctx.next_production_port()
    ctx.registry.ensure_model(
        model, owner=owner or developer, production_port=port, actor=developer, purpose=purpose
    )
    return ctx.registry.register_version(
        model,
        sha256=artifact.sha256,
        feature_names=list(artifact.feature_names),
        threshold=artifact.threshold,
        metrics={"import_parity_max_abs_diff": artifact.parity_max_abs_diff},
        developer=developer,
        artifact_uri=str(artifact.directory.resolve()),
        version=version,
    )


def validate(ctx: Context, ref: Ref, holdout_csv: Path, *, actor: str) -> VersionInfo:
    """Parity (ONNX vs XGBoost) and quality (AUC vs production on one holdout); record both.

    Returns the validated version; raises ValidationFailed (after recording the rejection)
    naming the failed check with its measured and allowed values.
    """
    info = ctx.registry.get_version(ref.model, ref.version)
    artifact = load_artifact(artifact_dir(info.artifact_uri))
    holdout = read_csv(holdout_csv)
    parity = check_parity(artifact)
    measured = quality(artifact, holdout)
    results: dict[str, object] = {"parity": parity, "quality": measured}
    failures = [] if parity["passed"] else [f"parity max |Δ| {parity['max_abs_diff']:.3g}"]
    live = ctx.registry.production_version(ref.model)
    if live is not None and live.version != ref.version:
        baseline = quality(load_artifact(artifact_dir(live.artifact_uri)), holdout)
        max_drop = gate_policy(ctx, ref.model).max_auc_drop
        results["production"] = {"version": live.version, "quality": baseline}
        results["max_auc_drop"] = max_drop
        if measured["auc"] < baseline["auc"] - max_drop:
            failures.append(
                f"AUC {measured['auc']:.4f} < production {live.version}'s "
                f"{baseline['auc']:.4f} - {max_drop:g}"
            )
    recorded = ctx.registry.validate(
        ref.model,
        ref.version,
        actor=actor,
        results=results,
        passed=not failures,
        why="; ".join(failures),
    )
    if failures:
        facts = {"model": ref.model, "version": ref.version, "state": recorded.state}
        raise ValidationFailed(
            f"{ref} rejected by validation: {'; '.join(failures)}",
            details={**facts, "metrics": results},
        )
    return recorded


def approve(ctx: Context, ref: Ref, *, actor: str, comment: str = "") -> VersionInfo:
    return ctx.registry.approve(ref.model, ref.version, actor=actor, comment=comment)


def build(
    ctx: Context,
    ref: Ref,
    *,
    actor: str,
    containerize: bool = False,
    progress: Progress = no_progress,
) -> tuple[VersionInfo, Path]:
    """Build the version's Bento (model inside, labels), export its archive, record the build.

    With ``containerize`` also its image, by BentoML's containerize with the engine of
    ``container`` settings, tagged ``<repository>/<model>:<version>``; its id is recorded
    (BuildError where no engine works or the base image is missing; the Bento stays built).
    Returns the recorded version and the ``.bento`` archive path.
    """
    info = ctx.registry.get_version(ref.model, ref.version)
    if info.approver is None:  # let governance refuse (and audit) before any work is done
        ctx.registry.record_build(ref.model, ref.version, actor=actor, bento_tag=str(ref))
    directory = artifact_dir(info.artifact_uri)
    onnx = load_artifact(directory).onnx_path
    measured = sha256_file(onnx) if onnx.is_file() else "none (no such file)"
    # the bytes about to be built in are the approved ones (refused and audited otherwise)
    ctx.registry.verify_artifact(
        ref.model, ref.version, actor=actor, sha256=measured, what=f"artifact {onnx}"
    )
    spec = VersionSpec(
        model=ref.model,
        version=ref.version,
        sha256=info.sha256,
        artifact_dir=directory,
        labels={
            "model": ref.model,
            "version": ref.version,
            "sha256": info.sha256,
            "approved-by": info.approver or "",
        },
    )
    tag = build_bento(
        ctx.project_dir,
        ctx.settings.bentoml_home,
        spec,
        args=ctx.settings.bento.build_args(),
        base_image=base_image(ctx.settings.container),
        progress=progress,
    )
    progress(f"exporting {tag} to {ctx.settings.bentos_dir}")
    archive = export_bento(ctx.settings.bentoml_home, tag, ctx.settings.bentos_dir)
    image_tag = image_id = None
    if containerize:
        image_tag = ctx.settings.container.image_tag(ref.model, ref.version)
        image_id = containerize_bento(
            ctx.settings.bentoml_home, tag, image_tag, ctx.settings.container, progress=progress
        )
    recorded = ctx.registry.record_build(
        ref.model, ref.version, actor=actor, bento_tag=tag, image_tag=image_tag, image_id=image_id
    )
    return recorded, archive


def deploy(
    ctx: Context,
    ref: Ref,
    *,
    actor: str,
    replicas: int | None = None,
    progress: Progress = no_progress,
) -> VersionInfo:
    """Serve the built version on its own port(s), add it to HAProxy as the candidate:
    ``replicas`` more of it (default ``bento.replicas``: one per core of the host).

    Replicas of it recorded on this host whose process is gone are ended first: deploying
    a running version replaces its dead replicas (its routes stay as they are).
    """
    info = ctx.registry.get_version(ref.model, ref.version)
    if info.bento_tag is None:
        raise NotFoundError(f"{ref} has no Bento yet: run `bentogate build {ref}` first")
    host.end_dead(ctx, ref, actor=actor)
    # A replica of the production version serves it: live, so the next cutover demotes it.
    role = Role.LIVE if info.state == State.PRODUCTION else Role.CANDIDATE
    started = host.start(ctx, ref, replicas=replicas, role=role, actor=actor, progress=progress)
    try:
        host.apply_routes(ctx, progress=progress)
        host.wait_healthy(ctx, ref, progress=progress)
        host.route_candidate(ctx, ref)
    except BentogateError:
        # HAProxy refused the new servers: they stop, and the DB keeps saying what serves.
        host.stop_deployments(ctx, started, actor=actor)
        host.apply_routes(ctx)
        raise
    return ctx.registry.stage(ref.model, ref.version, actor=actor)


def promote(ctx: Context, ref: Ref, *, actor: str, progress: Progress = no_progress) -> VersionInfo:
    """Blue-green: the gated candidate takes the production port; the old live drains and
    stays warm (``bento.keep_previous_s``; its expiry is scheduled, :func:`warm.schedule_expiry`).

    The DB decides first (approval for the served sha256, a passed gate newer than the build,
    one production version, promotions serialized); then HAProxy switches and confirms. If
    HAProxy refuses, the DB is put back to what HAProxy routes and the error is raised.
    """
    with ctx.host_lock():
        previous = ctx.registry.production_version(ref.model)
        if ctx.registry.get_version(ref.model, ref.version).state == State.GATED:
            # Warm and healthy before the DB records anything (governance still decides).
            host.ensure_running(ctx, ref, Role.CANDIDATE, actor=actor, progress=progress)
        promoted = ctx.registry.promote(
            ref.model, ref.version, actor=actor, sha256=host.served_sha256(ctx, ref)
        )
        leaving = previous.version if previous is not None else None
        _cut_over_or_restore(ctx, ref, leaving, actor=actor, progress=progress)
    warm.schedule_expiry(ctx)
    return promoted


def rollback(
    ctx: Context,
    model: str,
    *,
    actor: str,
    reason: str | None = None,
    evidence: dict[str, object] | None = None,
    replacing: str | None = None,
    progress: Progress = no_progress,
) -> VersionInfo:
    """The previous production version takes the production port back: at once while it is
    still warm (``bento.keep_previous_s``), else restarted first. If HAProxy refuses, the DB
    is put back to what HAProxy routes and the error is raised. With ``evidence`` it is an
    automatic rollback (the bake watcher's): audited with ``reason`` and those figures, and
    the version it replaces needs a new passed gate before it can take production again.
    With ``replacing``, only while that version is production (ConcurrentChange otherwise)."""
    with ctx.host_lock():
        current = ctx.registry.production_version(model)
        previous = ctx.registry.previous_version(model)
        if previous is None:
            raise NotFoundError(f"{model} has no previous production version to roll back to")
        ref = Ref(model, previous.version)
        host.ensure_running(ctx, ref, Role.PREVIOUS, actor=actor, progress=progress)
        # Checked like a promotion: the bytes about to take traffic are the approved ones.
        restored = ctx.registry.rollback(
            model,
            actor=actor,
            sha256=host.served_sha256(ctx, ref),
            reason=reason,
            evidence=evidence,
            replacing=replacing,
        )
        leaving = current.version if current is not None else None
        if evidence is None:
            _cut_over_or_restore(ctx, ref, leaving, actor=actor, progress=progress)
        else:
            _cut_over_insisting(ctx, ref, leaving, actor=actor)
    warm.schedule_expiry(ctx)
    return restored


def _cut_over_or_restore(
    ctx: Context, ref: Ref, leaving: str | None, *, actor: str, progress: Progress
) -> None:
    """Cut over to ``ref`` (just made production in the DB). If that fails and HAProxy still
    routes ``leaving``, the DB takes ``leaving`` back (a rollback, audited), so the record
    always names what clients are served; then the error is raised."""
    try:
        host.cut_over(ctx, ref, leaving=leaving, actor=actor, progress=progress)
    except BentogateError:
        if leaving is not None and host.routed(ctx).get(ref.model) == leaving:
            ctx.registry.rollback(ref.model, actor=actor)
        raise


def _cut_over_insisting(
    ctx: Context, ref: Ref, leaving: str | None, *, actor: str, attempts: int = 3
) -> None:
    """An automatic rollback's cutover: the DB has taken the failing version out and must
    not put it back (the bake rule refuses that), so HAProxy is asked again, up to
    ``attempts`` times, a second apart; the last error is raised if it never agrees."""
    for attempt in range(1, attempts + 1):
        try:
            host.cut_over(ctx, ref, leaving=leaving, actor=actor)
            return
        except BentogateError:
            if attempt == attempts:
                raise
            time.sleep(1.0)


def retire(ctx: Context, ref: Ref, *, actor: str, reason: str) -> VersionInfo:
    """Stop every Bento of a (non-production) version and mark it retired; history stays."""
    with ctx.host_lock():
        retired = ctx.registry.retire(ref.model, ref.version, actor=actor, reason=reason)
        if host.stop(ctx, ref, actor=actor):
            host.apply_routes(ctx)
    return retired


@dataclass(frozen=True)
class Actors:
    """Who does what in a release: different people (separation of duties)."""

    developer: str = "dev"
    validator: str = "validator"
    approver: str = "approver"
    release: str = "release-engineer"


def next_step(ctx: Context, info: VersionInfo) -> Action | None:
    """The release step a version in this state needs next (read off the lifecycle table,
    :func:`bentogate.governance.next_release_action`); None once it is in production. Raises
    IllegalTransition for a version off the release path (retired; rejected, naming the
    measured reason its rejection was recorded with)."""
    try:
        return next_release_action(info.state, built=info.bento_tag is not None)
    except IllegalTransition as exc:
        why = ctx.registry.rejection(info.model, info.version)
        because = f"; {why}" if why else ""
        raise IllegalTransition(f"{info.ref}: {exc}{because}") from None


def release(
    ctx: Context, ref: Ref, holdout_csv: Path, *, actors: Actors, progress: Progress = no_progress
) -> VersionInfo:
    """validate → approve → build → deploy → gate → promote, resuming from the version's state.

    Stops at the first failed step by raising that step's error (its message is the reason).
    """
    run: dict[Action, Callable[[], object]] = {
        Action.VALIDATE: lambda: validate(ctx, ref, holdout_csv, actor=actors.validator),
        Action.APPROVE: lambda: approve(ctx, ref, actor=actors.approver),
        Action.BUILD: lambda: build(
            ctx, ref, actor=actors.release, containerize=ctx.containers, progress=progress
        ),
        Action.STAGE: lambda: deploy(ctx, ref, actor=actors.release, progress=progress),
        Action.GATE: lambda: gate(ctx, ref, actor=actors.release, progress=progress),
        Action.PROMOTE: lambda: promote(ctx, ref, actor=actors.release, progress=progress),
    }
    while (step := next_step(ctx, ctx.registry.get_version(ref.model, ref.version))) is not None:
        if step == Action.PROMOTE and needs_shadow(ctx, ref):
            progress(f"{ref}: shadow")  # the policy asks for live evidence first
            shadow(ctx, ref, actor=actors.release)
        progress(f"{ref}: {_STEP_NAMES.get(step, step)}")
        run[step]()
        if next_step(ctx, ctx.registry.get_version(ref.model, ref.version)) == step:
            raise IllegalTransition(f"{ref}: {step} did not advance the version")
    return ctx.registry.get_version(ref.model, ref.version)


#: the CLI command of each release action, where its name differs.
_STEP_NAMES = {Action.STAGE: "deploy"}


def shutdown(ctx: Context, *, actor: str) -> list[DeploymentInfo]:
    """Stop every Bento this host runs, its HAProxy and its pending warm-version expiry; the
    DB records the Bentos as stopped. Returns the deployments stopped."""
    warm.cancel_expiry(ctx)
    return host.stop_all(ctx, actor=actor)
