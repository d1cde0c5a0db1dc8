"""The Docker backend's command lines, checked without an engine (a recording fake docker)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from bentogate.bentos.runtime import DockerBackend, Handle, container_name, docker_engine_available
from bentogate.errors import RuntimeBackendError

IMAGE = "registry.local/bentogate/fraud:3"


@pytest.fixture
def backend(tmp_path: Path) -> DockerBackend:
    return DockerBackend(tmp_path / "logs", image_for={"fraud:3": IMAGE})


def test_run_command_publishes_the_port_on_localhost_only(backend: DockerBackend) -> None:
    command = backend.run_command("fraud:3", 3003)
    assert command[:2] == ["docker", "run"]
    assert "--detach" in command
    assert command[command.index("-p") + 1] == "127.0.0.1:3003:3000"
    assert command[-1] == IMAGE  # the image recorded for the tag, nothing after it
    assert command[command.index("--name") + 1] == "bentogate-fraud-3-3003"
    assert command[command.index("--env") + 1] == "BENTOML_DO_NOT_TRACK=True"


def test_two_versions_on_two_ports_get_two_container_names() -> None:
    names = {container_name("fraud:3", 3003), container_name("fraud:4", 3004)}
    assert names == {"bentogate-fraud-3-3003", "bentogate-fraud-4-3004"}


def test_an_unknown_tag_is_refused_naming_it(backend: DockerBackend) -> None:
    with pytest.raises(RuntimeBackendError, match="no container image recorded for fraud:9"):
        backend.run_command("fraud:9", 3009)


def _fake_docker(directory: Path, *, fail: bool = False) -> Path:
    """A ``docker`` that records its arguments and answers like the real one (or fails)."""
    calls = directory / "calls.jsonl"
    script = directory / "docker"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        + ("sys.exit('Cannot connect to the Docker daemon')\n" if fail else "")
        + "if sys.argv[1] == 'run': print('c0ffee')\n"
        "if sys.argv[1] == 'inspect': print('true')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _calls(directory: Path) -> list[list[str]]:
    return [json.loads(line) for line in (directory / "calls.jsonl").read_text().splitlines()]


def test_start_is_alive_stop_drive_docker(tmp_path: Path) -> None:
    docker = _fake_docker(tmp_path)
    backend = DockerBackend(tmp_path / "logs", image_for={"fraud:3": IMAGE}, docker=str(docker))
    handle = backend.start("fraud:3", 3003)
    assert (handle.container, handle.pid, handle.port) == ("c0ffee", None, 3003)
    assert backend.is_alive(handle)
    backend.stop(handle, timeout=7)
    run, inspect, stop = _calls(tmp_path)
    assert run == backend.run_command("fraud:3", 3003)[1:]
    assert inspect == ["inspect", "-f", "{{.State.Running}}", "c0ffee"]
    assert stop == ["stop", "-t", "7", "c0ffee"]


def test_a_failing_docker_is_a_runtime_backend_error_with_its_message(tmp_path: Path) -> None:
    docker = _fake_docker(tmp_path, fail=True)
    backend = DockerBackend(tmp_path / "logs", image_for={"fraud:3": IMAGE}, docker=str(docker))
    with pytest.raises(RuntimeBackendError, match="Cannot connect to the Docker daemon"):
        backend.start("fraud:3", 3003)


def test_a_handle_without_container_is_not_alive(backend: DockerBackend) -> None:
    assert not backend.is_alive(Handle(tag="fraud:3", port=3003, pid=None, log_path=Path()))


def test_no_engine_is_reported_where_docker_info_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_docker(tmp_path, fail=True)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert docker_engine_available() is False
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert docker_engine_available() is False  # no client at all
