"""Every error bentogate raises, one tree, one root.

    BentogateError                 exit 1 unless stated
    ├── ConfigError                settings or input files are unusable
    ├── ModelImportError           a model file cannot be imported (format, parity)
    ├── NotFoundError              unknown model, version, deployment or backend
    ├── DatabaseUnavailable        the governance database cannot be reached or used
    ├── GovernanceError            a rule of the lifecycle refused an action
    │   ├── IllegalTransition      the state machine does not allow it
    │   ├── SeparationOfDuties     the same person may not do both steps
    │   ├── IntegrityError         artifact bytes differ from the approved ones
    │   │   └── AuditChainBroken   the audit trail's hash chain does not verify
    │   ├── ValidationFailed       parity or quality rejected the version (recorded)
    │   └── ConcurrentChange       someone else changed the same thing first
    ├── BuildError                 bentoml build / containerize failed
    ├── RuntimeBackendError        a Bento process or container would not start or stop
    ├── HAProxyError               config invalid, process failed, Runtime API refused
    │   └── CutoverError           a switch was refused or not confirmed by HAProxy
    ├── LoadTestError              Locust could not be run or its output not read
    ├── RolloutFailed              a fleet rollout ended without the version live everywhere
    ├── FleetDiverged              a host serves another version than production, or is stale
    ├── GateFailed                 exit 1: a limit was violated
    ├── GateInconclusive           exit 2: the measurement cannot be trusted
    ├── ShadowFailed               exit 1: the candidate scores live rows unlike production
    └── ShadowInconclusive         exit 2: too few rows, or the evidence cannot decide

Foreign errors (sqlalchemy, subprocess, socket) are translated where they enter a part.
Only the CLI turns these into output and an exit code.
"""

from __future__ import annotations


class BentogateError(Exception):
    """Root of every bentogate error; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(BentogateError):
    pass


class ModelImportError(BentogateError):
    pass


class NotFoundError(BentogateError):
    pass


class DatabaseUnavailable(BentogateError):
    """The governance DB did not answer (down, unreachable, refused the connection): nothing
    was decided, so a caller may keep what runs and retry."""


class GovernanceError(BentogateError):
    pass


class IllegalTransition(GovernanceError):
    pass


class SeparationOfDuties(GovernanceError):
    pass


class IntegrityError(GovernanceError):
    pass


class AuditChainBroken(IntegrityError):
    pass


class ValidationFailed(GovernanceError):
    pass


class ConcurrentChange(GovernanceError):
    pass


class BuildError(BentogateError):
    pass


class RuntimeBackendError(BentogateError):
    pass


class HAProxyError(BentogateError):
    pass


class CutoverError(HAProxyError):
    pass


class LoadTestError(BentogateError):
    pass


class RolloutFailed(BentogateError):
    pass


class FleetDiverged(BentogateError):
    pass


class GateFailed(BentogateError):
    exit_code = 1


class GateInconclusive(BentogateError):
    exit_code = 2


class ShadowFailed(BentogateError):
    exit_code = 1


class ShadowInconclusive(BentogateError):
    exit_code = 2
