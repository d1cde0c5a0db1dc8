"""The release workflow: each step is plain Python over the parts; the CLI only calls these.

register → validate → approve → build → deploy → gate → promote (→ rollback, retire).
Every step checks the governance DB first (it refuses what the lifecycle forbids) and
verifies its effect on the real parts (a Bento is ready, HAProxy reports L7OK, the map
points at the new version) before it records or reports success.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bentogate.context import Context, Ref, artifact_dir
from bentogate.data import read_csv
from bentogate.errors import (
    BentogateError,
    GateFailed,
    GateInconclusive,
    IllegalTransition,
    IntegrityError,
    NotFoundError,
)
from bentogate.modelimport import check_parity, import_xgboost, load_artifact, quality, sha256_file
from bentogate.routing import desired_spec
from bentos.build import VersionSpec, build_bento, containerize, export_bento
from bentos.runtime import Handle
from governance import Role, State, VersionInfo
from loadtest import CapacityResult, GatePolicy, GateResult, Target, find_capacity, run_gate

Progress = Callable[[str], None]

# Quality rule of validation: the candidate may not rank fraud worse than production by more
# than this much AUC on the same holdout.
MAX_AUC_DROP = 0.005


def _quiet(_: str) -> None:
    return None


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
    """Parity (ONNX vs XGBoost) and quality (AUC vs production on one holdout); record both."""
    info = ctx.registry.get_version(ref.model, ref.version)
    artifact = load_artifact(artifact_dir(info.artifact_uri))
    holdout = read_csv(holdout_csv)
    parity = check_parity(artifact)
    measured = quality(artifact, holdout)
    results: dict[str, object] = {"parity": parity, "quality": measured}
    passed = bool(parity["passed"])
    live = ctx.registry.production_version(ref.model)
    if live is not None and live.version != ref.version:
        baseline = quality(load_artifact(artifact_dir(live.artifact_uri)), holdout)
        results["production"] = {"version": live.version, "quality": baseline}
        results["max_auc_drop"] = MAX_AUC_DROP
        passed = passed and measured["auc"] >= baseline["auc"] - MAX_AUC_DROP
    return ctx.registry.validate(
        ref.model, ref.version, actor=actor, results=results, passed=passed
    )


def approve(ctx: Context, ref: Ref, *, actor: str, comment: str = "") -> VersionInfo:
    return ctx.registry.approve(ref.model, ref.version, actor=actor, comment=comment)


def build(
    ctx: Context, ref: Ref, *, actor: str, image_tag: str | None = None
) -> tuple[VersionInfo, Path]:
    """Build the version's Bento (model inside, labels), export its archive, record the build.

    With ``image_tag`` also ``bentoml containerize`` (BuildError where no engine answers).
    Returns the recorded version and the ``.bento`` archive path.
    """
    info = ctx.registry.get_version(ref.model, ref.version)
    if info.approver is None:  # let governance refuse (and audit) before any work is done
        ctx.registry.record_build(ref.model, ref.version, actor=actor, bento_tag=str(ref))
    spec = VersionSpec(
        model=ref.model,
        version=ref.version,
        sha256=info.sha256,
        artifact_dir=artifact_dir(info.artifact_uri),
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
        max_body_bytes=ctx.settings.bento.max_body_bytes,
        max_batch_rows=ctx.settings.bento.max_batch_rows,
    )
    archive = export_bento(ctx.settings.bentoml_home, tag, ctx.settings.bentos_dir)
    if image_tag is not None:
        containerize(ctx.settings.bentoml_home, tag, image_tag)
    recorded = ctx.registry.record_build(
        ref.model, ref.version, actor=actor, bento_tag=tag, image_tag=image_tag
    )
    return recorded, archive


def _start_replicas(
    ctx: Context, ref: Ref, replicas: int, role: Role, *, actor: str
) -> list[Handle]:
    # The bytes about to be served must be the registered ones (audited either way).
    ctx.registry.verify_artifact(
        ref.model, ref.version, actor=actor, sha256=served_sha256(ctx, ref)
    )
    handles: list[Handle] = []
    taken: set[int] = set()
    try:
        for _ in range(replicas):
            port = ctx.free_backend_port(taken)
            taken.add(port)
            handles.append(ctx.runtime.start(str(ref), port))
        for handle in handles:
            ctx.runtime.wait_ready(handle, ctx.settings.bento.ready_timeout_s)
    except BentogateError:
        for handle in handles:
            ctx.runtime.stop(handle, ctx.settings.bento.stop_timeout_s)
        raise
    for handle in handles:
        ctx.registry.record_deployment(
            ref.model,
            ref.version,
            host=ctx.settings.host,
            port=handle.port,
            pid=handle.pid,
            role=role,
            actor=actor,
        )
    return handles


def apply_routes(ctx: Context, live: Mapping[str, str | None] | None = None) -> None:
    """Render the sidecar from the DB and apply it (start or seamless reload); ``live``
    overrides the live route of the models it names (see :func:`routing.desired_spec`)."""
    ctx.sidecar.apply(desired_spec(ctx, live))


def deploy(ctx: Context, ref: Ref, *, actor: str, replicas: int = 1) -> VersionInfo:
    """Serve the built version on its own port(s), add it to HAProxy as the candidate.

    Replicas of it recorded on this host whose process is gone are ended first: deploying
    a running version replaces its dead replicas (its routes stay as they are).
    """
    info = ctx.registry.get_version(ref.model, ref.version)
    if info.bento_tag is None:
        raise NotFoundError(f"{ref} has no Bento yet: run `bentogate build {ref}` first")
    _end_dead(ctx, ref, actor=actor)
    _start_replicas(ctx, ref, replicas, Role.CANDIDATE, actor=actor)
    staged = ctx.registry.stage(ref.model, ref.version, actor=actor)
    apply_routes(ctx)
    ctx.sidecar.wait_healthy(ref.model, ref.version, timeout=ctx.settings.bento.ready_timeout_s)
    ctx.sidecar.switch(ref.model, ref.version, role="candidate")
    return staged


def gate_policy(ctx: Context, model: str) -> GatePolicy:
    """The model's policy from the governance DB, or the settings' default policy."""
    stored = ctx.registry.gate_policy(model)
    return GatePolicy.from_dict(stored) if stored else GatePolicy.from_settings(ctx.settings.gate)


def set_gate_policy(
    ctx: Context, model: str, changes: dict[str, float], *, actor: str
) -> GatePolicy:
    """Store ``changes`` on top of the model's current policy (validated, audited)."""
    policy = GatePolicy.from_dict({**gate_policy(ctx, model).to_dict(), **changes})
    ctx.registry.set_gate_policy(model, policy.to_dict(), actor=actor)
    return policy


