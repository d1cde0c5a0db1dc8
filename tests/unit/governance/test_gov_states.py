"""The transition table and its one checking function."""

from __future__ import annotations

import pytest

from bentogate.errors import IllegalTransition
from bentogate.governance import TRANSITIONS, Action, State, check_transition, next_release_action
from bentogate.governance.states import GATE_TARGET, Verdict, allowed_from


def test_table_only_uses_states() -> None:
    for action, edges in TRANSITIONS.items():
        assert isinstance(action, Action)
        for start, targets in edges.items():
            assert isinstance(start, State)
            assert all(isinstance(t, State) for t in targets)


def test_every_state_is_reachable_from_registered() -> None:
    reached, frontier = {State.REGISTERED}, [State.REGISTERED]
    while frontier:
        current = frontier.pop()
        for edges in TRANSITIONS.values():
            for target in edges.get(current, ()):
                if target not in reached:
                    reached.add(target)
                    frontier.append(target)
    assert reached == set(State)


def test_terminal_and_protected_states() -> None:
    assert all(State.RETIRED not in edges for a, edges in TRANSITIONS.items())
    assert State.PRODUCTION not in TRANSITIONS[Action.RETIRE]
    leaving_production = {t for e in TRANSITIONS.values() for t in e.get(State.PRODUCTION, ())}
    assert leaving_production == {State.PRODUCTION, State.GATED}  # only demotion leaves it


def test_gate_targets_are_in_the_table() -> None:
    for verdict in Verdict:
        for start in allowed_from(Action.GATE):
            target = GATE_TARGET[verdict] or start
            check_transition(Action.GATE, start, target, subject="m:1")


def test_a_shadow_run_changes_no_state_and_needs_a_candidate() -> None:
    assert allowed_from(Action.SHADOW) == {State.STAGED, State.GATED}
    assert all(targets == {start} for start, targets in TRANSITIONS[Action.SHADOW].items())
    with pytest.raises(IllegalTransition, match="fraud:3 is gated; shadow cannot lead to rejected"):
        check_transition(Action.SHADOW, State.GATED, State.REJECTED, subject="fraud:3")
    with pytest.raises(IllegalTransition, match="shadow needs gated or staged"):
        check_transition(Action.SHADOW, State.PRODUCTION, State.PRODUCTION, subject="fraud:3")


@pytest.mark.parametrize(
    ("action", "current", "target", "message"),
    [
        (
            Action.PROMOTE,
            State.REGISTERED,
            State.PRODUCTION,
            "refused: promote fraud:3 — fraud:3 is registered; promote needs gated (lifecycle)",
        ),
        (
            Action.VALIDATE,
            State.REGISTERED,
            State.APPROVED,
            "refused: validate fraud:3 — fraud:3 is registered; validate cannot lead to approved "
            "(lifecycle)",
        ),
        (
            Action.RETIRE,
            State.PRODUCTION,
            State.RETIRED,
            "refused: retire fraud:3 — fraud:3 is production; retire needs approved or gated or "
            "registered or rejected or staged or validated (lifecycle)",
        ),
    ],
)
def test_refusals_name_the_rule(
    action: Action, current: State, target: State, message: str
) -> None:
    with pytest.raises(IllegalTransition) as caught:
        check_transition(action, current, target, subject="fraud:3")
    assert str(caught.value) == message


def test_non_lifecycle_action_is_refused() -> None:
    with pytest.raises(IllegalTransition, match="undeploy needs no state"):
        check_transition(Action.UNDEPLOY, State.STAGED, State.STAGED, subject="m:1")


@pytest.mark.parametrize(
    ("state", "built", "step"),
    [
        (State.REGISTERED, False, Action.VALIDATE),
        (State.VALIDATED, False, Action.APPROVE),
        (State.APPROVED, False, Action.BUILD),
        (State.APPROVED, True, Action.STAGE),
        (State.STAGED, True, Action.GATE),
        (State.GATED, True, Action.PROMOTE),
        (State.PRODUCTION, True, None),
    ],
)
def test_next_release_action_walks_the_transition_table(
    state: State, built: bool, step: Action | None
) -> None:
    assert next_release_action(state, built=built) == step


@pytest.mark.parametrize("state", [State.REJECTED, State.RETIRED])
def test_a_version_off_the_release_path_has_no_next_action(state: State) -> None:
    with pytest.raises(IllegalTransition, match=f"a {state} version cannot be released"):
        next_release_action(state, built=True)
