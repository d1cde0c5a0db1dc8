"""Build, export, import and containerize the Bento of one model version."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bentogate.errors import BuildError, NotFoundError
from bentos._cli import run_bentoml, run_python

# What a model store entry holds: the served ONNX model and its schema/reference data.
MODEL_FILES = ("model.onnx", "meta.json")
# The build context: only what bentofile.yaml names. Building from the project directory
# itself would let BentoML walk the state directory (and its own temporary build tree).
BUILD_FILES = ("service.py", "bentofile.yaml", "bentos/requirements-serve.txt")


@dataclass(frozen=True)
class VersionSpec:
    """What the Bento of one version is built from."""

    model: str
    version: str
    sha256: str
    artifact_dir: Path
    labels: dict[str, str]

    @property
    def tag(self) -> str:
        return f"{self.model}:{self.version}"


def _bento_exists(bentoml_home: Path, tag: str) -> bool:
    listing = json.loads(run_bentoml(["list", "-o", "json"], bentoml_home, timeout=120))
    return any(item.get("tag") == tag for item in listing)


def _model_exists(bentoml_home: Path, tag: str) -> bool:
    listing = json.loads(run_bentoml(["models", "list", "-o", "json"], bentoml_home, timeout=120))
    return any(item.get("tag") == tag for item in listing)


def save_model(bentoml_home: Path, spec: VersionSpec) -> None:
    """Copy the version's artifact into the BentoML model store as ``<model>:<version>``."""
    if _model_exists(bentoml_home, spec.tag):
        return
    payload = {
        "tag": spec.tag,
        "labels": spec.labels,
        "metadata": {"model": spec.model, "version": spec.version, "sha256": spec.sha256},
        "source_dir": str(spec.artifact_dir),
        "files": list(MODEL_FILES),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(payload, handle)
    try:
        run_python(["-m", "bentos._save_model", handle.name], bentoml_home, timeout=180)
    finally:
        Path(handle.name).unlink(missing_ok=True)


def build_bento(
    project_dir: Path,
    bentoml_home: Path,
    spec: VersionSpec,
    *,
    max_body_bytes: int,
    max_batch_rows: int,
) -> str:
    """``bentoml build`` the version's Bento from ``project_dir``; returns its tag.

    Idempotent: a Bento that already exists for the tag is kept (versions are immutable).
    Raises BuildError with bentoml's output if the build fails.
    """
    save_model(bentoml_home, spec)
    if _bento_exists(bentoml_home, spec.tag):
        return spec.tag
    options = [
        "--name", spec.model,
        "--version", spec.version,
        "--arg", f"model_tag={spec.tag}",
        "--arg", f"max_body_bytes={max_body_bytes}",
        "--arg", f"max_batch_rows={max_batch_rows}",
        "-o", "tag",
    ]  # fmt: skip
    for key, value in spec.labels.items():
        options += ["--label", f"{key}={value}"]
    with tempfile.TemporaryDirectory(prefix="bentogate-build-") as directory:
        context = Path(directory)
        for name in BUILD_FILES:
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(project_dir / name, context / name)
        run_bentoml(
            ["build", str(context), "-f", str(context / "bentofile.yaml"), *options],
            bentoml_home,
            cwd=context,
        )
    if not _bento_exists(bentoml_home, spec.tag):
        raise BuildError(f"bentoml build finished but {spec.tag} is not in the store")
    return spec.tag


def bento_path(bentoml_home: Path, tag: str) -> Path:
    """The directory of a built Bento in the store; NotFoundError if there is none."""
    name, version = tag.split(":", 1)
    path = bentoml_home / "bentos" / name / version
    if not path.is_dir():
        raise NotFoundError(f"no Bento {tag} in {bentoml_home}")
    return path


def export_bento(bentoml_home: Path, tag: str, out_dir: Path) -> Path:
    """Write ``<out_dir>/<model>-<version>.bento``, the portable archive of a version."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{tag.replace(':', '-')}.bento"
    if not target.exists():
        run_bentoml(["export", tag, str(target)], bentoml_home)
    return target


def import_bento(bentoml_home: Path, archive: Path) -> None:
    """Import a ``.bento`` archive (with its model) into this home's store."""
    if not archive.is_file():
        raise NotFoundError(f"no Bento archive at {archive}")
    run_bentoml(["import", str(archive)], bentoml_home)


def dockerfile(bentoml_home: Path, tag: str) -> Path:
    """The Dockerfile ``bentoml build`` wrote into the Bento (checked even without an engine)."""
    return bento_path(bentoml_home, tag) / "env" / "docker" / "Dockerfile"


def containerize(bentoml_home: Path, tag: str, image_tag: str) -> str:
    """``bentoml containerize`` the Bento as ``image_tag``; BuildError if no engine answers."""
    if shutil.which("docker") is None:
        raise BuildError("cannot containerize: no docker client on this machine")
    from bentos.runtime import docker_engine_available

    if not docker_engine_available():
        raise BuildError(
            "cannot containerize: no Docker engine answers on this machine "
            "(`docker info` fails); the Bento and its Dockerfile are built"
        )
    run_bentoml(["containerize", tag, "-t", image_tag], bentoml_home, timeout=3600)
    return image_tag
