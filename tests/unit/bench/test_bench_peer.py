"""The peer's set-up, without installing it: its pins, its model repository, its bodies."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np

from bench import peer


def test_the_peer_is_pinned_and_scores_with_this_environments_xgboost() -> None:
    wanted = peer.requirements()
    assert "mlserver==1.7.1" in wanted
    assert "mlserver-xgboost==1.7.1" in wanted
    assert f"xgboost=={metadata.version('xgboost')}" in wanted


def test_an_installed_venv_with_the_same_pins_is_used_as_it_is(tmp_path: Path) -> None:
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text("")
    (tmp_path / ".bench-installed").write_text("\n".join(peer.requirements()) + "\n")
    assert peer.peer_python(tmp_path) == python


def test_the_repository_serves_the_model_file_on_loopback_without_access_logs(
    tmp_path: Path,
) -> None:
    model = tmp_path / "fraud_v1.json"
    model.write_text('{"learner": {}}')
    ports = {"http_port": 1, "grpc_port": 2, "metrics_port": 3}
    repository = peer._repository(tmp_path / "repo", model, ports)
    settings = json.loads((repository / "settings.json").read_text())
    assert settings == {"debug": False, "host": "127.0.0.1", **ports}
    model_settings = json.loads((repository / "fraud" / "model-settings.json").read_text())
    assert model_settings["implementation"] == "mlserver_xgboost.XGBoostModel"
    assert (repository / "fraud" / "model.json").read_text() == model.read_text()


def test_a_body_is_one_fp32_row_of_the_v2_protocol(tmp_path: Path) -> None:
    rows = np.asarray([[0.5, 1.0, -2.0], [3.0, 4.0, 5.0]], dtype=np.float32)
    bodies = json.loads(peer.write_bodies(rows, tmp_path / "bodies.json").read_text())
    first = json.loads(bodies[0])
    assert first == {
        "inputs": [
            {"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [0.5, 1.0, -2.0]}
        ]
    }
    assert len(bodies) == 2
