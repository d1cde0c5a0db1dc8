"""The tables people read: ``status``, ``inventory``, ``show`` and ``audit``, drawn with
rich, and :func:`watch`, a view refreshed in place (``status --watch``).

Each ``*_text`` function takes the rows a command also prints as JSON and returns text for
stdout: styled when stdout is a terminal (as wide as it), plain elsewhere and 200 columns
wide, so a table in a log or a pipe is not wrapped.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from bentogate.errors import BentogateError
from bentogate.status import Problem

_PIPE_WIDTH = 200
_HEALTH_STYLES = {"UP": "green", "DOWN": "bold red", "DRAIN": "yellow", "MAINT": "yellow"}


def to_text(renderable: RenderableType, *, terminal: bool | None = None) -> str:
    """``renderable`` as text: with styles and the terminal's width if ``terminal`` (default:
    stdout is one), else plain and :data:`_PIPE_WIDTH` columns wide."""
    tty = sys.stdout.isatty() if terminal is None else terminal
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        force_terminal=tty,
        color_system="standard" if tty else None,
        width=shutil.get_terminal_size().columns if tty else _PIPE_WIDTH,
        highlight=False,
        emoji=False,
        markup=False,  # cells are data ("[...]" in a reason is text, not a style)
    )
    console.print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines())


def _table(title: str | None = None) -> Table:
    return Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
        header_style="bold",
    )


def _cell(value: Any, suffix: str = "") -> str:
    if isinstance(value, list):  # e.g. the versions of a model an inventory row flags
        value = ", ".join(str(item) for item in value)
    return "" if value is None or value == "" else f"{value}{suffix}"


# -- status ---------------------------------------------------------------------------


def status_renderable(rows: Sequence[dict[str, Any]], problems: Sequence[Problem]) -> Group:
    """The servers of this host, one table per model (its ports in the title), then what
    keeps the exit code non-zero: routed servers not UP, HAProxy not running."""
    parts: list[RenderableType] = []
    for model, model_rows in _by_model(rows):
        parts += [_status_table(model, model_rows[0], model_rows), Text("")]
    if not rows:
        parts.append(Text("nothing deployed on this host"))
    for problem in problems:
        parts.append(Text.assemble(("✗ ", "bold red"), problem.text))
    return Group(*parts)


def status_text(rows: Sequence[dict[str, Any]], problems: Sequence[Problem]) -> str:
    """:func:`status_renderable` as text for stdout."""
    return to_text(status_renderable(rows, problems))


def _by_model(rows: Sequence[dict[str, Any]]) -> Iterable[tuple[str, list[dict[str, Any]]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["model"], []).append(row)
    return grouped.items()


def _status_table(model: str, first: dict[str, Any], rows: list[dict[str, Any]]) -> Table:
    ports = f"production :{first['production_port']}  candidate :{first['candidate_port']}"
    table = _table(f"{model}  {ports}")
    for name in ("version", "role", "port", "health"):
        table.add_column(name, no_wrap=True)
    # The check's reason (HAProxy's last_chk) is the long one: it and the notes wrap.
    table.add_column("check", overflow="fold", min_width=14)
    for name in ("req/s", "5xx", "resp", "memory"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("notes", overflow="fold", min_width=10)
    for row in rows:
        health = str(row["health"])
        style = _HEALTH_STYLES.get(health.split()[0], "dim" if health == "unknown" else "yellow")
        check = Text(" ".join(x for x in (_cell(row["check"]), _cell(row["check_ms"], " ms")) if x))
        if row["last_check"]:
            check.append(f"\n{row['last_check']}", style="dim" if health == "UP" else "")
        table.add_row(
            row["version"],
            Text.assemble(
                (row["role"], "bold" if row["role"] == "live" else ""), ("\n" + row["state"], "dim")
            ),
            str(row["backend_port"]),
            Text(health, style=style),
            check,
            _cell(row["req_per_s"]),
            Text(_cell(row["5xx"]), style="red" if row["5xx"] else ""),
            _cell(row["rtime_ms"], " ms"),
            _cell(row["memory_mb"], " MB"),
            _notes(row),
        )
    return table


def _notes(row: dict[str, Any]) -> str:
    notes = []
    if row.get("warm_until"):
        notes.append(f"warm until {_utc_time(row['warm_until'])}")
    if row.get("bake"):
        notes.append(str(row["bake"]))
    return "; ".join(notes)


def utc_moment(moment: datetime) -> str:
    """``2026-12-06 12:05:00 UTC``: a moment as a person reads it, with its day (a warm
    window may end tomorrow)."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _utc_time(moment: str) -> str:
    """:func:`utc_moment` of an ISO time (as the rows hold it), else the text as it is."""
    try:
        return utc_moment(datetime.fromisoformat(moment))
    except ValueError:
        return moment


