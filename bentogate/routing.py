"""The sidecar's desired state, rendered from the governance DB (never edited by hand)."""

from __future__ import annotations

from collections import defaultdict

import orjson

from bentogate.context import Context, artifact_dir
from bentogate.modelimport import load_artifact
from governance import DeploymentInfo, Role
from haproxy import ModelRoute, ProxySpec, Server, VersionBackend


def version_backend(ctx: Context, model: str, version: str, ports: list[int]) -> VersionBackend:
    """A version's HAProxy backend: its replicas and the prediction its health check expects."""
    info = ctx.registry.get_version(model, version)
    artifact = load_artifact(artifact_dir(info.artifact_uri))
    identity = orjson.dumps({"model": model, "model_version": version}).decode()[1:-1]
    return VersionBackend(
        model=model,
        version=version,
        servers=tuple(Server(name=f"v{version}_{port}", port=port) for port in sorted(ports)),
        canary_body=orjson.dumps({"features": artifact.canary_row}).decode(),
        # 200, the exact score recorded at import for the canary row (a model scoring
        # differently fails), and the identity (a wrong model on the port fails).
        expect_strings=(
            '"score":' + orjson.dumps(artifact.canary_served_score).decode() + ",",
            identity,
        ),
    )


def desired_spec(ctx: Context) -> ProxySpec:
    """Routes for every model with a deployment on this host, as the DB records them."""
    routes = []
    for model in ctx.registry.models():
        deployments = ctx.registry.deployments(host=ctx.settings.host, model=model.name)
        if not deployments:
            continue
        ports: dict[str, list[int]] = defaultdict(list)
        for deployment in deployments:
            ports[deployment.version].append(deployment.port)
        live = ctx.registry.production_version(model.name)
        routes.append(
            ModelRoute(
                model=model.name,
                production_port=model.production_port,
                candidate_port=ctx.candidate_port(model.production_port),
                live=live.version if live and live.version in ports else None,
                candidate=_candidate(deployments),
                backends=tuple(
                    version_backend(ctx, model.name, version, version_ports)
                    for version, version_ports in sorted(ports.items())
                ),
            )
        )
    return ProxySpec(routes=tuple(routes), stats_port=ctx.settings.ports.stats)


def _candidate(deployments: list[DeploymentInfo]) -> str | None:
    candidates = [d for d in deployments if d.role == Role.CANDIDATE]
    return max(candidates, key=lambda d: d.started_at).version if candidates else None
