"""The container path for real: this machine's engine (podman, set up by ``./run
containers``) builds each version's image FROM the base image made here and runs it.

Where no engine works, or the base image is not built, every test here is skipped with the
reason; CI sets ``BENTOGATE_TEST_CONTAINERS=required`` (``.ci/run``), which turns that skip
into a failure. Images are built once per session under a repository of the session's own
(``bentogate-test-<hex>``, so that two checkouts testing at once do not share tags) and
removed at its end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from bentogate.bentos import base_image, engine_problem, image_id
from bentogate.bentos.engine import run_engine
from bentogate.settings import ContainerSettings

# Read at collection: the autouse fixture of tests/conftest.py clears BENTOGATE_* per test.
REQUIRED = os.environ.get("BENTOGATE_TEST_CONTAINERS") == "required"


def _problem(settings: ContainerSettings) -> str | None:
    problem = engine_problem(settings)
    if problem is None and image_id(settings, base_image(settings)) is None:
        problem = (
            f"the base image {base_image(settings)} is not built on this machine "
            "(run ./run containers)"
        )
    return problem


@pytest.fixture(scope="session")
def engine() -> Iterator[ContainerSettings]:
    """The container settings of the tests (the machine's engine and base image, a
    repository of this session's own); skips (fails in CI) where no engine works."""
    settings = ContainerSettings(repository=f"bentogate-test-{secrets.token_hex(3)}")
    problem = _problem(settings)
    if problem is not None:
        if REQUIRED:
            pytest.fail(f"BENTOGATE_TEST_CONTAINERS=required, but {problem}")
        pytest.skip(f"no container engine works here: {problem}")
    yield settings
    found = run_engine(
        settings, ["images", "--quiet", "--filter", f"reference=*/{settings.repository}/*"]
    )
    for image in dict.fromkeys(found.split()):
        run_engine(settings, ["rmi", "--force", image], timeout=120)
