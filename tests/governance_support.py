"""What the governance tests share (here, beside ``hosts.py``: conftest puts ``tests/`` on
sys.path, so unit and integration suites import it alike):

    pg_problem(url), pg_schema(base, prefix)   a PostgreSQL that answers; a fresh schema on it
                                               per test, and its dropper (fleet tests too)
    people_database(base, people)              a database of its own with ``bentogate db
                                               roles`` and one login role per person
    Clock                                      a registry clock that stands still until moved
    register, gate, shadow                     one registry call each, with the plainest valid
                                               arguments (a test passes only what it is about)
    drive(reg, model, state)                   a new version driven along the release path
                                               (the integration fixture ``advance`` wraps it)
    gated_later(reg, clock)                    the same to gated, the gate a second after the
                                               build (the unit rules' tests)
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import sqlalchemy as sa

from bentogate.governance import GateRunInfo, Registry, ShadowRunInfo, State
from bentogate.governance.states import RELEASE_ORDER

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SHA = "a" * 64  # the sha256 ``register`` and ``drive`` register
GATE_POLICY = {"p99_ms": 25}  # what ``gate`` freezes into its runs
SHADOW_POLICY = {"shadow_max_flip_ratio": 0.02, "shadow_min_rows": 200}


def pg_problem(url: str) -> str | None:
    """Why the PostgreSQL at ``url`` cannot be used (the first line of its error), or None."""
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return None
    except psycopg.Error as err:
        return str(err).strip().splitlines()[0]


def pg_schema(base: str, prefix: str) -> tuple[str, Callable[[], None]]:
    """A URL of a fresh schema ``<prefix>_…`` on ``base`` (selected by ``search_path``), and
    the function that drops it."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
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


@dataclass(frozen=True)
class People:
    """A database of people as PostgreSQL roles: a URL per person connecting as their own login
    role (and ``"owner"``: the superuser who migrated it), their role names, and the prefix of
    the group roles."""

    urls: dict[str, str]
    roles: dict[str, str]
    prefix: str


@contextlib.contextmanager
def people_database(base: str, people: dict[str, str]) -> Iterator[People]:
    """A new database ``bg_<hex>`` on ``base``'s server, migrated by its superuser, with the
    group roles of ``bentogate db roles`` (prefix ``bg_<hex>``) and a login role per person of
    ``people`` (person → duty) in their duty's group; all of it is dropped at the end."""
    tag = f"bg_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    url = sa.make_url(base).set(database=tag)
    logins = {person: f"{tag}_{person}" for person in people}
    groups: list[str] = []
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{tag}"'))
    try:
        with Registry(url.render_as_string(hide_password=False)) as owner:
            owner.upgrade()
            groups = owner.create_roles(tag)
            assert owner.create_roles(tag) == groups  # idempotent
        with admin.connect() as conn:
            for person, duty in people.items():
                conn.execute(
                    sa.text(f'CREATE ROLE "{logins[person]}" LOGIN IN ROLE "{tag}_{duty}"')
                )
        urls = {p: url.set(username=r).render_as_string(hide_password=False)
                for p, r in logins.items()}  # fmt: skip
        urls["owner"] = url.render_as_string(hide_password=False)
        yield People(urls, logins, tag)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{tag}" WITH (FORCE)'))
            for role in [*logins.values(), *groups]:
                conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


class Clock:
    """The registry's clock: stands still until the test moves it."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self) -> None:
        self.now += timedelta(seconds=1)


def register(reg: Registry, model: str = "fraud", **fields: Any) -> str:
    """Register a version of the existing ``model`` by developer ``dev`` (plain valid fields,
    ``fields`` replace them); returns the version."""
    plain: dict[str, Any] = dict(
        sha256=SHA,
        feature_names=["f"],
        threshold=0.5,
        metrics={},
        developer="dev",
        artifact_uri="x",
    )
    return reg.register_version(model, **{**plain, **fields}).version


def gate(
    reg: Registry,
    version: str,
    verdict: str = "pass",
    *,
    model: str = "fraud",
    actor: str = "ci",
    compared_with: str | None = None,
) -> GateRunInfo:
    """Record a gate run of ``model:version`` judged against :data:`GATE_POLICY`."""
    return reg.record_gate(
        model,
        version,
        actor=actor,
        policy=GATE_POLICY,
        results={"p99_ms": 9},
        verdict=verdict,
        report_path="r.json",
        compared_with=compared_with,
    )


def shadow(
    reg: Registry,
    version: str,
    verdict: str = "pass",
    *,
    compared_with: str = "1",
    results: dict[str, Any] | None = None,
) -> ShadowRunInfo:
    """Record a shadow run of ``fraud:version`` against ``fraud:compared_with``, judged
    against :data:`SHADOW_POLICY`."""
    if results is None:
        results = {"max_abs_delta": 0.01, "flip_ratio": 0.0}
    return reg.record_shadow(
        "fraud",
        version,
        actor="ci",
        policy=SHADOW_POLICY,
        results=results,
        verdict=verdict,
        report_path="shadow.json",
        compared_with=compared_with,
    )


def drive(
    reg: Registry,
    model: str,
    state: State,
    *,
    port: int = 10000,
    sha256: str = SHA,
    before_gate: Callable[[str], object] | None = None,
) -> str:
    """Register a new version of ``model`` (added on production ``port`` if new) and drive it
    along the release path to ``state``, each step by its own actor (dev registers, val
    validates, boss approves, ci builds, stages and gates, rel promotes). ``before_gate(version)``
    runs just before the gate. Returns the version."""
    reg.ensure_model(model, owner="risk", production_port=port, actor="admin")
    version = register(reg, model, sha256=sha256)

    def build_and_stage() -> None:
        reg.record_build(model, version, actor="ci", bento_tag=f"{model}:{version}")
        reg.stage(model, version, actor="ci")

    def pass_gate() -> None:
        if before_gate is not None:
            before_gate(version)
        gate(reg, version, model=model)

    steps: list[Callable[[], object]] = [
        lambda: reg.validate(model, version, actor="val", results={"parity": 0}, passed=True),
        lambda: reg.approve(model, version, actor="boss", comment="ok"),
        build_and_stage,
        pass_gate,
        lambda: reg.promote(model, version, actor="rel", sha256=sha256),
    ]
    for step in steps[: RELEASE_ORDER.index(state)]:
        step()
    return version


def gated_later(reg: Registry, clock: Clock) -> str:
    """Drive a new version of ``fraud`` to gated on the registry of ``clock``: built, then
    gated a second later. Returns the version."""
    return drive(reg, "fraud", State.GATED, before_gate=lambda _: clock.tick())
