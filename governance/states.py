"""The vocabulary (states, roles, actions, verdicts, outcomes, rollout statuses), the one
transition table of the lifecycle and the one function checking it.

Every state change in :mod:`bentogate.governance` goes through :func:`check_transition`; the
database repeats the state vocabulary as CHECK constraints and the "one production version per
model" rule as a partial unique index.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from bentogate.errors import IllegalTransition


class State(enum.StrEnum):
    """Where a model version is in its lifecycle."""

    REGISTERED = "registered"
    VALIDATED = "validated"
    APPROVED = "approved"
    STAGED = "staged"
    GATED = "gated"
    PRODUCTION = "production"
    RETIRED = "retired"
    REJECTED = "rejected"


class Role(enum.StrEnum):
    """What a running deployment of a version is for."""

    LIVE = "live"
    CANDIDATE = "candidate"
    PREVIOUS = "previous"


class Action(enum.StrEnum):
    """Everything that is audited. Lifecycle actions appear in :data:`TRANSITIONS`."""

    CREATE_MODEL = "create_model"
    REGISTER = "register"
    VALIDATE = "validate"
    APPROVE = "approve"
    BUILD = "build"
    STAGE = "stage"
    GATE = "gate"
    SHADOW = "shadow"  # a shadow run recorded: no state change (a failed one blocks promotion)
    PROMOTE = "promote"
    DEMOTE = "demote"
    ROLLBACK = "rollback"
    RETIRE = "retire"
    DEPLOY = "deploy"
    UNDEPLOY = "undeploy"
    SET_POLICY = "set_policy"
    CAPACITY = "capacity"
    VERIFY_ARTIFACT = "verify_artifact"
    HEARTBEAT = "heartbeat"  # never audited (one per host per second); only its refusals
    ROLLOUT = "rollout"  # a fleet rollout settled (complete or failed)


class Verdict(enum.StrEnum):
    """A gate run's or a shadow run's outcome."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class Outcome(enum.StrEnum):
    """Whether an audited attempt happened or was refused."""

    OK = "ok"
    REFUSED = "refused"


class RolloutStatus(enum.StrEnum):
    """Where a fleet rollout is."""

    IN_PROGRESS = "in_progress"
    COMPLETE = "complete"  # every host reported the version live and healthy
    ROLLED_BACK = "rolled_back"  # a host failed or the deadline passed: previous version back
    FAILED = "failed"  # it failed and there was nothing (allowed) to roll back to


S = State
_AFTER_APPROVAL = (S.APPROVED, S.STAGED, S.GATED, S.PRODUCTION)

#: action → {state it may start from → the states it may lead to}. A state mapping to itself
#: means "allowed, no change" (e.g. re-staging a gated version, an inconclusive gate).
TRANSITIONS: Mapping[Action, Mapping[State, frozenset[State]]] = {
    Action.REGISTER: {},  # creates a version in REGISTERED; nothing to start from
    Action.VALIDATE: {S.REGISTERED: frozenset({S.VALIDATED, S.REJECTED})},
    Action.APPROVE: {S.VALIDATED: frozenset({S.APPROVED})},
    Action.BUILD: {s: frozenset({s}) for s in _AFTER_APPROVAL},
    Action.STAGE: {
        S.APPROVED: frozenset({S.STAGED}),
        S.STAGED: frozenset({S.STAGED}),
        S.GATED: frozenset({S.GATED}),
        S.PRODUCTION: frozenset({S.PRODUCTION}),
    },
    Action.GATE: {
        S.STAGED: frozenset({S.GATED, S.REJECTED, S.STAGED}),
        S.GATED: frozenset({S.GATED, S.REJECTED}),
    },
    # a shadow run's verdict changes no state: under the policy's require_shadow, promotion
    # needs a passed one (bentogate.governance.shadow); a failed one does not reject the version
    Action.SHADOW: {S.STAGED: frozenset({S.STAGED}), S.GATED: frozenset({S.GATED})},
    Action.PROMOTE: {S.GATED: frozenset({S.PRODUCTION})},
    Action.ROLLBACK: {S.GATED: frozenset({S.PRODUCTION})},
    Action.DEMOTE: {S.PRODUCTION: frozenset({S.GATED})},
    Action.RETIRE: {s: frozenset({S.RETIRED}) for s in State if s not in (S.PRODUCTION, S.RETIRED)},
    Action.DEPLOY: {s: frozenset({s}) for s in _AFTER_APPROVAL},
}

#: what each verdict does to a staged or gated version (``None``: no change).
GATE_TARGET: Mapping[Verdict, State | None] = {
    Verdict.PASS: S.GATED,
    Verdict.FAIL: S.REJECTED,
    Verdict.INCONCLUSIVE: None,
}


#: the order of the release path (rejected and retired are off it).
RELEASE_ORDER: tuple[State, ...] = (
    S.REGISTERED, S.VALIDATED, S.APPROVED, S.STAGED, S.GATED, S.PRODUCTION,
)  # fmt: skip


def next_release_action(state: State, *, built: bool) -> Action | None:
    """The action that takes a version in ``state`` forward on the release path, read off
    :data:`TRANSITIONS` (the first action, in table order, leading to a later state);
    ``None`` in production.

    Staging needs a Bento: an unbuilt version that would be staged next needs BUILD first.
    Raises :class:`IllegalTransition` for a state off the path (rejected, retired).
    """
    if state not in RELEASE_ORDER:
        raise IllegalTransition(f"a {state} version cannot be released")
    rank = RELEASE_ORDER.index(state)
    for action, starts in TRANSITIONS.items():
        later = [t for t in starts.get(state, ()) if t in RELEASE_ORDER[rank + 1 :]]
        if later:  # table order: promote comes before rollback, its mirror
            return Action.BUILD if action == Action.STAGE and not built else action
    return None


def allowed_from(action: Action) -> frozenset[State]:
    """Return the states ``action`` may start from (empty if it is not a lifecycle action)."""
    return frozenset(TRANSITIONS.get(action, {}))


def check_transition(action: Action, current: State, target: State, *, subject: str) -> None:
    """Return ``None`` if ``action`` may take ``subject`` from ``current`` to ``target``.

    Raises :class:`IllegalTransition` naming the rule otherwise, e.g.
    ``refused: promote fraud:3 — fraud:3 is registered; promote needs gated (lifecycle)``.
    """
    targets = TRANSITIONS.get(action, {}).get(current)
    if targets is not None and target in targets:
        return
    starts = sorted(allowed_from(action))
    if targets is None:
        needs = " or ".join(starts) if starts else "no state"
        reason = f"{subject} is {current}; {action} needs {needs}"
    else:
        reason = f"{subject} is {current}; {action} cannot lead to {target}"
    raise IllegalTransition(refusal_message(action, subject, reason, "lifecycle"))


def refusal_message(action: Action, subject: str, reason: str, rule: str) -> str:
    """Return the refusal format: ``refused: <action> <subject> — <why> (<rule>)``."""
    return f"refused: {action} {subject} — {reason} ({rule})"
