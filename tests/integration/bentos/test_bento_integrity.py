"""A broken model is never ready and never healthy behind HAProxy; a model changed in the
store after the build refuses to start."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from bento_support import Built, get_json, post_json, serving, wait_live
from free_ports import free_port

from bentogate.bentos.runtime import Handle, ProcessBackend, http_status
from bentogate.errors import HAProxyError, RuntimeBackendError
from bentogate.haproxy import ModelRoute, ProxyPaths, ProxySpec, Sidecar
from bentogate.routing import version_backend
from bentogate.settings import HAProxySettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def runtime(fraud_v1: Built, tmp_path_factory: pytest.TempPathFactory) -> ProcessBackend:
    return ProcessBackend(fraud_v1.home, tmp_path_factory.mktemp("logs"))


@pytest.fixture(scope="module")
def good_and_broken(
    runtime: ProcessBackend, fraud_v1: Built, broken_canary: Built
) -> Iterator[tuple[Handle, Handle]]:
    """fraud:1 (ready) and fraud:3 (loaded, its canary does not score as recorded)."""
    broken = runtime.start(broken_canary.tag, free_port())  # both start at once
    try:
        with serving([(runtime, fraud_v1.tag)]) as (good,):
            wait_live(runtime, broken)
            yield good, broken
    finally:
        runtime.stop(broken, 10)


def test_a_model_whose_canary_does_not_score_as_recorded_is_never_ready(
    runtime: ProcessBackend, good_and_broken: tuple[Handle, Handle], broken_canary: Built
) -> None:
    _, broken = good_and_broken
    for _ in range(5):
        assert http_status(broken.port, "/readyz") == 503
        time.sleep(0.2)
    with pytest.raises(RuntimeBackendError, match="not ready after"):
        runtime.wait_ready(broken, timeout=1)
    # Not even on its own port: a model that does not score as recorded predicts nothing.
    row = broken_canary.artifact.canary_row
    for path, features in (("/predict", row), ("/predict_batch", [row])):
        status, answer = post_json(broken.port, path, {"features": features})
        assert status == 503, answer
        assert "fraud:3 does not score its canary row as recorded" in answer["error"]
    status, info = get_json(broken.port, "/model")
    assert status == 200 and info["version"] == "3"  # it still says what it is


def _backend_of(built: Built, port: int) -> Any:
    """The version's HAProxy backend exactly as bentogate.routing builds it from the DB."""
    record = SimpleNamespace(artifact_uri=str(built.artifact.directory))
    ctx = SimpleNamespace(
        registry=SimpleNamespace(get_version=lambda model, version: record),
        settings=SimpleNamespace(bentoml_home=built.home),
    )
    return version_backend(ctx, built.model, built.version, [port])  # type: ignore[arg-type]


@pytest.fixture
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    settings = HAProxySettings(binary=binary, check_inter_ms=500, check_fastinter_ms=200)
    car = Sidecar(ProxyPaths(tmp_path_factory.mktemp("hx")), settings)
    try:
        yield car
    finally:
        car.stop(timeout=3)


def test_a_model_whose_canary_does_not_score_as_recorded_never_turns_healthy_in_haproxy(
    good_and_broken: tuple[Handle, Handle],
    fraud_v1: Built,
    broken_canary: Built,
    sidecar: Sidecar,
) -> None:
    good, broken = good_and_broken
    route = ModelRoute(
        model="fraud",
        production_port=free_port(),
        candidate_port=free_port(),
        live=None,
        candidate=None,
        backends=(_backend_of(fraud_v1, good.port), _backend_of(broken_canary, broken.port)),
    )
    sidecar.apply(ProxySpec(routes=(route,), stats_port=free_port()))
    sidecar.wait_healthy("fraud", fraud_v1.version, timeout=15)  # the check itself works
    with pytest.raises(HAProxyError, match="the canary prediction did not answer 200"):
        sidecar.wait_healthy("fraud", broken_canary.version, timeout=4)
    [server] = [s for s in sidecar.server_status() if s.server == f"v3_{broken.port}"]
    assert not server.healthy, server


def test_a_model_changed_in_the_store_after_the_build_refuses_to_start(
    runtime: ProcessBackend, tampered_model: Built
) -> None:
    handle = runtime.start(tampered_model.tag, free_port())
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeBackendError) as caught:
            runtime.wait_ready(handle, timeout=20)
        elapsed = time.monotonic() - started
    finally:
        runtime.stop(handle, 10)
    assert "differs from the approved" in str(caught.value)
    assert tampered_model.artifact.sha256[:12] in str(caught.value)
    # BentoML keeps respawning a worker whose service fails to load: the backend must
    # notice the failed start-up at once, not sit out its whole timeout.
    assert elapsed < 15, str(caught.value)
