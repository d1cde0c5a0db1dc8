"""The model-governance database: inventory, immutable versions, evidence (validations,
approvals, gate runs, shadow runs), deployments, the fleet's hosts and rollouts, lifecycle rules
and a hash-chained audit log.

Only :mod:`bentogate` (the workflow and CLI) uses it, through the names below. Start with
``Registry(url).upgrade()``; every refused action raises a :class:`bentogate.errors.GovernanceError`
(or :class:`~bentogate.errors.NotFoundError`) whose message names the rule, and is audited.

Where each thing is::

    registry.py ─ Registry, the one class: each method opens a transaction and calls one of
    ├─ registration.py  add a model to the inventory; register an immutable version
    ├─ lifecycle.py     validate, approve, build, stage, retire (move: the one state change)
    ├─ gates.py         a model's gate policy; gate runs and their verdicts; capacity
    ├─ shadow.py        shadow runs (candidate vs live scores); the require_shadow rule
    ├─ promotion.py     promote, rollback: the release rules and the switch of production
    ├─ deployments.py   what runs where; is the artifact about to be served the registered one
    ├─ heartbeats.py    which fleet hosts are alive, and what their agents report
    ├─ rollouts.py      fleet rollouts: one promotion every host carries out by a deadline
    ├─ queries.py       every shared SELECT: row lookups, locked_version, the read views
    └─ migrate.py       Alembic, driven from code (the scripts: migrations/versions/)

    and, under all of them:
    store.py      what Registry stands on: the database, its schema, audited writes, reads,
                  the audit trail (rows, rejections, verification)
    attempt.py    one audited write: its transaction; a refusal is rolled back, then audited
    roles.py      PostgreSQL group roles, GRANTs and the duties trigger (``db roles``)
    identity.py   who acts: the identity the database authenticated (PostgreSQL role, OS user
                  on SQLite); a named actor is unauthenticated (refused on PostgreSQL if required)
    audit.py      the append-only, hash-chained log: append, verify
    checkpoints.py signed checkpoints of the chain's head (key and log outside the DB): seal,
                  publish, verify
    documents.py  the JSON documents stored unread (gate policies, host reports): their checks;
                  RunReport, what a gate or shadow run reports
    records.py    the frozen ``*Info`` records callers get, each made from its row
    states.py     the enums, the transition table and check_transition
    schema.py     the ORM tables (the migrations create the same)
    db.py         engines, sessions; SQLAlchemy errors become bentogate errors
"""

from bentogate.governance.checkpoints import Anchor
from bentogate.governance.records import (
    AuditEntry,
    DeploymentInfo,
    GateRunInfo,
    HostInfo,
    ModelInfo,
    RolloutInfo,
    ShadowRunInfo,
    VersionInfo,
)
from bentogate.governance.registry import SYSTEM_ACTOR, Registry
from bentogate.governance.states import (
    TRANSITIONS,
    Action,
    Outcome,
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
    "Anchor",
    "AuditEntry",
    "DeploymentInfo",
    "GateRunInfo",
    "HostInfo",
    "ModelInfo",
    "Outcome",
    "Registry",
    "Role",
    "RolloutInfo",
    "RolloutStatus",
    "ShadowRunInfo",
    "State",
    "Verdict",
    "VersionInfo",
    "check_transition",
    "next_release_action",
]
