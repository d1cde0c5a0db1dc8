"""Several Bentos served at once on one host: two versions of one model and a different
model, each on its own port, each answering with its own identity; each enforcing its own
input limits (build arguments); each describing itself in /metrics; and none of them
answering any request schemathesis derives from its own OpenAPI document with a 5xx."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from bento_support import (
    Built,
    get_json,
    post_json,
    request,
    schemathesis_run,
    serving,
)
from prometheus_client.parser import text_string_to_metric_families

from bentogate import latency
from bentogate.bentos.build import bento_path
from bentogate.bentos.runtime import Handle, ProcessBackend

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(
    fraud_v1: Built,
    fraud_v2: Built,
    chargeback_v1: Built,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[Built, Handle]]]:
    """fraud:1, fraud:2 and chargeback:1 served at once from host A's store."""
    runtime = ProcessBackend(fraud_v1.home, tmp_path_factory.mktemp("logs"))
    bentos = (fraud_v1, fraud_v2, chargeback_v1)
    with serving([(runtime, built.tag) for built in bentos]) as handles:
        yield {built.tag: (built, handle) for built, handle in zip(bentos, handles, strict=True)}


def _build_args(built: Built) -> dict[str, int]:
    info = yaml.safe_load((bento_path(built.home, built.tag) / "bento.yaml").read_text())
    return {key: int(info["args"][key]) for key in ("max_body_bytes", "max_batch_rows")}


def test_each_bento_answers_on_its_own_port_with_its_own_identity(
    fleet: dict[str, tuple[Built, Handle]],
) -> None:
    assert len({handle.port for _, handle in fleet.values()}) == 3
    assert len({built.artifact.sha256 for built, _ in fleet.values()}) == 3
    for built, handle in fleet.values():
        status, info = get_json(handle.port, "/model")
        assert status == 200
        assert (info["name"], info["version"], info["sha256"]) == (
            built.model,
            built.version,
            built.artifact.sha256,
        )
        assert info["feature_names"] == list(built.artifact.feature_names)
        status, answer = post_json(handle.port, "/predict", {"features": built.artifact.canary_row})
        assert status == 200, answer
        assert (answer["model"], answer["model_version"]) == (built.model, built.version)
        assert abs(answer["score"] - built.artifact.canary_score) <= 1e-5


@pytest.mark.parametrize("tag", ["fraud:1", "chargeback:1"])
def test_a_body_over_the_bentos_own_limit_is_413(
    fleet: dict[str, tuple[Built, Handle]], tag: str
) -> None:
    built, handle = fleet[tag]
    limit = _build_args(built)["max_body_bytes"]
    body = json.dumps({"features": built.artifact.canary_row}).encode()
    at_limit = body + b" " * (limit - len(body))  # trailing whitespace: still valid JSON
    status, answer = request(handle.port, "POST", "/predict", at_limit)
    assert status == 200, answer
    status, answer = request(handle.port, "POST", "/predict", at_limit + b" ")
    assert status == 413
    assert f"larger than {limit} bytes" in json.loads(answer)["error"]


def test_a_batch_scores_each_row_as_predict_does(fleet: dict[str, tuple[Built, Handle]]) -> None:
    """/predict_batch (its own session, every core) and /predict (one thread) of a served
    Bento give every row the same score and label."""
    built, handle = fleet["fraud:1"]
    rows = [[float(v) for v in row] for row in built.artifact.reference_rows[:64]]
    status, batch = post_json(handle.port, "/predict_batch", {"features": rows})
    assert status == 200, batch
    singles = [post_json(handle.port, "/predict", {"features": row})[1] for row in rows]
    assert batch["labels"] == [single["label"] for single in singles]
    scores = [single["score"] for single in singles]
    assert max(abs(a - b) for a, b in zip(batch["scores"], scores, strict=True)) <= 1e-6


