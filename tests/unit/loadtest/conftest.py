"""Fixtures of the loadtest unit tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from lt_samples_factory import Row, write_samples


@pytest.fixture
def samples_writer(tmp_path: Path) -> Callable[..., Path]:
    """``samples_writer(rows, name="local", **meta)`` writes tmp_path/samples-<name>.npz."""

    def write(rows: Sequence[Row], name: str = "local", **meta: Any) -> Path:
        return write_samples(tmp_path / f"samples-{name}.npz", rows, **meta)

    return write
