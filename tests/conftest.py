"""Shared fixtures: a clean environment for every test; free port blocks for whole hosts.

(Here, not in tests/integration/conftest.py: that would put tests/integration on sys.path,
where its folders named like the packages would shadow them.)
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from free_ports import free_port_block


@pytest.fixture(autouse=True)
def _clean_bentogate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's BENTOGATE_* settings."""
    for key in list(os.environ):
        if key.startswith("BENTOGATE_") and key != "BENTOGATE_TEST_PG_URL":
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def port_block() -> Callable[[int], int]:
    """``port_block(n)``: the first port of ``n`` consecutive free ones (``free_ports``)."""
    return free_port_block