def capacity(
    ctx: Context, ref: Ref, *, actor: str, max_rate: float, progress: Progress = _quiet
) -> CapacityResult:
    """Search the highest rate at which the staged version still meets its policy's p99;
    record it in the inventory."""
    model = ctx.registry.get_model(ref.model)
    info = ctx.registry.get_version(ref.model, ref.version)
    artifact = load_artifact(artifact_dir(info.artifact_uri))
    _ensure_running(ctx, ref, Role.CANDIDATE, actor=actor)
    ctx.sidecar.switch(ref.model, ref.version, role="candidate")
    result = find_capacity(
        Target(
            "candidate",
            f"http://127.0.0.1:{ctx.candidate_port(model.production_port)}",
            ref.version,
        ),
        artifact.reference_rows.astype(float).tolist(),
        gate_policy(ctx, ref.model),
        ctx.settings.reports_dir / f"capacity-{ref.model}-{ref.version}-{_stamp()}",
        max_rate=max_rate,
        progress=progress,
    )
    ctx.registry.record_capacity(
        ref.model,
        ref.version,
        actor=actor,
        rate=result.rate,
        details={"limited_by": result.limited_by, "runs": [list(run) for run in result.runs]},
    )
    return result


def gate(ctx: Context, ref: Ref, *, actor: str, progress: Progress = _quiet) -> GateResult:
    """Load-test the candidate through HAProxy (and live in the same run); record the verdict.

    Raises GateFailed (exit 1) or GateInconclusive (exit 2) after recording the run.
    """
    info = ctx.registry.get_version(ref.model, ref.version)
    artifact = load_artifact(artifact_dir(info.artifact_uri))
    ctx.sidecar.wait_healthy(ref.model, ref.version, timeout=10)
    candidate, live_target = gate_targets(ctx, ref)
    policy = gate_policy(ctx, ref.model)
    out_dir = ctx.settings.reports_dir / f"gate-{ref.model}-{ref.version}-{_stamp()}"
    result = run_gate(
        candidate,
        artifact.reference_rows.astype(float).tolist(),
        policy,
        out_dir,
        live=live_target,
        progress=progress,
    )
    ctx.registry.record_gate(
        ref.model,
        ref.version,
        actor=actor,
        policy=policy.to_dict(),
        results=result.to_dict(),
        verdict=result.verdict,
        report_path=str(result.report_html),
        compared_with=live_target.expected_version if live_target else None,
    )
    if result.verdict == "fail":
        raise GateFailed(_gate_refusal("failed", ref, result))
    if result.verdict == "inconclusive":
        raise GateInconclusive(_gate_refusal("inconclusive", ref, result))
    return result


