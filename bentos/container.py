"""The container backend: a version's image, run by the engine on the host's network, serving
on 127.0.0.1:<port> like a ``bentoml serve`` process (the same readiness wait, graceful stop
with a deadline, then kill).

A container is found again by its name (``bentogate-<model>-<version>-<port>``), so a handle
recorded by one bentogate process is stopped or adopted by another. Its output goes to the
same log file a process of that version and port would write (podman's ``k8s-file`` driver),
where ``bentogate logs`` and the readiness wait read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bentogate.bentos.engine import image_file_sha256, run_engine
from bentogate.bentos.runtime import SERVICE_NAME, Handle, http_status, log_path, wait_until_ready
from bentogate.errors import NotFoundError, RuntimeBackendError
from bentogate.settings import ContainerSettings

# Where BentoML's Dockerfile puts the Bento in the image (its BENTO_PATH), and so the model.
BENTO_PATH = "/home/bentoml/bento"


def container_name(tag: str, port: int) -> str:
    """The engine's name of the container serving ``tag`` on ``port``."""
    return f"bentogate-{tag.replace(':', '-')}-{port}"


def image_model_path(tag: str) -> str:
    """Where the ONNX model of ``tag`` lies inside its image."""
    model, _, version = tag.partition(":")
    return f"{BENTO_PATH}/models/{model}/{version}/model.onnx"


class ContainerBackend:
    """``<engine> run --network host <image> serve --host 127.0.0.1 --port <port>``.

    ``images`` maps a Bento tag to the image that serves it (its id as recorded by
    ``build --containerize``: a name that cannot be moved to other bytes).
    """

    def __init__(
        self,
        settings: ContainerSettings,
        logs_dir: Path,
        *,
        images: Mapping[str, str],
        workers: int = 1,
    ) -> None:
        self._settings = settings
        self._logs = logs_dir
        self._images = images
        self._workers = workers

    def image(self, tag: str) -> str:
        """The image recorded for ``tag``; RuntimeBackendError if there is none."""
        try:
            return self._images[tag]
        except KeyError:
            raise RuntimeBackendError(
                f"no container image recorded for {tag}: run `bentogate build {tag} "
                "--containerize`"
            ) from None

    def run_command(self, tag: str, port: int) -> list[str]:
        """The engine's arguments that start ``tag`` on ``port`` (after the engine's name)."""
        logging = (
            ["--log-driver", "k8s-file", "--log-opt", f"path={log_path(self._logs, tag, port)}"]
            if self._settings.engine == "podman"
            else []
        )
        return [
            "run",
            "--detach",
            "--name",
            container_name(tag, port),
            "--network",
            "host",
            "--env",
            "BENTOML_DO_NOT_TRACK=True",
            "--env",
            f"BENTOML_CONFIG_OPTIONS=services.{SERVICE_NAME}.workers={self._workers}",
            *logging,
            self.image(tag),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]

    def model_sha256(self, tag: str) -> tuple[str, str]:
        """sha256 of the model file in ``tag``'s image (read from the image, nothing
        started) and what was measured; NotFoundError if the image holds none."""
        image, path = self.image(tag), image_model_path(tag)
        found = image_file_sha256(self._settings, image, path)
        if found is None:
            raise NotFoundError(f"image {image} of {tag} holds no model at {path}")
        return found, f"model in image {image[:19]} ({path})"

    def start(self, tag: str, port: int) -> Handle:
        """Start ``tag``'s image on 127.0.0.1:``port``; does not wait for readiness. A stopped
        container left with the same name (a crash, a reboot) is removed first."""
        if http_status(port, "/livez") is not None:
            raise RuntimeBackendError(f"port {port} is already in use")
        name = container_name(tag, port)
        if self._running(name) is not None:
            run_engine(self._settings, ["rm", "--force", name])
        self._logs.mkdir(parents=True, exist_ok=True)
        log = log_path(self._logs, tag, port)
        offset = log.stat().st_size if log.exists() else 0
        run_engine(self._settings, self.run_command(tag, port), timeout=120)
        pid = run_engine(self._settings, ["inspect", "--format", "{{.State.Pid}}", name])
        return Handle(
            tag=tag,
            port=port,
            pid=int(pid) if pid.isdigit() and int(pid) > 0 else None,
            log_path=log,
            container=name,
            log_offset=offset,
        )

    def wait_ready(self, handle: Handle, timeout: float) -> None:
        """Return once ``/readyz`` is 200; RuntimeBackendError if the container stops, its
        service fails to load, or the time runs out (with its log's tail)."""
        wait_until_ready(self, handle, timeout)

    def _running(self, name: str) -> bool | None:
        """True/False: the container exists and runs or not; None: no such container."""
        try:
            state = run_engine(self._settings, ["inspect", "--format", "{{.State.Running}}", name])
        except RuntimeBackendError:
            return None
        return state == "true"

    def is_alive(self, handle: Handle) -> bool:
        return handle.container is not None and bool(self._running(handle.container))

    def stop(self, handle: Handle, timeout: float) -> None:
        """SIGTERM the container's server, SIGKILL it after ``timeout``, then remove it."""
        if handle.container is None or self._running(handle.container) is None:
            return
        run_engine(
            self._settings,
            ["stop", "--time", str(max(1, round(timeout))), handle.container],
            timeout=timeout + 30,
        )
        run_engine(self._settings, ["rm", "--force", handle.container], timeout=60)
