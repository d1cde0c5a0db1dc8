"""The model-governance database: inventory, immutable versions, evidence (validations,
approvals, gate runs), deployments, lifecycle rules and a hash-chained audit log.

Only :mod:`bentogate` (the workflow and CLI) uses it, through the names below. Start with
``Registry(url).upgrade()``; every refused action raises a :class:`bentogate.errors.GovernanceError`
(or :class:`~bentogate.errors.NotFoundError`) whose message names the rule, and is audited.
"""

from governance.records import (
    AuditEntry,
    DeploymentInfo,
    GateRunInfo,
    HostInfo,
    ModelInfo,
    RolloutInfo,
    VersionInfo,
)
from governance.registry import SYSTEM_ACTOR, Registry
from governance.states import (
    TRANSITIONS,
    Action,
    Role,
    RolloutStatus,
    State,
    Verdict,
    check_transition,
    next_release_action,
)

__all__ = [
    "SYSTEM_ACTOR",
    "TRANSITIONS",
    "Action",
    "AuditEntry",
    "DeploymentInfo",
    "GateRunInfo",
    "HostInfo",
    "ModelInfo",
    "Registry",
    "Role",
    "RolloutInfo",
    "RolloutStatus",
    "State",
    "Verdict",
    "VersionInfo",
    "check_transition",
    "next_release_action",
]
