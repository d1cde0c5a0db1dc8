"""The sidecar's desired state, rendered from the governance DB (never edited by hand)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import orjson

from bentogate.bentos import max_body_bytes, model_path
from bentogate.context import Context, artifact_dir
from bentogate.governance import DeploymentInfo, Role
from bentogate.haproxy import ModelRoute, ProxySpec, Server, VersionBackend, server_name
from bentogate.modelimport import load_artifact


def version_backend(ctx: Context, model: str, version: str, ports: list[int]) -> VersionBackend:
    """A version's HAProxy backend: its replicas and the prediction its health check expects."""
    info = ctx.registry.get_version(model, version)
    artifact = load_artifact(_meta_dir(ctx, info.artifact_uri, f"{model}:{version}"))
    identity = orjson.dumps({"model": model, "model_version": version}).decode()[1:-1]
    return VersionBackend(
        model=model,
        version=version,
        servers=tuple(Server(name=server_name(version, port), port=port) for port in sorted(ports)),
        canary_body=orjson.dumps({"features": artifact.canary_row}).decode(),
        max_body_bytes=max_body_bytes(ctx.settings.bentoml_home, f"{model}:{version}"),
        # 200, the exact score recorded at import for the canary row (a model scoring
        # differently fails), and the identity (a wrong model on the port fails).
        expect_strings=(
            '"score":' + orjson.dumps(artifact.canary_served_score).decode() + ",",
            identity,
        ),
    )


def _meta_dir(ctx: Context, artifact_uri: str, tag: str) -> Path:
    """Where the version's ``meta.json`` (canary row and score) is on this host."""
    if Path(artifact_uri).is_dir():
        return artifact_dir(artifact_uri)
    # A fleet host has the version's Bento, imported from the shared store, not the
    # registering host's artifact directory; the model inside the Bento has the same meta.json.
    return model_path(ctx.settings.bentoml_home, tag)


def desired_spec(ctx: Context, live: Mapping[str, str | None] | None = None) -> ProxySpec:
    """Routes for every model with a deployment on this host, as the DB records them.

    ``live`` (model → version or None) overrides the live route of the models it names: a
    fleet agent keeps routing what it serves until its own cutover, whatever the DB says.
    """
    overrides = live or {}
    routes = []
    for model in ctx.registry.models():
        deployments = ctx.registry.deployments(host=ctx.settings.host, model=model.name)
        if not deployments:
            continue
        ports: dict[str, list[int]] = defaultdict(list)
        for deployment in deployments:
            ports[deployment.version].append(deployment.port)
        if model.name in overrides:
            routed = overrides[model.name]
        else:
            production = ctx.registry.production_version(model.name)
            routed = production.version if production is not None else None
        routes.append(
            ModelRoute(
                model=model.name,
                production_port=model.production_port,
                candidate_port=ctx.candidate_port(model.production_port),
                live=routed if routed in ports else None,
                candidate=_candidate(deployments),
                backends=tuple(
                    version_backend(ctx, model.name, version, version_ports)
                    for version, version_ports in sorted(ports.items())
                ),
            )
        )
    return ProxySpec(
        routes=tuple(routes), stats_port=ctx.settings.ports.stats, address=ctx.settings.address
    )


def _candidate(deployments: list[DeploymentInfo]) -> str | None:
    candidates = [d for d in deployments if d.role == Role.CANDIDATE]
    return max(candidates, key=lambda d: d.started_at).version if candidates else None
