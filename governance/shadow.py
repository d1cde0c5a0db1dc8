"""Shadow scoring's evidence: a version's shadow runs (its scores compared with the production
version's on the same live requests) and the release rule they feed.

A shadow run changes no state: a failed one does not reject the version. When the model's gate
policy says ``"require_shadow": true``, a promotion needs a *passed* run newer than the
version's build (:func:`release_evidence`, called by :mod:`bentogate.governance.promotion`).
Recording a run is an audited attempt like a gate run's; its policy and figures are strict JSON,
opaque to governance (the shadow part owns their keys).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from bentogate.errors import GovernanceError, IllegalTransition
from bentogate.governance import queries, records
from bentogate.governance.attempt import Attempt
from bentogate.governance.documents import RunReport, json_copy
from bentogate.governance.lifecycle import move
from bentogate.governance.records import ShadowRunInfo
from bentogate.governance.schema import Model, ShadowRun, Version
from bentogate.governance.states import Action, State, Verdict, check_transition

#: the gate policy's key that makes a passed shadow run a condition of promotion
REQUIRE_SHADOW = "require_shadow"
SHADOW_RULE = f"policy {REQUIRE_SHADOW}"


def record(session: Session, attempt: Attempt, run: RunReport) -> ShadowRunInfo:
    """Store a shadow run of a staged/gated version against the production version; the
    version's state does not change. Refuses other states (lifecycle), a verdict that is not
    pass/fail/inconclusive, ``compared_with`` other than the production version, and a policy
    or results that are not strict JSON."""
    model, row = queries.locked_version(session, attempt)
    attempt.payload.update(
        verdict=run.verdict, report_path=run.report_path, compared_with=run.compared_with
    )
    current = attempt.to_state = State(row.state)
    check_transition(Action.SHADOW, current, current, subject=attempt.subject)
    if run.verdict not in set(Verdict):
        attempt.refuse(
            GovernanceError,
            f"verdict {run.verdict!r} is not pass, fail or inconclusive",
            "shadow verdicts",
        )
    verdict = Verdict(run.verdict)
    policy = json_copy(attempt, run.policy, "policy")
    results = json_copy(attempt, run.results, "results")
    live = queries.production_row(session, model)
    if live is None or live.version != run.compared_with:
        now = "none" if live is None else f"{model.name}:{live.version}"
        attempt.refuse(
            GovernanceError,
            f"compared with {model.name}:{run.compared_with}, but the production version is {now}",
            "a shadow run compares with the live version",
        )
    stored = ShadowRun(
        version_id=row.id,
        actor=attempt.actor,
        verdict=verdict,
        policy=policy,
        results=results,
        report_path=run.report_path,
        compared_with=live.version,
        created_at=attempt.now(),
    )
    session.add(stored)
    session.flush()
    attempt.payload["shadow_run_id"] = stored.id
    reason = f"shadow {verdict} against {model.name}:{live.version}"
    move(session, attempt, row, current, reason)
    return records.shadow_info(stored, model.name, row.version)


def release_evidence(session: Session, attempt: Attempt, row: Version) -> dict[str, object]:
    """Return the shadow evidence for ``row`` going into production, for the audit payload:
    ``{}`` unless the model's gate policy has ``"require_shadow": true``; else the id of the
    latest passed shadow run newer than the build (``shadow_run_id``).

    Waived, and said so in ``shadow_waived``, for a rollback (it returns a version that was
    production before, to the warm copy; a new shadow run would compare it with the version
    being rolled back) and for a model's first release (no live version to compare with).
    Raises :class:`IllegalTransition` naming the rule otherwise. The build is checked first
    (:func:`bentogate.governance.promotion.check_release_rules`).
    """
    model: Model = row.model
    policy = model.gate_policy.policy if model.gate_policy is not None else {}
    if policy.get(REQUIRE_SHADOW) is not True:
        return {}
    assert row.built_at is not None
    last = queries.latest_pass(session, ShadowRun, row)
    newer = last if last is not None and last.created_at > row.built_at else None
    evidence: dict[str, object] = {"shadow_run_id": newer.id if newer is not None else None}
    if attempt.action == Action.ROLLBACK:
        return {**evidence, "shadow_waived": "a rollback returns a former production version"}
    if queries.production_row(session, model) is None:
        return {**evidence, "shadow_waived": "first release: no live version to compare with"}
    if newer is None:
        stale = ""
        if last is not None:
            stale = f"; last pass {last.created_at.isoformat()}, build {row.built_at.isoformat()}"
        attempt.refuse(
            IllegalTransition,
            f"{attempt.subject} has no passed shadow run newer than its build{stale}",
            SHADOW_RULE,
        )
    return evidence
