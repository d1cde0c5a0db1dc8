"""Governance fixtures: a fresh, migrated database per test, on SQLite and on PostgreSQL.

PostgreSQL: ``BENTOGATE_TEST_PG_URL`` if set (a failure to connect then fails the tests), else
the local default if it answers (else those tests are skipped). Each test gets its own schema,
selected with ``search_path`` in the URL, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
import sqlalchemy as sa

from governance import Registry, Role, State

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SHA = "a" * 64


def _pg_reachable(url: str) -> str | None:
    """Return why ``url`` cannot be used, or None."""
    parsed = sa.make_url(url)
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return None
    except psycopg.Error as err:
        return str(err).strip().splitlines()[0]


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    """The PostgreSQL server URL, or skip (fail when BENTOGATE_TEST_PG_URL is set but dead)."""
    configured = os.environ.get("BENTOGATE_TEST_PG_URL")
    url = configured or PG_DEFAULT
    problem = _pg_reachable(url)
    if problem is not None:
        if configured:
            pytest.fail(f"BENTOGATE_TEST_PG_URL is set but unusable: {problem}")
        pytest.skip(f"no PostgreSQL at {PG_DEFAULT} ({problem}); set BENTOGATE_TEST_PG_URL")
    return url


def _pg_schema_url(base: str) -> tuple[str, Callable[[], None]]:
    schema = f"gov_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    # synchronous_commit=off: tests need isolation, not durability (each commit skips fsync)
    options = f"-csearch_path={schema} -csynchronous_commit=off"
    url = sa.make_url(base).update_query_dict({"options": options})

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A URL of an empty database (never migrated), on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('gov') / 'governance.db'}"
        return
    url, drop = _pg_schema_url(request.getfixturevalue("pg_base_url"))
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
    """``advance(model, state, port=None)``: register a new version of ``model`` (created if
    needed) and drive it to ``state`` with distinct actors; returns the version."""
    order = [
        State.REGISTERED,
        State.VALIDATED,
        State.APPROVED,
        State.STAGED,
        State.GATED,
        State.PRODUCTION,
    ]

    def run(
        model: str,
        state: State,
        *,
        port: int = 10000,
        deploy_port: int | None = None,
        sha256: str = SHA,
    ) -> str:
        reg.ensure_model(model, owner="risk", production_port=port, actor="admin")
        version = reg.register_version(
            model,
            sha256=sha256,
            feature_names=["f1", "f2"],
            threshold=0.5,
            metrics={"auc": 0.9},
            developer="dev",
            artifact_uri="file:///a.onnx",
        ).version
        steps: list[Callable[[], object]] = [
            lambda: reg.validate(model, version, actor="val", results={"parity": 0}, passed=True),
            lambda: reg.approve(model, version, actor="boss", comment="ok"),
            lambda: (
                reg.record_build(model, version, actor="ci", bento_tag=f"{model}:{version}"),
                reg.stage(model, version, actor="ci"),
            ),
            lambda: reg.record_gate(
                model,
                version,
                actor="ci",
                policy={"p99_ms": 25},
                results={"p99_ms": 9},
                verdict="pass",
                report_path="r.json",
                compared_with=None,
            ),
            lambda: reg.promote(model, version, actor="rel", sha256=sha256),
        ]
        for step in steps[: order.index(state)]:
            if step is steps[3] and deploy_port is not None:
                reg.record_deployment(
                    model, version, host="local", port=deploy_port, pid=1, role=Role.CANDIDATE
                )
            step()
        return version

    return run
