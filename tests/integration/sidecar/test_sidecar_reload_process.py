"""Back-to-back reloads of the real haproxy are each confirmed, and never look like a stop.

Regression for two races seen while a release applied routes twice in a row: a ``SIGUSR2``
sent while the master still re-executed itself from the previous reload was lost (9 of 30
back-to-back reloads never happened), and the pid file, removed or emptied for a few ms on
each reload, made a running haproxy look stopped ("haproxy exited" from a reload that was
fine).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from free_ports import free_port
from hosts import stop_sidecar

from bentogate.haproxy import ModelRoute, ProxyPaths, ProxySpec, Server, Sidecar, VersionBackend
from bentogate.settings import HAProxySettings

pytestmark = pytest.mark.integration


@pytest.fixture
def idle_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """A running sidecar with one unrouted backend (its server need not exist)."""
    car = Sidecar(ProxyPaths(tmp_path_factory.mktemp("reload")), HAProxySettings())
    backend = VersionBackend("fraud", "1", (Server("r1", free_port()),), "{}", ('"x"',), 4096)
    route = ModelRoute("fraud", free_port(), free_port(), None, None, (backend,))
    car.apply(ProxySpec(routes=(route,), stats_port=free_port()))
    try:
        yield car
    finally:
        stop_sidecar(car)


def test_sidecar_back_to_back_reloads_all_happen(idle_sidecar: Sidecar) -> None:
    process = idle_sidecar.process
    master = process.master_pid()
    looked_stopped = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal looked_stopped
        while not done.is_set():
            looked_stopped += process.master_pid() is None

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        workers = [process.reload() for _ in range(25)]
    finally:
        done.set()
        watcher.join()
    assert len(set(workers)) == 25  # every reload brought its own new worker
    assert process.master_pid() == master  # the master re-executes itself, same pid
    proc = idle_sidecar.process.master.execute("show proc")
    master_line = next(line for line in proc.splitlines() if " master " in f" {line} ")
    assert master_line.split()[2:4] == ["25", "[failed:"], master_line
    assert looked_stopped == 0
