"""``python -m bentogate.bentos._make_base``: make this machine's base image unless it is
built (``./run containers``), with the settings of the working directory; prints its name.
Its steps, and each step's output as details, on stderr."""

from __future__ import annotations

import sys

from bentogate.bentos.baseimage import build_base_image
from bentogate.errors import BuildError, ConfigError
from bentogate.settings import Settings


def main() -> None:
    try:
        name = build_base_image(
            Settings().container, progress=lambda line: print(line, file=sys.stderr, flush=True)
        )
    except (BuildError, ConfigError) as exc:
        sys.exit(f"error: {exc}")
    print(name)


if __name__ == "__main__":
    main()
