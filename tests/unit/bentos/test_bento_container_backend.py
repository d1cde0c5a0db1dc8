"""The container backend's and the engine's command lines and configuration, checked without
an engine (a recording fake ``podman``/``docker`` on the PATH). The real engine runs in
``tests/integration/containers``."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from bentogate.bentos import ContainerBackend, Handle, container_name, image_model_path
from bentogate.bentos.baseimage import base_image, os_recipe_hash, recipe_hash
from bentogate.bentos.engine import engine_env, engine_problem, image_file_sha256, image_id
from bentogate.errors import NotFoundError, RuntimeBackendError
from bentogate.settings import ContainerSettings

IMAGE = "sha256:" + "ab" * 32


def _settings(tmp_path: Path, **fields: object) -> ContainerSettings:
    return ContainerSettings(storage_dir=tmp_path / "store", **fields)  # type: ignore[arg-type]


@pytest.fixture
def backend(tmp_path: Path) -> ContainerBackend:
    return ContainerBackend(_settings(tmp_path), tmp_path / "logs", images={"fraud:3": IMAGE})


def test_run_command_serves_the_recorded_image_on_the_host_network(
    backend: ContainerBackend, tmp_path: Path
) -> None:
    command = backend.run_command("fraud:3", 3003)
    assert command[:2] == ["run", "--detach"]
    assert command[command.index("--name") + 1] == "bentogate-fraud-3-3003"
    assert command[command.index("--network") + 1] == "host"
    assert "BENTOML_DO_NOT_TRACK=True" in command
    assert "BENTOML_CONFIG_OPTIONS=services.bentogate_model.workers=1" in command
    assert command[command.index("--log-opt") + 1] == f"path={tmp_path / 'logs/fraud-3-3003.log'}"
    # the image by its id, then BentoML's entrypoint told where to listen: loopback only
    assert command[command.index(IMAGE) :] == [
        IMAGE, "serve", "--host", "127.0.0.1", "--port", "3003",
    ]  # fmt: skip


def test_docker_keeps_its_own_logs(tmp_path: Path) -> None:
    backend = ContainerBackend(
        _settings(tmp_path, engine="docker", builder="docker"), tmp_path, images={"a:1": IMAGE}
    )
    assert "--log-opt" not in backend.run_command("a:1", 3001)


def test_two_versions_on_two_ports_get_two_container_names() -> None:
    names = {container_name("fraud:3", 3003), container_name("fraud:4", 3004)}
    assert names == {"bentogate-fraud-3-3003", "bentogate-fraud-4-3004"}


def test_the_model_lies_where_bentomls_dockerfile_puts_the_bento() -> None:
    assert image_model_path("fraud:3") == "/home/bentoml/bento/models/fraud/3/model.onnx"


def test_a_version_without_an_image_is_refused_naming_the_command(
    backend: ContainerBackend,
) -> None:
    with pytest.raises(RuntimeBackendError, match=r"no container image recorded for fraud:9: run"):
        backend.run_command("fraud:9", 3009)


def _fake_engine(directory: Path, name: str = "podman", *, fail: bool = False) -> Path:
    """An engine that records its arguments (and its CONTAINERS_* environment) and answers
    like the real one: a running container, an image mounted at ``directory/root``."""
    calls = directory / "calls.jsonl"
    script = directory / name
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps([sys.argv[1:], "
        "os.environ.get('CONTAINERS_STORAGE_CONF')]) + '\\n')\n"
        + ("sys.exit('cannot connect to the engine')\n" if fail else "")
        + "args = sys.argv[1:]\n"
        "if args[0] == 'run': print('c0ffee')\n"
        "if args[0] == 'inspect' and '{{.State.Pid}}' in args: print(4242)\n"
        "if args[0] == 'inspect' and '{{.State.Running}}' in args: print('true')\n"
        f"if args[:2] == ['image', 'mount']: print({str(directory / 'root')!r})\n"
        "if args[:2] == ['image', 'inspect']: print('sha256:' + 'cd' * 32)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _calls(directory: Path) -> list[list[str]]:
    return [json.loads(line)[0] for line in (directory / "calls.jsonl").read_text().splitlines()]


@pytest.fixture
def fake_podman(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    engine = _fake_engine(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return engine


@pytest.mark.usefixtures("fake_podman")
def test_start_is_alive_stop_drive_the_engine(backend: ContainerBackend, tmp_path: Path) -> None:
    handle = backend.start("fraud:3", 3003)
    assert (handle.container, handle.pid, handle.port) == ("bentogate-fraud-3-3003", 4242, 3003)
    assert backend.is_alive(handle)
    backend.stop(handle, timeout=7)
    calls = _calls(tmp_path)
    # a container of that name (a crash left it) is removed before the run
    assert calls[0][:2] == ["inspect", "--format"]
    assert calls[1] == ["rm", "--force", "bentogate-fraud-3-3003"]
    assert calls[2] == backend.run_command("fraud:3", 3003)
    assert calls[-2] == ["stop", "--time", "7", "bentogate-fraud-3-3003"]  # then SIGKILL
    assert calls[-1] == ["rm", "--force", "bentogate-fraud-3-3003"]


def test_a_failing_engine_is_a_runtime_backend_error_with_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_engine(tmp_path, fail=True)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    backend = ContainerBackend(_settings(tmp_path), tmp_path, images={"fraud:3": IMAGE})
    with pytest.raises(RuntimeBackendError, match="cannot connect to the engine"):
        backend.start("fraud:3", 3003)
    assert engine_problem(_settings(tmp_path)) == (
        "podman does not answer: podman info failed (exit 1): cannot connect to the engine"
    )


def test_no_engine_is_named_with_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert engine_problem(_settings(tmp_path)) == (
        "no podman on this machine (install it: ./run containers)"
    )


def test_a_handle_without_container_is_not_alive(backend: ContainerBackend) -> None:
    assert not backend.is_alive(Handle(tag="fraud:3", port=3003, pid=None, log_path=Path()))


@pytest.mark.usefixtures("fake_podman")
def test_the_model_is_measured_in_the_image_files(
    backend: ContainerBackend, tmp_path: Path
) -> None:
    model = tmp_path / "root" / image_model_path("fraud:3").lstrip("/")
    model.parent.mkdir(parents=True)
    model.write_bytes(b"onnx bytes")
    sha256, what = backend.model_sha256("fraud:3")
    assert sha256 == hashlib.sha256(b"onnx bytes").hexdigest()
    assert what == f"model in image {IMAGE[:19]} (/home/bentoml/bento/models/fraud/3/model.onnx)"
    assert _calls(tmp_path)[-2:] == [["image", "mount", IMAGE], ["image", "unmount", IMAGE]]
    model.unlink()
    with pytest.raises(NotFoundError, match="holds no model at /home/bentoml/bento/models/fraud"):
        backend.model_sha256("fraud:3")
    settings = _settings(tmp_path)
    assert image_file_sha256(settings, IMAGE, "/nothing") is None
    assert image_id(settings, "bentogate/fraud:3") == "sha256:" + "cd" * 32


def test_podman_and_buildah_are_configured_for_this_machine(tmp_path: Path) -> None:
    env = engine_env(_settings(tmp_path))
    storage = Path(env["CONTAINERS_STORAGE_CONF"]).read_text()
    assert 'driver = "overlay"' in storage
    assert f'graphroot = "{tmp_path / "store" / "overlay"}"' in storage
    # vfs, where overlay mounts are refused: a store (and a configuration file) of its own
    vfs = engine_env(_settings(tmp_path, storage_driver="vfs"))["CONTAINERS_STORAGE_CONF"]
    assert vfs != env["CONTAINERS_STORAGE_CONF"]
    assert f'graphroot = "{tmp_path / "store" / "vfs"}"' in Path(vfs).read_text()
    containers = Path(env["CONTAINERS_CONF"]).read_text()
    for line in ('runtime = "runc"', 'cgroup_manager = "cgroupfs"', "default_ulimits = []"):
        assert line in containers
    assert env["BENTOML_DO_NOT_TRACK"] == "True"
    docker = engine_env(_settings(tmp_path, engine="docker", builder="docker"))
    assert "CONTAINERS_CONF" not in docker  # its daemon has its own configuration


def test_the_base_image_is_named_by_its_recipe(tmp_path: Path) -> None:
    default = base_image(_settings(tmp_path))
    assert default == f"localhost/bentogate-base:{recipe_hash()}"
    assert len(recipe_hash()) == 12 and recipe_hash() != os_recipe_hash()
    named = _settings(tmp_path, base_image="registry.local/base:1")
    assert base_image(named) == "registry.local/base:1"


def test_images_are_tagged_under_the_repository() -> None:
    assert ContainerSettings(repository="ml/bentogate").image_tag("fraud", "3") == (
        "ml/bentogate/fraud:3"
    )
    with pytest.raises(ValueError, match="repository"):
        ContainerSettings(repository="Not A Name")
