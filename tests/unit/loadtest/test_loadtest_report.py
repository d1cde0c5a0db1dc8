"""Report rendering: the HTML page with its plots, the JSON with its keys."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from lt_samples_factory import uniform_run

from bentogate.loadtest import GatePolicy, GateResult
from bentogate.loadtest.report import report_dict, write_html, write_json
from bentogate.loadtest.runner import judge
from bentogate.loadtest.samples import Samples, load_samples
from bentogate.settings import GateSettings


def _result(tmp_path: Path, writer: Callable[..., Path], locust_html: bool) -> tuple:
    rows = [*uniform_run(500), (2.0, 0.0, 0.001, 500, 1, 0)]
    rows += [(r[0], r[1], r[2] / 2, r[3], r[4], 1) for r in uniform_run(500)]
    writer(rows, targets=["candidate", "live"], scheduled=[500, 500], rate=50.0)
    samples = load_samples(tmp_path)
    policy = GatePolicy.from_settings(GateSettings(rate=50.0, min_samples=100))
    html = tmp_path / "locust-report.html"
    if locust_html:
        html.write_text("<html></html>")
    return _gate_result(samples, policy, tmp_path, html if locust_html else None), samples


def _gate_result(
    samples: Samples, policy: GatePolicy, tmp_path: Path, locust_html: Path | None
) -> GateResult:
    figures, evidence, cpu, verdict = judge(samples, policy)
    return GateResult(
        verdict.verdict, verdict.reasons, policy, figures, evidence, cpu, samples.host,
        samples.duration_s, 1,
        tmp_path / "gate-report.json", tmp_path / "gate-report.html", locust_html,
    )  # fmt: skip


def test_json_report_has_the_keys(samples_writer: Callable[..., Path], tmp_path: Path) -> None:
    result, samples = _result(tmp_path, samples_writer, locust_html=True)
    write_json(result.report_json, report_dict(result, samples, {"wall_s": 1.5}))
    data = json.loads(result.report_json.read_text())
    for key in ("verdict", "reasons", "policy", "figures", "generator_cpu", "host_cpu", "criteria",
                "target_rate", "cpu_warnings", "locust_html", "wall_s", "evidence",
                "measured_s", "rounds"):  # fmt: skip
        assert key in data, key
    assert data["verdict"] == "fail"
    assert any("p99" in r for r in data["reasons"])
    cand = data["figures"]["candidate"]
    for key in ("p50_ms", "p95_ms", "p99_ms", "p999_ms", "mean_ms", "max_ms", "samples",
                "achieved_rate", "target_rate", "errors", "error_ratio"):  # fmt: skip
        assert key in cand, key
    assert cand["errors"] == {"status 500": 1}
    assert set(data["figures"]) == {"candidate", "live"}
    names = [c["name"] for c in data["evidence"]["live_limits"]]
    assert names == ["live client p50", "live client p95", "live client p99"]
    assert GatePolicy.from_dict(data["policy"]) == result.policy
    assert not list(tmp_path.glob("*.tmp"))


def test_html_report_embeds_the_plots(samples_writer: Callable[..., Path], tmp_path: Path) -> None:
    result, samples = _result(tmp_path, samples_writer, locust_html=True)
    page = write_html(result.report_html, result, samples).read_text()
    assert page.count('src="data:image/png;base64,iVBORw0KGgo') == 5  # PNG magic
    assert "client p99" in page and "server p50 vs live" not in page  # no server timing
    assert "client p50 vs live" in page  # client latency stood in
    assert "<td>live client p99</td>" in page  # live's limits in the same run, beside
    assert "Gate verdict" in page and ">fail<" in page
    assert "p99 " in page and "locust-report.html" in page
    assert "<td>candidate</td>" in page and "<td>live</td>" in page
    # the factory's host: 20 CPU-seconds over the window, 10 busy, 2 stolen
    assert "the host&#x27;s CPUs 50% busy, 10% stolen by the hypervisor" in page


def test_html_report_without_successes_or_locust_report(
    samples_writer: Callable[..., Path], tmp_path: Path
) -> None:
    samples_writer([(2.0, 0.0, 0.001, 0, 2, 0)] * 10, scheduled=[10])
    samples = load_samples(tmp_path)
    policy = GatePolicy.from_settings(GateSettings(rate=100.0, min_samples=5))
    result = _gate_result(samples, policy, tmp_path, None)
    page = write_html(result.report_html, result, samples).read_text()
    assert page.count("data:image/png;base64,") == 5
    assert "n/a" in page
    assert json.loads(json.dumps(result.to_dict()))["figures"]["candidate"]["p99_ms"] is None
