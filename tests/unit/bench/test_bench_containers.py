"""bench.containers' report, from figures (the measurement needs the engine: run it)."""

from __future__ import annotations

from bench.containers import markdown


def test_the_report_tables_builds_and_starts_with_their_ratio() -> None:
    result = {
        "when": "2026-12-06 09:00 UTC",
        "machine": {"cpus": 2},
        "busy_before": 0.1,
        "busy_after": 0.2,
        "figures": {
            "engine": "podman",
            "builder": "podman",
            "storage_driver": "overlay",
            "base_image": "localhost/bentogate-base:0123456789ab",
            "base_image_mb": 340.0,
            "image_mb": {"bench:1": 599.0},
            "build_s": {"first": 20.04, "rebuild": 21.0, "second_version": 19.5},
            "container_start_s": [6.0, 5.0, 7.0],
            "process_start_s": [2.0, 3.0, 2.5],
        },
    }
    text = markdown(result)
    assert "| first build of a version's image, base cached | 20.0 |" in text
    assert "| rebuild of the same Bento (image removed first) | 21.0 |" in text
    assert "| container of the image | 6.00 | 5.00 | 7.00 |" in text
    assert "| `bentoml serve` process | 2.50 | 2.00 | 3.00 |" in text
    assert "A container takes 2.4x a process's time to be ready" in text
    assert "busy 10% before / 20% after" in text
    assert "podman (builder podman, overlay storage)" in text
