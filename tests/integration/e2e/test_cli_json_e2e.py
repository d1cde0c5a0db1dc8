"""A CI job's view of a release: register → validate → approve → build → deploy → gate →
promote, each a `bentogate … --json` process, read through nothing but its exit code and its
stdout (``json.loads``, as ``jq`` would), each object carrying the fields the README lists.

Its own host (``tests/hosts.py``: a block of free ports, the CI gate policy) serving one
model's first version, so no other test's state is touched.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_docs import json_fields
from hosts import HOST_PORTS, Models, host_settings, running_host, settings_env

pytestmark = pytest.mark.integration

MODEL = "ci"


def bentogate(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run ``bentogate ARGS --json`` as its own process: (exit code, its object, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "bentogate.cli", *args, "--json"],
        env=env,
        cwd=cwd,  # no bentogate.toml of the checkout applies
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        loaded = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"`bentogate {' '.join(args)} --json` printed no one JSON object:\n"
                    f"{done.stdout}\n--- stderr ---\n{done.stderr[-3000:]}")  # fmt: skip
    assert isinstance(loaded, dict), done.stdout
    return done.returncode, loaded, done.stderr


def predict_version(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        body = json.dumps({"features": [0.0] * 220})
        connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        return str(json.loads(response.read())["model_version"])
    finally:
        connection.close()


def test_a_ci_script_takes_a_version_to_production_reading_only_json(
    tmp_path: Path, port_block: Callable[[int], int], trained_models: Models
) -> None:
    settings = host_settings(tmp_path / "home", port_block(HOST_PORTS))
    holdout = str(trained_models.holdout)
    fields = json_fields()
    with running_host(settings) as ctx:  # stops what the commands started, at the end
        env = settings_env(settings)

        def step(name: str, *args: str) -> dict[str, Any]:
            code, got, err = bentogate(env, tmp_path, name, *args)
            assert code == 0, err[-3000:]
            assert set(got) == fields[name], f"{name}: {set(got) ^ fields[name]}"
            return got

        registered = step("register", MODEL, str(trained_models.v1), "--reference", holdout,
                          "--developer", "dana")  # fmt: skip
        ref = f"{MODEL}:{registered['version']}"
        assert step("validate", ref, "--holdout", holdout, "--actor", "vic")["state"] == "validated"
        assert step("approve", ref, "--actor", "ana")["state"] == "approved"
        env["BENTOGATE_ACTOR"] = "rel"  # the release engineer, for every step from here
        built = step("build", ref)
        assert built["state"] == "approved" and Path(built["archive"]).is_file()
        deployed = step("deploy", ref)
        assert deployed["state"] == "staged" and len(deployed["backend_ports"]) == 1
        assert deployed["candidate_port"] == registered["candidate_port"]
        gated = step("gate", ref)
        assert gated["verdict"] == "pass", gated["reasons"]
        assert Path(gated["report_html"]).is_file() and "candidate" in gated["figures"]
        promoted = step("promote", ref)
        assert (promoted["state"], promoted["rollout"]) == ("production", None)
        assert predict_version(promoted["production_port"]) == registered["version"]

        # A second promotion is refused by governance: exit 3 and the rule, as JSON.
        code, refused, err = bentogate(env, tmp_path, "promote", ref)
        assert (code, refused["exit_code"]) == (3, 3), err
        assert refused["error"].startswith(f"refused: promote {ref}")
        assert set(refused) == fields["error"]
        # The audit trail names who did each step; the environment named the release engineer.
        entries = step("audit", ref)["entries"]
        actors = {e["action"]: e["actor"] for e in entries if e["outcome"] == "ok"}
        expected = {"register": "dana", "validate": "vic", "approve": "ana", "build": "rel",
                    "stage": "rel", "gate": "rel", "promote": "rel"}  # fmt: skip
        assert {action: actors.get(action) for action in expected} == expected
        assert ctx.registry.production_version(MODEL).version == registered["version"]  # type: ignore[union-attr]
