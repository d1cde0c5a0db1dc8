"""What a long command shows on stderr while it works (a :data:`~bentogate.context.Progress`).

On a terminal (rich): the step running now with a spinner and its elapsed time, e.g.
``⠋ waiting for fraud:2 on :3005 to be ready (12 s)``, its latest detail (the gate's figures
of the last second) under it; each finished step stays as one line with the time it took
(``✓``, or ``✗`` for the step a failure ended). Elsewhere (CI logs, tests, the detached
expirer's log file): each line as it comes, after the UTC time of day, so a reader can tell
how long each step took.

    with progress_view() as progress:
        release.deploy(ctx, ref, actor=actor, progress=progress)
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from bentogate.context import Progress


@contextlib.contextmanager
def progress_view(console: Console | None = None) -> Iterator[Progress]:
    """A :data:`Progress` for the ``with`` block: live on a terminal, plain lines otherwise
    (``console``: default stderr). The live view ends with the block, a failure marking the
    step it interrupted."""
    console = console or Console(stderr=True)
    if not console.is_terminal or console.is_dumb_terminal:
        yield PlainSteps(console.file)
        return
    steps = LiveSteps(console)
    with steps:
        try:
            yield steps
        except BaseException:
            steps.finish(ok=False)
            raise
        steps.finish(ok=True)


def is_detail(line: str) -> bool:
    """True for a line that details the current step (it starts with a space)."""
    return line[:1].isspace()


def elapsed_text(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``2 min 05 s``: how long a step took, as precisely as it matters."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


_SHOWN_S = 0.05  # a finished step that took less shows no time


class PlainSteps:
    """Each line as it comes, after the UTC time of day (``12:04:05 waiting for …``)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self._stream.write(f"{datetime.now(UTC):%H:%M:%S} {line}\n")
            self._stream.flush()


class _Step:
    def __init__(self, message: str) -> None:
        self.message = message
        self.started = time.monotonic()
        self.detail = ""

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class LiveSteps:
    """The step running now, with a spinner, its elapsed time and its latest detail; each
    finished step printed above it as ``✓ <step> (<time>)``."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._step: _Step | None = None
        self._spinner = Spinner("dots", style="cyan")
        self._lock = threading.Lock()
        self._live = Live(
            self,
            console=console,
            refresh_per_second=8,
            transient=True,  # only finished steps stay on the screen
            redirect_stdout=False,  # a command's result stays on stdout, never on stderr
            redirect_stderr=False,
        )

    def __enter__(self) -> LiveSteps:
        self._live.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._live.stop()

    def __call__(self, line: str) -> None:
        with self._lock:
            if is_detail(line) and self._step is not None:
                self._step.detail = line.strip()
                return
            self._finish(ok=True)
            self._step = _Step(line.strip())

    def finish(self, *, ok: bool) -> None:
        """Print the current step as finished (``ok``) or as the one a failure ended."""
        with self._lock:
            self._finish(ok=ok)

    def _finish(self, *, ok: bool) -> None:
        step, self._step = self._step, None
        if step is None:
            return
        mark = Text("✓ ", style="green") if ok else Text("✗ ", style="bold red")
        # A step that took no time (a heading such as "fraud:2: deploy") gets none.
        took = f" ({elapsed_text(step.elapsed)})" if step.elapsed >= _SHOWN_S else ""
        self._live.console.print(Text.assemble(mark, step.message, (took, "dim")))

    def __rich__(self) -> RenderableType:
        step = self._step
        if step is None:
            return Text("")
        self._spinner.update(
            text=Text.assemble(step.message, (f" ({elapsed_text(step.elapsed)})", "dim"))
        )
        if not step.detail:
            return self._spinner
        return Group(self._spinner, Text("  " + step.detail, style="dim"))
