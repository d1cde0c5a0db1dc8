"""The CLI's one output path: a command's result as prose or as one JSON object, and its
errors as a line on stderr (plus, under ``--json``, a JSON object) and an exit code.

With ``--json`` (:func:`json_option`) a command writes exactly one JSON object on stdout:
its result (:func:`emit`), or on an error ``{"error", "kind", "exit_code", ...}`` with the
error's ``details`` (:func:`fail`). Everything else it prints — prose, progress, warm-version
notes, anything a library prints — goes to stderr while it runs. The fields of every
command's object are listed in the README ("Machine-readable output").
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import numbers
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from enum import Enum
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

import click

from bentogate.governance import VersionInfo

F = TypeVar("F", bound=Callable[..., Any])

_OUT = "json_out"  # key in the root context's obj: the real stdout, set only under --json


def json_option(command: F) -> F:
    """The ``--json`` flag: the command's result becomes one JSON object on stdout, and
    everything else it prints while it runs goes to stderr. (Put it below the command's
    other options, above ``click.pass_obj``.)"""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not wants_json():
            return command(*args, **kwargs)
        with contextlib.redirect_stdout(sys.stderr):
            return command(*args, **kwargs)

    return click.option(  # type: ignore[return-value]
        "--json",
        is_flag=True,
        is_eager=True,  # read before any other option can fail: such errors come as JSON too
        expose_value=False,
        callback=_note_json,
        help="Print one JSON object on stdout (fields: README, 'Machine-readable output'); "
        "prose and progress go to stderr.",
    )(run)


def _note_json(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value:
        state = ctx.ensure_object(dict)
        state["json"] = True
        state[_OUT] = sys.stdout  # where the object goes while stdout is sent to stderr


def wants_json() -> bool:
    """True while the running command was given ``--json``."""
    state = click.get_current_context().find_object(dict)
    return bool(state and state.get("json"))


def emit(payload: Mapping[str, Any], text: str = "") -> None:
    """The running command's result: ``payload`` as one JSON object on stdout under
    ``--json``, else ``text`` (if any) on stdout."""
    state = click.get_current_context().find_object(dict) or {}
    out: IO[str] | None = state.get(_OUT)
    if out is not None:
        out.write(dumps(payload) + "\n")
        out.flush()
    elif text:
        click.echo(text)


def fail(
    state: Mapping[str, Any],
    argv: Sequence[str],
    message: str,
    *,
    kind: str,
    exit_code: int,
    details: Mapping[str, Any] | None = None,
) -> NoReturn:
    """End the process after an error (its one-line message is on stderr already): under
    ``--json`` first ``{"error": message, "kind": kind, "exit_code": exit_code, **details}``
    on stdout. ``argv`` counts when the command line failed before ``--json`` was read."""
    requested = state.get("json") or "--json" in argv[: _end_of_options(argv)]
    if requested:
        error = {**(details or {}), "error": message, "kind": kind, "exit_code": exit_code}
        sys.stdout.write(dumps(error) + "\n")
        sys.stdout.flush()
    sys.exit(exit_code)


def _end_of_options(argv: Sequence[str]) -> int:
    return argv.index("--") if "--" in argv else len(argv)


def dumps(payload: Any) -> str:
    """``payload`` as strict JSON (what ``jq`` reads): datetimes ISO 8601, paths and enums
    as strings, NaN and infinities as null."""
    return json.dumps(jsonable(payload), indent=2, allow_nan=False)


def jsonable(value: Any) -> Any:
    """``value`` made of JSON's types only (see :func:`dumps`)."""
    if isinstance(value, Enum):
        return jsonable(value.value)
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    if isinstance(value, date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, Path):
        return str(value)
    return str(value)


#: the fields every command about one version reports (README, "Machine-readable output").
VERSION_FIELDS = (
    "model", "version", "state", "sha256", "developer", "validator", "approver", "bento_tag",
    "image_tag", "image_id",
)  # fmt: skip


def version_fields(info: VersionInfo) -> dict[str, Any]:
    """A version's :data:`VERSION_FIELDS`."""
    return {name: getattr(info, name) for name in VERSION_FIELDS}


__all__ = [
    "VERSION_FIELDS",
    "dumps",
    "emit",
    "fail",
    "json_option",
    "jsonable",
    "version_fields",
    "wants_json",
]
