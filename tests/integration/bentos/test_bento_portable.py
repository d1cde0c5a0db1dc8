"""A version's Bento is self-contained: exported from host A, imported into an empty host B
and served there, it scores exactly as on A; its Python environment is pinned; its
Dockerfile runs ``bentoml serve`` FROM this machine's base image (containerized and served
for real in ``tests/integration/containers``)."""

from __future__ import annotations

import re
from importlib.metadata import version as installed_version
from pathlib import Path

import numpy as np
import pytest
from bento_support import Built, post_json, serving, sha256_file

from bentogate.bentos import base_image
from bentogate.bentos.build import bento_path, dockerfile, export_bento, import_bento
from bentogate.bentos.runtime import ProcessBackend
from bentogate.settings import ContainerSettings, Settings

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
    base = re.escape(base_image(ContainerSettings()))
    assert re.search(rf"^FROM {base}\b", text, re.M), "not FROM this machine's base image"
    assert re.search(r"uv venv .*--python 3\.11|uv venv -p 3\.11", text), "not Python 3.11"
    assert "apt-get" not in text  # the base image has what the Bento needs: no network
    assert re.search(r"^EXPOSE 3000$", text, re.M)
    assert "requirements.txt" in text  # the pinned environment is what gets installed
    assert re.search(r"^USER bentoml$", text, re.M)  # not root
    entrypoint = re.search(r'^ENTRYPOINT \[ *"([^"]+)" *\]$', text, re.M)
    assert entrypoint, "no exec-form ENTRYPOINT"
    assert not re.search(r"^CMD ", text, re.M)  # nothing overrides the default: serve
    script = path.parent / Path(entrypoint.group(1)).name
    # Started without arguments, the entrypoint serves the Bento it is built from.
    assert re.search(r'set -- bentoml serve "\$@" "\$BENTO_PATH"', script.read_text())
