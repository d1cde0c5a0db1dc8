"""``run_gate``: drive the candidate (and live) with Locust in its own process, judge, report.

Locust runs as ``python -m locust -f loadtest/locustfile.py --headless ...`` in a new
session (its import monkey-patches the interpreter with gevent, so never in this one); the
locustfile writes its samples and progress under ``out_dir``; figures, verdict and reports
are computed here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bentogate.errors import ConfigError, LoadTestError

from .figures import all_figures
from .policy import GatePolicy, Target
from .report import report_dict, write_html, write_json
from .result import GateResult
from .samples import generator_cpu, load_samples
from .verdict import evaluate

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SLACK_S = 60.0  # Locust start-up, spawning, drain and reports, on a loaded 2-core machine
DRAIN_S = 3.0  # how long in-flight requests may finish after the schedule ends
POLL_S = 0.25
_STALE = ("samples-*.npz", "progress-*.jsonl", "gate-report.*", "locust-report.html")


def run_gate(
    candidate: Target,
    rows: list[list[float]],
    policy: GatePolicy,
    out_dir: Path,
    *,
    live: Target | None = None,
    progress: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> GateResult:
    """Load-test ``candidate`` (interleaved with ``live`` when given) and return the verdict.

    Requests POST ``rows`` (cycled) to ``<url>/predict`` at ``policy.rate``; ``progress``
    gets a line about once a second. Figures are keyed "candidate" and "live". Writes
    ``gate-report.json``, ``gate-report.html`` and ``locust-report.html`` under ``out_dir``.
    Waits at most ``timeout`` s (default: warm-up + duration + 60 s). Raises ConfigError
    without rows, LoadTestError (with the tail of Locust's log) when Locust fails, times out
    or leaves no readable samples.
    """
    if not rows:
        raise ConfigError("the gate needs at least one reference row")
    out_dir.mkdir(parents=True, exist_ok=True)
    for pattern in _STALE:
        for stale in out_dir.glob(pattern):
            stale.unlink()
    cfg = _write_config(out_dir, candidate, live, rows, policy)
    locust_html = out_dir / "locust-report.html"
    log = out_dir / "locust.log"
    started = time.time()
    _run_locust(
        locust_command(cfg, candidate, policy, locust_html),
        out_dir, log, timeout if timeout is not None else policy.total_s + SLACK_S, progress,
    )  # fmt: skip
    samples = load_samples(out_dir)
    figures = all_figures(samples)
    cpu = generator_cpu(samples)
    verdict, reasons = evaluate(policy, figures, cpu)
    result = GateResult(
        verdict=verdict, reasons=reasons, policy=policy, figures=figures, generator_cpu=cpu,
        report_json=out_dir / "gate-report.json", report_html=out_dir / "gate-report.html",
        locust_html=locust_html if locust_html.exists() else None,
    )  # fmt: skip
    extra = {
        "targets": {t.name: {"url": t.url, "expected_version": t.expected_version}
                    for t in (candidate, live) if t is not None},
        "started": started, "wall_s": round(time.time() - started, 2),
    }  # fmt: skip
    write_json(result.report_json, report_dict(result, samples, extra))
    write_html(result.report_html, result, samples)
    return result


def _write_config(
    out_dir: Path,
    candidate: Target,
    live: Target | None,
    rows: list[list[float]],
    policy: GatePolicy,
) -> Path:
    rows_file = out_dir / "rows.json"
    rows_file.write_text(json.dumps(rows))
    roles = [("candidate", candidate)] + ([("live", live)] if live is not None else [])
    config = {
        "targets": [{"name": role, "url": t.url.rstrip("/"), "expected_version": t.expected_version}
                    for role, t in roles],
        "rows_file": str(rows_file.resolve()), "rate": policy.rate,
        "warmup_s": policy.warmup_s, "duration_s": policy.duration_s, "slice_s": policy.slice_s,
        "out_dir": str(out_dir.resolve()), "drain_s": DRAIN_S,
    }  # fmt: skip
    path = out_dir / "gate-config.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def locust_command(cfg: Path, candidate: Target, policy: GatePolicy, html: Path) -> list[str]:
    """The headless Locust command line for one gate run (``--run-time`` is a backstop only:
    the locustfile stops the test itself when its schedule is over)."""
    backstop = int(policy.total_s + DRAIN_S + SLACK_S / 2)
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--users", str(policy.users), "--spawn-rate", str(policy.users * 4),
        "--run-time", f"{backstop}s", "--host", candidate.url.rstrip("/"),
        "--gate-config", str(cfg.resolve()), "--html", str(html.resolve()),
        "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip


def _run_locust(
    cmd: list[str], cwd: Path, log: Path, timeout: float, progress: Callable[[str], None] | None
) -> None:
    deadline = time.monotonic() + timeout
    with log.open("wb") as out:
        try:
            # cwd=out_dir: Locust would read a locust.conf / pyproject.toml from its cwd
            proc = subprocess.Popen(
                cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as exc:
            raise LoadTestError(f"cannot start Locust: {exc}") from exc
        tail = _ProgressTail(cwd / "progress-local.jsonl", progress)
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise LoadTestError(
                        f"Locust did not finish within {timeout:.0f} s\n{log_tail(log)}"
                    )
                tail.poll()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(POLL_S)
            tail.poll()
        finally:
            stop_process_group(proc)
    if proc.returncode != 0:
        raise LoadTestError(f"Locust exited with code {proc.returncode}\n{log_tail(log)}")


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM the process's session, SIGKILL it after ``grace_s``; no-op once it is gone."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
            return


def log_tail(log: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ('' if unreadable)."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _ProgressTail:
    """Turns new lines of the locustfile's progress file into ``progress`` calls."""

    def __init__(self, path: Path, progress: Callable[[str], None] | None) -> None:
        self.path, self.progress, self.offset = path, progress, 0

    def poll(self) -> None:
        if self.progress is None or not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.splitlines():
            self.progress(format_progress(json.loads(line)))


def format_progress(p: dict[str, object]) -> str:
    """One progress line: elapsed, achieved rate, p99 of the last second, errors, CPU."""
    p99 = "  n/a" if p.get("p99_ms") is None else f"{p['p99_ms']:5.1f}"
    cpu = "n/a" if p.get("cpu") is None else f"{float(p['cpu']):.0%}"  # type: ignore[arg-type]
    return (
        f"t={p['t']:6.1f}s rate={p['rate']:6}/s p99={p99} ms "
        f"errors={p['errors']} done={p['done']} cpu={cpu}"
    )