def _gate_refusal(what: str, ref: Ref, result: GateResult) -> str:
    """``gate failed for fraud:2: <reason>; <reason> (report: <path>)``: why, with the
    measured and the allowed values, and where the whole report is."""
    return f"gate {what} for {ref}: " + "; ".join(result.reasons) + (
        f" (report: {result.report_html})"
    )


def gate_targets(ctx: Context, ref: Ref) -> tuple[Target, Target | None]:
    """What the gate drives for ``ref``: the candidate through HAProxy's candidate port, and
    the production version (if another) through the production port, as clients reach it."""
    model = ctx.registry.get_model(ref.model)
    candidate = Target(
        "candidate", f"http://127.0.0.1:{ctx.candidate_port(model.production_port)}", ref.version
    )
    live = ctx.registry.production_version(ref.model)
    if live is None or live.version == ref.version:
        return candidate, None
    port = ctx.production_port(model.production_port)
    return candidate, Target("live", f"http://127.0.0.1:{port}", live.version)


def _stamp() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S")


def served_sha256(ctx: Context, ref: Ref) -> str:
    """sha256 of the model file inside the Bento store (what would actually be served)."""
    path = ctx.settings.bentoml_home / "models" / ref.model / ref.version / "model.onnx"
    if not path.is_file():
        raise IntegrityError(f"{ref}: no model file in the Bento store at {path}")
    return sha256_file(path)


def _handles(ctx: Context, model: str, version: str) -> list[tuple[int, Handle]]:
    return [
        (d.id, ctx.handle(f"{model}:{version}", d.port, d.pid))
        for d in ctx.registry.deployments(host=ctx.settings.host, model=model)
        if d.version == version
    ]


def stop_version(ctx: Context, ref: Ref, *, actor: str) -> None:
    """Drain a version in HAProxy (in-flight requests finish), stop its Bentos, record it.
    The caller re-renders HAProxy (:func:`apply_routes`) once it has stopped what it stops."""
    ctx.sidecar.drain(ref.model, ref.version)
    for deployment_id, handle in _handles(ctx, ref.model, ref.version):
        ctx.runtime.stop(handle, ctx.settings.bento.stop_timeout_s)
        ctx.registry.end_deployment(deployment_id, actor=actor)


def _cut_over(ctx: Context, ref: Ref, previous: VersionInfo | None, *, actor: str) -> None:
    """Switch the production port to ``ref``; the version it leaves stops now, or stays warm
    (unrouted, health-checked) for ``bento.keep_previous_s`` (see :mod:`bentogate.warm`)."""
    ctx.sidecar.wait_healthy(ref.model, ref.version, timeout=10)
    ctx.sidecar.switch(ref.model, ref.version, role="live")
    keep_warm = ctx.settings.bento.keep_previous_s > 0
    if previous is not None and previous.version != ref.version and not keep_warm:
        stop_version(ctx, Ref(ref.model, previous.version), actor=actor)
    apply_routes(ctx)


def _end_dead(ctx: Context, ref: Ref, *, actor: str) -> list[Handle]:
    """End the records of ``ref``'s deployments on this host whose process is gone (a
    crash, a kill, a reboot); returns the handles of those alive."""
    alive = []
    for deployment_id, handle in _handles(ctx, ref.model, ref.version):
        if ctx.runtime.is_alive(handle):
            alive.append(handle)
        else:
            ctx.registry.end_deployment(deployment_id, actor=actor)
    return alive


def _ensure_running(ctx: Context, ref: Ref, role: Role, *, actor: str) -> None:
    """Start the version (one replica) if this host runs none of it alive; wait until it is
    healthy."""
    if not _end_dead(ctx, ref, actor=actor):
        _start_replicas(ctx, ref, 1, role, actor=actor)
        apply_routes(ctx)
    ctx.sidecar.wait_healthy(ref.model, ref.version, timeout=ctx.settings.bento.ready_timeout_s)


