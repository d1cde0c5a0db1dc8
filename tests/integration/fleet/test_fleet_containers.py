"""The agent with the container backend (``agent.runtime = "docker"``): where an engine
answers, a version built with an image is served from its container on a fleet host."""

from __future__ import annotations

import pytest

from bentos.runtime import docker_engine_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not docker_engine_available(),
        reason="no Docker engine answers (`docker info` fails): the container backend is "
        "covered by tests/unit/fleet/test_fleet_agent_unit.py only",
    ),
]


def test_fleet_agent_serves_a_container() -> None:
    # Reached only where an engine answers: the image must exist (bentogate build
    # --containerize), then an agent with BENTOGATE_AGENT__RUNTIME=docker serves it.
    pytest.skip(
        "needs a containerized Bento: run on a machine with a Docker engine and a base image"
    )
