"""``bentogate demo``: the whole release story on the embedded default (SQLite, one host)."""

from __future__ import annotations

from pathlib import Path

import orjson

from bentogate import release
from bentogate.context import Context, Progress, Ref, artifact_dir
from bentogate.data import make_demo_files
from bentogate.modelimport import load_artifact
from bentogate.status import status_rows

MODEL = "fraud"


def run_demo(
    ctx: Context, workdir: Path, *, keep_running: bool, progress: Progress
) -> list[dict[str, object]]:
    """Train v1 and v2, take v1 to production, then v2 through gate and cutover.

    Returns the status rows of the end of the story (before anything is stopped). Without
    ``keep_running`` everything started is stopped at the end; with it, HAProxy and the live
    Bento stay up for ``curl`` (``workdir/example.json``, :func:`example_path`).
    """
    release.init(ctx)
    progress("training the reference models v1 and v2 on synthetic transactions")
    files = make_demo_files(workdir)
    actors = release.Actors(
        developer="dana.dev", validator="vic.validator", approver="ana.approver"
    )
    progress(
        f"one machine plays four people ({actors.developer}, {actors.validator}, "
        f"{actors.approver}, {actors.release}): named, not authenticated, and recorded so"
    )
    try:
        for name in ("v1", "v2"):
            info = release.register(
                ctx,
                MODEL,
                files[name],
                files["holdout"],
                developer=actors.developer,
                purpose="card fraud scoring",
            )
            ref = Ref(MODEL, info.version)
            progress(f"registered {ref} (sha256 {info.sha256[:12]})")
            release.release(ctx, ref, files["holdout"], actors=actors, progress=progress)
            progress(f"{ref} is live on port {ctx.registry.get_model(MODEL).production_port}")
        rows = status_rows(ctx)
        example = example_path(workdir)
        canary = load_artifact(artifact_dir(info.artifact_uri)).canary_row  # the live v2
        example.write_text(orjson.dumps({"features": canary}).decode())
        port = ctx.registry.get_model(MODEL).production_port
        progress(f"try: curl -s -XPOST 127.0.0.1:{port}/predict -d @{example}")
        return rows
    finally:
        if not keep_running:
            release.shutdown(ctx, actor=actors.release)


def example_path(workdir: Path) -> Path:
    """The request body the demo leaves for ``curl``: the live version's canary row."""
    return workdir / "example.json"
