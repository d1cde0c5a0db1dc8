"""The e2e tests' shared piece: the wheel of the demo test (test_wheel.py), built and installed
in the background from the first e2e test on, when that test is to run."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from test_wheel import Installer

WHEEL_TEST = "test_wheel.py"


@pytest.fixture(scope="session", autouse=True)
def wheel_installer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installer | None]:
    """The wheel's installer, started at the first e2e test if the wheel's test is among the
    session's; its venv (over a GB) removed at the end."""
    if not any(item.path.name == WHEEL_TEST for item in request.session.items):
        yield None
        return
    installer = Installer(tmp_path_factory.mktemp("wheel"))
    installer.start()
    try:
        yield installer
    finally:
        installer.join()
        shutil.rmtree(installer.venv, ignore_errors=True)
