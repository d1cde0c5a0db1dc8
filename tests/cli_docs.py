"""What the README promises about the CLI, read from its tables: the command table (names and
options), the fields of each command's ``--json`` object, and the exit codes.

Here, beside ``hosts.py`` (conftest puts ``tests/`` on sys.path): the unit tests compare these
with ``bentogate --help`` and with what the commands print, the CI-style integration test
with what a whole release prints.
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

_CODE = re.compile(r"`([^`]+)`")


def _rows(header: str) -> list[list[str]]:
    """The cells of the rows of the README table whose header row starts with ``header``."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:  # after the header and its |---| line
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])  # not at "\\|"
        rows.append([cell.strip() for cell in cells])
    return rows


def command_table() -> dict[str, set[str]]:
    """README "The release path" table: ``{command: options it shows}``; a command is the
    words after ``bentogate`` up to the first argument or option (``db upgrade``)."""
    commands: dict[str, set[str]] = {}
    for cell, _ in _rows("| command | what it does |"):
        line = _CODE.findall(cell)[0]
        words = line.split()[1:]
        name = words[0]
        if name == "db":
            name = f"db {words[1]}"
        commands[name] = set(re.findall(r"--[a-z][a-z-]*", line))
    return commands


def version_fields() -> tuple[str, ...]:
    """The README's *version fields*, in order."""
    text = README.read_text()
    sentence = text[text.index("(*version fields*:") : text.index("):\n\n| command | fields")]
    return tuple(_CODE.findall(sentence))


def json_fields() -> dict[str, set[str]]:
    """README "fields of its JSON object" table: ``{command: top-level keys}`` (the names in
    backticks after the first cell; "version fields" stands for :func:`version_fields`)."""
    fields: dict[str, set[str]] = {}
    for name_cell, keys_cell in _rows("| command | fields of its JSON object |"):
        names = _CODE.findall(name_cell) or [name_cell.strip("*")]
        keys = set(_CODE.findall(keys_cell))
        if "version fields" in keys_cell:
            keys |= set(version_fields())
        for name in names:
            fields[name] = keys
    return fields


def exit_codes() -> dict[int, str]:
    """README exit code table: ``{code: name}``."""
    return {int(code): name for code, name, _ in _rows("| exit | name | what happened |")}
