"""A build context whose Bento is slow on a class of clients' rows: the project's own
service.py and serving/ (what ``bentoml build`` takes, ``bentogate.bentos.build.BUILD_FILES``)
with the ``/predict`` endpoint wrapped (where the router and ``serving.stack.DirectRoutes``
both reach it) so that a row whose feature ``feature`` is above ``above`` waits ``delay_s``
(an ``asyncio`` sleep: other requests go on meanwhile) before it is answered. The scores are
the model's; only the Bento's own time changes, as with a pathological path of a real model
on some inputs. Build with it by pointing ``Context.project_dir`` at the returned directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bentogate.bentos.build import BUILD_FILES
from bentogate.context import PROJECT_DIR

_WRAPPER = """

# --- test only (tests/integration/sidecar/slow_serving.py): slow on a class of rows ---
import asyncio as _asyncio
import json as _json

_FEATURE, _ABOVE, _DELAY_S = {feature!r}, {above!r}, {delay_s!r}
_prediction_app = prediction_app


def _slow_on_a_class(endpoint):
    async def slow(scope, receive, send):
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            row = _json.loads(body)["features"]
            slow = isinstance(row, list) and float(row[_FEATURE]) > _ABOVE
        except Exception:
            slow = False
        if slow:
            await _asyncio.sleep(_DELAY_S)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {{"type": "http.request", "body": body, "more_body": False}}

        return await endpoint(scope, replay, send)

    return slow


def prediction_app(*args, **kwargs):  # noqa: F811 - the wrapped one service.py imports
    app = _prediction_app(*args, **kwargs)
    for route in app.routes:  # the endpoint itself, however a request reaches it
        if getattr(route, "path", "") == "/predict":
            route.endpoint = route.app = _slow_on_a_class(route.endpoint)
    return app
"""


def slow_project(directory: Path, *, feature: int, above: float, delay_s: float) -> Path:
    """Write the slow build context into ``directory``; returns it."""
    for pattern in BUILD_FILES:
        for source in sorted(PROJECT_DIR.glob(pattern)):
            target = directory / source.relative_to(PROJECT_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    package = directory / "serving" / "__init__.py"
    wrapper = _WRAPPER.format(feature=feature, above=above, delay_s=delay_s)
    package.write_text(package.read_text() + wrapper)
    return directory
