"""Fast governance fixtures: a migrated SQLite registry under ``tmp_path``, on the real clock
(``reg``) or on a clock the test moves (``timed``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from governance_support import Clock

from bentogate.governance import Registry


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite URL of a not-yet-created database file."""
    return f"sqlite:///{tmp_path / 'governance.db'}"


@pytest.fixture
def reg(sqlite_url: str) -> Iterator[Registry]:
    """A migrated registry on a fresh SQLite file."""
    yield from _migrated(Registry(sqlite_url))


@pytest.fixture
def clock() -> Clock:
    """The clock of ``timed``: it stands still until the test moves it."""
    return Clock()


@pytest.fixture
def timed(sqlite_url: str, clock: Clock) -> Iterator[Registry]:
    """A migrated SQLite registry on the test's clock."""
    yield from _migrated(Registry(sqlite_url, clock=clock))


def _migrated(registry: Registry) -> Iterator[Registry]:
    registry.upgrade()
    yield registry
    registry.close()
