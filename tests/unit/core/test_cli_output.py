"""The CLI as a script reads it: the README's command table is `bentogate --help`, every
reporting command's `--json` prints one documented object, errors come as JSON with an exit
code of their own, `--version`, and actors defaulting from the environment. Over a real
(SQLite) governance DB; nothing is served."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
from cli_docs import command_table, exit_codes, json_fields, version_fields
from cli_support import run
from click.testing import CliRunner

import bentogate
from bentogate import errors, gating, output
from bentogate.cli import cli
from bentogate.context import Ref
from bentogate.errors import ExitCode, GateFailed, GateInconclusive
from bentogate.governance import State


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    """Run with --json: stdout must be exactly one JSON object."""
    code, out, err = run(capsys, *args, "--json")
    loaded = json.loads(out)
    assert isinstance(loaded, dict), out
    return code, loaded, err


# -- the README and --help -----------------------------------------------------------------


def _help_commands(*args: str) -> set[str]:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    section = result.output.split("Commands:\n", 1)[1]
    return set(re.findall(r"^  (\S+)", section, re.MULTILINE))


def test_the_readme_command_table_is_bentogate_help() -> None:
    documented = command_table()
    top = {name.split()[0] for name in documented}
    assert top == _help_commands(), "add or remove rows of the README's command table"
    assert {n.split()[1] for n in documented if n.startswith("db ")} == _help_commands("db")
    for name, options in documented.items():
        command: click.Command = cli
        for word in name.split():
            assert isinstance(command, click.Group)
            command = command.commands[word]
        known = {opt for param in command.params for opt in param.opts}
        assert options <= known, f"README shows {options - known} for `bentogate {name}`"


def test_every_command_with_json_documents_its_fields() -> None:
    documented = json_fields()
    with_json = {
        name
        for name, command in cli.commands.items()
        if any("--json" in param.opts for param in command.params)
    }
    assert with_json - {"status"} <= set(documented), with_json - set(documented)
    assert documented["error"] == {"error", "kind", "exit_code"}
    assert version_fields() == output.VERSION_FIELDS


def test_the_readme_exit_codes_are_the_exit_code_table() -> None:
    assert exit_codes() == {code.value: code.name for code in ExitCode}
    assert click.UsageError.exit_code == ExitCode.USAGE  # click's own convention
    expected = {
        errors.BentogateError: ExitCode.ERROR,
        errors.NotFoundError: ExitCode.ERROR,
        errors.HAProxyError: ExitCode.ERROR,
        errors.GovernanceError: ExitCode.REFUSED,
        errors.SeparationOfDuties: ExitCode.REFUSED,
        errors.IllegalTransition: ExitCode.REFUSED,
        errors.ConcurrentChange: ExitCode.REFUSED,
        errors.ValidationFailed: ExitCode.FAILED,
        errors.GateFailed: ExitCode.FAILED,
        errors.ShadowFailed: ExitCode.FAILED,
        errors.GateInconclusive: ExitCode.INCONCLUSIVE,
        errors.ShadowInconclusive: ExitCode.INCONCLUSIVE,
    }
    assert {cls: cls.exit_code for cls in expected} == expected


def test_version_comes_from_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    installed = importlib.metadata.version("bentogate")
    code, out, _ = run(capsys, "--version")
    assert (code, out.strip()) == (0, f"bentogate {installed}")
    assert bentogate.__version__ == installed  # pyproject.toml's version, in one more place


# -- one JSON object per command -------------------------------------------------------------


def test_each_command_prints_one_documented_json_object(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    model_files: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, data = model_files
    home = ["--home", str(tmp_path)]
    fields = json_fields()

    def step(name: str, *args: str) -> dict[str, Any]:
        code, got, err = run_json(capsys, *home, *name.split(), *args)
        assert code == 0, err
        assert set(got) == fields[name], f"{name}: {set(got) ^ fields[name]}"
        return got

    assert step("init")["database"] == "sqlite"
    registered = step("register", "fraud", str(model), "--reference", str(data),
                      "--developer", "dana")  # fmt: skip
    assert (registered["version"], registered["state"]) == ("1", "registered")
    validated = step("validate", "fraud:1", "--holdout", str(data), "--actor", "vic")
    assert (validated["state"], validated["validator"]) == ("validated", "vic")
    monkeypatch.setenv("BENTOGATE_ACTOR", "ana")
    assert step("approve", "fraud:1")["approver"] == "ana"
    code, policy, _ = run_json(capsys, *home, "policy", "fraud")
    assert code == 0 and policy["p99_ms"] == 25.0
    assert [m["model"] for m in step("inventory")["models"]] == ["fraud"]
    story = step("show", "fraud:1")
    assert story["version"]["state"] == "approved"
    assert [e["action"] for e in step("audit", "fraud:1")["entries"]][-1] == "approve"
    assert step("audit verify")["ok"] is True
    assert step("expire") == {"stopped": [], "warm": []}
    assert step("shutdown") == {"host": "local", "stopped": []}
    assert step("db upgrade")["schema"] == step("init")["schema"]
    assert step("retire", "fraud:1", "--reason", "test")["state"] == "retired"


def test_json_mode_keeps_stdout_for_the_object(capsys: pytest.CaptureFixture[str]) -> None:
    @click.command()
    @output.json_option
    def chatty() -> None:
        print("a library printing")  # stray output of something the command calls
        click.echo("prose")
        output.emit({"when": datetime(2026, 1, 2, tzinfo=UTC), "ratio": math.nan}, "text")

    result = CliRunner().invoke(chatty, ["--json"])
    assert json.loads(result.stdout) == {"when": "2026-01-02T00:00:00+00:00", "ratio": None}
    assert result.stderr == "a library printing\nprose\n"
    plain = CliRunner().invoke(chatty, [])
    assert plain.stdout == "a library printing\nprose\ntext\n"


def test_values_become_strict_json() -> None:
    @dataclasses.dataclass
    class Row:
        at: datetime
        path: Path

    value = {
        "nan": float("nan"),
        "inf": np.float64("inf"),
        "count": np.int64(3),
        "state": State.GATED,
        "rows": (Row(datetime(2026, 1, 1, tzinfo=UTC), Path("/x")),),
    }
    assert json.loads(output.dumps(value)) == {
        "nan": None,
        "inf": None,
        "count": 3,
        "state": "gated",
        "rows": [{"at": "2026-01-01T00:00:00+00:00", "path": "/x"}],
    }


# -- errors ----------------------------------------------------------------------------------


def test_errors_are_a_json_object_and_their_own_exit_code(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_files: tuple[Path, Path]
) -> None:
    model, data = model_files
    home = ["--home", str(tmp_path)]
    # usage: a bad argument, and a missing one (before --json could be read)
    code, got, err = run_json(capsys, *home, "approve", "fraud", "--actor", "a")
    assert (code, got["exit_code"], got["kind"]) == (2, 2, "BadParameter")
    assert "expected <model>:<version>" in got["error"] and "Error:" in err
    code, got, _ = run_json(capsys, *home, "register", "fraud")
    assert (code, got["exit_code"]) == (2, 2) and got["kind"] == "MissingParameter"
    # refused by governance: the developer may not validate their own model
    run(capsys, *home, "register", "fraud", str(model), "--reference", str(data),
        "--developer", "dana")  # fmt: skip
    code, got, err = run_json(capsys, *home, "validate", "fraud:1", "--holdout", str(data),
                              "--actor", "dana")  # fmt: skip
    assert (code, got["exit_code"], got["kind"]) == (3, 3, "SeparationOfDuties")
    assert got["error"].startswith("refused: validate fraud:1")
    assert err.strip() == f"error: {got['error']}"
    # an unknown version: an error, not a refusal
    code, got, _ = run_json(capsys, *home, "promote", "fraud:7", "--actor", "rel")
    assert (code, got["kind"]) == (1, "NotFoundError") and "fraud:7" in got["error"]
    # without --json nothing reaches stdout
    code, out, err = run(capsys, *home, "promote", "fraud:7", "--actor", "rel")
    assert (code, out) == (1, "") and err.startswith("error:")


@dataclasses.dataclass
class _Run:
    """A gate run's result as ``loadtest`` returns it (only what the refusal reads)."""

    verdict: str
    reasons: tuple[str, ...] = ("server p50 vs live 1.52x > 1.25x",)
    report_html: Path = Path("/reports/gate-report.html")

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reasons": list(self.reasons),
                "report_html": str(self.report_html)}  # fmt: skip


