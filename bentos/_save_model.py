"""``python -m bentos._save_model SPEC.json``: put one model into a BentoML model store.

Runs in its own process so that ``BENTOML_HOME`` (set by the parent) selects the store:
BentoML binds its store when it is first imported.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def main(spec_file: str) -> None:
    import bentoml

    spec = json.loads(Path(spec_file).read_text())
    with bentoml.models.create(
        spec["tag"], labels=spec["labels"], metadata=spec["metadata"]
    ) as model:
        for name in spec["files"]:
            shutil.copyfile(Path(spec["source_dir"]) / name, Path(model.path) / name)
    print(model.tag)


if __name__ == "__main__":
    main(sys.argv[1])
