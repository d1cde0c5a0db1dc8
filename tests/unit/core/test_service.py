"""service.py, loaded as ``bentoml serve`` loads it; what it serves with is tested with the
package it imports (tests/unit/serving/)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def service() -> ModuleType:
    from bentoml._internal.configuration.containers import BentoMLContainer

    # What `bentoml serve` sets from the Bento's build arguments before importing service.py,
    # with the Bento's source directory (service.py and serving/) first on sys.path.
    BentoMLContainer.bento_arguments.set({"model_tag": "fraud:1"})
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))
    spec = importlib.util.spec_from_file_location("bentogate_service", PROJECT_DIR / "service.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bentogate_service"] = module
    spec.loader.exec_module(module)
    return module


async def _json_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_bentos_uvicorn_serves_with_the_one_write_protocol(service: ModuleType) -> None:
    """BentoML's worker asks uvicorn for its "auto" protocol after importing service.py."""
    import uvicorn

    from serving import OneWriteHttpProtocol

    config = uvicorn.Config(app=_json_app, log_config=None)
    config.load()
    assert config.http_protocol_class is OneWriteHttpProtocol
