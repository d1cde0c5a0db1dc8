"""Governance fixtures: a fresh, migrated database per test, on SQLite and on PostgreSQL.

PostgreSQL: the server of ``pg_base_url`` (tests/conftest.py). Each test gets its own schema,
selected with ``search_path`` in the URL, dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from governance_support import SHA, drive, pg_schema

from bentogate.governance import Registry, Role, State


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A URL of an empty database (never migrated), on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('gov') / 'governance.db'}"
        return
    url, drop = pg_schema(request.getfixturevalue("pg_base_url"), "gov")
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def make_registry(db_url: str) -> Iterator[Callable[..., Registry]]:
    """Open more registries on the test's database; all are closed afterwards."""
    opened: list[Registry] = []

    def make(**kwargs: object) -> Registry:
        registry = Registry(db_url, **kwargs)  # type: ignore[arg-type]
        opened.append(registry)
        return registry

    yield make
    for registry in opened:
        registry.close()


@pytest.fixture
def reg(make_registry: Callable[..., Registry]) -> Registry:
    """A migrated registry on a fresh database (SQLite and PostgreSQL)."""
    registry = make_registry()
    registry.upgrade()
    return registry


@pytest.fixture
def raw(db_url: str) -> Iterator[sa.Engine]:
    """A plain engine on the test's database, for tampering and direct checks."""
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


Advance = Callable[..., str]


@pytest.fixture
def advance(reg: Registry) -> Advance:
    """``advance(model, state, port=10000, deploy_port=None, sha256=SHA)``: drive a new version
    of ``model`` to ``state`` on ``reg`` (:func:`governance_support.drive`); with
    ``deploy_port``, it is deployed there as the candidate just before its gate. Returns the
    version."""

    def run(
        model: str,
        state: State,
        *,
        port: int = 10000,
        deploy_port: int | None = None,
        sha256: str = SHA,
    ) -> str:
        def deploy(version: str) -> None:
            if deploy_port is not None:
                reg.record_deployment(
                    model, version, host="local", port=deploy_port, pid=1, role=Role.CANDIDATE
                )

        return drive(reg, model, state, port=port, sha256=sha256, before_gate=deploy)

    return run
