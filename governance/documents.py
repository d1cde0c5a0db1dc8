"""The JSON documents governance stores without reading them: gate policies and capacity
details (the load-test part owns their keys), host reports and rollout results (the fleet
agent's). Each is refused unless it is a JSON object. The one key governance reads is the gate
policy's ``require_shadow`` (:mod:`bentogate.governance.shadow`). :class:`RunReport` carries what a
gate or shadow run reports, from the registry to the module that stores it.

Two checks, of two strictnesses: :func:`json_copy` (policies, capacity) refuses anything that
is not strict JSON, NaN and infinity included, and returns the copy to store;
:func:`check_json_object` (heartbeats, rollouts) only refuses what orjson cannot serialize.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from bentogate.errors import GovernanceError
from bentogate.governance.attempt import Attempt


@dataclass(frozen=True)
class RunReport:
    """What a gate or shadow run reports (the arguments of ``Registry.record_gate`` and
    ``record_shadow``): the policy it was judged against, to be frozen into the run, its
    figures, its verdict (not yet checked), its report's path and the live version it was
    compared with."""

    policy: dict[str, Any]
    results: dict[str, Any]
    verdict: str
    report_path: str
    compared_with: str | None


def json_copy(attempt: Attempt, value: Any, what: str) -> dict[str, Any]:
    """Return a deep copy of ``value`` as strict JSON (what every database stores alike).
    Refuses anything but a JSON object of finite numbers, strings, booleans, null, lists."""
    if not isinstance(value, dict):
        attempt.refuse(
            GovernanceError, f"{what} is a {type(value).__name__}, not a JSON object", "JSON"
        )
    try:
        copied: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        attempt.refuse(GovernanceError, f"{what} is not plain JSON: {err}", "JSON")
    return copied


def check_json_object(attempt: Attempt, value: object, what: str) -> None:
    """Refuse ``value`` unless it is a dict that orjson can serialize."""
    if not isinstance(value, dict):
        attempt.refuse(GovernanceError, f"{what} is not a JSON object", "JSON documents")
    try:
        orjson.dumps(value)
    except TypeError as err:
        attempt.refuse(GovernanceError, f"{what} is not JSON: {err}", "JSON documents")
