"""The detached expirer every cutover on a single host leaves
(:func:`bentogate.warm.schedule_expiry`): ``python -m bentogate.expirer``, its settings in
``BENTOGATE_CONFIG``.

It bakes each new live version while the previous one is warm and stops each warm version
when its time is over (:func:`bentogate.bake.watch_then_expire`, as ``bentogate expire
--wait`` does), one per host (:func:`bentogate.warm.expirer_lock`), then exits: once the
warm window is over, only the Bentos and HAProxy run.

Its own entry rather than the CLI's so that it holds only what expiry and the bake import
(no command tree, no terminal rendering, no Alembic): 81 MiB after its imports against
93 MiB for ``bentogate.cli`` (``ru_maxrss``, this machine); 67-112 MiB resident while it
watched a bake in a ``./run bench --quick`` run.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from bentogate import bake, warm
from bentogate.context import Context
from bentogate.errors import BentogateError
from bentogate.locks import file_lock
from bentogate.settings import Settings


def _say(message: str) -> None:
    print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S}Z {message}", flush=True)


def main() -> int:
    """Bake and expire while anything is warm, as the host's only expirer. The lock is let
    go before a last look at the DB: a cutover meanwhile either found it held (then this
    look sees its warm version and goes on) or starts an expirer of its own."""
    ctx = Context(Settings())
    stopped = []
    try:
        while True:
            try:
                with file_lock(warm.expirer_lock(ctx), 0):
                    stopped += bake.watch_then_expire(ctx, _say)
            except BentogateError:
                _say("another expirer runs on this host: it takes over")
                break
            if not warm.warm_versions(ctx):
                break
    finally:
        ctx.close()
    for ref in stopped:
        _say(f"{ref} stopped")
    _say("nothing is warm any more: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
