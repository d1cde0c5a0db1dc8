"""Free ports for test servers: one home for every suite (conftest puts ``tests/`` on sys.path).

Ports come from *below* the range the OS hands out for client sockets: after a load test
thousands of client sockets sit in TIME_WAIT there and block a server's bind even with
SO_REUSEADDR, and a server started later would race other clients' connects for its port
(a CI run lost a haproxy stats listener that way). A port handed out once is never handed
out again in the same session, so two servers of one test never get the same one; each
pytest-xdist worker draws from its own share of that range, so two workers (processes that
cannot see each other's handed-out ports) never pick the same one either (a CI run lost a
Bento's port to another worker's block).
"""

from __future__ import annotations

import functools
import os
import random
import socket
from pathlib import Path

_handed_out: set[int] = set()
_rng = random.Random()


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive ports, free now, below the ephemeral range.

    Raises ``RuntimeError`` when 200 random tries find no such block.
    """
    for base in _rng.sample(_share(size), 200):
        block = range(base, base + size)
        if _handed_out.isdisjoint(block) and all(_bindable(p) for p in block):
            _handed_out.update(block)
            return base
    raise RuntimeError(f"no block of {size} free ports")


def _share(size: int) -> range:
    """The first ports of blocks of ``size`` that this process may hand out."""
    first, end = _slice()
    return range(first, end - size)


@functools.cache
def _slice() -> tuple[int, int]:
    """This process's ports: its xdist worker's slice of the 12,000 ports below the
    ephemeral range (all of them outside xdist), read once."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    start = max(1024, low - 12000)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    span = (low - start) // workers
    first = start + worker * span
    return first, first + span


def free_port() -> int:
    """One free port (see the module docstring)."""
    return free_port_block(1)
