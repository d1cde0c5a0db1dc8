"""Build, export, import and containerize the Bento of one model version.

A store is one ``BENTOML_HOME``; every call runs the ``bentoml`` command line against it
(BentoML binds its store at import). Existence is read from the store's documented layout
(``bentos/<name>/<version>/bento.yaml``, ``models/<name>/<version>/model.yaml``): a listing
would cost a BentoML start-up per question.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from bentogate.bentos._cli import run_bentoml, run_python
from bentogate.bentos.baseimage import base_image
from bentogate.bentos.engine import engine_env, engine_problem, image_id
from bentogate.errors import BuildError, NotFoundError
from bentogate.settings import ContainerSettings

# What a model store entry holds: the served ONNX model and its schema/reference data.
MODEL_FILES = ("model.onnx", "meta.json")
# The build context: only what bentofile.yaml names (glob patterns, each matching at least
# one file). Building from the project directory itself would let BentoML walk the state
# directory (and its own temporary build tree).
DOCKERFILE_TEMPLATE = "Dockerfile.template"
BUILD_FILES = ("service.py", "serving/*.py", "bentofile.yaml", "bentos/requirements-serve.txt")


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


def _entry(bentoml_home: Path, kind: str, tag: str) -> Path:
    name, _, version = tag.partition(":")
    return bentoml_home / kind / name / version


def _bento_exists(bentoml_home: Path, tag: str) -> bool:
    return (_entry(bentoml_home, "bentos", tag) / "bento.yaml").is_file()


def _model_exists(bentoml_home: Path, tag: str) -> bool:
    return (_entry(bentoml_home, "models", tag) / "model.yaml").is_file()


def model_path(bentoml_home: Path, tag: str) -> Path:
    """The directory of a model in the store; NotFoundError if there is none."""
    if not _model_exists(bentoml_home, tag):
        raise NotFoundError(f"no model {tag} in {bentoml_home}")
    return _entry(bentoml_home, "models", tag)


def served_sha256(bentoml_home: Path, tag: str) -> str:
    """sha256 of the ONNX model ``tag``'s Bento serves from this store (what would really
    answer requests). NotFoundError if the store has no such model."""
    path = model_path(bentoml_home, tag) / MODEL_FILES[0]
    if not path.is_file():
        raise NotFoundError(f"no model file for {tag} in the store at {path}")
    return _sha256(path.read_bytes())


def archive_path(directory: Path, tag: str) -> Path:
    """Where the portable archive of ``tag`` lives in ``directory``: ``<model>-<version>.bento``."""
    return directory / f"{tag.replace(':', '-')}.bento"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(bentoml_home: Path, spec: VersionSpec) -> None:
    """Copy the version's artifact into the BentoML model store as ``<model>:<version>``.

    Idempotent for the same model bytes. Raises BuildError if the artifact's ONNX model is
    not the approved one (``spec.sha256``) or the store already holds other bytes under
    the tag (versions are immutable).
    """
    if _model_exists(bentoml_home, spec.tag):
        stored = model_path(bentoml_home, spec.tag) / MODEL_FILES[0]
        found = _sha256(stored.read_bytes()) if stored.is_file() else "nothing"
        if found != spec.sha256:
            raise BuildError(
                f"the model store already holds {spec.tag} with model sha256 {found[:12]}, "
                f"not the approved {spec.sha256[:12]}: versions are immutable"
            )
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
        run_python(["-m", "bentogate.bentos._save_model", handle.name], bentoml_home, timeout=180)
    finally:
        Path(handle.name).unlink(missing_ok=True)


def build_bento(
    project_dir: Path,
    bentoml_home: Path,
    spec: VersionSpec,
    *,
    args: Mapping[str, object],
    base_image: str,
    progress: Callable[[str], None] | None = None,
) -> str:
    """``bentoml build`` the version's Bento from ``project_dir``; returns its tag.

    ``base_image`` is what its container image is to be built FROM (BentoML's
    ``docker.base_image``, in the Bento from then on: :func:`containerize` needs it).

    ``args`` are the service's build arguments besides the model (``service.BentoArgs``:
    body limit, batch rows, recent-request retention), fixed in the Bento from then on.
    Idempotent: a Bento that already exists for the tag is kept (versions are immutable).
    ``progress`` is told each slow step (one ``bentoml`` process each, seconds to minutes).
    Raises BuildError with bentoml's output if the build fails.
    """
    say = progress or (lambda _: None)
    if not _model_exists(bentoml_home, spec.tag):
        say(f"saving the model of {spec.tag} into the BentoML store")
    save_model(bentoml_home, spec)
    if _bento_exists(bentoml_home, spec.tag):
        return spec.tag
    say(f"bentoml build {spec.tag}")
    options = [
        "--name", spec.model,
        "--version", spec.version,
        "--arg", f"model_tag={spec.tag}",
        *(item for key, value in args.items() for item in ("--arg", f"{key}={value}")),
        "-o", "tag",
    ]  # fmt: skip
    for key, value in spec.labels.items():
        options += ["--label", f"{key}={value}"]
    with tempfile.TemporaryDirectory(prefix="bentogate-build-") as directory:
        context = Path(directory)
        for source in _build_files(project_dir):
            target = context / source.relative_to(project_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        _name_base_image(context / "bentofile.yaml", base_image)
        run_bentoml(
            ["build", str(context), "-f", str(context / "bentofile.yaml"), *options],
            bentoml_home,
            cwd=context,
        )
    if not _bento_exists(bentoml_home, spec.tag):
        raise BuildError(f"bentoml build finished but {spec.tag} is not in the store")
    return spec.tag


def _name_base_image(bentofile: Path, base_image: str) -> None:
    """Make the Bento's image build FROM ``base_image`` and nothing else: BentoML's own
    Dockerfile for a custom base (``docker.base_image``), which installs the Bento's pinned
    requirements with uv. A ``dockerfile_template`` that only extends it selects that
    Dockerfile: without one, BentoML 1.4 writes its newer one, which also apt-get installs a
    compiler and git into every image (a network and minutes per version, for wheels only)."""
    recipe = yaml.safe_load(bentofile.read_text())
    docker = recipe.setdefault("docker", {})
    docker.pop("distro", None)  # the base image's, ignored (with a warning) when it is named
    docker["base_image"] = base_image
    docker["dockerfile_template"] = DOCKERFILE_TEMPLATE
    bentofile.write_text(yaml.safe_dump(recipe, sort_keys=False))
    (bentofile.parent / DOCKERFILE_TEMPLATE).write_text("{% extends bento_base_template %}\n")


def _build_files(project_dir: Path) -> list[Path]:
    """The files of ``project_dir`` that BUILD_FILES names; BuildError if one is missing."""
    files = []
    for pattern in BUILD_FILES:
        found = sorted(project_dir.glob(pattern))
        if not found:
            raise BuildError(f"cannot build: {project_dir} has no {pattern}")
        files += found
    return files


def bento_path(bentoml_home: Path, tag: str) -> Path:
    """The directory of a built Bento in the store; NotFoundError if there is none."""
    path = _entry(bentoml_home, "bentos", tag)
    if not path.is_dir():
        raise NotFoundError(f"no Bento {tag} in {bentoml_home}")
    return path


def max_body_bytes(bentoml_home: Path, tag: str) -> int:
    """The request-body limit built into ``tag``'s Bento (its ``max_body_bytes`` argument):
    what the Bento accepts, and so what a proxy in front of it must let through.
    NotFoundError if the store has no such Bento; BuildError if it has no such argument."""
    info = yaml.safe_load((bento_path(bentoml_home, tag) / "bento.yaml").read_text())
    try:
        return int(info["args"]["max_body_bytes"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BuildError(f"Bento {tag} names no max_body_bytes argument ({exc})") from exc


def export_bento(bentoml_home: Path, tag: str, out_dir: Path) -> Path:
    """Write ``<out_dir>/<model>-<version>.bento``, the portable archive of a version.

    The archive holds the Bento and its model. It appears whole or not at all (written
    aside, then renamed), so an existing one is complete and kept. BuildError on failure.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    target = archive_path(out_dir, tag)
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as directory:
        partial = Path(directory) / target.name
        run_bentoml(["export", tag, str(partial)], bentoml_home)
        os.replace(partial, target)
    return target


