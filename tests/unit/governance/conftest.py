"""Fast governance fixtures: a migrated SQLite registry under ``tmp_path``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from governance import Registry


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite URL of a not-yet-created database file."""
    return f"sqlite:///{tmp_path / 'governance.db'}"


@pytest.fixture
def reg(sqlite_url: str) -> Iterator[Registry]:
    """A migrated registry on a fresh SQLite file."""
    registry = Registry(sqlite_url)
    registry.upgrade()
    yield registry
    registry.close()
