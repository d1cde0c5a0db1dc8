"""A version served from its image, on this machine's engine, through the whole release path:
register → validate → approve → ``build --containerize`` → deploy from the image → gate →
promote; the production port answers from the container, a rollback to the warm previous
container is instant, the audit trail names the image; an image whose model was altered is
refused at deploy (and audited); the fleet agent with the container runtime serves production
from its image.

One host for the module (its containers take seconds to start): v1 is taken to production by
``release.release`` (its image built on the way), v2 by the CLI's ``build --containerize``
and the workflow's steps. Tests run in file order and each brings the model to the state it
needs (``hosts.reach``).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hosts import (
    ACTORS,
    HOST_PORTS,
    Models,
    Want,
    host_lifetime,
    host_settings,
    reach,
    register,
    running_host,
    settings_env,
)

from bentogate import release
from bentogate.bentos import container_name, image_id, image_model_path
from bentogate.bentos.engine import run_engine
from bentogate.context import Context, Ref
from bentogate.errors import IntegrityError
from bentogate.governance import Role, State
from bentogate.settings import ContainerSettings

pytestmark = pytest.mark.integration

MODEL = "fraud"


@dataclass(frozen=True)
class World:
    ctx: Context
    v1: Ref
    v2: Ref
    base: int  # the first port of the block (this host's first half, the agent host's second)
    v2_build: subprocess.CompletedProcess[str]  # `bentogate build v2 --containerize --json`


def _post(port: int, path: str, body: object) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _running(settings: ContainerSettings, name: str) -> bool:
    return run_engine(settings, ["inspect", "--format", "{{.State.Running}}", name]) == "true"


@pytest.fixture(scope="module")
def world(
    engine: ContainerSettings,
    tmp_path_factory: pytest.TempPathFactory,
    port_block: Any,
    trained_models: Models,
) -> Iterator[World]:
    base = port_block(2 * HOST_PORTS)
    settings = host_settings(
        tmp_path_factory.mktemp("containers"),
        base,
        bento={"runtime": "container"},
        container=engine.model_dump(),
    )
    with running_host(settings) as ctx:
        v1 = register(ctx, MODEL, trained_models.v1, trained_models.holdout)
        v2 = register(ctx, MODEL, trained_models.v2, trained_models.holdout)
        release.validate(ctx, v2, trained_models.holdout, actor=ACTORS.validator)
        release.approve(ctx, v2, actor=ACTORS.approver)
        # v2's image is built by the CLI while v1 goes to production (its image built on the
        # way): the two builds overlap; the first test reads the CLI's answer.
        command = [sys.executable, "-m", "bentogate.cli", "build", str(v2), "--containerize"]
        with subprocess.Popen(
            [*command, "--json"],
            env={**settings_env(settings), "BENTOGATE_ACTOR": ACTORS.release},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as building:
            release.release(ctx, v1, trained_models.holdout, actors=ACTORS)
            stdout, stderr = building.communicate(timeout=600)
        built = subprocess.CompletedProcess(command, building.returncode, stdout, stderr)
        yield World(ctx, v1, v2, base, built)


def _gated(ctx: Context, ref: Ref) -> None:
    """``ref`` (built) deployed and gated, unless it is already."""
    if ctx.registry.get_version(ref.model, ref.version).state == State.APPROVED:
        release.deploy(ctx, ref, actor=ACTORS.release)
        release.gate(ctx, ref, actor=ACTORS.release)


def test_a_version_goes_to_production_from_its_image(world: World) -> None:
    ctx, v2 = world.ctx, world.v2
    engine = ctx.settings.container
    built = world.v2_build
    assert built.returncode == 0, built.stderr[-3000:]
    answer = json.loads(built.stdout)
    assert answer["image_tag"] == f"{engine.repository}/{MODEL}:{v2.version}"
    assert answer["image_id"] == image_id(engine, answer["image_tag"])  # the engine's own id
    assert "bentoml containerize" in built.stderr  # the build's progress, on stderr

    release.deploy(ctx, v2, actor=ACTORS.release)
    [deployment] = [d for d in ctx.registry.deployments(model=MODEL) if d.version == v2.version]
    name = container_name(str(v2), deployment.port)
    assert _running(engine, name)
    assert deployment.pid == int(
        run_engine(engine, ["inspect", "--format", "{{.State.Pid}}", name])
    )
    release.gate(ctx, v2, actor=ACTORS.release)
    promoted = release.promote(ctx, v2, actor=ACTORS.release)
    assert promoted.state == State.PRODUCTION

    production = ctx.registry.get_model(MODEL).production_port
    row = ctx.registry.get_version(MODEL, v2.version)
    status, scored = _post(production, "/predict", {"features": [0.0] * len(row.feature_names)})
    assert (status, scored["model_version"]) == (200, v2.version)
    # what answers there is v2's container, whose model is the approved one
    routed = [d for d in ctx.registry.deployments(model=MODEL) if d.role == Role.LIVE]
    assert [d.port for d in routed] == [deployment.port] and _running(engine, name)

    # the audit trail names the image: its build, and the checks of the model in it
    audit = ctx.registry.audit(MODEL, v2.version)
    [build] = [e for e in audit if e.action == "build" and e.payload.get("image_id")]
    assert (build.payload["image_tag"], build.payload["image_id"]) == (
        answer["image_tag"], answer["image_id"],
    )  # fmt: skip
    checks = [e.reason for e in audit if e.action == "verify_artifact" and e.outcome == "ok"]
    assert f"model in image {answer['image_id'][:19]}" in " ".join(checks)
    assert any(f"loaded by the container(s) of {v2} on :{deployment.port}" in c for c in checks)


def test_a_rollback_to_the_warm_previous_container_is_instant(world: World) -> None:
    ctx, v1, v2 = world.ctx, world.v1, world.v2
    _gated(ctx, v2)
    reach(ctx, MODEL, Want(live=v2.version, other=v1.version, other_as="warm"))
    warm = [d for d in ctx.registry.deployments(model=MODEL) if d.version == v1.version]
    started = time.monotonic()
    release.rollback(ctx, MODEL, actor=ACTORS.release)
    took = time.monotonic() - started
    live = [d for d in ctx.registry.deployments(model=MODEL) if d.version == v1.version]
    assert [d.id for d in live] == [d.id for d in warm]  # the same containers, none started
    assert all(_running(ctx.settings.container, container_name(str(v1), d.port)) for d in live)
    assert took < 5.0, f"rollback took {took:.1f} s: not a switch to warm containers"
    production = ctx.registry.get_model(MODEL).production_port
    row = ctx.registry.get_version(MODEL, v1.version)
    status, scored = _post(production, "/predict", {"features": [0.0] * len(row.feature_names)})
    assert (status, scored["model_version"]) == (200, v1.version)


def test_an_image_whose_model_was_altered_is_refused_at_deploy_and_audited(
    world: World,
) -> None:
    ctx, v2 = world.ctx, world.v2
    engine = ctx.settings.container
    image = ctx.registry.get_version(MODEL, v2.version).image_id
    assert image is not None
    before = [d.id for d in ctx.registry.deployments(model=MODEL)]
    # Someone with the host's image store changes the model inside v2's image, in place:
    # the image keeps its id, only its bytes tell.
    model = _top_layer(engine, image) / image_model_path(str(v2)).lstrip("/")
    original = model.read_bytes()
    try:
        model.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(IntegrityError, match=r"model in image .* differs from the registered"):
            release.deploy(ctx, v2, actor=ACTORS.release)
    finally:
        model.write_bytes(original)
        if engine.storage_driver == "vfs":
            run_engine(engine, ["image", "unmount", image])
    assert [d.id for d in ctx.registry.deployments(model=MODEL)] == before  # nothing started
    refused = ctx.registry.audit(MODEL, v2.version)[-1]
    assert (refused.action, refused.outcome) == ("verify_artifact", "refused")
    registered = ctx.registry.get_version(MODEL, v2.version).sha256
    assert refused.payload["registered_sha256"] == registered
    assert refused.payload["measured_sha256"] not in (registered, None)
    assert "artifact integrity" in refused.reason


def test_the_fleet_agent_serves_production_from_its_image(world: World, tmp_path: Path) -> None:
    ctx = world.ctx
    reach(ctx, MODEL, Want(live=world.v1.version))
    live = ctx.registry.production_version(MODEL)
    assert live is not None
    # A fleet host on this machine: the same governance DB, Bento archives and engine, its
    # own state and backend ports. A host serves a model on the model's port, so this one
    # steps aside first (its containers and HAProxy stop; the DB still says v1 is live).
    release.shutdown(ctx, actor=ACTORS.release)
    other = host_settings(
        tmp_path / "h2",
        world.base + HOST_PORTS,
        host="h2",
        db_url=ctx.settings.database_url,
        shared_bentos_dir=str(ctx.settings.bentos_dir),
        bento={"runtime": "container"},
        container=ctx.settings.container.model_dump(),
        audit={
            "checkpoint_key": str(ctx.settings.checkpoint_key),
            "checkpoint_log": str(ctx.settings.checkpoint_log),
        },
    )
    with host_lifetime(other):  # its logs with a failure; everything of it stopped after
        done = subprocess.run(
            [sys.executable, "-m", "bentogate.cli", "agent", "--host", "h2", "--once", "--json"],
            env=settings_env(other),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout)["models"][MODEL]
        assert (report["live"], report["healthy"], report["error"]) == (live.version, True, None)
        [served] = ctx.registry.deployments(host="h2", model=MODEL)
        assert (served.version, served.role) == (live.version, Role.LIVE)
        assert _running(other.container, container_name(f"{MODEL}:{live.version}", served.port))
        port = ctx.registry.get_model(MODEL).production_port
        assert report["port"] == port
        status, scored = _post(port, "/predict", {"features": [0.0] * len(live.feature_names)})
        assert (status, scored["model_version"]) == (200, live.version)
    assert ctx.registry.deployments(host="h2") == []
    assert not _running_any(other.container, container_name(f"{MODEL}:{live.version}", served.port))


def _top_layer(engine: ContainerSettings, image: str) -> Path:
    """The files of ``image``'s top layer in the engine's store, writable (the one layer
    podman commits a build into): overlay's upper directory, or vfs's mounted copy."""
    if engine.storage_driver == "overlay":
        upper = "{{.GraphDriver.Data.UpperDir}}"
        return Path(run_engine(engine, ["image", "inspect", "--format", upper, image]))
    return Path(run_engine(engine, ["image", "mount", image]))


def _running_any(settings: ContainerSettings, name: str) -> bool:
    """True if a container of that name exists at all (running or not)."""
    found = run_engine(settings, ["ps", "--all", "--quiet", "--filter", f"name=^{name}$"])
    return bool(found)
