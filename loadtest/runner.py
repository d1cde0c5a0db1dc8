"""``run_gate``: drive the candidate (and live) with Locust in its own process, judge, report.

Locust runs as ``python -m locust -f loadtest/locustfile.py --headless ...`` in a new
session (its import monkey-patches the interpreter with gevent, so never in this one); the
locustfile writes its samples and progress under ``out_dir/round-<n>``; figures, evidence,
verdict and reports are computed here, and decide whether another round is needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from bentogate.errors import ConfigError, LoadTestError

from .evidence import Evidence, gather
from .figures import TargetFigures, all_figures
from .policy import GatePolicy, Target
from .report import report_dict, write_html, write_json
from .result import GateResult
from .samples import Samples, generator_cpu, load_samples
from .verdict import Verdict, evaluate

LOCUSTFILE = Path(str(resources.files("bentogate.loadtest") / "locustfile.py"))
SLACK_S = 60.0  # Locust start-up, spawning, drain and reports, on a loaded 2-core machine
DRAIN_S = 3.0  # how long in-flight requests may finish after the schedule ends
POLL_S = 0.25
EXTENSION_WARMUP_S = 1.0  # an extension's servers are warm: only its connections are new
_STALE = ("round-*", "gate-report.*")


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
    """Load-test ``candidate`` (side by side with ``live`` when given) and return the verdict.

    Requests POST ``rows`` (cycled) to ``<url>/predict`` at ``policy.rate`` per target;
    ``progress`` gets the figures of each second as an indented line (a detail of the run),
    and a line of its own when the run is extended. A run whose only doubt is an interval that
    straddles its limit is extended by ``policy.extend_s`` measured seconds (a new Locust run
    under ``out_dir/round-<n>``, its short warm-up discarded, its window laid after the
    last) until it is decided or ``policy.max_duration_s`` are measured. Figures are keyed
    "candidate" and "live". Writes ``gate-report.json`` and ``gate-report.html`` under
    ``out_dir`` (Locust's own report under each round). Each Locust run waits at most
    ``timeout`` s (default: its warm-up + duration + 60 s). Raises ConfigError without
    rows, LoadTestError (with the tail of Locust's log) when Locust fails, times out or
    leaves no readable samples.
    """
    if not rows:
        raise ConfigError("the gate needs at least one reference row")
    out_dir.mkdir(parents=True, exist_ok=True)
    for pattern in _STALE:
        for stale in out_dir.glob(pattern):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    started = time.time()
    rows_file = out_dir / "rows.json"  # one file for every round
    rows_file.write_text(json.dumps(rows))
    samples: Samples | None = None
    rounds: list[Path] = []
    while True:
        first = samples is None
        warmup = policy.warmup_s if first else min(policy.warmup_s, EXTENSION_WARMUP_S)
        duration = policy.duration_s if first else policy.extend_s
        round_dir = out_dir / f"round-{len(rounds) + 1}"
        rounds.append(round_dir)
        this = _locust_round(candidate, live, rows_file, policy, round_dir, warmup, duration,
                             progress, timeout)  # fmt: skip
        samples = this if samples is None else samples.extended_by(this)
        figures, evidence, cpu, verdict = judge(samples, policy)
        more = samples.duration_s + policy.extend_s <= policy.max_duration_s + 1e-9
        if not (verdict.extendable and more):
            break
        if progress is not None:
            progress(f"not decided after {samples.duration_s:g} s measured "
                     f"({'; '.join(verdict.reasons)}): measuring {policy.extend_s:g} s more")
    locust_html = rounds[0] / "locust-report.html"
    result = GateResult(
        verdict=verdict.verdict, reasons=verdict.reasons, policy=policy, figures=figures,
        evidence=evidence, generator_cpu=cpu, host=samples.host, measured_s=samples.duration_s,
        rounds=len(rounds), report_json=out_dir / "gate-report.json",
        report_html=out_dir / "gate-report.html",
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


def judge(
    samples: Samples, policy: GatePolicy
) -> tuple[dict[str, TargetFigures], Evidence, float, Verdict]:
    """Figures, evidence, generator CPU and verdict of ``samples`` under ``policy``."""
    figures = all_figures(samples)
    evidence = gather(samples, policy)
    cpu = generator_cpu(samples)
    return figures, evidence, cpu, evaluate(policy, figures, evidence, cpu, host=samples.host)


def _locust_round(
    candidate: Target,
    live: Target | None,
    rows_file: Path,
    policy: GatePolicy,
    out_dir: Path,
    warmup_s: float,
    duration_s: float,
    progress: Callable[[str], None] | None,
    timeout: float | None,
) -> Samples:
    """One Locust run of ``warmup_s`` + ``duration_s`` into ``out_dir``; its samples."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = _write_config(out_dir, candidate, live, rows_file, policy, warmup_s, duration_s)
    total = warmup_s + duration_s
    _run_locust(
        locust_command(cfg, candidate, policy, out_dir / "locust-report.html", total),
        out_dir, out_dir / "locust.log", timeout if timeout is not None else total + SLACK_S,
        progress,
    )  # fmt: skip
    return load_samples(out_dir)


def _write_config(
    out_dir: Path,
    candidate: Target,
    live: Target | None,
    rows_file: Path,
    policy: GatePolicy,
    warmup_s: float,
    duration_s: float,
) -> Path:
    roles = [("candidate", candidate)] + ([("live", live)] if live is not None else [])
    config = {
        "targets": [{"name": role, "url": t.url.rstrip("/"), "expected_version": t.expected_version}
                    for role, t in roles],
        "rows_file": str(rows_file.resolve()), "rate": policy.rate,
        "warmup_s": warmup_s, "duration_s": duration_s,
        "out_dir": str(out_dir.resolve()), "drain_s": DRAIN_S,
    }  # fmt: skip
    path = out_dir / "gate-config.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def locust_command(
    cfg: Path, candidate: Target, policy: GatePolicy, html: Path, total_s: float
) -> list[str]:
    """The headless Locust command line for one run of ``total_s`` seconds (``--run-time``
    is a backstop only: the locustfile stops the test itself when its schedule is over)."""
    backstop = int(total_s + DRAIN_S + SLACK_S / 2)
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
            # Indented: a detail of the run (a live view shows it beside the step).
            self.progress("  " + format_progress(json.loads(line)))


def format_progress(p: dict[str, object]) -> str:
    """One progress line: elapsed, achieved rate, p99 of the last second, errors, CPU."""
    p99 = "  n/a" if p.get("p99_ms") is None else f"{p['p99_ms']:5.1f}"
    cpu = "n/a" if p.get("cpu") is None else f"{float(p['cpu']):.0%}"  # type: ignore[arg-type]
    return (
        f"t={p['t']:6.1f}s rate={p['rate']:6}/s p99={p99} ms "
        f"errors={p['errors']} done={p['done']} cpu={cpu}"
    )
