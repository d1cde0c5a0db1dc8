"""Concurrent promotions serialize: one production version, clear errors for the losers."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from governance_support import SHA, register

from bentogate.errors import ConcurrentChange, GovernanceError, IllegalTransition
from bentogate.governance import Registry, State

pytestmark = pytest.mark.integration
ATTEMPTS = 100


def _connection_budget(raw: sa.Engine) -> int:
    """How many of the attempts may hold a connection at once (PostgreSQL max_connections)."""
    if raw.dialect.name != "postgresql":
        return ATTEMPTS
    with raw.connect() as conn:
        limit = int(conn.execute(sa.text("SHOW max_connections")).scalar_one())
        used = int(conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity")).scalar_one())
    return max(4, min(ATTEMPTS, limit - used - 10))


def _race(db_url: str, budget: int, versions: list[str]) -> list[BaseException | None]:
    barrier = threading.Barrier(ATTEMPTS)
    slots = threading.BoundedSemaphore(budget)
    outcomes: list[BaseException | None] = [None] * ATTEMPTS

    def attempt(i: int) -> None:
        registry = Registry(db_url)
        try:
            barrier.wait(timeout=30)
            with slots:
                registry.promote("fraud", versions[i % len(versions)], actor=f"rel{i}", sha256=SHA)
        except BaseException as err:
            outcomes[i] = err
        finally:
            registry.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(ATTEMPTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return outcomes


def test_concurrent_promotions_leave_one_production(
    reg: Registry, advance: Callable[..., str], raw: sa.Engine, db_url: str
) -> None:
    versions = [advance("fraud", State.GATED), advance("fraud", State.GATED)]
    audited_before = len(reg.audit())
    outcomes = _race(db_url, _connection_budget(raw), versions)

    errors = [o for o in outcomes if o is not None]
    assert all(isinstance(e, IllegalTransition | ConcurrentChange) for e in errors), errors
    assert all(str(e).startswith("refused: promote fraud:") for e in errors)
    wins = ATTEMPTS - len(errors)
    assert wins >= 1
    with raw.connect() as conn:
        production = conn.execute(
            sa.text("SELECT count(*) FROM versions WHERE state = 'production'")
        ).scalar_one()
    assert production == 1
    assert sum(v.state == State.PRODUCTION for v in reg.versions("fraud")) == 1

    new = reg.audit()[audited_before:]
    counts = Counter((e.action, e.outcome) for e in new)
    assert counts[("promote", "ok")] == wins
    assert counts[("promote", "refused")] == len(errors)
    assert counts[("demote", "ok")] == wins - 1  # the first win had nothing to demote
    assert reg.verify_audit()[0]


def test_concurrent_registrations_get_distinct_numbers(
    reg: Registry, db_url: str, make_registry: Callable[..., Registry]
) -> None:
    reg.ensure_model("fraud", owner="risk", production_port=10000, actor="admin")
    results: list[str] = []
    failures: list[BaseException] = []

    def register_one() -> None:
        try:
            results.append(register(make_registry()))
        except GovernanceError as err:
            failures.append(err)

    threads = [threading.Thread(target=register_one) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert sorted(results, key=int) == [str(i) for i in range(1, 13)]
