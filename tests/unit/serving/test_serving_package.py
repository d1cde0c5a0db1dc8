"""The package a Bento carries: its public face, what it may import, and that every Bento
build takes all of it."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path, PurePosixPath

import yaml

import serving
from bentogate.bentos.build import BUILD_FILES, _build_files
from bentogate.context import PROJECT_DIR

PACKAGE = Path(serving.__file__).parent
PROJECT = PACKAGE.parent
# What a served Bento has: the standard library, its pinned requirements (and what BentoML
# itself brings: its serving half, its /metrics and its tracing middleware, whose layers
# serving/stack.py names), and the package itself.
REQUIREMENTS = PROJECT / "bentos" / "requirements-serve.txt"
BENTOML_BRINGS = {"prometheus_client", "_bentoml_impl", "opentelemetry"}


def _pinned() -> set[str]:
    lines = REQUIREMENTS.read_text().splitlines()
    return {
        line.split("==")[0].strip().lower().replace("-", "_")
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    }


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_all_is_exact() -> None:
    public = {n for n in dir(serving) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(serving, n))}
    assert set(serving.__all__) == public - modules


def test_imports_only_what_a_served_bento_has() -> None:
    allowed = sys.stdlib_module_names | _pinned() | BENTOML_BRINGS | {"serving"}
    for path in [*PACKAGE.glob("*.py"), PROJECT / "service.py"]:
        for name in _imports(path):
            assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_modules_are_small() -> None:
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 250, path.name


def test_every_bento_carries_every_module() -> None:
    """``bentogate.bentos.build`` copies the build context from BUILD_FILES, ``bentoml build`` takes
    what bentofile.yaml includes: both name each module (and service.py)."""
    include = yaml.safe_load((PROJECT / "bentofile.yaml").read_text())["include"]
    for path in [*PACKAGE.glob("*.py"), PROJECT / "service.py"]:
        relative = PurePosixPath(path.relative_to(PROJECT).as_posix())
        assert any(relative.match(p) for p in BUILD_FILES), relative
        assert any(relative.match(p) for p in include), relative


def test_bentogate_builds_from_this_source() -> None:
    """What bentogate builds Bentos from by default (``Context.project_dir``: the Bento source
    inside its package, an installed wheel's too) is this one: the files BUILD_FILES names,
    among them the requirements bentofile.yaml names, each the same."""
    recipe = yaml.safe_load((PROJECT / "bentofile.yaml").read_text())
    here = {p.relative_to(PROJECT) for p in _build_files(PROJECT)}
    shipped = {p.relative_to(PROJECT_DIR) for p in _build_files(PROJECT_DIR)}
    assert shipped == here
    assert Path(recipe["python"]["requirements_txt"]) in here
    for relative in here:
        assert (PROJECT_DIR / relative).read_bytes() == (PROJECT / relative).read_bytes()
