"""A version's Bento is self-contained: exported from host A, imported into an empty host B
and served there, it scores exactly as on A; its Python environment is pinned; its
Dockerfile runs ``bentoml serve``; it is containerized where a Docker engine answers."""

from __future__ import annotations

import re
import subprocess
from importlib.metadata import version as installed_version
from pathlib import Path

import numpy as np
import pytest
from bento_support import Built, get_json, post_json, serving, sha256_file
from free_ports import free_port

from bentogate.bentos.build import bento_path, containerize, dockerfile, export_bento, import_bento
from bentogate.bentos.runtime import DockerBackend, ProcessBackend, docker_engine_available
from bentogate.errors import BuildError
from bentogate.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def archive(fraud_v1: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_bento(fraud_v1.home, fraud_v1.tag, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def host_b(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A second host: its own, empty BENTOGATE_HOME and BentoML store."""
    settings = Settings(home=tmp_path_factory.mktemp("host-b"))
    assert not settings.bentoml_home.exists()
    return settings


def test_an_exported_bento_serves_the_same_scores_on_an_empty_host(
    fraud_v1: Built,
    archive: Path,
    host_b: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert archive.name == "fraud-1.bento"
    assert import_bento(host_b.bentoml_home, archive) == fraud_v1.tag
    imported = host_b.bentoml_home / "models" / "fraud" / "1" / "model.onnx"
    assert sha256_file(imported) == fraud_v1.artifact.sha256  # the model travelled inside
    rows = fraud_v1.artifact.reference_rows.tolist()
    # Host B's server runs from an empty directory: nothing of the project is at hand.
    monkeypatch.chdir(tmp_path)
    host_a = ProcessBackend(fraud_v1.home, tmp_path / "logs-a")
    host_b_runtime = ProcessBackend(host_b.bentoml_home, tmp_path / "logs-b")
    with serving([(host_a, fraud_v1.tag), (host_b_runtime, fraud_v1.tag)]) as (on_a, on_b):
        status_a, served_a = post_json(on_a.port, "/predict_batch", {"features": rows})
        status_b, served_b = post_json(on_b.port, "/predict_batch", {"features": rows})
    assert (status_a, status_b) == (200, 200), (served_a, served_b)
    assert served_b["scores"] == served_a["scores"]
    assert (served_b["model"], served_b["model_version"]) == ("fraud", "1")
    scores = np.asarray(served_b["scores"])
    assert len(scores) == len(rows)
    assert np.max(np.abs(scores - fraud_v1.artifact.reference_scores)) <= 1e-5


def test_importing_the_same_archive_again_changes_nothing(
    fraud_v1: Built, archive: Path, host_b: Settings
) -> None:
    assert import_bento(host_b.bentoml_home, archive) == fraud_v1.tag
    assert import_bento(host_b.bentoml_home, archive) == fraud_v1.tag
    assert export_bento(fraud_v1.home, fraud_v1.tag, archive.parent) == archive


def test_the_bentos_python_environment_is_pinned_to_the_tested_versions(fraud_v1: Built) -> None:
    requirements = bento_path(fraud_v1.home, fraud_v1.tag) / "env" / "python" / "requirements.txt"
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert "==" in line, f"unpinned requirement {line!r} in {requirements}"
        name, pinned = line.split("==", 1)
        pins[name.strip().lower()] = pinned.strip()
    # What service.py imports, pinned to what these tests ran with.
    for package in ("bentoml", "onnxruntime", "numpy", "orjson"):
        assert pins.get(package) == installed_version(package), (package, pins)


def test_the_dockerfile_serves_the_bento_with_python_3_11_on_port_3000(fraud_v1: Built) -> None:
    path = dockerfile(fraud_v1.home, fraud_v1.tag)
    text = path.read_text()
    assert re.search(r"^FROM python:3\.11(-slim)?\b", text, re.M), "base image is not python 3.11"
    assert re.search(r"^EXPOSE 3000$", text, re.M)
    assert "requirements.txt" in text  # the pinned environment is what gets installed
    assert re.search(r"^USER bentoml$", text, re.M)  # not root
    entrypoint = re.search(r'^ENTRYPOINT \[ *"([^"]+)" *\]$', text, re.M)
    assert entrypoint, "no exec-form ENTRYPOINT"
    assert not re.search(r"^CMD ", text, re.M)  # nothing overrides the default: serve
    script = path.parent / Path(entrypoint.group(1)).name
    # Started without arguments, the entrypoint serves the Bento it is built from.
    assert re.search(r'set -- bentoml serve "\$@" "\$BENTO_PATH"', script.read_text())


def test_containerize_names_the_missing_docker_engine(fraud_v1: Built) -> None:
    if docker_engine_available():
        pytest.skip("a Docker engine answers here: test_containerize_builds_a_runnable_image")
    with pytest.raises(BuildError, match=r"no Docker engine answers|no docker client") as caught:
        containerize(fraud_v1.home, fraud_v1.tag, "bentogate-test/fraud:1")
    assert "cannot containerize" in str(caught.value)


def test_containerize_builds_a_runnable_image(fraud_v1: Built, tmp_path: Path) -> None:
    if not docker_engine_available():
        pytest.skip("no Docker engine answers on this machine")
    image = containerize(fraud_v1.home, fraud_v1.tag, "bentogate-test/fraud:1")
    backend = DockerBackend(tmp_path / "logs", image_for={fraud_v1.tag: image})
    try:
        handle = backend.start(fraud_v1.tag, free_port())
        try:
            backend.wait_ready(handle, 180)
            status, info = get_json(handle.port, "/model")
            assert status == 200
            assert (info["name"], info["version"]) == ("fraud", "1")
            assert info["sha256"] == fraud_v1.artifact.sha256
            status, answer = post_json(
                handle.port, "/predict", {"features": fraud_v1.artifact.canary_row}
            )
            assert status == 200
            assert abs(answer["score"] - fraud_v1.artifact.canary_score) <= 1e-5
        finally:
            backend.stop(handle, 10)
    finally:
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True, check=False)