def promote(ctx: Context, ref: Ref, *, actor: str) -> VersionInfo:
    """Blue-green: the gated candidate takes the production port; the old live drains and
    stays warm (``bento.keep_previous_s``).

    The DB decides first (approval for the served sha256, a passed gate newer than the build,
    one production version, promotions serialized); then HAProxy switches and confirms.
    """
    with ctx.host_lock():
        previous = ctx.registry.production_version(ref.model)
        if ctx.registry.get_version(ref.model, ref.version).state == State.GATED:
            # Warm and healthy before the DB records anything (governance still decides).
            _ensure_running(ctx, ref, Role.CANDIDATE, actor=actor)
        promoted = ctx.registry.promote(
            ref.model, ref.version, actor=actor, sha256=served_sha256(ctx, ref)
        )
        try:
            _cut_over(ctx, ref, previous, actor=actor)
        except BentogateError:
            # HAProxy refused the switch: the DB must keep saying what really serves traffic.
            if previous is not None:
                ctx.registry.rollback(ref.model, actor=actor)
            raise
    return promoted


def rollback(ctx: Context, model: str, *, actor: str) -> VersionInfo:
    """The previous production version takes the production port back: at once while it is
    still warm (``bento.keep_previous_s``), else restarted first."""
    with ctx.host_lock():
        current = ctx.registry.production_version(model)
        previous = ctx.registry.previous_version(model)
        if previous is None:
            raise NotFoundError(f"{model} has no previous production version to roll back to")
        ref = Ref(model, previous.version)
        _ensure_running(ctx, ref, Role.PREVIOUS, actor=actor)
        # Checked like a promotion: the bytes about to take traffic are the approved ones.
        restored = ctx.registry.rollback(model, actor=actor, sha256=served_sha256(ctx, ref))
        _cut_over(ctx, ref, current, actor=actor)
    return restored


def retire(ctx: Context, ref: Ref, *, actor: str, reason: str) -> VersionInfo:
    """Stop every Bento of a (non-production) version and mark it retired; history stays."""
    with ctx.host_lock():
        retired = ctx.registry.retire(ref.model, ref.version, actor=actor, reason=reason)
        if _handles(ctx, ref.model, ref.version):
            stop_version(ctx, ref, actor=actor)
            apply_routes(ctx)
    return retired


@dataclass(frozen=True)
class Actors:
    """Who does what in a release: different people (separation of duties)."""

    developer: str = "dev"
    validator: str = "validator"
    approver: str = "approver"
    release: str = "release-engineer"


def next_step(info: VersionInfo) -> str | None:
    """The release step a version in this state needs next; None once it is in production."""
    state = str(info.state)
    if state == "approved":
        return "deploy" if info.bento_tag else "build"
    steps = {
        "registered": "validate",
        "validated": "approve",
        "staged": "gate",
        "gated": "promote",
        "production": None,
    }
    if state not in steps:
        raise IllegalTransition(f"{info.model}:{info.version} is {state}: it cannot be released")
    return steps[state]


def release(
    ctx: Context, ref: Ref, holdout_csv: Path, *, actors: Actors, progress: Progress = _quiet
) -> VersionInfo:
    """validate → approve → build → deploy → gate → promote, resuming from the version's state.

    Stops at the first failed step by raising that step's error (its message is the reason).
    """
    run: dict[str, Callable[[], object]] = {
        "validate": lambda: validate(ctx, ref, holdout_csv, actor=actors.validator),
        "approve": lambda: approve(ctx, ref, actor=actors.approver),
        "build": lambda: build(ctx, ref, actor=actors.release),
        "deploy": lambda: deploy(ctx, ref, actor=actors.release),
        "gate": lambda: gate(ctx, ref, actor=actors.release, progress=progress),
        "promote": lambda: promote(ctx, ref, actor=actors.release),
    }
    while (step := next_step(ctx.registry.get_version(ref.model, ref.version))) is not None:
        progress(f"{ref}: {step}")
        run[step]()
        if next_step(ctx.registry.get_version(ref.model, ref.version)) == step:
            raise IllegalTransition(f"{ref}: {step} did not advance the version")
    return ctx.registry.get_version(ref.model, ref.version)


def shutdown(ctx: Context) -> None:
    """Stop every Bento this host runs and its HAProxy; the DB records them as stopped."""
    for deployment in ctx.registry.deployments(host=ctx.settings.host):
        handle = ctx.handle(
            f"{deployment.model}:{deployment.version}", deployment.port, deployment.pid
        )
        ctx.runtime.stop(handle, ctx.settings.bento.stop_timeout_s)
        ctx.registry.end_deployment(deployment.id)
    ctx.sidecar.stop()