def import_bento(bentoml_home: Path, archive: Path) -> str:
    """Import a ``.bento`` archive (with its model) into this home's store; returns its tag.

    Idempotent: if the store already holds the Bento with byte-identical models, nothing is
    imported. Raises NotFoundError if there is no archive, BuildError if it is not a Bento
    archive, if the store holds different models under the same tags, or if bentoml fails.
    """
    if not archive.is_file():
        raise NotFoundError(f"no Bento archive at {archive}")
    tag, models = _read_archive(archive)
    if not _bento_exists(bentoml_home, tag):
        run_bentoml(["import", str(archive)], bentoml_home)
        return tag
    for model_tag, digest in models.items():
        stored = model_path(bentoml_home, model_tag) / "model.onnx"
        if not stored.is_file() or _sha256(stored.read_bytes()) != digest:
            raise BuildError(
                f"{archive.name}: the store already holds {tag} with a different model "
                f"{model_tag}: versions are immutable"
            )
    return tag


def _read_archive(archive: Path) -> tuple[str, dict[str, str]]:
    """The Bento tag in ``archive`` and the sha256 of each model's ``model.onnx`` in it."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            info = yaml.safe_load(_member(tar, "bento.yaml"))
            tag = f"{info['name']}:{info['version']}"
            models = {}
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if member.isfile() and _is_model_onnx(parts):
                    models[f"{parts[-3]}:{parts[-2]}"] = _sha256(_member(tar, member.name))
    except (tarfile.TarError, OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise BuildError(f"{archive}: not a Bento archive ({exc})") from exc
    return tag, models


def _is_model_onnx(parts: tuple[str, ...]) -> bool:
    return len(parts) >= 4 and parts[-4] == "models" and parts[-1] == "model.onnx"


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    for candidate in (name, f"./{name}"):
        try:
            handle = tar.extractfile(candidate)
        except KeyError:
            continue
        if handle is not None:
            return handle.read()
    raise KeyError(name)


def dockerfile(bentoml_home: Path, tag: str) -> Path:
    """The Dockerfile ``bentoml build`` wrote into the Bento (checked even without an engine)."""
    return bento_path(bentoml_home, tag) / "env" / "docker" / "Dockerfile"


def containerize(
    bentoml_home: Path,
    tag: str,
    image_tag: str,
    settings: ContainerSettings,
    *,
    progress: Callable[[str], None] | None = None,
) -> str:
    """BentoML's ``containerize`` of the Bento as ``image_tag`` with the engine of
    ``settings`` (its ``builder`` backend); returns the image's id (``sha256:<hex>``).

    The Bento names its base image (built in by :func:`build_bento`), which must be in the
    engine's store. ``progress`` is told each step, the build's output as its details.
    Raises BuildError naming what is missing (the engine, the base image) or with the
    build's output if it fails; NotFoundError if the store has no such Bento.
    """
    say = progress or (lambda _: None)
    base = _base_image_of(bentoml_home, tag)
    problem = engine_problem(settings)
    if problem is not None:
        raise BuildError(f"cannot containerize {tag}: {problem}; the Bento is built")
    if image_id(settings, base) is None:
        current = base_image(settings)
        remedy = (
            "make it with `./run containers`"
            if base == current
            else f"this machine's base image is now {current}, of a changed recipe: "
            "register the model again, as a new version, to build it on that one"
        )
        raise BuildError(
            f"cannot containerize {tag}: its base image {base} is not in the engine's store "
            f"({remedy}); the Bento is built"
        )
    with tempfile.TemporaryDirectory(prefix="bentogate-image-") as directory:
        iidfile = Path(directory) / "iid"
        options = ["--opt", f"iidfile={iidfile}", "--opt", "network=host"]
        say(f"bentoml containerize {tag} as {image_tag} ({settings.builder}, FROM {base})")
        # BentoML copies the Bento to a temporary directory and reads its Dockerfile
        # template there only if that lies under the working directory: both are this one.
        run_bentoml(
            ["containerize", tag, "--backend", settings.builder, "-t", image_tag, *options],
            bentoml_home,
            cwd=Path(directory),
            timeout=settings.build_timeout_s,
            # BUILDAH_LAYERS: podman commits the image once, not once per step (with the vfs
            # driver each commit is a full copy of the root); buildah does so by default.
            env={**engine_env(settings), "TMPDIR": directory, "BUILDAH_LAYERS": "false"},
            on_line=lambda line: say("  " + line),
        )
        built = iidfile.read_text().strip() if iidfile.is_file() else ""
    found = image_id(settings, image_tag)
    if found is None or (built and found.removeprefix("sha256:") != built.removeprefix("sha256:")):
        raise BuildError(
            f"bentoml containerize finished but {image_tag} is not the image it built "
            f"({found or 'no such image'} vs {built or 'no id written'})"
        )
    return found


def _base_image_of(bentoml_home: Path, tag: str) -> str:
    """The base image the Bento ``tag`` was built to be containerized FROM."""
    info = yaml.safe_load((bento_path(bentoml_home, tag) / "bento.yaml").read_text())
    base = (info.get("docker") or {}).get("base_image")
    if not base:
        raise BuildError(
            f"cannot containerize {tag}: its Bento names no base image (built before "
            "containers were made here); build it again under a new version"
        )
    return str(base)
