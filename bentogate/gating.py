"""The evidence a promotion waits for: the model's gate policy, the load gate, the shadow
run and the capacity search. Each measures with ``loadtest``, records the run in the
governance DB and, for the gate and shadow, refuses (raises) unless its verdict is a pass.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bentogate import host
from bentogate.context import Context, Progress, Ref, artifact_dir, no_progress
from bentogate.errors import (
    BentogateError,
    GateFailed,
    GateInconclusive,
    NotFoundError,
    ShadowFailed,
    ShadowInconclusive,
)
from bentogate.governance import Role, Verdict
from bentogate.loadtest import (
    CapacityResult,
    GatePolicy,
    GateResult,
    ShadowResult,
    Target,
    find_capacity,
    run_gate,
    run_shadow,
)
from bentogate.modelimport import load_artifact

#: seconds between an inconclusive gate run and the next: a burst on the host may pass
RERUN_PAUSE_S = 5.0


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
    ctx: Context, ref: Ref, *, actor: str, max_rate: float, progress: Progress = no_progress
) -> CapacityResult:
    """Search the highest rate at which the staged version still meets its policy's p99;
    record it in the inventory."""
    rows = _reference_rows(ctx, ref)
    host.ensure_running(ctx, ref, Role.CANDIDATE, actor=actor, progress=progress)
    host.route_candidate(ctx, ref)
    candidate, _ = gate_targets(ctx, ref)
    policy = gate_policy(ctx, ref.model)
    out_dir = _report_dir(ctx, "capacity", ref)
    result = find_capacity(candidate, rows, policy, out_dir, max_rate=max_rate, progress=progress)
    ctx.registry.record_capacity(
        ref.model,
        ref.version,
        actor=actor,
        rate=result.rate,
        details={"limited_by": result.limited_by, "runs": [list(run) for run in result.runs]},
    )
    return result


def gate(ctx: Context, ref: Ref, *, actor: str, progress: Progress = no_progress) -> GateResult:
    """Load-test the candidate through HAProxy (and live in the same run); record the verdict.

    A run that ends inconclusive is no verdict (a busy host, an interval on its limit): after
    :data:`RERUN_PAUSE_S` the gate measures again in a new run, up to the policy's
    ``max_runs`` runs in all, each recorded; a pass or a fail ends it. Raises GateFailed or
    GateInconclusive after recording the last run; its ``details`` are :func:`run_fields`.
    """
    rows = _reference_rows(ctx, ref)
    policy = gate_policy(ctx, ref.model)
    for run in range(1, policy.max_runs + 1):
        result = _gate_run(ctx, ref, rows, policy, actor=actor, progress=progress)
        if result.verdict != Verdict.INCONCLUSIVE or run == policy.max_runs:
            break
        progress(
            f"gate inconclusive for {ref} ({'; '.join(result.reasons)}): no verdict, so a new "
            f"run in {RERUN_PAUSE_S:g} s (run {run + 1} of max_runs={policy.max_runs})"
        )
        time.sleep(RERUN_PAUSE_S)
    _refuse_unless_passed("gate", ref, result, GateFailed, GateInconclusive, runs=run)
    return result


def _gate_run(
    ctx: Context,
    ref: Ref,
    rows: list[list[float]],
    policy: GatePolicy,
    *,
    actor: str,
    progress: Progress,
) -> GateResult:
    """One gate run of ``ref`` under ``policy``, recorded in the governance DB."""
    host.wait_healthy(ctx, ref, progress=progress)
    candidate, live_target = gate_targets(ctx, ref)
    progress(_gate_line(ref, policy, candidate, live_target))
    out_dir = _report_dir(ctx, "gate", ref)
    result = run_gate(candidate, rows, policy, out_dir, live=live_target, progress=progress)
    ctx.registry.record_gate(
        ref.model,
        ref.version,
        actor=actor,
        **_stored(policy, result),
        compared_with=live_target.expected_version if live_target else None,
    )
    return result


def shadow(ctx: Context, ref: Ref, *, actor: str) -> ShadowResult:
    """Score the recent rows of live clients (kept by the live Bentos of this host) on the
    candidate and on live, compare, judge with the model's policy; record the run.

    Raises NotFoundError without a live version or without kept rows, ShadowFailed or
    ShadowInconclusive after recording the run; its ``details`` are :func:`run_fields`.
    """
    info = ctx.registry.get_version(ref.model, ref.version)
    live = ctx.registry.production_version(ref.model)
    if live is None or live.version == ref.version:
        raise NotFoundError(f"{ref}: no other production version to shadow against")
    sources = host.recent_rows(ctx, Ref(ref.model, live.version))
    rows = [row for kept in sources.values() for row in kept.rows.tolist()]
    if not rows:
        raise NotFoundError(
            f"{ref}: the live {ref.model}:{live.version} kept no recent client rows on this "
            "host (bento.recent_rows; rows are kept in memory, a restart loses them)"
        )
    host.wait_healthy(ctx, ref)
    candidate, live_target = gate_targets(ctx, ref)
    assert live_target is not None  # a production version other than ref exists
    policy = gate_policy(ctx, ref.model)
    result = run_shadow(
        candidate,
        live_target,
        rows,
        info.threshold,
        policy,
        _report_dir(ctx, "shadow", ref),
        sources={str(port): len(kept) for port, kept in sources.items()},
    )
    ctx.registry.record_shadow(
        ref.model, ref.version, actor=actor, **_stored(policy, result), compared_with=live.version
    )
    _refuse_unless_passed("shadow", ref, result, ShadowFailed, ShadowInconclusive)
    return result


def needs_shadow(ctx: Context, ref: Ref) -> bool:
    """True if the model's policy requires a shadow run that ``ref`` has not passed since
    its build (a model's first version has nothing to be shadowed against)."""
    if not gate_policy(ctx, ref.model).require_shadow:
        return False
    live = ctx.registry.production_version(ref.model)
    if live is None or live.version == ref.version:
        return False
    built = ctx.registry.get_version(ref.model, ref.version).built_at
    return not any(
        run.verdict == Verdict.PASS and built is not None and run.created_at > built
        for run in ctx.registry.shadow_runs(ref.model, ref.version)
    )


def _gate_line(ref: Ref, policy: GatePolicy, candidate: Target, live: Target | None) -> str:
    """What the gate does now, e.g. "gate fraud:2: 200 req/s for 20 s (+3 s warm-up) on
    the candidate port :10001 and on live 1's :10000"."""
    load = f"{policy.rate:g} req/s for {policy.duration_s:g} s (+{policy.warmup_s:g} s warm-up)"
    where = f"the candidate port :{candidate.url.rsplit(':', 1)[-1]}"
    if live is not None:
        where += f" and on live {live.expected_version}'s :{live.url.rsplit(':', 1)[-1]}"
    return f"gate {ref}: {load} on {where}"


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
    port = model.production_port
    return candidate, Target("live", f"http://127.0.0.1:{port}", live.version)


def _reference_rows(ctx: Context, ref: Ref) -> list[list[float]]:
    """What the load sends: the version's reference rows, stored with its artifact."""
    info = ctx.registry.get_version(ref.model, ref.version)
    return load_artifact(artifact_dir(info.artifact_uri)).reference_rows.astype(float).tolist()


def _stored(policy: GatePolicy, result: GateResult | ShadowResult) -> dict[str, Any]:
    """What the record of a gate or shadow run holds besides whom it was compared with
    (``Registry.record_gate`` / ``record_shadow``)."""
    return {
        "policy": policy.to_dict(),
        "results": result.to_dict(),
        "verdict": result.verdict,
        "report_path": str(result.report_html),
    }


def run_fields(ref: Ref, result: GateResult | ShadowResult) -> dict[str, Any]:
    """What a gate or shadow run of ``ref`` reports (``--json``, and the ``details`` of its
    refusal): model, version and the run's ``to_dict()`` (verdict, reasons, figures or
    comparison, policy, report paths)."""
    return {"model": ref.model, "version": ref.version, **result.to_dict()}


def _refuse_unless_passed(
    what: str,
    ref: Ref,
    result: GateResult | ShadowResult,
    failed: type[BentogateError],
    inconclusive: type[BentogateError],
    *,
    runs: int = 1,
) -> None:
    """Raise ``failed`` if the (last of ``runs``) run failed, ``inconclusive`` if it was, as
    ``<what> failed for fraud:2: <reason>; <reason> (report: <path>)``, or ``... for fraud:2
    in 2 runs: ...``: why, with the measured and the allowed values, and where the whole
    report is."""
    in_runs = f" in {runs} runs" if runs > 1 else ""
    why = f"for {ref}{in_runs}: {'; '.join(result.reasons)} (report: {result.report_html})"
    if result.verdict == Verdict.FAIL:
        raise failed(f"{what} failed {why}", details=run_fields(ref, result))
    if result.verdict == Verdict.INCONCLUSIVE:
        raise inconclusive(f"{what} inconclusive {why}", details=run_fields(ref, result))


def _report_dir(ctx: Context, kind: str, ref: Ref) -> Path:
    """A new report directory for one ``kind`` of run (gate, shadow, capacity) of ``ref``."""
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return ctx.settings.reports_dir / f"{kind}-{ref.model}-{ref.version}-{stamp}"