@pytest.mark.parametrize("tag", ["fraud:1", "chargeback:1"])
def test_a_batch_over_max_batch_rows_is_400(
    fleet: dict[str, tuple[Built, Handle]], tag: str
) -> None:
    built, handle = fleet[tag]
    most = _build_args(built)["max_batch_rows"]
    row = built.artifact.canary_row
    status, answer = post_json(handle.port, "/predict_batch", {"features": [row] * most})
    assert status == 200, answer
    assert len(answer["scores"]) == most
    status, answer = post_json(handle.port, "/predict_batch", {"features": [row] * (most + 1)})
    assert status == 400
    assert f"at most {most} rows, got {most + 1}" in answer["error"]


def _metrics(port: int) -> dict[str, list[Any]]:
    status, body = request(port, "GET", "/metrics")
    assert status == 200
    return {family.name: family.samples for family in text_string_to_metric_families(body.decode())}


def _request_counts(families: dict[str, list[Any]]) -> dict[tuple[str, str], float]:
    """``bentoml_service_request_total`` by (endpoint, response code)."""
    return {
        (sample.labels["endpoint"], sample.labels["http_response_code"]): sample.value
        for sample in families.get("bentoml_service_request", [])
        if sample.name.endswith("_total")
    }


def _first_reads(port: int, raw: bytes, times: int) -> list[tuple[int, int]]:
    """Send ``raw`` (one whole HTTP request) ``times`` times on one keep-alive connection;
    for each response, (bytes the first ``recv`` returned, bytes of the whole response)."""
    reads = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(times):
            sock.sendall(raw)
            data = sock.recv(65536)  # returns as soon as the first segment is there
            first = len(data)
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            assert length is not None, head
            while len(body) < int(length.group(1)):
                body += sock.recv(65536)
            reads.append((first, len(head) + 4 + len(body)))
    return reads


