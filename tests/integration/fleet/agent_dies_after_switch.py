"""``bentogate agent`` that kills itself (SIGKILL, as a crash would) the moment HAProxy has
confirmed its switch of a model's production port: after the ``set map`` and before the agent
records anything of it (the old version's end, its heartbeat naming the new live version).

A real agent process dies at that exact instant, no part faked: the real
``Sidecar.switch`` runs first, then the process kills itself. Run in a host's namespace by
``fleet_support.Host.start_agent(DIES_AFTER_SWITCH)`` with the host's settings.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from bentogate.haproxy import Sidecar

_switch = Sidecar.switch


def _switch_then_die(self: Sidecar, model: str, version: str, *, role: str = "live",
                     **options: Any) -> None:  # fmt: skip
    _switch(self, model, version, role=role, **options)
    if role == "live":
        print(f"switched {model} to {version}: dying before recording it", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


Sidecar.switch = _switch_then_die  # type: ignore[method-assign]

if __name__ == "__main__":
    from bentogate.cli import main

    main(["agent"])
