"""Drive the Bento's own ASGI app in-process: BentoML's middleware stack plus service.py,
no sockets. What a request costs the framework and the service, free of network noise.

BentoML binds its model store when it is first imported: call :func:`load_service` in a
process whose ``BENTOML_HOME`` points at a store holding the model (see
:func:`store_model`), before anything else imports bentoml.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
from collections.abc import MutableMapping
from pathlib import Path
from types import ModuleType
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
Message = MutableMapping[str, Any]


def store_model(tag: str, artifact_dir: Path, sha256: str) -> None:
    """Put an imported artifact into the current BentoML model store as ``tag``."""
    import bentoml

    name, version = tag.split(":", 1)
    metadata = {"model": name, "version": version, "sha256": sha256}
    with bentoml.models.create(tag, metadata=metadata) as model:
        for file in ("model.onnx", "meta.json"):
            shutil.copyfile(artifact_dir / file, Path(model.path) / file)


def load_service(
    model_tag: str, module_name: str = "bench_service", project_dir: Path = PROJECT_DIR
) -> ModuleType:
    """Import ``project_dir``'s ``service.py`` as ``bentoml serve`` would for a Bento built
    for ``model_tag``."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    BentoMLContainer.bento_arguments.set({"model_tag": model_tag})
    # As `bentoml serve` does, the source directory first on sys.path: service.py imports
    # this tree's serving/ package.
    sys.path.insert(0, str(project_dir))
    spec = importlib.util.spec_from_file_location(module_name, project_dir / "service.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


class AsgiDriver:
    """The service's full ASGI app (as ``bentoml serve`` builds it), started, with one
    request body to POST to ``path``."""

    def __init__(self, module: ModuleType, body: bytes, path: str = "/predict") -> None:
        service = module.ModelService
        service.inject_config()
        self.app = service.to_asgi(is_main=True)
        self.loop = asyncio.new_event_loop()
        self.body = body
        headers = [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 3000),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": "POST",
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
        }
        self.sent: list[Message] = []
        self._lifespan: asyncio.Queue[Message] | None = None
        self._lifespan_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the app's lifespan startup (creates the service: loads the model)."""
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        self._lifespan = asyncio.Queue()
        started = asyncio.Event()
        await self._lifespan.put({"type": "lifespan.startup"})
        queue = self._lifespan

        async def receive() -> Message:
            return await queue.get()

        async def send(message: Message) -> None:
            if message["type"].startswith("lifespan.startup"):
                started.set()
                if message["type"] == "lifespan.startup.failed":
                    raise RuntimeError(message.get("message", "startup failed"))

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._lifespan_task = asyncio.ensure_future(self.app(scope, receive, send))
        await started.wait()

    def request(self) -> int:
        """One POST through the whole stack; the response status."""
        self.sent.clear()
        self.loop.run_until_complete(self._request())
        return int(self.sent[0]["status"])

    async def _request(self) -> None:
        body = self.body

        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            self.sent.append(message)

        await self.app({**self.scope, "state": {}}, receive, send)

    def close(self) -> None:
        if self._lifespan is not None and self._lifespan_task is not None:
            self._lifespan.put_nowait({"type": "lifespan.shutdown"})
            self.loop.run_until_complete(asyncio.wait_for(self._lifespan_task, 10))
        self.loop.close()
