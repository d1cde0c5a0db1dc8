"""The commented example configuration at the top of the repository: generated from the
settings' own fields, and read back it gives the defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bentogate.settings import Settings, example_toml

EXAMPLE = Path(__file__).resolve().parents[3] / "bentogate.toml.example"

REGENERATE = (
    ".venv/bin/python -c 'from bentogate.settings import example_toml; "
    'print(example_toml(), end="")\' > bentogate.toml.example'
)


def test_the_committed_example_is_generated_from_the_settings() -> None:
    assert EXAMPLE.read_text() == example_toml(), f"regenerate it: {REGENERATE}"


def test_the_example_read_as_the_config_file_gives_the_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no bentogate.toml here: the defaults
    defaults = Settings()
    monkeypatch.setenv("BENTOGATE_CONFIG", str(EXAMPLE))
    assert Settings() == defaults
    written = tomllib.loads(EXAMPLE.read_text())
    assert Settings(**written) == defaults
    assert set(written) >= {"ports", "haproxy", "bento", "gate", "agent", "home", "host"}


def test_every_field_is_in_the_example_with_its_description_and_variable() -> None:
    text = EXAMPLE.read_text()
    flat = " ".join(line.removeprefix("# ") for line in text.splitlines())
    for name, info in Settings.model_fields.items():
        group = info.annotation
        if isinstance(group, type) and hasattr(group, "model_fields"):
            assert f"\n[{name}]\n" in text
            fields = {f"BENTOGATE_{name.upper()}__{f.upper()}": (f, i)
                      for f, i in group.model_fields.items()}  # fmt: skip
        else:
            fields = {f"BENTOGATE_{name.upper()}": (name, info)}
        for env, (field, field_info) in fields.items():
            assert f"({env})" in flat
            assert field_info.description and field_info.description in flat
            assert f"\n{field} = " in text or f"\n# {field} = " in text  # None: commented out


def test_a_hosts_address_is_an_ipv4_literal(monkeypatch: pytest.MonkeyPatch) -> None:
    """It is rendered into HAProxy's bind lines: never a name, never more than an address."""
    monkeypatch.setenv("BENTOGATE_ADDRESS", "10.77.3.2")
    assert Settings().address == "10.77.3.2"
    for bad in ("api-1.internal", "10.0.0.1:80", "::1", "10.0.0.1 # x"):
        monkeypatch.setenv("BENTOGATE_ADDRESS", bad)
        with pytest.raises(ValueError, match="address must be an IPv4 address"):
            Settings()
