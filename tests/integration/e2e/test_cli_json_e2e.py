"""A CI job's view of a release by four people: register → validate → approve → build →
deploy → gate → promote, each a `bentogate … --json` process connected to PostgreSQL as the
person's own role (no --actor anywhere), read through nothing but its exit code and its stdout
(``json.loads``, as ``jq`` would), each object carrying the fields the README lists; the audit
rows carry the role names, authenticated.

Its own host (``tests/hosts.py``: a block of free ports, the CI gate policy) serving one
model's first version, and a database of its own (``governance_support.people_database``).
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
from governance_support import people_database
from hosts import HOST_PORTS, Models, host_settings, running_host, settings_env
from machine import alone

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


#: person → duty (their PostgreSQL group role)
PEOPLE = {"dana": "developer", "vic": "validator", "ana": "approver", "rel": "release"}


def test_four_people_take_a_version_to_production_from_ci_scripts_reading_only_json(
    tmp_path: Path, port_block: Callable[[int], int], trained_models: Models, pg_base_url: str
) -> None:
    holdout = str(trained_models.holdout)
    fields = json_fields()
    with people_database(pg_base_url, PEOPLE) as people:
        # the host itself (its set-up and its end) runs as the database's owner
        settings = host_settings(tmp_path / "home", port_block(HOST_PORTS),
                                 db_url=people.urls["owner"])  # fmt: skip
        with running_host(settings) as ctx:  # stops what the commands started, at the end
            env = settings_env(settings) | {"BENTOGATE_REQUIRE_AUTHENTICATED": "true"}

            def run_as(who: str, name: str, *args: str) -> tuple[int, dict[str, Any], str]:
                return bentogate(env | {"BENTOGATE_DB_URL": people.urls[who]}, tmp_path, name,
                                 *args)  # fmt: skip

            def step(who: str, name: str, *args: str) -> dict[str, Any]:
                code, got, err = run_as(who, name, *args)
                assert code == 0, err[-3000:]
                assert set(got) == fields[name], f"{name}: {set(got) ^ fields[name]}"
                return got

            registered = step("dana", "register", MODEL, str(trained_models.v1),
                              "--reference", holdout)  # fmt: skip
            ref = f"{MODEL}:{registered['version']}"
            assert step("vic", "validate", ref, "--holdout", holdout)["state"] == "validated"
            assert step("ana", "approve", ref)["state"] == "approved"
            built = step("rel", "build", ref)
            assert built["state"] == "approved" and Path(built["archive"]).is_file()
            deployed = step("rel", "deploy", ref)
            assert deployed["state"] == "staged" and len(deployed["backend_ports"]) == 1
            assert deployed["candidate_port"] == registered["candidate_port"]
            with alone():  # a gate measures: as on a quiet host (tests/machine.py)
                gated = step("rel", "gate", ref)
            assert gated["verdict"] == "pass", gated["reasons"]
            assert Path(gated["report_html"]).is_file() and "candidate" in gated["figures"]
            promoted = step("rel", "promote", ref)
            assert (promoted["state"], promoted["rollout"]) == ("production", None)
            assert predict_version(promoted["production_port"]) == registered["version"]

            # A second promotion is refused by governance: exit 3 and the rule, as JSON.
            code, refused, err = run_as("rel", "promote", ref)
            assert (code, refused["exit_code"]) == (3, 3), err
            assert refused["error"].startswith(f"refused: promote {ref}")
            assert set(refused) == fields["error"]
            # Naming someone else is refused where identities are authenticated.
            code, refused, err = run_as("rel", "retire", ref, "--actor", "dana", "--reason", "x")
            assert code == 3 and "is not the authenticated database role" in refused["error"]
            # The audit trail names each person by their role, authenticated.
            entries = step("rel", "audit", ref)["entries"]
            done = {e["action"]: (e["actor"], e["authenticated"]) for e in entries
                    if e["outcome"] == "ok"}  # fmt: skip
            roles = people.roles
            expected = {"register": "dana", "validate": "vic", "approve": "ana", "build": "rel",
                        "stage": "rel", "gate": "rel", "promote": "rel"}  # fmt: skip
            assert {a: done.get(a) for a in expected} == {
                a: (roles[who], True) for a, who in expected.items()
            }
            production = ctx.registry.production_version(MODEL)
            assert production is not None and production.version == registered["version"]
