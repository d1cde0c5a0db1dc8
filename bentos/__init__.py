"""Bentos of model versions: build, export/import portable archives, containerize, and run
one on a port (a ``bentoml serve`` process, or a container where an engine answers).

A store is one ``BENTOML_HOME``; this part reads no database and knows nothing of HAProxy.

    tag = build_bento(project_dir, home, VersionSpec(...), max_body_bytes=..., max_batch_rows=...)
    archive = export_bento(home, tag, shared_dir)      # <model>-<version>.bento
    import_bento(other_home, archive_path(shared_dir, tag))
    handle = ProcessBackend(home, logs_dir).start(tag, port)
"""

from __future__ import annotations

from .build import (
    VersionSpec,
    archive_path,
    bento_path,
    build_bento,
    containerize,
    export_bento,
    import_bento,
    max_body_bytes,
    model_path,
    served_sha256,
)
from .runtime import (
    DockerBackend,
    Handle,
    ProcessBackend,
    Runtime,
    container_name,
    docker_engine_available,
    http_status,
    log_path,
    pid_alive,
    process_tree,
    resident_bytes,
)

__all__ = [
    "DockerBackend",
    "Handle",
    "ProcessBackend",
    "Runtime",
    "VersionSpec",
    "archive_path",
    "bento_path",
    "build_bento",
    "container_name",
    "containerize",
    "docker_engine_available",
    "export_bento",
    "http_status",
    "import_bento",
    "log_path",
    "max_body_bytes",
    "model_path",
    "pid_alive",
    "process_tree",
    "resident_bytes",
    "served_sha256",
]
