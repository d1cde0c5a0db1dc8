"""The BentoML service every governed model version is built into.

One file serves any version: the model to load is a Bento argument given at build time
(``bentoml build --arg model_tag=fraud:3``), so the Bento carries its own model store entry
(ONNX model + ``meta.json``) and nothing here is edited per version. The hot path is a lean
Starlette app mounted on the BentoML service (BentoML still builds, serves and containerizes
it, and still answers ``/livez``, ``/readyz`` and ``/metrics``); it never touches the
governance database. The app, the input checks and the model's scoring live in ``serving/``,
the package every Bento carries beside this file.

Prediction contract (DESIGN.md): ``POST /predict`` takes ``{"features": [f1..fn]}`` in schema
order or ``{"features": {"name": value, ...}}`` and answers
``{"score": 0.93, "label": 1, "model": "fraud", "model_version": "3"}``. Every malformed
request is a 400 naming the problem; bodies over the limit are a 413; a Bento whose model
does not score its canary row as recorded answers every prediction with a 503. Each
response leaves in one write (serving.protocol).
"""

from __future__ import annotations

import gc
from functools import partial
from pathlib import Path

import bentoml
from bentoml import get_current_service  # bound once: bentoml.<name> is a lazy lookup
from pydantic import BaseModel

from serving import (
    LATENCY_BUCKETS_S,
    RecentRequests,
    RequestMetrics,
    Scorer,
    canary_refusal,
    install_lean_stack,
    install_one_write_protocol,
    latency_page,
    prediction_app,
    publish_identity,
)


class BentoArgs(BaseModel):
    """Values fixed when a version's Bento is built."""

    model_tag: str
    max_body_bytes: int = 1_048_576
    max_batch_rows: int = 1024
    recent_rows: int = 2000  # client rows kept per worker for shadow scoring (0: none)
    recent_max_age_s: float = 3600.0


ARGS = bentoml.use_arguments(BentoArgs)

METRICS_NAMESPACE = "bentoml_service"

app = RequestMetrics(
    prediction_app(
        get_current_service,
        max_body_bytes=ARGS.max_body_bytes,
        max_batch_rows=ARGS.max_batch_rows,
        recent=RecentRequests(ARGS.recent_rows, ARGS.recent_max_age_s)
        if ARGS.recent_rows
        else None,
        latency=partial(latency_page, METRICS_NAMESPACE),
    ),
    namespace=METRICS_NAMESPACE,
    buckets=LATENCY_BUCKETS_S,
)

# Here, at import: BentoML's worker imports this module, then builds the service's app
# (without the layers serving/stack.py leaves out, with the prediction endpoints reached
# without routing) and starts uvicorn, which picks its protocol class then.
install_lean_stack(direct=app.direct_routes())
install_one_write_protocol()


@bentoml.asgi_app(app, path="/")
@bentoml.service(
    name="bentogate_model",
    # /metrics stays BentoML's; the app records its requests there (RequestMetrics).
    metrics={
        "enabled": True,
        "namespace": METRICS_NAMESPACE,
        "duration": {"buckets": list(LATENCY_BUCKETS_S)},
    },
    # An access-log line per request costs ~20-40 us (bench/README.md); HAProxy in front
    # logs, counts and times every request.
    logging={"access": {"enabled": False}},
)
class ModelService:
    """Serves the one model version this Bento was built for."""

    model_ref = bentoml.models.BentoModel(ARGS.model_tag)

    def __init__(self) -> None:
        stored = self.model_ref
        metadata = stored.info.metadata
        self.scorer = Scorer(
            Path(stored.path),
            name=str(metadata["model"]),
            version=str(metadata["version"]),
            expected_sha256=str(metadata["sha256"]),
        )
        # Ready only once the canary row scores as recorded at import: a broken or altered
        # model never reports ready, refuses every prediction (503, also on its own port),
        # and HAProxy's check (the same row) never marks it UP.
        self.ready = self.scorer.canary_ok()
        self.refusal = canary_refusal(self.scorer)
        publish_identity(self.scorer)
        # Everything loaded so far lives as long as the process: move it out of the
        # collector's reach, so full collections stay short (tail latency).
        gc.collect()
        gc.freeze()

    def __is_ready__(self) -> bool:
        return self.ready
