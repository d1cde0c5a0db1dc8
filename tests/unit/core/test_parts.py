"""The parts' public faces and the house rules on who may import whom (DESIGN.md, Layout).

Every part (governance/, bentos/, haproxy/, loadtest/) has an ``__init__`` whose ``__all__``
is exactly what it exports; parts never import each other, the CLI or the workflow, only
the ground every part stands on (bentogate.errors, .settings, .locks); the code that runs
inside a Bento (service.py, serving/) imports none of bentogate, not even that ground. A part
is imported as ``bentogate.<part>`` only: its folder name alone belongs to other PyPI
distributions, and one file imported under two names is two modules.
"""

from __future__ import annotations
import __future__

import ast
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PARTS = ("governance", "bentos", "haproxy", "loadtest")
GROUND = ("bentogate.errors", "bentogate.settings", "bentogate.locks")
OURS = ("bentogate", "serving", "service")


def _imports(path: Path) -> set[str]:
    """Absolute names ``path`` imports (relative imports stay inside its package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _ours(name: str) -> str | None:
    """The part (or bentogate, serving, service) ``name`` belongs to; None if not ours."""
    top, _, rest = name.partition(".")
    below = rest.split(".")[0]
    if top == "bentogate" and below in PARTS:
        return below
    return top if top in OURS else None


@pytest.mark.parametrize("part", PARTS)
def test_a_part_exports_exactly_its_all(part: str) -> None:
    module = importlib.import_module(f"bentogate.{part}")
    public = {n for n in dir(module) if not n.startswith("_")}
    not_exports = {
        n
        for n in public
        if inspect.ismodule(getattr(module, n))
        or isinstance(getattr(module, n), __future__._Feature)
    }
    assert sorted(module.__all__) == sorted(public - not_exports)
    assert inspect.getdoc(module), f"{part} has no docstring"


@pytest.mark.parametrize("part", PARTS)
def test_a_part_imports_no_other_part_only_the_ground(part: str) -> None:
    for path in sorted((ROOT / part).rglob("*.py")):
        for name in _imports(path):
            top = _ours(name)
            if top is None or top == part:
                continue
            assert name in GROUND, f"{path.relative_to(ROOT)} imports {name}"


def test_a_part_is_imported_by_its_bentogate_name_only() -> None:
    folders = ("bentogate", *PARTS, "serving", "bench", "tests")
    paths = [ROOT / "service.py", *(p for f in folders for p in (ROOT / f).rglob("*.py"))]
    for path in paths:
        for name in _imports(path):
            assert name.split(".")[0] not in PARTS, f"{path.relative_to(ROOT)} imports {name}"


def test_the_bento_code_imports_nothing_of_bentogate() -> None:
    paths = [ROOT / "service.py", *sorted((ROOT / "serving").rglob("*.py"))]
    for path in paths:
        for name in _imports(path):
            top = _ours(name)
            assert top in (None, "serving"), f"{path.relative_to(ROOT)} imports {name}"


def test_the_parts_read_no_setting_from_the_environment() -> None:
    """Settings come from the one Settings object; a part may pass the environment on to a
    child process whole, never look a value up in it."""
    lookups = ("os.environ[", "os.environ.get(", "os.getenv(")
    for part in PARTS:
        for path in (ROOT / part).rglob("*.py"):
            text = path.read_text()
            assert not any(x in text for x in lookups), f"{path.relative_to(ROOT)}"
