"""``python -m bentogate.bentos._save_model SPEC.json``: put one model into a BentoML model store.

Runs in its own process so that ``BENTOML_HOME`` (set by the parent) selects the store:
BentoML binds its store when it is first imported. Exits non-zero, naming the problem and
storing nothing, if the artifact's ONNX model is not the approved one (its sha256).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path


def main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    source = Path(spec["source_dir"])
    approved = spec["metadata"]["sha256"]
    found = hashlib.sha256((source / "model.onnx").read_bytes()).hexdigest()
    if found != approved:
        sys.exit(
            f"refusing to store {spec['tag']}: {source / 'model.onnx'} has sha256 {found[:12]}, "
            f"not the approved {approved[:12]}"
        )
    import bentoml

    with bentoml.models.create(
        spec["tag"], labels=spec["labels"], metadata=spec["metadata"]
    ) as model:
        for name in spec["files"]:
            shutil.copyfile(source / name, Path(model.path) / name)
    print(model.tag)


if __name__ == "__main__":
    main(sys.argv[1])
