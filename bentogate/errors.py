"""Every error bentogate raises, one tree, one root, and the exit code of each.

    BentogateError                 1 ERROR unless stated
    ├── ConfigError                settings or input files are unusable
    ├── ModelImportError           a model file cannot be imported (format, parity)
    ├── NotFoundError              unknown model, version, deployment or backend
    ├── DatabaseUnavailable        the governance database cannot be reached or used
    ├── GovernanceError            3 REFUSED: a rule of the lifecycle refused an action
    │   ├── IllegalTransition      the state machine does not allow it
    │   ├── SeparationOfDuties     the same person may not do both steps (or this role at all)
    │   ├── Unauthenticated        the actor named is not the identity the database authenticated
    │   ├── IntegrityError         artifact bytes differ from the approved ones
    │   │   └── AuditChainBroken   the audit trail's hash chain does not verify
    │   ├── ValidationFailed       4 FAILED: parity or quality rejected the version (recorded)
    │   └── ConcurrentChange       someone else changed the same thing first
    ├── BuildError                 bentoml build / containerize failed
    ├── RuntimeBackendError        a Bento process or container would not start or stop
    ├── HAProxyError               config invalid, process failed, Runtime API refused
    │   └── CutoverError           a switch was refused or not confirmed by HAProxy
    ├── LoadTestError              Locust could not be run or its output not read
    ├── RolloutFailed              a fleet rollout ended without the version live everywhere
    ├── FleetDiverged              a host serves another version than production, or is stale
    ├── GateFailed                 4 FAILED: a limit was violated
    ├── GateInconclusive           5 INCONCLUSIVE: the measurement cannot be trusted
    ├── ShadowFailed               4 FAILED: the candidate scores live rows unlike production
    └── ShadowInconclusive         5 INCONCLUSIVE: too few rows, or the evidence cannot decide

:class:`ExitCode` is the one table of exit codes (the README repeats it); a usage error (a
wrong command line) is click's 2. Foreign errors (sqlalchemy, subprocess, socket) are
translated where they enter a part. Only the CLI turns these into output and an exit code.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """What ``bentogate`` exits with: a script can tell these outcomes apart."""

    OK = 0  # done
    ERROR = 1  # something did not work: a process, HAProxy, the DB, a file, an unknown name
    USAGE = 2  # the command line is wrong (click's convention: its UsageError exits 2)
    REFUSED = 3  # governance refused: a lifecycle, duty, integrity or concurrency rule
    FAILED = 4  # the version failed a check of its own: validation, gate or shadow
    INCONCLUSIVE = 5  # the gate or shadow could not decide: measure again (never a pass)


class BentogateError(Exception):
    """Root of every bentogate error; ``exit_code`` is what the CLI exits with.

    ``details``: JSON-ready facts beside the message (e.g. a failed gate's verdict, figures
    and report path), which ``--json`` prints with the error."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, *args: object, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(*args)
        self.details: dict[str, Any] = dict(details or {})


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
    exit_code = ExitCode.REFUSED


class IllegalTransition(GovernanceError):
    pass


class SeparationOfDuties(GovernanceError):
    pass


class Unauthenticated(GovernanceError):
    pass


class IntegrityError(GovernanceError):
    pass


class AuditChainBroken(IntegrityError):
    pass


class ValidationFailed(GovernanceError):
    exit_code = ExitCode.FAILED


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
    exit_code = ExitCode.FAILED


class GateInconclusive(BentogateError):
    exit_code = ExitCode.INCONCLUSIVE


class ShadowFailed(BentogateError):
    exit_code = ExitCode.FAILED


class ShadowInconclusive(BentogateError):
    exit_code = ExitCode.INCONCLUSIVE
