"""A real Locust run against stand-in servers with controlled latency, version and errors.

Every run: 2 s warm-up + 4 s measured at 300 req/s per target (about 8 s with Locust's
start-up), in blocks of half a second; an undecided one extends by 2 s, up to 8 s measured.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from machine import Machine

from bentogate.errors import LoadTestError
from bentogate.loadtest import FAIL, INCONCLUSIVE, PASS, GatePolicy, GateResult, Target, run_gate
from bentogate.loadtest.evidence import WITHIN
from bentogate.settings import GateSettings

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _alone(machine: Machine) -> Iterator[None]:
    """Each test here judges the gate's verdicts as on a quiet host: the other worker waits
    (tests/machine.py)."""
    with machine.alone():
        yield

POLICY = GatePolicy.from_settings(
    GateSettings(rate=300.0, warmup_s=2.0, duration_s=4.0, users=16, min_samples=500),
    block_s=0.5, extend_s=2.0, max_duration_s=8.0,
)
SHORT = GatePolicy.from_dict({**POLICY.to_dict(), "warmup_s": 0.5, "duration_s": 2.0,
                              "min_samples": 100, "max_duration_s": 2.0})  # fmt: skip
# For the five-reruns acceptance: shorter runs, same limits.
REPEAT = GatePolicy.from_dict({**POLICY.to_dict(), "warmup_s": 1.0, "duration_s": 3.0,
                               "min_samples": 500})  # fmt: skip
RNG = random.Random(42)
ROWS = [[RNG.random() for _ in range(20)] for _ in range(200)]
StandIn = Callable[..., Target]  # the ``standin`` fixture (conftest.py)
# what an inconclusive of an identical or fast target may say: the host, or an open interval
NOISE = re.compile(r"host stalls|outside the service|: not decided$")


def gate(tmp_path: Path, candidate: Target, **kw: object) -> GateResult:
    lines: list[str] = []
    policy = kw.pop("policy", POLICY)
    result = run_gate(candidate, ROWS, policy, tmp_path, progress=lines.append, **kw)  # type: ignore[arg-type]
    assert len(lines) >= 4, lines  # about one progress line a second
    return result


def test_a_fast_target_is_never_failed_and_passes_nearly_always(
    standin: StandIn, tmp_path: Path
) -> None:
    """Five gates of a stand-in whose own time is ~0.05 ms: all five pass on a quiet host.
    This machine is shared: a CI run once saw client p95 41 ms / p99 53 ms in one of them
    and failed it, before the generator's lateness and the server's own time were witnesses.
    Reproduced by freezing each core for 50 ms in every 0.55 s (a real-time burner; client
    p99 45 ms while the stand-in's own p99 stayed 0.08 ms), 5 gates then ended 2 pass and
    3 inconclusive, none failed. So: never a fail; an inconclusive only with the noise named
    or an interval undecided; and, on a host no worse than CI's, at least three passes."""
    target = standin()
    passed: list[GateResult] = []
    verdicts: list[tuple[str, tuple[str, ...]]] = []
    for run in range(5):
        result = gate(tmp_path / str(run), target, policy=REPEAT)
        verdicts.append((result.verdict, result.reasons))
        assert result.verdict != FAIL, result.reasons
        if result.verdict == INCONCLUSIVE:
            assert all(NOISE.search(r) for r in result.reasons), result.reasons
            continue
        assert (result.verdict, result.reasons) == (PASS, ())
        passed.append(result)
        fig = result.figures["candidate"]
        assert fig.samples == pytest.approx(300 * result.measured_s, abs=2)
        assert 0 < fig.server_p50_ms < fig.p50_ms  # the stand-in's own time, and less
        assert fig.achieved_rate == pytest.approx(300, rel=0.02)
        assert fig.errors == {}
        judged = {c.name: c for c in result.evidence.limits}["client p99"]
        assert judged.decision == WITHIN and judged.measured.high < REPEAT.p99_ms
        if fig.p99_ms >= REPEAT.p99_ms:
            # What clients saw includes the host stalls the gate leaves out of what it judges
            # and names. Measured in a suite run of 2026-12-07 (a busy VM): a pass with the
            # clients' p99 44.1 ms, one 0.1 s stall at 1.0 s (3 % of the window) left out,
            # the judged p99 13.3 ms (interval 3.2-19.8 ms), the stand-in's own p99 0.18 ms.
            assert result.evidence.stalls, (fig.p99_ms, result.evidence)
        assert 0 < result.generator_cpu < 0.9
        # the host's CPUs, the generator's own among them, measured over the same window
        assert result.generator_cpu / (os.cpu_count() or 1) <= result.host.busy <= 1, result.host
        assert 0 <= result.host.steal <= result.host.busy, result.host
    assert len(passed) >= 3, verdicts
    last = passed[-1]
    assert last.report_html.exists() and last.locust_html is not None
    assert last.locust_html.stat().st_size > 1000
    report = json.loads(last.report_json.read_text())
    assert report["verdict"] == PASS
    assert report["figures"]["candidate"]["samples"] == last.figures["candidate"].samples


def test_a_slow_target_fails_on_p99_every_time(standin: StandIn, tmp_path: Path) -> None:
    target = standin(delay_ms=30)
    for run in range(5):
        result = gate(tmp_path / str(run), target, policy=REPEAT)
        assert result.verdict == FAIL
        p99 = [r for r in result.reasons if r.startswith("client p99 ")]
        assert p99 and p99[0].endswith("> 25.0 ms"), result.reasons
        assert result.figures["candidate"].p50_ms >= 30  # from the intended send time
        # The sleep is its own time. asyncio fires a timer up to its clock resolution early
        # and the stand-in reads another clock: 29.994 and 29.892 ms were measured for a
        # 30 ms sleep on this machine. 29.5 ms still tells a counted sleep (~30 ms) from an
        # uncounted one (~0.1 ms).
        assert result.figures["candidate"].server_p50_ms >= 29.5


def test_five_percent_errors_fail_on_error_ratio_though_fast(
    standin: StandIn, tmp_path: Path
) -> None:
    result = gate(tmp_path, standin(error_fraction=0.05))
    assert result.verdict == FAIL
    assert result.reasons[0].startswith("error ratio"), result.reasons
    fig = result.figures["candidate"]
    assert set(fig.errors) == {"status 500"}
    assert 0.02 < fig.error_ratio < 0.09
    assert fig.p99_ms < 25


def test_a_wrong_version_counts_as_failure(standin: StandIn, tmp_path: Path) -> None:
    served = standin(version="2")
    result = run_gate(Target("candidate", served.url, "3"), ROWS, SHORT, tmp_path)
    assert result.verdict == FAIL
    assert result.figures["candidate"].errors == {"wrong_version": 600}


def test_an_unreachable_rate_is_inconclusive(standin: StandIn, tmp_path: Path) -> None:
    policy = GatePolicy.from_dict({**POLICY.to_dict(), "rate": 20000.0, "users": 32,
                                   "warmup_s": 1.0, "duration_s": 3.0})  # fmt: skip
    result = gate(tmp_path, standin(), policy=policy)
    assert result.verdict == INCONCLUSIVE, result.reasons
    assert any("achieved rate" in r or "generator CPU" in r for r in result.reasons)


def test_candidate_and_live_side_by_side(standin: StandIn, tmp_path: Path) -> None:
    # both targets at 300 req/s each, taking turns request by request
    live = standin("live", version="2")
    same = gate(tmp_path / "same", standin(), live=live)
    assert same.verdict != FAIL, same.reasons  # identical stand-ins are never failed
    assert same.evidence.basis == "server"
    cand, lv = same.figures["candidate"], same.figures["live"]
    per_target = 300 * same.measured_s
    assert cand.samples == pytest.approx(per_target, abs=2)
    assert lv.samples == pytest.approx(per_target, abs=2)
    assert cand.achieved_rate == pytest.approx(300, rel=0.03)
    assert lv.achieved_rate == pytest.approx(300, rel=0.03)
    assert cand.errors == lv.errors == {}  # each answered with its own expected version
    # 25 ms is within loose absolute limits, but far more than 1.25 x live's server time
    loose = GatePolicy.from_dict({**POLICY.to_dict(), "p50_ms": 100, "p95_ms": 100,
                                  "p99_ms": 100})  # fmt: skip
    slower = gate(tmp_path / "slower", standin(delay_ms=25), live=live, policy=loose)
    assert slower.verdict == FAIL
    assert [r for r in slower.reasons if r.startswith("server p50 vs live")], slower.reasons
    report = json.loads(slower.report_json.read_text())
    assert report["evidence"]["regressions"][0]["decision"] == "beyond"


def test_a_limit_live_is_beyond_too_in_the_same_run_is_no_fail(
    standin: StandIn, tmp_path: Path
) -> None:
    # Both versions 30 ms slow in the service itself, as on a host slow for the whole window
    # (no moment slower than the run's own median, so no stall to leave out): the candidate
    # is beyond every latency limit, and so is live at the same moments. 100 req/s each:
    # 16 users carry 2 x 100 req/s at 30 ms (6 in flight), so no rate shortfall decides it.
    policy = GatePolicy.from_dict({**POLICY.to_dict(), "rate": 100.0, "warmup_s": 1.0,
                                   "duration_s": 6.0, "max_duration_s": 6.0})  # fmt: skip
    live = standin("live", version="2", delay_ms=30)
    result = gate(tmp_path, standin(delay_ms=30), live=live, policy=policy)
    assert result.verdict == INCONCLUSIVE, result.reasons
    both = [r for r in result.reasons
            if r.startswith("client p99 ") and "live's p99 in the same run is beyond it too" in r]
    assert both, result.reasons  # fmt: skip
    assert all(r.endswith("not decided") for r in result.reasons), result.reasons
    report = json.loads(result.report_json.read_text())
    assert [c["decision"] for c in report["evidence"]["live_limits"]] == ["beyond"] * 3
    assert "beyond" not in [c["decision"] for c in report["evidence"]["regressions"]]


def test_without_server_timing_client_latency_judges_regressions(
    standin: StandIn, tmp_path: Path
) -> None:
    live = standin("live", version="2", no_server_timing=True)
    loose = GatePolicy.from_dict({**POLICY.to_dict(), "p50_ms": 100, "p95_ms": 100,
                                  "p99_ms": 100})  # fmt: skip
    slower = gate(tmp_path, standin(delay_ms=25), live=live, policy=loose)
    assert slower.evidence.basis == "client"
    assert slower.verdict == FAIL
    assert [r for r in slower.reasons if r.startswith("client p50 vs live")], slower.reasons


def test_an_unreachable_target_fails_on_connection_errors(tmp_path: Path) -> None:
    result = run_gate(Target("candidate", "http://127.0.0.1:9", "3"), ROWS, SHORT, tmp_path)
    assert result.verdict == FAIL
    assert set(result.figures["candidate"].errors) == {"connection"}


def test_a_timeout_raises_and_leaves_no_process(tmp_path: Path) -> None:
    with pytest.raises(LoadTestError, match="did not finish"):
        run_gate(Target("candidate", "http://127.0.0.1:9", "3"), ROWS, POLICY, tmp_path,
                 timeout=0.5)  # fmt: skip
    assert not [
        p
        for p in psutil.Process().children(recursive=True)
        if p.status() != psutil.STATUS_ZOMBIE and "locust" in " ".join(p.cmdline())
    ]
