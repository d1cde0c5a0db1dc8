"""The detached expirer every cutover on a single host leaves
(:func:`bentogate.warm.schedule_expiry`): ``python -m bentogate.expirer``, its settings in
``BENTOGATE_CONFIG``.

It bakes each new live version while the previous one is warm and stops each warm version
when its time is over (:func:`bentogate.bake.watch_then_expire`, as ``bentogate expire
--wait`` does), then exits: once the warm window is over, only the Bentos and HAProxy run.
Its own entry rather than the CLI's so that it holds only what expiry and the bake import
(no command tree, no terminal rendering, no Alembic): 81 MiB at most after its imports,
against 93 MiB for ``bentogate.cli`` (``ru_maxrss``, this machine).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from bentogate import bake
from bentogate.context import Context
from bentogate.settings import Settings


def _say(message: str) -> None:
    print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S}Z {message}", flush=True)


def main() -> int:
    ctx = Context(Settings())
    try:
        stopped = bake.watch_then_expire(ctx, _say)
    finally:
        ctx.close()
    for ref in stopped:
        _say(f"{ref} stopped")
    _say("nothing is warm any more: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
