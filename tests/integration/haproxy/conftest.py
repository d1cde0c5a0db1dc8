"""Fixtures for the real haproxy: stand-in Bentos and a sidecar in a tmp directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hosts import stop_sidecar
from hx_support import Ports, StandIn

from bentogate.haproxy import ProxyPaths, Sidecar
from bentogate.settings import HAProxySettings


@pytest.fixture
def standin() -> Iterator[Callable[[str, str], StandIn]]:
    """Factory of stand-in Bentos, all killed at teardown."""
    started: list[StandIn] = []

    def start(model: str, version: str) -> StandIn:
        started.append(StandIn(model, version))
        return started[-1]

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def ports() -> Ports:
    return Ports()


@pytest.fixture
def sidecar(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Sidecar]:
    """A sidecar in a short tmp directory; haproxy stopped (killed if need be) at teardown."""
    directory = tmp_path_factory.mktemp("hx")
    car = Sidecar(ProxyPaths(directory), HAProxySettings(binary="/usr/sbin/haproxy"))
    yield car
    try:
        stop_sidecar(car, timeout=3)
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print("--- haproxy.log ---\n" + car.process.log_tail(50))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, "rep_" + report.when, report)
