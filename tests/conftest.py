"""Shared fixtures of unit and integration tests: a clean environment for every test; free
port blocks and trained models for whole hosts (``hosts.py``); a small model file for the
commands that take one; the logs of the hosts running when a test fails.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from free_ports import free_port_block
from machine import Machine, current, held

if TYPE_CHECKING:
    from hosts import Models

# The benchmark helpers (bench/, at the project root, not installed) serve tests too: the
# slower and the class-changing copies of a model (bench.slowcopy).
PROJECT_DIR = str(Path(__file__).resolve().parents[1])
if PROJECT_DIR not in sys.path:
    sys.path.insert(0, PROJECT_DIR)


@pytest.fixture(autouse=True)
def _clean_bentogate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's BENTOGATE_* settings."""
    for key in list(os.environ):
        if key.startswith("BENTOGATE_") and key != "BENTOGATE_TEST_PG_URL":
            monkeypatch.delenv(key)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    """Every test, its fixtures' set-up and tear-down included (a module's host starts in its
    first test's set-up), holds the machine shared (tests/machine.py)."""
    with held():
        return (yield)


@pytest.fixture
def machine() -> Machine:
    """This test's hold on the machine: ``machine.alone()`` for a part that must run as on a
    quiet host, the other workers' tests waiting."""
    return current()


@pytest.fixture(scope="session")
def port_block() -> Callable[[int], int]:
    """``port_block(n)``: the first port of ``n`` consecutive free ones (``free_ports``)."""
    return free_port_block


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """The models every test host serves (``hosts.train_models``), trained once."""
    from hosts import train_models  # imports the release workflow: only when a host runs

    return train_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small XGBoost model file and its training data as CSV (what `register` takes)."""
    from bentogate.data import make_transactions, train_xgboost, write_csv

    root = tmp_path_factory.mktemp("cli")
    data = make_transactions(1500, seed=2)
    model = root / "m.json"
    train_xgboost(data, n_estimators=5, max_depth=2).save_model(str(model))  # type: ignore[attr-defined]
    return model, write_csv(data, root / "data.csv")


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    """The PostgreSQL server URL, or skip (fail when BENTOGATE_TEST_PG_URL is set but dead).
    A test that stops PostgreSQL waits until no other test runs (tests/machine.py)."""
    from governance_support import PG_DEFAULT, pg_problem

    configured = os.environ.get("BENTOGATE_TEST_PG_URL")
    url = configured or PG_DEFAULT
    problem = pg_problem(url)
    if problem is not None:
        if configured:
            pytest.fail(f"BENTOGATE_TEST_PG_URL is set but unusable: {problem}")
        pytest.skip(f"no PostgreSQL at {PG_DEFAULT} ({problem}); set BENTOGATE_TEST_PG_URL")
    return url


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report carries the log tails of every test host running then."""
    report = yield
    hosts = sys.modules.get("hosts")  # not imported: no host has run
    if report.failed and hosts is not None:
        report.sections.extend(hosts.open_hosts_logs())
    return report
