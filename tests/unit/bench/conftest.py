"""The benchmark helpers live in ``bench/`` at the project root, which is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_DIR = str(Path(__file__).resolve().parents[3])
if PROJECT_DIR not in sys.path:
    sys.path.insert(0, PROJECT_DIR)
