"""The watched bake under real client load: real Bentos, the real sidecar, the watcher as the
detached expirer (``python -m bentogate.expirer``) every cutover leaves (issue "Live-traffic
safety", 3).

A version that breaks under clients' traffic after its cutover (its Bento dies; it scores a
class of clients' rows differently from the version it replaced; it is slow on a class of
clients' rows) is rolled back to the warm previous version automatically, with the figures
in the audit trail; an identical version bakes through its warm window untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from hosts import ACTORS, Models, host_settings, register, running_host, settings_env
from machine import Machine
from sidecar_load import PacedLoad
from slow_serving import slow_project

from bench.slowcopy import add_chains, append_trees, class_tree
from bentogate import bake, gating, release
from bentogate.bentos import process_tree
from bentogate.context import PROJECT_DIR, Context, Ref
from bentogate.data import read_csv
from bentogate.errors import IllegalTransition

pytestmark = pytest.mark.integration

MODEL = "fraud"
RATE = 100.0  # clients' req/s: a watcher's window of 2 s holds 200 answers
WARM_S = 6.0  # the warm window (and so the bake) of these tests
CLASS_FEATURE = 4
SLOW_S = 0.06  # the slow version's extra time on the class: over the 25 ms p99 of its test


@dataclass(frozen=True)
class Baking:
    ctx: Context
    v1: Ref
    same: tuple[Ref, Ref]  # score every row as v1 does
    changed: Ref  # scores a class of clients' rows differently
    slow: Ref  # scores every row as v1 does, SLOW_S late on the class (its Bento's code)
    bodies: list[bytes]  # clients' rows, every tenth of the class (sent spread: distinct)


@pytest.fixture(scope="module")
def baking(
    tmp_path_factory: pytest.TempPathFactory,
    port_block: Callable[[int], int],
    trained_models: Models,
) -> Iterator[Baking]:
    root = tmp_path_factory.mktemp("bake")
    settings = host_settings(root / "home", port_block(16), models=1,
                             bento={"keep_previous_s": WARM_S})  # fmt: skip
    reference = read_csv(trained_models.holdout)
    rows = np.asarray(reference.features, dtype=float)
    at = float(rows[:, CLASS_FEATURE].max()) + 1.0
    files = [
        add_chains(trained_models.v1, root / "same-a.json", 1, depth=2),
        add_chains(trained_models.v1, root / "same-b.json", 1, depth=3),
        append_trees(trained_models.v1, root / "changed.json",
                     lambda first, n: [class_tree(first, n, CLASS_FEATURE, at, 6.0)]),
        add_chains(trained_models.v1, root / "slow.json", 1, depth=4),
    ]  # fmt: skip
    slow_dir = slow_project(root / "slow-build", feature=CLASS_FEATURE, above=at, delay_s=SLOW_S)
    bodies = []
    for i in range(200):
        row = rows[i % len(rows)].copy()
        if i % 10 == 0:
            row[CLASS_FEATURE] = at + 10.0
        bodies.append(json.dumps({"features": row.tolist()}).encode())
    with running_host(settings) as ctx:
        v1 = register(ctx, MODEL, trained_models.v1, trained_models.holdout)
        release.release(ctx, v1, trained_models.holdout, actors=ACTORS)
        refs = [register(ctx, MODEL, f, trained_models.holdout) for f in files]
        for ref in refs:
            release.validate(ctx, ref, trained_models.holdout, actor=ACTORS.validator)
            release.approve(ctx, ref, actor=ACTORS.approver)
            ctx.project_dir = slow_dir if ref == refs[3] else PROJECT_DIR  # its Bento's code
            release.build(ctx, ref, actor=ACTORS.release)
            ctx.project_dir = PROJECT_DIR
            release.deploy(ctx, ref, actor=ACTORS.release)
            gating.gate(ctx, ref, actor=ACTORS.release)  # reference rows: none of the class
        yield Baking(ctx, v1, (refs[0], refs[1]), refs[2], refs[3], bodies)


def _port(ctx: Context) -> int:
    return ctx.registry.get_model(MODEL).production_port


def _production(ctx: Context) -> str:
    live = ctx.registry.production_version(MODEL)
    assert live is not None
    return live.version


def _watcher(ctx: Context) -> subprocess.Popen[str]:
    """The detached expirer with this host's settings, as a cutover leaves it."""
    return subprocess.Popen(
        [sys.executable, "-m", "bentogate.expirer"],
        env=settings_env(ctx.settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _promote_from(baking: Baking, start: Ref, new: Ref) -> None:
    """``start`` live (promoted if need be), then ``new`` promoted over it: ``start`` warm."""
    ctx = baking.ctx
    if _production(ctx) != start.version:
        release.promote(ctx, start, actor=ACTORS.release)
    release.promote(ctx, new, actor=ACTORS.release)
    assert _production(ctx) == new.version


def _wait_production(ctx: Context, version: str, timeout: float) -> float:
    """Monotonic time when the DB names ``version`` production (polled); fails on timeout."""
    deadline = time.monotonic() + timeout
    while _production(ctx) != version:
        assert time.monotonic() < deadline, f"production is still {_production(ctx)}"
        time.sleep(0.05)
    return time.monotonic()


def _first_reading(ctx: Context, version: str, timeout: float) -> float:
    """Monotonic time when the watcher's reading of ``version`` is first seen (polled)."""
    deadline = time.monotonic() + timeout
    while (reading := bake.last_reading(ctx, MODEL)) is None or reading.version != version:
        assert time.monotonic() < deadline, f"no bake reading of {MODEL}:{version}"
        time.sleep(0.02)
    return time.monotonic()


def _automatic_rollback(ctx: Context, version: str) -> dict[str, object]:
    [entry] = [
        e for e in ctx.registry.audit(MODEL)
        if e.action == "rollback" and e.actor == "bake-watcher" and e.outcome == "ok"
        and f"automatic rollback of {MODEL}:{version}" in (e.reason or "")
    ]  # fmt: skip
    return dict(entry.payload)


def test_a_version_whose_bento_dies_under_clients_is_rolled_back_within_2_s(
    baking: Baking, machine: Machine
) -> None:
    ctx, (same, _) = baking.ctx, baking.same
    watcher: subprocess.Popen[str] | None = None
    try:
        # Alone from before the cutover: it starts the warm window (WARM_S), which a wait for
        # the machine must not spend (once it did: the previous version had expired).
        with machine.alone():
            _promote_from(baking, baking.v1, same)
            [replica] = [d for d in ctx.registry.deployments(host=ctx.settings.host, model=MODEL)
                         if d.version == same.version]  # fmt: skip
            watcher = _watcher(ctx)
            with PacedLoad(_port(ctx), baking.bodies, rate=RATE, spread=True) as load:
                load.wait_for(150)
                assert replica.pid is not None
                for pid in process_tree(replica.pid):  # the new version crashes
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                killed = time.monotonic()
                restored = _wait_production(ctx, baking.v1.version, timeout=10)
                load.wait_for(load.total + 150)
        failures = load.failures()
        first_failure = min(a.sent for a in failures)
        print(f"\nbake: {len(failures)} failed, restored {restored - first_failure:.2f} s after "
              f"the first failure; {load.summary()}")  # fmt: skip
        # Measurable once bake_min_requests (20) answers came: 0.2 s at 100 req/s; then a
        # poll (0.25 s), the rollback (a set map, ~0.2 s): well inside 2 s.
        assert restored - first_failure < 2.0
        assert len(failures) <= RATE * 2.0  # bounded by the window, never more
        assert not [a for a in failures if a.sent > restored + 0.5]  # none once restored
        assert set(load.versions(restored + 0.5)) == {baking.v1.version}
        evidence = _automatic_rollback(ctx, same.version)["evidence"]
        assert "error ratio" in str(evidence) and killed < time.monotonic()
        with pytest.raises(IllegalTransition, match="bake"):
            release.promote(ctx, same, actor=ACTORS.release)  # it needs a new passed gate
    finally:
        if watcher is not None:
            watcher.kill()
            watcher.communicate(timeout=10)
    release.deploy(ctx, same, actor=ACTORS.release)  # gated again, for the next tests
    gating.gate(ctx, same, actor=ACTORS.release)


def test_a_version_scoring_a_class_of_clients_differently_is_rolled_back(
    baking: Baking, machine: Machine
) -> None:
    ctx = baking.ctx
    watcher: subprocess.Popen[str] | None = None
    try:
        with machine.alone(), PacedLoad(_port(ctx), baking.bodies, rate=RATE, spread=True) as load:
            load.wait_for(50)
            _promote_from(baking, baking.v1, baking.changed)
            promoted = time.monotonic()
            watcher = _watcher(ctx)  # what the cutover leaves (expire_warm "manual" here)
            restored = _wait_production(ctx, baking.v1.version, timeout=WARM_S)
        print(f"\nbake: class scored differently, rolled back {restored - promoted:.2f} s "
              f"after the cutover; {load.summary()}")  # fmt: skip
        # Measurable once shadow_min_rows (200) clients' rows were compared: 2 s at 100 req/s.
        assert restored - promoted < 2.0 + 2.0
        assert load.failures() == []  # wrong scores, not errors: the comparison caught it
        payload = _automatic_rollback(ctx, baking.changed.version)
        assert "decisions flipped at the threshold" in str(payload["evidence"])
    finally:
        if watcher is not None:
            watcher.kill()
            watcher.communicate(timeout=10)


def test_a_version_slow_on_a_class_of_clients_rows_is_rolled_back_on_its_own_latency(
    baking: Baking, machine: Machine
) -> None:
    """The gate passed it (its reference rows are fast); a tenth of the clients' rows take
    it 60 ms inside the Bento, over the model's p99 of 25 ms: the Bento's own histogram
    (``/metrics``) shows it within a window, and the watcher rolls back on it."""
    ctx = baking.ctx
    before = gating.gate_policy(ctx, MODEL).p99_ms
    gating.set_gate_policy(ctx, MODEL, {"p99_ms": 25}, actor=ACTORS.release)
    watcher: subprocess.Popen[str] | None = None
    try:
        with machine.alone(), PacedLoad(_port(ctx), baking.bodies, rate=RATE, spread=True) as load:
            load.wait_for(50)
            _promote_from(baking, baking.v1, baking.slow)
            promoted = time.monotonic()
            watcher = _watcher(ctx)  # what the cutover leaves (expire_warm "manual" here)
            looked = _first_reading(ctx, baking.slow.version, timeout=WARM_S)
            restored = _wait_production(ctx, baking.v1.version, timeout=WARM_S)
            load.wait_for(150)
        evidence = _automatic_rollback(ctx, baking.slow.version)["evidence"]
        assert isinstance(evidence, dict)
        print(f"\nbake: slow on a class, the watcher's first look {looked - promoted:.2f} s "
              f"after the cutover, rolled back {restored - looked:.2f} s later: "
              f"{evidence['breach']}; {load.summary()}")  # fmt: skip
        # From its first look: a second reading of the histograms (0.5 s later: at 100 req/s
        # a window of ~50 answers, a tenth of them slow), looks that also score the clients'
        # rows, the rollback (a set map): about 1 s (0.35-1.3 s measured on 2 busy cores).
        # (Before it, the watcher's own start: a Python process, 1-4 s on a busy machine.)
        # Beside the other workers' tests a CI run once measured 3.29 s: the reaction times
        # of these three tests are measured alone, as the gates' latencies are.
        assert restored - looked < 3.0
        assert load.failures() == []  # slow, not failing: the latency rule caught it
        assert set(load.versions(restored + 0.5)) == {baking.v1.version}
        breach = str(evidence["breach"])
        assert breach.startswith("server p99 > 25 ms (p99_ms): "), breach
        rule = r"took over 25 ms in the Bento over \d\.\d s, where at most 1% may; server p99 "
        assert re.search(rule + r"<= \d+ ms \(bucket \d+-\d+ ms\)$", breach), breach
        answers, over = evidence["server_answers"], evidence["server_over_limit"]
        assert isinstance(answers, int) and isinstance(over, int)
        assert answers >= 20 and 0.02 < over / answers < 0.3, evidence  # a tenth, give or take
        p99_le_ms = evidence["server_p99_le_ms"]  # the top of the p99's bucket: 100 ms, or more
        assert isinstance(p99_le_ms, float) and p99_le_ms >= 100.0 and evidence["errors"] == 0
        with pytest.raises(IllegalTransition, match="bake"):
            release.promote(ctx, baking.slow, actor=ACTORS.release)  # needs a new passed gate
    finally:
        gating.set_gate_policy(ctx, MODEL, {"p99_ms": before}, actor=ACTORS.release)
        if watcher is not None:
            watcher.kill()
            watcher.communicate(timeout=10)


@pytest.mark.parametrize("run", range(5))
def test_an_identical_version_bakes_through_its_warm_window(baking: Baking, run: int) -> None:
    ctx = baking.ctx
    start, new = baking.same if run % 2 == 0 else baking.same[::-1]
    with PacedLoad(_port(ctx), baking.bodies, rate=RATE, spread=True) as load:
        load.wait_for(30)
        _promote_from(baking, start, new)
        watcher = _watcher(ctx)
        out, _ = watcher.communicate(timeout=WARM_S + 30)  # it ends with the warm window
    assert watcher.returncode == 0, out
    assert f"{start} stopped" in out and "rolling back" not in out, out
    assert _production(ctx) == new.version and load.failures() == []