@pytest.mark.parametrize(
    ("verdict", "said", "code"), [("fail", "failed", 4), ("inconclusive", "inconclusive", 5)]
)
def test_a_gate_that_did_not_pass_reports_its_run_with_the_error(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    verdict: str,
    said: str,
    code: int,
) -> None:
    def gate(_: object, ref: Ref, **__: object) -> None:
        gating._refuse_unless_passed("gate", ref, _Run(verdict), GateFailed, GateInconclusive)  # type: ignore[arg-type]

    monkeypatch.setattr(gating, "gate", gate)
    got_code, got, err = run_json(capsys, "--home", str(tmp_path), "gate", "fraud:3")
    assert got_code == code == got["exit_code"]
    assert got["verdict"] == verdict and got["report_html"] == "/reports/gate-report.html"
    assert got["error"] == f"gate {said} for fraud:3: server p50 vs live 1.52x > 1.25x " \
        "(report: /reports/gate-report.html)"  # fmt: skip
    assert (got["model"], got["version"]) == ("fraud", "3")
    assert err.strip() == f"error: {got['error']}"  # the refusal says why, on stderr too


# -- actors ----------------------------------------------------------------------------------


def test_actors_default_to_bentogate_actor_then_the_os_user(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    model_files: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, data = model_files
    home = ["--home", str(tmp_path)]
    monkeypatch.setattr("getpass.getuser", lambda: "dana")
    code, got, _ = run_json(capsys, *home, "register", "fraud", str(model), "--reference",
                            str(data))  # fmt: skip
    assert (code, got["developer"]) == (0, "dana")
    # The environment names the actor; separation of duties still compares the names.
    monkeypatch.setenv("BENTOGATE_ACTOR", "dana")
    code, got, _ = run_json(capsys, *home, "validate", "fraud:1", "--holdout", str(data))
    assert (code, got["kind"]) == (3, "SeparationOfDuties")
    monkeypatch.setenv("BENTOGATE_ACTOR", "vic")
    code, got, _ = run_json(capsys, *home, "validate", "fraud:1", "--holdout", str(data))
    assert (code, got["validator"]) == (0, "vic")
    # An explicit --actor wins over the environment.
    code, got, _ = run_json(capsys, *home, "approve", "fraud:1", "--actor", "ana")
    assert (code, got["approver"]) == (0, "ana")
    code, got, _ = run_json(capsys, *home, "audit", "fraud:1")
    assert [(e["action"], e["actor"]) for e in got["entries"]][-2:] == [
        ("validate", "vic"),
        ("approve", "ana"),
    ]
