"""The CLI: exit codes and one-line errors, over a real (SQLite) governance DB."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import run

from bentogate.settings import Settings


def test_a_bad_reference_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "--home", str(tmp_path), "approve", "fraud", "--actor", "a")
    assert code == 2
    assert "expected <model>:<version>" in err


def test_governance_refusals_are_one_line_errors_with_exit_3(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_files: tuple[Path, Path]
) -> None:
    model, data = model_files
    home = ["--home", str(tmp_path)]
    assert run(capsys, *home, "init")[0] == 0
    code, out, _ = run(capsys, *home, "register", "fraud", str(model), "--reference", str(data),
                       "--developer", "dana")  # fmt: skip
    assert code == 0 and "registered fraud:1" in out
    code, _, err = run(capsys, *home, "validate", "fraud:1", "--holdout", str(data),
                       "--actor", "dana")  # fmt: skip
    assert code == 3  # ExitCode.REFUSED
    assert err.startswith("error: refused") and "Traceback" not in err
    code, _, err = run(capsys, *home, "promote", "fraud:7", "--actor", "rel")
    assert code == 1 and "fraud:7" in err
    code, out, _ = run(capsys, *home, "audit", "verify")
    assert code == 0 and "intact" in out
    code, out, _ = run(capsys, *home, "inventory", "--json")
    assert code == 0 and '"use": "in development"' in out


def test_settings_come_from_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENTOGATE_GATE__RATE", "321")
    monkeypatch.setenv("BENTOGATE_PORTS__PRODUCTION_START", "12000")
    settings = Settings()
    assert settings.gate.rate == 321 and settings.ports.production_start == 12000
    assert settings.home.is_absolute()
    assert settings.database_url.startswith("sqlite:///")


def test_settings_come_from_the_file_bentogate_config_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text("host = 'api-3'\n[bento]\nkeep_previous_s = 60\n")
    monkeypatch.chdir(tmp_path)  # no bentogate.toml here: only BENTOGATE_CONFIG's file counts
    assert Settings().bento.keep_previous_s == 300
    monkeypatch.setenv("BENTOGATE_CONFIG", str(config))
    settings = Settings()
    assert (settings.host, settings.bento.keep_previous_s) == ("api-3", 60)
    monkeypatch.setenv("BENTOGATE_BENTO__KEEP_PREVIOUS_S", "5")  # the environment wins
    assert Settings().bento.keep_previous_s == 5


def test_the_gate_policy_is_stored_per_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_files: tuple[Path, Path]
) -> None:
    model, data = model_files
    home = ["--home", str(tmp_path)]
    run(
        capsys, *home, "register", "fraud", str(model), "--reference", str(data), "--developer", "d"
    )
    code, out, _ = run(capsys, *home, "policy", "fraud")
    assert code == 0 and '"p99_ms": 25.0' in out
    code, out, _ = run(capsys, *home, "policy", "fraud", "--set", "p99_ms=7.5", "--set",
                       "users=8", "--actor", "rel")  # fmt: skip
    assert code == 0 and '"p99_ms": 7.5' in out
    code, out, _ = run(capsys, *home, "policy", "fraud")
    assert '"p99_ms": 7.5' in out and '"users": 8' in out
    code, _, err = run(capsys, *home, "policy", "fraud", "--set", "bogus=1", "--actor", "rel")
    assert code == 1 and "unknown gate policy fields: bogus" in err
    code, out, _ = run(capsys, *home, "audit", "fraud")
    assert "set_policy" in out


def test_shutdown_and_expire_on_a_host_running_nothing_succeed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    home = ["--home", str(tmp_path)]
    code, out, err = run(capsys, *home, "shutdown")
    assert (code, out.strip()) == (0, "local: nothing runs any more"), err
    code, out, err = run(capsys, *home, "expire")
    assert (code, out) == (0, ""), err
