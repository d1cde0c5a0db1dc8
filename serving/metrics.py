"""What the Bento adds to BentoML's ``/metrics``: latency buckets that fit a prediction, and
the identity of the model version it serves."""

from __future__ import annotations

from serving.scorer import Scorer

# Request-latency histogram bounds (seconds). A prediction takes well under a millisecond;
# BentoML's default buckets start at 5 ms and would put every request in the first one.
LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def publish_identity(scorer: Scorer) -> None:
    """Expose ``bentogate_model_info{model, version, sha256} 1`` on ``/metrics``."""
    # Imported here, not at the top: BentoML sets PROMETHEUS_MULTIPROC_DIR in the worker
    # after importing this module, and prometheus_client chooses its storage at import.
    import prometheus_client

    info = prometheus_client.Gauge(
        "bentogate_model_info",
        "The model version this Bento serves (always 1).",
        labelnames=("model", "version", "sha256"),
        multiprocess_mode="livemax",  # one sample however many workers
        registry=None,  # BentoML's /metrics reads every worker's values from its files
    )
    info.labels(model=scorer.name, version=scorer.version, sha256=scorer.sha256).set(1)
