"""The package surface and its import rules."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import governance
from governance import Registry

PACKAGE = Path(governance.__file__).parent
FORBIDDEN = ("bentos", "haproxy", "loadtest", "bentogate.cli", "bentogate.release")


def test_all_is_exact() -> None:
    public = {n for n in dir(governance) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(governance, n))}
    assert set(governance.__all__) == public - modules


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


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_imports_only_what_it_may() -> None:
    for path in PACKAGE.rglob("*.py"):
        for name in _imports(path):
            assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"
            if name.startswith("bentogate"):
                assert name == "bentogate.errors", f"{path.name} imports {name}"
        assert "os.environ" not in path.read_text(), f"{path.name} reads the environment"


def test_the_package_docstring_maps_every_module() -> None:
    assert governance.__doc__ is not None
    mapped = set(re.findall(r"\b(\w+)\.py\b", governance.__doc__))
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert mapped == modules


def test_modules_are_small() -> None:
    for path in PACKAGE.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name
