"""Bentos of model versions: build, export/import portable archives, containerize (on an
image base made on this machine), and run one on a port (a ``bentoml serve`` process, or a
container of its image).

A store is one ``BENTOML_HOME``; this part reads no database and knows nothing of HAProxy.

    base = base_image(settings.container)          # what its image is to be built FROM
    tag = build_bento(project_dir, home, VersionSpec(...), args={...}, base_image=base)
    archive = export_bento(home, tag, shared_dir)      # <model>-<version>.bento
    import_bento(other_home, archive_path(shared_dir, tag))
    handle = ProcessBackend(home, logs_dir).start(tag, port)
    image_id = containerize(home, tag, "bentogate/fraud:2", settings.container)
    handle = ContainerBackend(settings.container, logs_dir, images={tag: image_id}).start(tag, port)
"""

from __future__ import annotations

from .baseimage import base_image, build_base_image
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
from .container import ContainerBackend, container_name, image_model_path
from .engine import engine_env, engine_problem, image_id
from .runtime import (
    Handle,
    ProcessBackend,
    Runtime,
    http_status,
    log_path,
    pid_alive,
    process_tree,
    resident_bytes,
)

__all__ = [
    "ContainerBackend",
    "Handle",
    "ProcessBackend",
    "Runtime",
    "VersionSpec",
    "archive_path",
    "base_image",
    "bento_path",
    "build_base_image",
    "build_bento",
    "container_name",
    "containerize",
    "engine_env",
    "engine_problem",
    "export_bento",
    "http_status",
    "image_id",
    "image_model_path",
    "import_bento",
    "log_path",
    "max_body_bytes",
    "model_path",
    "pid_alive",
    "process_tree",
    "resident_bytes",
    "served_sha256",
]
