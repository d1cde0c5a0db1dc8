"""The container engine (podman, buildah or docker): its configuration, and the questions
bentogate asks it (does it work, which image does a name denote, what file does an image hold).

podman and buildah are daemonless and configured by two files that their environment names
(``CONTAINERS_CONF``, ``CONTAINERS_STORAGE_CONF``), written here under
``container.storage_dir``: the storage driver (``container.storage_driver``, overlay by
default, vfs where overlay mounts are refused) and an image store of bentogate's own for it
there (no clash with another user's store, nor between drivers), ``runc`` with ``cgroupfs``
(``crun`` refuses a hybrid cgroup set-up), the host's network, and no default ulimits (a
sandbox without ``CAP_SYS_RESOURCE`` refuses them). Every podman, buildah and BentoML
containerize call runs with :func:`engine_env`. docker needs none of it: its daemon is
configured on its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from bentogate.bentos._cli import stream_lines
from bentogate.errors import RuntimeBackendError
from bentogate.settings import ContainerSettings

_CONTAINERS_CONF = """\
# Written by bentogate (bentos/engine.py): podman/buildah as bentogate runs them.
[containers]
default_ulimits = []
netns = "host"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

_STORAGE_CONF = """\
# Written by bentogate (bentos/engine.py): the image store of bentogate's containers.
[storage]
driver = "{driver}"
graphroot = "{root}/{driver}"
runroot = "{root}/run-{driver}"
"""


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as handle:
        handle.write(text)
    os.replace(handle.name, path)


def engine_env(settings: ContainerSettings) -> dict[str, str]:
    """The environment of every engine call (the process's own, plus podman's and buildah's
    two configuration files, written under ``settings.storage_dir`` when they differ)."""
    env = dict(os.environ)
    env["BENTOML_DO_NOT_TRACK"] = "True"
    if settings.engine == "docker" and settings.builder == "docker":
        return env
    root = settings.storage_dir.expanduser().resolve()
    # one storage.conf per driver: two settings sharing the directory never rewrite each other's
    containers_conf = root / "containers.conf"
    storage_conf = root / f"storage-{settings.storage_driver}.conf"
    _write_if_changed(containers_conf, _CONTAINERS_CONF)
    storage = _STORAGE_CONF.format(root=root, driver=settings.storage_driver)
    _write_if_changed(storage_conf, storage)
    env["CONTAINERS_CONF"] = str(containers_conf)
    env["CONTAINERS_STORAGE_CONF"] = str(storage_conf)
    return env


def run_engine(
    settings: ContainerSettings,
    args: list[str],
    *,
    timeout: float = 60.0,
    command: str | None = None,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """Run ``<engine> <args>`` (``command`` instead of ``settings.engine``); return its
    stdout. With ``on_line`` each line of its output goes there as it comes (a long
    build's progress) and nothing is returned. RuntimeBackendError with its output's tail
    if it fails."""
    argv = [command or settings.engine, *args]
    try:
        if on_line is not None:
            code, tail = stream_lines(argv, engine_env(settings), timeout, on_line)
            if code != 0:
                raise RuntimeBackendError(f"{' '.join(argv[:3])} failed (exit {code}): {tail}")
            return ""
        done = subprocess.run(
            argv,
            env=engine_env(settings),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeBackendError(f"{' '.join(argv[:3])}: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-10:])
        raise RuntimeBackendError(f"{' '.join(argv[:3])} failed (exit {done.returncode}): {tail}")
    return done.stdout.strip()


def engine_problem(settings: ContainerSettings, timeout: float = 20.0) -> str | None:
    """Why the configured engine cannot run containers here, or None if it answers (its
    client exists and ``<engine> info`` succeeds)."""
    for command in dict.fromkeys((settings.engine, settings.builder)):
        if shutil.which(command) is None:
            return f"no {command} on this machine (install it: ./run containers)"
        probe = ["info"] if command != "buildah" else ["info", "--format", "{{.host.os}}"]
        try:
            run_engine(settings, probe, timeout=timeout, command=command)
        except RuntimeBackendError as exc:
            return f"{command} does not answer: {exc}"
    return None


def image_id(settings: ContainerSettings, image: str) -> str | None:
    """The id (``sha256:<hex>``, the digest of its configuration) of the image ``image``
    names in the engine's store, or None if there is none."""
    try:
        found = run_engine(settings, ["image", "inspect", "--format", "{{.Id}}", image])
    except RuntimeBackendError:
        return None
    return found if found.startswith("sha256:") else f"sha256:{found}"


def image_file_sha256(settings: ContainerSettings, image: str, path: str) -> str | None:
    """sha256 of the file at ``path`` inside image ``image`` (read from the image's files,
    nothing started), or None if the image holds no such file. RuntimeBackendError if the
    engine cannot open the image."""
    if settings.engine == "podman":
        root = Path(run_engine(settings, ["image", "mount", image]))
        try:
            return _file_sha256(root / path.lstrip("/"))
        finally:
            run_engine(settings, ["image", "unmount", image])
    with tempfile.TemporaryDirectory(prefix="bentogate-image-") as directory:
        container = run_engine(settings, ["create", image])
        try:
            run_engine(settings, ["cp", f"{container}:{path}", directory])
        except RuntimeBackendError:
            return None
        finally:
            run_engine(settings, ["rm", container])
        return _file_sha256(Path(directory) / Path(path).name)


def _file_sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