def test_every_response_leaves_the_bento_in_one_write(
    fleet: dict[str, tuple[Built, Handle]],
) -> None:
    """Head and body in one segment, read by one recv: a replica killed at any instant has
    sent HAProxy a whole response or nothing, never a head it cannot retry. (uvicorn's own
    protocol writes them apart, BentoML's metrics code in between: there, many first reads
    hold the head alone.)"""
    built, handle = fleet["fraud:1"]
    body = json.dumps({"features": built.artifact.canary_row}).encode()
    predict = (
        b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    bad = b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\n{"
    model = b"GET /model HTTP/1.1\r\nHost: localhost\r\n\r\n"
    for raw, times in ((predict, 2000), (bad, 200), (model, 200)):
        reads = _first_reads(handle.port, raw, times)
        split = [r for r in reads if r[0] < r[1]]
        assert split == [], f"{len(split)} of {times} responses split: {split[:5]} ({raw[:20]!r})"


def test_every_prediction_carries_the_bentos_own_time(
    fleet: dict[str, tuple[Built, Handle]],
) -> None:
    """``Server-Timing: svc;dur=<ms>``: what the gate judges regressions on. It is the
    Bento's time only, so it is below what the client measured around the same request."""
    built, handle = fleet["fraud:1"]
    body = json.dumps({"features": built.artifact.canary_row}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=10)
    try:
        for _ in range(50):
            started = time.perf_counter()
            connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            client_ms = (time.perf_counter() - started) * 1e3
            header = response.getheader("server-timing") or ""
            match = re.fullmatch(r"svc;dur=(\d+\.\d{3})", header)
            assert response.status == 200 and match, header
            assert 0 < float(match.group(1)) < client_ms
    finally:
        connection.close()


def test_metrics_name_the_model_version_with_sub_millisecond_latency_buckets(
    fleet: dict[str, tuple[Built, Handle]],
) -> None:
    built, handle = fleet["fraud:1"]
    before = _request_counts(_metrics(handle.port))
    for _ in range(3):
        assert post_json(handle.port, "/predict", {"features": built.artifact.canary_row})[0] == 200
    assert post_json(handle.port, "/predict", {"features": [1.0]})[0] == 400
    # A prediction path with another method is routed, not sent to the endpoint directly.
    assert request(handle.port, "GET", "/predict")[0] == 405
    for path in ("/no-such-path", "/another-one"):
        assert request(handle.port, "GET", path)[0] == 404
    families = _metrics(handle.port)
    # Every answer is counted under BentoML's names, by endpoint and response code; paths no
    # route serves share one series (random paths cannot grow /metrics without bound).
    after = _request_counts(families)
    counted = {key: after[key] - before.get(key, 0.0) for key in after}
    assert {key: n for key, n in counted.items() if n} == {
        ("/predict", "200"): 3.0,
        ("/predict", "400"): 1.0,
        ("/predict", "405"): 1.0,
        ("(unrouted)", "404"): 2.0,
    }
    # BentoML labels its request metrics with the Bento's name and version: model and version.
    buckets = [
        sample
        for sample in families["bentoml_service_request_duration_seconds"]
        if sample.name.endswith("_bucket") and sample.labels["endpoint"] == "/predict"
    ]
    assert buckets, sorted(families)
    served = {(s.labels["service_name"], s.labels["service_version"]) for s in buckets}
    # Only its own traffic: BentoML keeps these figures in files under BENTOML_HOME, which
    # Bentos sharing one home also share (each start even empties the directory).
    assert served == {("fraud", "1")}, f"/metrics of fraud:1 reports {sorted(served)}"
    # A prediction takes well under a millisecond: the histogram must resolve that.
    bounds = sorted(float(s.labels["le"]) for s in buckets)
    assert bounds[0] < 0.001, f"the lowest latency bucket is {bounds[0]} s"
    # One sample names the model, its version and the sha256 of what is served.
    info = families.get("bentogate_model_info")
    assert info is not None, "no bentogate_model_info metric"
    assert [(s.labels, s.value) for s in info] == [
        ({"model": "fraud", "version": "1", "sha256": built.artifact.sha256}, 1.0)
    ]


def test_no_request_derived_from_the_bentos_openapi_document_gets_a_5xx(
    fleet: dict[str, tuple[Built, Handle]], tmp_path: Path
) -> None:
    # chargeback:1: 8 features keep the coverage phase short (it varies every feature), and
    # its small limits (4 KiB, 16 rows) put the 413 and 400 paths within reach.
    _, handle = fleet["chargeback:1"]
    run = schemathesis_run(f"http://127.0.0.1:{handle.port}/openapi.json", tmp_path)
    assert run.exit_code == 0, run.problems()
    assert run.report["failures"] == [] and run.report["errors"] == [], run.problems()
    assert run.report["operations"]["tested"] == 3
    assert run.generated >= 100


class _FiveHundred(BaseHTTPRequestHandler):
    """A stand-in API whose one operation answers 500."""

    SCHEMA = {
        "openapi": "3.0.3",
        "info": {"title": "boom", "version": "1"},
        "paths": {
            "/predict": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }

    def do_GET(self) -> None:
        self._answer(200, self.SCHEMA)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(500, {"error": "boom"})

    def _answer(self, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def test_the_schemathesis_run_fails_when_an_api_answers_5xx(tmp_path: Path) -> None:
    """The check above can fail: the same run against an API that answers 500."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FiveHundred)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        run = schemathesis_run(
            f"http://127.0.0.1:{server.server_port}/openapi.json", tmp_path, max_examples=5
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert run.exit_code != 0
    assert run.report["failures"], run.output[-2000:]
    assert "Server error" in run.output


def test_latency_answers_the_request_duration_histogram_of_metrics_alone(
    fleet: dict[str, tuple[Built, Handle]],
) -> None:
    """``GET /_latency`` (what the bake reads every half second) holds the same successful
    ``/predict`` answers as BentoML's ``/metrics``, and nothing else."""
    built, handle = fleet["fraud:2"]
    for _ in range(5):
        assert post_json(handle.port, "/predict", {"features": built.artifact.canary_row})[0] == 200
    status, page = request(handle.port, "GET", "/_latency")
    assert status == 200
    status, metrics = request(handle.port, "GET", "/metrics")
    assert status == 200
    served = latency.parse(page.decode())
    assert served.total >= 5 and served == latency.parse(metrics.decode())
    lines = page.decode().splitlines()
    prefix = 'bentoml_service_request_duration_seconds_bucket{endpoint="/predict",'
    assert lines and all(line.startswith(prefix) for line in lines), lines
