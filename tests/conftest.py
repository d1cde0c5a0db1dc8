"""Shared fixtures: a clean environment for every test."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_bentogate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's BENTOGATE_* settings."""
    for key in list(os.environ):
        if key.startswith("BENTOGATE_") and key != "BENTOGATE_TEST_PG_URL":
            monkeypatch.delenv(key)