# -- inventory and show ---------------------------------------------------------------------

INVENTORY_COLUMNS = (
    "model", "use", "owner", "live_version", "live_port", "versions", "validator",
    "last_validation", "next_review_due", "unauthenticated",
)  # fmt: skip

_RUN_COLUMNS = ("created_at", "verdict", "compared_with", "report_path")
_DEPLOYMENT_COLUMNS = ("host", "port", "role", "started_at", "stopped_at")
AUDIT_COLUMNS = (
    "id", "at", "actor", "action", "model", "version", "from_state", "to_state", "outcome",
    "reason",
)  # fmt: skip
_VERSION_KEYS = (
    "model", "version", "state", "sha256", "developer", "validator", "approver", "bento_tag",
    "built_at", "registered_at",
)  # fmt: skip
_VERDICT_STYLES = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}


def rows_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None
) -> RenderableType:
    """``rows`` under ``columns`` (headers with spaces for underscores); "(none)" if empty."""
    if not rows:
        return Text(f"{title}: (none)" if title else "(none)", style="dim")
    table = _table(title)
    for column in columns:
        table.add_column(column.replace("_", " "), overflow="fold")
    for row in rows:
        cells: list[RenderableType] = []
        for column in columns:
            text = _cell(row.get(column))
            style = _VERDICT_STYLES.get(text, "") if column in ("verdict", "outcome") else ""
            cells.append(Text(text, style=style))
        table.add_row(*cells)
    return table


def inventory_text(rows: Sequence[dict[str, Any]]) -> str:
    """``bentogate inventory``: one row per model."""
    return to_text(rows_table(rows, INVENTORY_COLUMNS))


def audit_text(rows: Sequence[dict[str, Any]]) -> str:
    """``bentogate audit``: one row per audited action."""
    return to_text(rows_table(rows, AUDIT_COLUMNS))


def story_text(story: dict[str, Any]) -> str:
    """``bentogate show``: a version's facts, then its gate and shadow runs, deployments and
    audit trail (:func:`bentogate.inventory.version_story`)."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", justify="right")
    facts.add_column(overflow="fold")
    version = story["version"]
    for key in _VERSION_KEYS:
        facts.add_row(key, _cell(version.get(key)))
    if story.get("unauthenticated"):  # named people's sign-offs: an auditor must see it
        named = "; ".join(story["unauthenticated"])
        facts.add_row("unauthenticated", Text(named, style="bold yellow"))
    return to_text(
        Group(
            facts,
            Text(""),
            rows_table(story["gate_runs"], _RUN_COLUMNS, "gate runs"),
            rows_table(story["shadow_runs"], _RUN_COLUMNS, "shadow runs"),
            rows_table(story["deployments"], _DEPLOYMENT_COLUMNS, "deployments"),
            rows_table(story["audit"], AUDIT_COLUMNS, "audit"),
        )
    )


# -- a view refreshed in place ------------------------------------------------------------

Look = Callable[[], tuple[RenderableType, BentogateError | None]]


def watch(look: Look, interval: float, console: Console | None = None) -> BentogateError | None:
    """Show ``look()``'s view, refreshed every ``interval`` seconds in place (on a terminal;
    elsewhere each view after the last), until Ctrl-C; return the error of the last look
    (None if all was well then). A look that raises a :class:`BentogateError` (the DB or
    HAProxy not answering for a moment) shows it, and the next look tries again."""
    console = console or Console(highlight=False, markup=False, emoji=False)
    error: BentogateError | None = None
    with contextlib.ExitStack() as stack:
        live = None
        if console.is_terminal:
            live = stack.enter_context(Live(console=console, auto_refresh=False))
        try:
            while True:
                try:
                    view, error = look()
                except BentogateError as exc:
                    view, error = Text(f"error: {exc}", style="bold red"), exc
                title = Text(
                    f"every {interval:g} s, {datetime.now(UTC):%H:%M:%S} UTC (Ctrl-C to stop)",
                    style="dim",
                )
                if live is not None:
                    live.update(Group(title, view), refresh=True)
                else:  # a log or a pipe: each look after the last, never wrapped
                    console.file.write(to_text(Group(title, view), terminal=False) + "\n\n")
                    console.file.flush()
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
    return error
