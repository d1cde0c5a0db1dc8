"""bentogate.bentos.build without a real build: store checks, archives, containerize refusals, the
CLI wrapper. Stores are laid out by hand the way BentoML lays them out."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from pathlib import Path

import pytest

import bentogate.bentos.build
from bentogate.bentos import base_image
from bentogate.bentos._cli import bentoml_env, run_python
from bentogate.bentos.build import (
    VersionSpec,
    bento_path,
    containerize,
    export_bento,
    import_bento,
    model_path,
    save_model,
)
from bentogate.errors import BuildError, NotFoundError
from bentogate.settings import ContainerSettings

MODEL = b"onnx bytes of fraud:1"
SHA = hashlib.sha256(MODEL).hexdigest()


def _store(home: Path, tag: str = "fraud:1", model: bytes = MODEL) -> Path:
    """A BentoML home holding Bento ``tag`` and its model, as BentoML lays them out."""
    name, version = tag.split(":")
    bento = home / "bentos" / name / version
    bento.mkdir(parents=True)
    (bento / "bento.yaml").write_text(f"name: {name}\nversion: '{version}'\n")
    stored = home / "models" / name / version
    stored.mkdir(parents=True)
    (stored / "model.yaml").write_text(f"name: {name}\nversion: '{version}'\n")
    (stored / "model.onnx").write_bytes(model)
    return home


def _archive(path: Path, tag: str = "fraud:1", model: bytes = MODEL) -> Path:
    """A ``.bento`` archive as ``bentoml export`` writes it (xz tar, ``./``-relative)."""
    name, version = tag.split(":")
    members = {
        "./bento.yaml": f"name: {name}\nversion: '{version}'\n".encode(),
        f"./models/{name}/{version}/model.onnx": model,
        f"./models/{name}/{version}/model.yaml": b"name: x\n",
    }
    with tarfile.open(path, "w:xz") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _spec(artifact: Path, sha256: str = SHA, tag: str = "fraud:1") -> VersionSpec:
    model, version = tag.split(":")
    return VersionSpec(model, version, sha256, artifact, labels={"model": model})


def test_paths_of_a_tag_in_the_store(tmp_path: Path) -> None:
    home = _store(tmp_path)
    assert bento_path(home, "fraud:1") == home / "bentos" / "fraud" / "1"
    assert model_path(home, "fraud:1") == home / "models" / "fraud" / "1"
    with pytest.raises(NotFoundError, match="no Bento fraud:2"):
        bento_path(home, "fraud:2")
    with pytest.raises(NotFoundError, match="no model fraud:2"):
        model_path(home, "fraud:2")


def test_saving_the_same_model_again_is_a_no_op(tmp_path: Path) -> None:
    home = _store(tmp_path / "bentoml")
    save_model(home, _spec(tmp_path / "nowhere"))  # no artifact needed: nothing is copied


def test_a_tag_holding_other_model_bytes_is_refused(tmp_path: Path) -> None:
    home = _store(tmp_path / "bentoml", model=b"other bytes")
    with pytest.raises(BuildError, match="versions are immutable"):
        save_model(home, _spec(tmp_path / "nowhere"))


def test_an_artifact_whose_model_is_not_the_approved_one_is_not_stored(tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "model.onnx").write_bytes(MODEL + b"\0")  # changed after approval
    (artifact / "meta.json").write_text("{}")
    home = tmp_path / "bentoml"
    with pytest.raises(BuildError, match=f"not the approved {SHA[:12]}"):
        save_model(home, _spec(artifact))
    assert not (home / "models" / "fraud" / "1").exists()


def test_an_existing_archive_is_kept_without_running_bentoml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_bentoml(*args: object, **kwargs: object) -> str:
        raise AssertionError("bentoml must not run")

    monkeypatch.setattr(bentogate.bentos.build, "run_bentoml", no_bentoml)
    archive = _archive(tmp_path / "fraud-1.bento")
    assert export_bento(tmp_path / "bentoml", "fraud:1", tmp_path) == archive


def test_a_failed_export_leaves_no_archive_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_an_export(args: list[str], home: Path, **kwargs: object) -> str:
        Path(args[2]).write_bytes(b"partial")
        raise BuildError("bentoml export failed")

    monkeypatch.setattr(bentogate.bentos.build, "run_bentoml", half_an_export)
    with pytest.raises(BuildError):
        export_bento(tmp_path / "bentoml", "fraud:1", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_importing_an_archive_already_in_the_store_is_a_no_op(tmp_path: Path) -> None:
    home = _store(tmp_path / "bentoml")
    assert import_bento(home, _archive(tmp_path / "fraud-1.bento")) == "fraud:1"


def test_an_archive_with_another_model_under_a_stored_tag_is_refused(tmp_path: Path) -> None:
    home = _store(tmp_path / "bentoml")
    archive = _archive(tmp_path / "fraud-1.bento", model=b"someone else's model")
    with pytest.raises(BuildError, match="different model fraud:1"):
        import_bento(home, archive)


def test_import_names_a_missing_or_unreadable_archive(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no Bento archive"):
        import_bento(tmp_path, tmp_path / "missing.bento")
    junk = tmp_path / "junk.bento"
    junk.write_bytes(b"not a tar")
    with pytest.raises(BuildError, match="not a Bento archive"):
        import_bento(tmp_path, junk)


def _based(home: Path, base: str = "localhost/bentogate-base:0123456789ab") -> Path:
    """``_store`` with a Bento built to be containerized FROM ``base``."""
    bento = home / "bentos" / "fraud" / "1" / "bento.yaml"
    bento.write_text(bento.read_text() + f"docker:\n  base_image: {base}\n")
    return home


def _settings(tmp_path: Path) -> ContainerSettings:
    return ContainerSettings(storage_dir=tmp_path / "containers")


def test_containerize_needs_a_bento_built_for_a_base_image(tmp_path: Path) -> None:
    home = _store(tmp_path)
    with pytest.raises(BuildError, match="its Bento names no base image"):
        containerize(home, "fraud:1", "bentogate/fraud:1", _settings(tmp_path))


def test_containerize_names_a_missing_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _based(_store(tmp_path))
    monkeypatch.setattr(
        bentogate.bentos.build, "engine_problem", lambda settings: "no podman on this machine"
    )
    with pytest.raises(BuildError, match="cannot containerize fraud:1: no podman on this machine"):
        containerize(home, "fraud:1", "bentogate/fraud:1", _settings(tmp_path))


def test_containerize_names_a_missing_base_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = base_image(_settings(tmp_path))
    monkeypatch.setattr(bentogate.bentos.build, "engine_problem", lambda settings: None)
    monkeypatch.setattr(bentogate.bentos.build, "image_id", lambda settings, image: None)
    home = _based(_store(tmp_path / "now"), current)
    missing = f"base image {current} is not in the engine's store"
    with pytest.raises(BuildError, match=re.escape(missing + " (make it with `./run containers`)")):
        containerize(home, "fraud:1", "bentogate/fraud:1", _settings(tmp_path))
    # a Bento built for the base of an older recipe: ./run containers would not make that one
    home = _based(_store(tmp_path / "then"), "localhost/bentogate-base:0123456789ab")
    with pytest.raises(BuildError, match=re.escape(f"this machine's base image is now {current}")):
        containerize(home, "fraud:1", "bentogate/fraud:1", _settings(tmp_path))


def test_containerize_needs_the_bento(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no Bento fraud:1"):
        containerize(tmp_path, "fraud:1", "bentogate/fraud:1", _settings(tmp_path))


def test_every_bentoml_process_has_its_own_store_and_no_tracking(tmp_path: Path) -> None:
    env = bentoml_env(tmp_path / "relative" / ".." / "bentoml")
    assert env["BENTOML_HOME"] == str((tmp_path / "bentoml").resolve())
    assert env["BENTOML_DO_NOT_TRACK"] == "True"


def test_a_failing_command_is_a_build_error_with_its_output(tmp_path: Path) -> None:
    script = "import sys; print('first'); sys.exit('the reason it failed')"
    with pytest.raises(BuildError, match="exit 1") as caught:
        run_python(["-c", script], tmp_path)
    assert "the reason it failed" in str(caught.value)
    with pytest.raises(BuildError, match="did not finish in 1 s"):
        run_python(["-c", "import time; time.sleep(5)"], tmp_path, timeout=1)
    out = run_python(["-c", "import os; print(os.environ['BENTOML_HOME'])"], tmp_path)
    assert out.strip() == str(tmp_path.resolve())
