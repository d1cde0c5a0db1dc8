"""Shadow scoring with real Bentos behind the real sidecar: live clients' rows, kept by the
live Bento, replayed to a candidate and to live (issue "Live-traffic safety", item 2).

The candidates are copies of the live model: one appends a tree that changes the score of a
class of inputs no reference row reaches (so registration parity, validation and the gate
all pass it), one appends a tree that changes nothing. Clients send rows of which every
tenth is of that class.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hosts import ACTORS, Models, host_settings, register, running_host

from bench.slowcopy import add_chains, append_trees, class_tree
from bentogate import gating, host, release
from bentogate.context import Context, Ref
from bentogate.data import read_csv
from bentogate.errors import IllegalTransition, ShadowFailed
from bentogate.governance import State

pytestmark = pytest.mark.integration

MODEL = "fraud"
CLASS_FEATURE = 4
CLIENT_ROWS = 600  # every tenth of the class: 60 flipped decisions expected, 10 %


@dataclass(frozen=True)
class Shadowed:
    ctx: Context
    live: Ref
    changed: Ref  # scores the class differently
    same: Ref  # scores every row as live does
    holdout: Path


def _post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def shadowed(
    tmp_path_factory: pytest.TempPathFactory,
    port_block: Callable[[int], int],
    trained_models: Models,
) -> Iterator[Shadowed]:
    root = tmp_path_factory.mktemp("shadow")
    settings = host_settings(root / "home", port_block(16), models=1)
    reference = read_csv(trained_models.holdout)
    at = float(np.max(np.asarray(reference.features)[:, CLASS_FEATURE])) + 1.0
    changed_file = append_trees(
        trained_models.v1,
        root / "changed.json",
        lambda first, n: [class_tree(first, n, CLASS_FEATURE, at, 6.0)],
    )
    same_file = add_chains(trained_models.v1, root / "same.json", 1, depth=4)
    with running_host(settings) as ctx:
        live = register(ctx, MODEL, trained_models.v1, trained_models.holdout)
        release.release(ctx, live, trained_models.holdout, actors=ACTORS)
        candidates = [
            register(ctx, MODEL, path, trained_models.holdout) for path in (changed_file, same_file)
        ]
        for ref in candidates:  # every step before shadow passes them
            release.validate(ctx, ref, trained_models.holdout, actor=ACTORS.validator)
            release.approve(ctx, ref, actor=ACTORS.approver)
            release.build(ctx, ref, actor=ACTORS.release)
            release.deploy(ctx, ref, actor=ACTORS.release)
            gating.gate(ctx, ref, actor=ACTORS.release)
        port = ctx.registry.get_model(MODEL).production_port
        rows = np.asarray(reference.features, dtype=float)
        for i in range(CLIENT_ROWS):
            row = rows[i % len(rows)].copy()
            if i % 10 == 0:
                row[CLASS_FEATURE] = at + 10.0
            status, body = _post(port, "/predict", json.dumps({"features": row.tolist()}).encode())
            assert status == 200, body
        yield Shadowed(ctx, live, candidates[0], candidates[1], trained_models.holdout)


def _as_candidate(s: Shadowed, ref: Ref) -> None:
    """Route the candidate port to ``ref`` (a deploy of a running version adds nothing)."""
    s.ctx.sidecar.switch(MODEL, ref.version, role="candidate")


def test_the_live_bento_keeps_client_rows_and_haproxy_does_not_hand_them_out(
    shadowed: Shadowed,
) -> None:
    port = shadowed.ctx.registry.get_model(MODEL).production_port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/_recent")
    assert conn.getresponse().status == 404  # never through the production port
    conn.close()
    kept = host.recent_rows(shadowed.ctx, shadowed.live)
    assert sum(len(rows) for rows in kept.values()) == CLIENT_ROWS  # no check, no gate rows


def test_a_class_scored_differently_fails_shadow_naming_it_every_time(
    shadowed: Shadowed,
) -> None:
    _as_candidate(shadowed, shadowed.changed)
    messages = set()
    for _ in range(5):
        with pytest.raises(ShadowFailed) as failed:
            gating.shadow(shadowed.ctx, shadowed.changed, actor=ACTORS.release)
        messages.add(str(failed.value).split(" (report:")[0])
    [message] = messages  # the same verdict and figures, five times
    assert "decisions flipped at the threshold 10.00% (60 of 600" in message, message
    runs = shadowed.ctx.registry.shadow_runs(MODEL, shadowed.changed.version)
    assert [r.verdict for r in runs] == ["fail"] * 5
    assert Path(runs[-1].report_path).is_file()


def test_an_identical_copy_passes_shadow_every_time(shadowed: Shadowed) -> None:
    _as_candidate(shadowed, shadowed.same)
    for _ in range(5):
        result = gating.shadow(shadowed.ctx, shadowed.same, actor=ACTORS.release)
        assert result.verdict == "pass", result.reasons
        assert result.comparison.rows == CLIENT_ROWS and result.comparison.flips == 0


def test_a_policy_requiring_shadow_stops_release_at_a_failed_shadow(shadowed: Shadowed) -> None:
    ctx = shadowed.ctx
    gating.set_gate_policy(ctx, MODEL, {"require_shadow": 1}, actor=ACTORS.release)
    try:
        _as_candidate(shadowed, shadowed.changed)
        with pytest.raises(ShadowFailed, match="decisions flipped"):
            release.release(ctx, shadowed.changed, shadowed.holdout, actors=ACTORS)
        with pytest.raises(IllegalTransition, match="no passed shadow run newer than its build"):
            release.promote(ctx, shadowed.changed, actor=ACTORS.release)
        assert ctx.registry.production_version(MODEL).version == shadowed.live.version  # type: ignore[union-attr]
        _as_candidate(shadowed, shadowed.same)
        done = release.release(ctx, shadowed.same, shadowed.holdout, actors=ACTORS)
        assert done.state == State.PRODUCTION
    finally:  # the module's state again: live the original, the policy the default
        if ctx.registry.production_version(MODEL).version != shadowed.live.version:  # type: ignore[union-attr]
            release.rollback(ctx, MODEL, actor=ACTORS.release)
        gating.set_gate_policy(ctx, MODEL, {"require_shadow": 0}, actor=ACTORS.release)
