"""The package surface (its exports and import rules: tests/unit/core/test_parts.py)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from bentogate import governance
from bentogate.governance import Registry

PACKAGE = Path(governance.__file__).parent


def test_registry_api() -> None:
    expected = {
        "upgrade",
        "close",
        "ensure_model",
        "register_version",
        "validate",
        "approve",
        "record_build",
        "stage",
        "record_gate",
        "promote",
        "rollback",
        "retire",
        "record_deployment",
        "end_deployment",
        "set_gate_policy",
        "gate_policy",
        "record_capacity",
        "deployments",
        "models",
        "get_model",
        "get_version",
        "versions",
        "production_version",
        "previous_version",
        "gate_runs",
        "record_shadow",
        "shadow_runs",
        "audit",
        "verify_audit",
        "dialect",
        "downgrade",
        "schema_revision",
        "verify_artifact",
        "heartbeat",
        "hosts",
        "start_rollout",
        "settle_rollout",
        "rollouts",
    }
    assert expected <= {n for n in dir(Registry) if not n.startswith("_")}
    for name in expected:
        assert inspect.getdoc(getattr(Registry, name)), f"{name} has no docstring"


def test_the_package_docstring_maps_every_module() -> None:
    assert governance.__doc__ is not None
    mapped = set(re.findall(r"\b(\w+)\.py\b", governance.__doc__))
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert mapped == modules


def test_modules_are_small() -> None:
    for path in PACKAGE.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name
