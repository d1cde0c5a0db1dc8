"""Shared fixtures: a clean environment for every test; free port blocks for whole hosts.

(Here, not in tests/integration/conftest.py: that would put tests/integration on sys.path,
where its folders named like the packages would shadow them.)
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _clean_bentogate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's BENTOGATE_* settings."""
    for key in list(os.environ):
        if key.startswith("BENTOGATE_") and key != "BENTOGATE_TEST_PG_URL":
            monkeypatch.delenv(key)


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive ports, free now, below the ephemeral range.

    Not from the range the OS hands out: after a load test thousands of client sockets sit
    in TIME_WAIT there and block a server's bind even with SO_REUSEADDR, and a server
    started later would race clients' connects for its port.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for base in random.Random().sample(range(max(1024, low - 12000), low - size), 200):
        try:
            for port in range(base, base + size):
                with socket.socket() as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no block of {size} free ports")


@pytest.fixture(scope="session")
def port_block() -> Callable[[int], int]:
    """``port_block(n)``: the first port of ``n`` consecutive free ones (see above)."""
    return free_port_block
