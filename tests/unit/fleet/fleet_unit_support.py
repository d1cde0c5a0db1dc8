"""A SQLite fleet for unit tests: a model with versions driven to gated through the registry,
and a runtime that records what it is asked to do."""

from __future__ import annotations

from pathlib import Path

from governance_support import register

from bentogate.bentos import Handle
from bentogate.context import Context
from bentogate.errors import NotFoundError
from bentogate.governance import Registry
from bentogate.settings import Settings

SHA = "b" * 64


def context(tmp_path: Path, **settings: object) -> Context:
    ctx = Context(Settings(home=tmp_path / "home", **settings))  # type: ignore[arg-type]
    ctx.registry.upgrade()
    return ctx


def gated(
    reg: Registry,
    model: str = "fraud",
    *,
    image_tag: str | None = None,
    image_id: str | None = None,
) -> str:
    """Register a version of ``model`` (created if needed) and drive it to gated."""
    reg.ensure_model(model, owner="risk", production_port=10000, actor="admin")
    version = register(reg, model, sha256=SHA, feature_names=["f1"], artifact_uri="/nowhere")
    reg.validate(model, version, actor="val", results={}, passed=True)
    reg.approve(model, version, actor="boss")
    reg.record_build(
        model, version, actor="ci", bento_tag=f"{model}:{version}", image_tag=image_tag,
        image_id=image_id,
    )  # fmt: skip
    reg.stage(model, version, actor="ci")
    reg.record_gate(
        model,
        version,
        actor="ci",
        policy={},
        results={},
        verdict="pass",
        report_path="-",
        compared_with=None,
    )
    return version


def report(model: str, live: str | None, *, healthy: bool = True, **extra: object) -> dict:
    return {"models": {model: {"live": live, "healthy": healthy, "port": 10010, **extra}}}


class RecordingRuntime:
    """A runtime that records every call (and fails none)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def model_sha256(self, tag: str) -> tuple[str, str]:
        """Like an empty Bento store: nothing to measure."""
        self.calls.append(("model_sha256", tag))
        raise NotFoundError(f"no model {tag} (a recording runtime serves none)")

    def start(self, tag: str, port: int) -> Handle:
        self.calls.append(("start", tag))
        return Handle(tag=tag, port=port, pid=None, log_path=Path())

    def wait_ready(self, handle: Handle, timeout: float) -> None:
        self.calls.append(("wait_ready", handle.tag))

    def is_alive(self, handle: Handle) -> bool:
        self.calls.append(("is_alive", handle.tag))
        return True

    def stop(self, handle: Handle, timeout: float) -> None:
        self.calls.append(("stop", handle.tag))
