"""The base image of every version's image, made on this machine (no registry is pulled from).

Debian (debootstrap of ``SUITE``, minimal) with its Python 3.11, imported into the engine's
store; on top of it ``uv`` (which BentoML's Dockerfile installs the Bento's requirements
with) and a wheelhouse of the Bento's pinned serving requirements with everything they
depend on, downloaded by this machine's pip (checked to resolve offline while the image is
made): a version's image build then installs them offline, in seconds.

The image is tagged with the hash of its recipe (:func:`recipe_hash`): built once per
machine, found again by that tag, rebuilt only when the recipe changes.

    python -m bentogate.bentos._make_base     # what `./run containers` runs
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bentogate.bentos._cli import stream_lines
from bentogate.bentos.engine import engine_problem, image_id, run_engine
from bentogate.errors import BuildError, ConfigError, RuntimeBackendError
from bentogate.settings import ContainerSettings

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "ca-certificates")  # python3 is 3.11 in bookworm, as the Bentos need
UV = "uv==0.13.4"  # what BentoML 1.4's Dockerfile would pip-install itself (with a network)
NAME = "localhost/bentogate-base"
REQUIREMENTS = Path(__file__).resolve().parent / "requirements-serve.txt"

UV_TOML = """\
[pip]
no-index = true
find-links = ["/opt/bentogate/wheels"]
"""

CONTAINERFILE = """\
ARG OS_IMAGE
FROM ${OS_IMAGE}
COPY wheels /opt/bentogate/wheels
COPY requirements-serve.txt /opt/bentogate/requirements-serve.txt
# BentoML's Dockerfile runs `uv venv` and `uv pip install -r requirements.txt`: offline,
# from the wheelhouse (uv's system configuration), with the system Python, never a download.
COPY uv.toml /etc/uv/uv.toml
ENV UV_PYTHON_DOWNLOADS=never \\
    PIP_NO_INDEX=1 \\
    PIP_FIND_LINKS=/opt/bentogate/wheels
# What no version needs goes (apt's lists and caches, documentation): with the vfs driver
# every container starts from a full copy of its image's files.
RUN python3 -m zipfile -e /opt/bentogate/wheels/uv-*.whl /tmp/uv \\
 && install -m 755 /tmp/uv/uv-*.data/scripts/uv /usr/local/bin/uv \\
 && rm -rf /tmp/uv /opt/bentogate/wheels/uv-*.whl \\
 && uv venv --python 3.11 /tmp/check \\
 && VIRTUAL_ENV=/tmp/check uv pip install --no-cache --dry-run \\
      -r /opt/bentogate/requirements-serve.txt \\
 && rm -rf /tmp/check /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* \\
      /usr/share/man/* /usr/share/info/*
"""


def _hash(recipe: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def os_recipe_hash() -> str:
    """12 hex digits of the sha256 of the Debian root's recipe (suite, mirror, packages)."""
    return _hash({"suite": SUITE, "mirror": MIRROR, "packages": PACKAGES})


def recipe_hash() -> str:
    """12 hex digits of the sha256 of everything the base image is made from."""
    return _hash(
        {
            "os": os_recipe_hash(),
            "uv": UV,
            "containerfile": CONTAINERFILE,
            "uv.toml": UV_TOML,
            "requirements": REQUIREMENTS.read_text(),
        }
    )


def base_image(settings: ContainerSettings) -> str:
    """The base image of this machine's version images: ``container.base_image``, or the
    one :func:`build_base_image` makes (its tag names its recipe's hash)."""
    return settings.base_image or f"{NAME}:{recipe_hash()}"


def build_base_image(
    settings: ContainerSettings, *, progress: Callable[[str], None] | None = None
) -> str:
    """Make the base image unless the engine's store already holds it; returns its name.

    Raises ConfigError where the engine does not work or a configured ``base_image`` is
    missing (it is not made here), BuildError if a step fails (with its output).
    """
    say = progress or (lambda _: None)
    problem = engine_problem(settings)
    if problem is not None:
        raise ConfigError(f"cannot build the base image: {problem}")
    name = base_image(settings)
    if image_id(settings, name) is not None:
        say(f"base image {name} is already built")
        return name
    if settings.base_image is not None:
        raise ConfigError(
            f"container.base_image {name} is not in the engine's store (bentogate only "
            "makes its own, when container.base_image is unset)"
        )
    root = settings.storage_dir.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix="base-") as directory:
        work = Path(directory)
        os_image = f"localhost/bentogate-os:{os_recipe_hash()}"
        if image_id(settings, os_image) is None:
            _debootstrap(settings, work / "rootfs", os_image, say)
        context = work / "context"
        _wheelhouse(context / "wheels", say)
        shutil.copyfile(REQUIREMENTS, context / "requirements-serve.txt")
        (context / "Containerfile").write_text(CONTAINERFILE)
        (context / "uv.toml").write_text(UV_TOML)
        say(f"building {name} (uv and the Bento's requirements, installed offline)")
        _engine(
            settings,
            [
                "build", "--network", "host", "--build-arg", f"OS_IMAGE={os_image}",
                "-t", name, "-f", str(context / "Containerfile"), str(context),
            ],
            say,
        )  # fmt: skip
    say(f"base image {name} built")
    return name


def _engine(settings: ContainerSettings, args: list[str], say: Callable[[str], None]) -> None:
    try:
        run_engine(settings, args, timeout=settings.build_timeout_s, on_line=_detail(say))
    except RuntimeBackendError as exc:
        raise BuildError(f"base image: {exc}") from exc


def _debootstrap(
    settings: ContainerSettings, rootfs: Path, image: str, say: Callable[[str], None]
) -> None:
    if shutil.which("debootstrap") is None:
        raise ConfigError("cannot build the base image: no debootstrap (./run containers)")
    say(f"debootstrap {SUITE} ({', '.join(PACKAGES)}) from {MIRROR}")
    command = [
        "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
        SUITE, str(rootfs), MIRROR,
    ]  # fmt: skip
    _run(command, say, timeout=settings.build_timeout_s)
    say(f"importing the Debian root as {image}")
    (rootfs / "var" / "cache" / "apt" / "archives").mkdir(parents=True, exist_ok=True)
    for package in (rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        package.unlink()
    tarball = rootfs.parent / "rootfs.tar"
    _run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], say, timeout=600)
    _engine(settings, ["import", "--change", 'CMD ["/bin/bash"]', str(tarball), image], say)


def _wheelhouse(directory: Path, say: Callable[[str], None]) -> None:
    """Every wheel the Bento's requirements need (and uv), downloaded by this machine's pip
    for this machine's Python (3.11, x86_64 glibc: the base image's)."""
    say("downloading the Bento's requirements and uv into a wheelhouse")
    directory.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
    _run([*pip, "-d", str(directory), "-r", str(REQUIREMENTS)], say, timeout=1200)
    _run([*pip, "--no-deps", "-d", str(directory), UV], say, timeout=600)


def _detail(say: Callable[[str], None]) -> Callable[[str], None]:
    """A step's output as details of it (indented lines, :data:`bentogate.context.Progress`)."""
    return lambda line: say("  " + line)


def _run(command: list[str], say: Callable[[str], None], *, timeout: float) -> None:
    try:
        code, tail = stream_lines(command, os.environ, timeout, _detail(say))
    except OSError as exc:
        raise BuildError(f"base image: {command[0]}: {exc}") from exc
    if code != 0:
        raise BuildError(f"base image: {' '.join(command[:4])} … failed (exit {code}):\n{tail}")
