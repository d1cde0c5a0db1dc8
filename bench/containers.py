"""``python -m bench.containers``: what the container path costs on this machine.

1. **Image build** of a version (BentoML's containerize with the configured engine, FROM this
   machine's base image, which must be built: ``./run containers``): the *first* build of a
   version's image with the base cached, then a *rebuild* of the same Bento (its image
   removed first: podman commits once, no layer cache, so a rebuild redoes every step), and
   the image of a second version.
2. **Start until healthy**: ``ContainerBackend.start`` until ``/readyz`` answers 200 (the
   service loaded its model and its canary prediction passed at start-up), several times,
   beside ``ProcessBackend`` (``bentoml serve`` of the same Bento) for the ratio.

Writes ``bench/results/containers.{json,md}``. About 3 minutes on a quiet machine (it waits
up to ``--wait-quiet`` seconds for one): the figures are disk-bound and move with other work
on the machine (with the vfs driver much more: each build step and start copies the image).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import cpu_busy, describe
from bench.run import RESULTS_DIR, Progress, wait_for_quiet
from bench.stack import free_port
from bentogate.bentos import (
    ContainerBackend,
    ProcessBackend,
    Runtime,
    VersionSpec,
    base_image,
    build_bento,
    containerize,
    engine_problem,
    image_id,
)
from bentogate.bentos.engine import run_engine
from bentogate.context import PROJECT_DIR
from bentogate.data import make_transactions, train_xgboost
from bentogate.modelimport import import_xgboost
from bentogate.settings import ContainerSettings, Settings


def _bento(settings: Settings, directory: Path, version: str, trees: int) -> str:
    """Train a small model, import it and build its Bento ``bench:<version>``."""
    data = make_transactions(1500, seed=int(version))
    model_file = directory / f"m{version}.json"
    booster = train_xgboost(data, n_estimators=trees, max_depth=3)
    booster.save_model(str(model_file))  # type: ignore[attr-defined]
    artifact = import_xgboost(model_file, data, directory / f"artifacts-{version}")
    spec = VersionSpec(
        "bench", version, artifact.sha256, artifact.directory,
        {"model": "bench", "version": version, "sha256": artifact.sha256},
    )  # fmt: skip
    return build_bento(
        PROJECT_DIR,
        settings.bentoml_home,
        spec,
        args=settings.bento.build_args(),
        base_image=base_image(settings.container),
    )


def _image_size_mb(engine: ContainerSettings, image: str) -> float:
    size = run_engine(engine, ["image", "inspect", "--format", "{{.Size}}", image])
    return int(size) / 1e6


def _starts(runtime: Runtime, tag: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        handle = runtime.start(tag, free_port())
        try:
            runtime.wait_ready(handle, 180)
            times.append(time.perf_counter() - started)
        finally:
            runtime.stop(handle, 15)
    return times


def measure(work: Path, runs: int, progress: Progress) -> dict[str, Any]:
    """The figures above, measured in ``work`` (a temporary BentoML home and logs)."""
    repository = f"bentogate-bench-{int(time.time())}"
    settings = Settings(home=work / "home", container={"repository": repository})
    engine = settings.container
    problem = engine_problem(engine)
    base = base_image(engine)
    if problem is not None or image_id(engine, base) is None:
        raise SystemExit(f"no container path here: {problem or f'no base image {base}'}")
    progress("building two versions' Bentos")
    first, second = _bento(settings, work, "1", 10), _bento(settings, work, "2", 40)
    builds: dict[str, float] = {}
    images: dict[str, str] = {}
    try:
        for name, tag in (("first", first), ("rebuild", first), ("second_version", second)):
            image_tag = engine.image_tag(*tag.split(":"))
            if name == "rebuild":
                run_engine(engine, ["rmi", "--force", image_tag], timeout=120)
            progress(f"image build ({name.replace('_', ' ')}): {image_tag}")
            started = time.perf_counter()
            images[tag] = containerize(settings.bentoml_home, tag, image_tag, engine)
            builds[name] = time.perf_counter() - started
        progress(f"starting {first} from its image until ready, {runs} times")
        containers = ContainerBackend(engine, work / "logs", images=images)
        container_starts = _starts(containers, first, runs)
        progress(f"starting {first} as a bentoml serve process until ready, {runs} times")
        processes = ProcessBackend(settings.bentoml_home, work / "logs")
        process_starts = _starts(processes, first, runs)
        sizes = {tag: _image_size_mb(engine, image) for tag, image in images.items()}
    finally:
        for image in images.values():
            run_engine(engine, ["rmi", "--force", image], timeout=120)
    return {
        "engine": engine.engine,
        "builder": engine.builder,
        "storage_driver": engine.storage_driver,
        "base_image": base,
        "base_image_mb": _image_size_mb(engine, base),
        "image_mb": sizes,
        "build_s": builds,
        "container_start_s": container_starts,
        "process_start_s": process_starts,
    }


def markdown(result: dict[str, Any]) -> str:
    """The results as Markdown (``containers.md``)."""
    figures = result["figures"]
    builds = figures["build_s"]
    container, process = figures["container_start_s"], figures["process_start_s"]
    c50, p50 = statistics.median(container), statistics.median(process)
    machine = result["machine"]
    lines = [
        "# The container path: image builds and starts",
        "",
        f"{result['when']}, {machine['cpus']} CPUs, busy {result['busy_before']:.0%} before / "
        f"{result['busy_after']:.0%} after (other work on the machine); "
        f"{figures['engine']} (builder {figures['builder']}, {figures['storage_driver']} "
        "storage), FROM "
        f"`{figures['base_image']}` ({figures['base_image_mb']:.0f} MB, made by "
        "`./run containers`, cached).",
        "",
        "| image build | seconds |",
        "|---|---:|",
        f"| first build of a version's image, base cached | {builds['first']:.1f} |",
        f"| rebuild of the same Bento (image removed first) | {builds['rebuild']:.1f} |",
        f"| another version's image | {builds['second_version']:.1f} |",
        "",
        f"| start until ready (`/readyz` 200), {len(container)} runs | median s | min | max |",
        "|---|---:|---:|---:|",
        f"| container of the image | {c50:.2f} | {min(container):.2f} | {max(container):.2f} |",
        f"| `bentoml serve` process | {p50:.2f} | {min(process):.2f} | {max(process):.2f} |",
        "",
        f"A container takes {c50 / p50:.1f}x a process's time to be ready. Images: "
        f"{', '.join(f'{t}: {mb:.0f} MB' for t, mb in figures['image_mb'].items())}.",
        "",
        "Rerun: `.venv/bin/python -m bench.containers` (about 3 minutes; `./run containers` "
        "first).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.containers", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="starts of each kind")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--wait-quiet", type=float, default=300, help="seconds to wait for a quiet machine"
    )
    args = parser.parse_args(argv)

    progress = Progress()
    busy = wait_for_quiet(progress, args.wait_quiet)
    with tempfile.TemporaryDirectory(prefix="bench-containers-") as directory:
        figures = measure(Path(directory), args.runs, progress)
    result = {
        "when": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": describe(),
        "busy_before": busy,
        "busy_after": cpu_busy(2.0),
        "figures": figures,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "containers.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "containers.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
