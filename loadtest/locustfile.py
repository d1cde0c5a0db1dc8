"""The gate's Locust workload: open-loop POSTs of reference rows, coordinated-omission corrected.

Run in Locust's own process only (importing locust monkey-patches the interpreter with
gevent); nothing in bentogate imports this module. Three ways to use it:

* from ``bentogate.loadtest.run_gate`` (headless subprocess, ``--gate-config cfg.json``);
* by hand with the web UI: ``locust -f loadtest/locustfile.py --host http://127.0.0.1:3003
  --gate-rows rows.json --gate-version 3 --gate-rate 200 --gate-out out/``;
* master/worker: the same arguments on the master; workers get them from the master.

Schedule: every target gets ``rate`` requests a second, all the time, and the targets take
turns request by request: slot ``k`` goes to target ``k % n`` and is due at
``start + k / (n * rate)`` whatever the responses do. So candidate and live are measured
side by side at every instant, each at the full rate: a burst on the host hits both (the
gate pairs them in time, loadtest/evidence.py). Users take the next free slot, sleep until
it is due and send. ``start`` is fixed when all users are spawned (the master fixes it for
its workers and gives each worker every W-th slot). Latency runs from the *intended* send
time, or from the moment a user was free to send it when every user was busy (coordinated
omission: the target's slowness is charged to it). The event loop waking a sleeping user
late is charged too, and recorded as the generator's own lateness ``late``: the send behind
that moment (a stalled host shows there first, loadtest/evidence.py); ``lag`` is the send
behind the slot, whoever caused it. The server's own time comes from the response's
``Server-Timing: svc;dur=<ms>``.

Output (``--gate-out``): ``samples-<node>.npz`` written when the test stops (one row per
request: intended time, send lag, the generator's own lateness, latency, server time,
status, kind, target; plus a JSON
``meta`` that names the kinds and targets and holds the CPU series of this process), and
``progress-<node>.jsonl`` with one line a second while the test runs.
"""

from __future__ import annotations

import json
import os
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import numpy as np
import orjson
import psutil
from gevent.event import Event
from locust import FastHttpUser, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

FORMAT_VERSION = 4
KINDS = ("ok", "status", "connection", "wrong_version", "bad_body", "unfinished")
OK, STATUS, CONNECTION, WRONG_VERSION, BAD_BODY, UNFINISHED = range(len(KINDS))
HEADERS = {"Content-Type": "application/json"}
NAN = float("nan")
LATE_CUTOFF_S = 1.0  # a generator this far behind its schedule stops taking slots
TICK_S = 1.0


@dataclass(frozen=True)
class GateConfig:
    """What one run does; read from ``--gate-config`` or assembled from the other args."""

    targets: list[dict[str, str]]
    rows_file: str
    rate: float
    warmup_s: float
    duration_s: float
    out_dir: str
    drain_s: float

    @property
    def total_s(self) -> float:
        return self.warmup_s + self.duration_s

    @property
    def slot_rate(self) -> float:
        """Slots a second over all targets: each gets ``rate``."""
        return self.rate * len(self.targets)


@dataclass
class Plan:
    """This process's share of the global schedule and everything it measured."""

    cfg: GateConfig
    bodies: list[bytes]
    start: float = 0.0
    offset: int = 0
    stride: int = 1
    taken: int = 0
    ready: Event = field(default_factory=Event)
    intended: array = field(default_factory=lambda: array("d"))
    lag: array = field(default_factory=lambda: array("f"))
    late: array = field(default_factory=lambda: array("f"))
    latency: array = field(default_factory=lambda: array("f"))
    server: array = field(default_factory=lambda: array("f"))
    status: array = field(default_factory=lambda: array("h"))
    kind: array = field(default_factory=lambda: array("b"))
    target: array = field(default_factory=lambda: array("b"))
    in_flight: dict[int, tuple[float, float, float, int]] = field(default_factory=dict)
    cpu: list[tuple[float, float]] = field(default_factory=list)
    host: list[tuple[float, float, float, float]] = field(default_factory=list)
    cpu_warnings: int = 0
    users: int = 0
    written: bool = False

    def begin(self, start: float, offset: int = 0, stride: int = 1) -> None:
        """Fix the schedule's origin (epoch seconds) and this process's slot stream."""
        self.start, self.offset, self.stride = start, offset, stride
        self.ready.set()

    def take(self) -> int | None:
        """The next slot of this process, or None when the schedule is over (or hopeless)."""
        k = self.offset + self.stride * self.taken
        if k / self.cfg.slot_rate >= self.cfg.total_s:
            return None
        if time.time() > self.start + self.cfg.total_s + LATE_CUTOFF_S:
            return None
        self.taken += 1
        return k

    def target_of(self, k: int) -> int:
        """Targets take turns request by request."""
        return k % len(self.cfg.targets)

    def scheduled(self) -> list[int]:
        """Slots of this process per target inside the measured window."""
        first = int(np.ceil(self.cfg.warmup_s * self.cfg.slot_rate))
        last = int(np.ceil(self.cfg.total_s * self.cfg.slot_rate))
        ks = np.arange(first, last)
        ks = ks[(ks - self.offset) % self.stride == 0]
        return [int(c) for c in np.bincount(ks % len(self.cfg.targets),
                                            minlength=len(self.cfg.targets))]  # fmt: skip

    def record(
        self, t: float, lag: float, late: float, latency: float, server: float, status: int,
        kind: int, tgt: int,
    ) -> None:  # fmt: skip
        self.intended.append(t)
        self.lag.append(lag)
        self.late.append(late)
        self.latency.append(latency)
        self.server.append(server)
        self.status.append(status)
        self.kind.append(kind)
        self.target.append(tgt)


_plan: Plan | None = None
_runner: Any = None  # this process's runner, kept at init for the spawning hook


def _node_tag(environment: Environment) -> str:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return f"w{runner.worker_index}-{os.getpid()}"
    return "local"


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("bentogate gate")
    group.add_argument("--gate-config", default="", help="JSON run config written by run_gate")
    group.add_argument("--gate-rows", default="", help="JSON file: list of feature rows")
    group.add_argument("--gate-version", default="", help="expected model_version (candidate)")
    group.add_argument("--gate-live-url", default="", help="live target to interleave with")
    group.add_argument("--gate-live-version", default="", help="expected model_version (live)")
    group.add_argument("--gate-rate", type=float, default=200.0, help="target rate, req/s")
    group.add_argument("--gate-warmup", type=float, default=3.0, help="warm-up seconds")
    group.add_argument("--gate-duration", type=float, default=20.0, help="measured seconds")
    group.add_argument("--gate-drain", type=float, default=3.0, help="wait for in-flight, s")
    group.add_argument("--gate-out", default="gate-out", help="directory for samples")


def _config(environment: Environment) -> GateConfig:
    opts = environment.parsed_options
    if opts is not None and opts.gate_config:
        return GateConfig(**json.loads(Path(opts.gate_config).read_text()))
    if opts is None or not opts.gate_rows or not environment.host:
        raise ValueError("give --gate-config, or --host with --gate-rows and --gate-version")
    targets = [
        {"name": "candidate", "url": environment.host, "expected_version": opts.gate_version}
    ]
    if opts.gate_live_url:
        targets.append(
            {"name": "live", "url": opts.gate_live_url, "expected_version": opts.gate_live_version}
        )
    return GateConfig(
        targets=targets, rows_file=opts.gate_rows, rate=opts.gate_rate,
        warmup_s=opts.gate_warmup, duration_s=opts.gate_duration, out_dir=opts.gate_out,
        drain_s=opts.gate_drain,
    )  # fmt: skip


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    global _runner
    _runner = runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message("gate_schedule", _on_schedule_message)
    events.cpu_warning.add_listener(_on_cpu_warning)


def _on_cpu_warning(**_: Any) -> None:
    if _plan is not None:
        _plan.cpu_warnings += 1


def _on_schedule_message(environment: Environment, msg: Any, **_: Any) -> None:
    plan = _plan
    if plan is not None and not plan.ready.is_set():
        plan.begin(msg.data["start"], msg.data["index"], msg.data["count"])


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    global _plan
    cfg = _config(environment)
    rows = json.loads(Path(cfg.rows_file).read_text())
    _plan = Plan(cfg, [orjson.dumps({"features": row}) for row in rows])
    if GateUser.host is None:
        GateUser.host = cfg.targets[0]["url"]
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    if not isinstance(environment.runner, MasterRunner):
        gevent.spawn(_monitor, environment, _plan)


@events.spawning_complete.add_listener
def _on_spawned(user_count: int, **_: Any) -> None:
    plan, runner = _plan, _runner
    # workers get their schedule from the master, and the master ends the test
    if plan is None or plan.ready.is_set() or isinstance(runner, WorkerRunner | None):
        return
    plan.users = user_count
    if isinstance(runner, MasterRunner):
        start = time.time() + 0.5  # time for the message to reach every worker
        workers = sorted(c.id for c in runner.clients.running + runner.clients.spawning)
        for i, client_id in enumerate(workers):
            data = {"start": start, "index": i, "count": len(workers)}
            runner.send_message("gate_schedule", data, client_id=client_id)
        plan.begin(start)
    else:
        plan.begin(time.time() + 0.05)
    gevent.spawn(_stopper, runner, plan)


def _stopper(runner: Any, plan: Plan) -> None:
    """End the test once the schedule is over and in-flight requests are done (or drained)."""
    gevent.sleep(max(0.0, plan.start + plan.cfg.total_s - time.time()))
    deadline = time.time() + plan.cfg.drain_s
    while time.time() < deadline and (plan.in_flight or isinstance(runner, MasterRunner)):
        gevent.sleep(0.05)
    env = runner.environment
    opts = env.parsed_options
    if opts is not None and opts.headless:
        runner.quit()
        return
    runner.stop()  # web UI: keep it up with the results, like Locust's --run-time does
    if opts is not None and opts.autostart and opts.autoquit != -1:
        gevent.sleep(opts.autoquit)
        runner.quit()
        if env.web_ui is not None:
            env.web_ui.stop()


def _monitor(environment: Environment, plan: Plan) -> None:
    """Once a tick: CPU of this process, and a progress line (rate, p99, errors)."""
    proc = psutil.Process()
    path = Path(plan.cfg.out_dir) / f"progress-{_node_tag(environment)}.jsonl"
    seen, errors = 0, 0
    with path.open("w") as out:
        while plan is _plan and not plan.written:
            times = proc.cpu_times()
            now = time.time()
            if plan.ready.is_set():  # times are relative to the schedule's start
                plan.cpu.append((now - plan.start, times.user + times.system))
                plan.host.append((now - plan.start, *_host_seconds()))
            n = len(plan.kind)
            # slices are copies: a view would pin the arrays and forbid appends
            kinds = np.frombuffer(plan.kind[seen:n], dtype=np.int8)
            lat = np.frombuffer(plan.latency[seen:n], dtype=np.float32)[kinds == OK]
            errors += int(np.count_nonzero(kinds != OK))
            cpu = _last_cpu(plan.cpu)
            line = {
                "t": round(now - plan.start, 2) if plan.ready.is_set() else 0.0,
                "done": n, "rate": n - seen, "errors": errors, "cpu": cpu,
                "p99_ms": round(float(np.quantile(lat, 0.99)) * 1e3, 3) if lat.size else None,
            }  # fmt: skip
            out.write(json.dumps(line) + "\n")
            out.flush()
            seen = n
            gevent.sleep(TICK_S)


def _host_seconds() -> tuple[float, float, float]:
    """The host's cumulative (busy, steal, total) CPU-seconds over every CPU: a burst of
    other work, or a hypervisor running other guests, shows here and not in this process."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    # guest time is counted in user and nice already (Linux)
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    return total - idle, getattr(t, "steal", 0.0), total


def _last_cpu(series: list[tuple[float, float]]) -> float | None:
    if len(series) < 2 or series[-1][0] <= series[-2][0]:
        return None
    (t0, c0), (t1, c1) = series[-2], series[-1]
    return round((c1 - c0) / (t1 - t0), 3)


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    plan = _plan
    if plan is None or plan.written or isinstance(environment.runner, MasterRunner):
        return
    plan.written = True
    times = psutil.Process().cpu_times()
    plan.cpu.append((time.time() - plan.start, times.user + times.system))
    plan.host.append((time.time() - plan.start, *_host_seconds()))
    now = time.time()
    for t, origin, sent, tgt in plan.in_flight.values():
        plan.record(t, sent - plan.start - t, sent - plan.start - origin,
                    now - plan.start - origin, NAN, 0, UNFINISHED, tgt)  # fmt: skip
    meta = {
        "format": FORMAT_VERSION, "start": plan.start, "rate": plan.cfg.rate,
        "warmup_s": plan.cfg.warmup_s, "duration_s": plan.cfg.duration_s,
        "offset": plan.offset, "stride": plan.stride,
        "targets": [t["name"] for t in plan.cfg.targets], "kinds": list(KINDS),
        "scheduled": plan.scheduled(), "cpu": plan.cpu, "cpu_warnings": plan.cpu_warnings,
        "host": plan.host,
        "users": plan.users,
    }  # fmt: skip
    out = Path(plan.cfg.out_dir)
    tmp = out / f".samples-{_node_tag(environment)}.tmp.npz"
    np.savez(
        tmp, meta=np.array(json.dumps(meta)),
        intended=np.frombuffer(plan.intended, dtype=np.float64),
        lag=np.frombuffer(plan.lag, dtype=np.float32),
        late=np.frombuffer(plan.late, dtype=np.float32),
        latency=np.frombuffer(plan.latency, dtype=np.float32),
        server=np.frombuffer(plan.server, dtype=np.float32),
        status=np.frombuffer(plan.status, dtype=np.int16),
        kind=np.frombuffer(plan.kind, dtype=np.int8),
        target=np.frombuffer(plan.target, dtype=np.int8),
    )  # fmt: skip
    os.replace(tmp, out / f"samples-{_node_tag(environment)}.npz")


@events.quitting.add_listener
def _exit_code(environment: Environment, **_: Any) -> None:
    """Failed requests are data, not a crash; an exception in the workload is a crash."""
    runner = environment.runner
    if environment.process_exit_code is None and runner is not None:
        environment.process_exit_code = 3 if runner.exceptions else 0


def server_time(value: str | None) -> float:
    """Seconds from a ``Server-Timing`` header's ``svc`` metric (``svc;dur=0.512``, in ms);
    nan when the header or the metric is missing or unreadable."""
    if not value:
        return NAN
    for metric in value.split(","):
        name, _, params = metric.strip().partition(";")
        if name == "svc":
            for param in params.split(";"):
                key, _, number = param.strip().partition("=")
                if key == "dur":
                    try:
                        return float(number) / 1e3
                    except ValueError:
                        return NAN
    return NAN


def _classify(resp: Any, expected: str) -> int:
    if resp.status_code == 0:
        return CONNECTION
    if resp.status_code != 200:
        return STATUS
    try:
        body = orjson.loads(resp.content)
    except (orjson.JSONDecodeError, TypeError):
        return BAD_BODY
    if not isinstance(body, dict) or "score" not in body:
        return BAD_BODY
    return OK if str(body.get("model_version")) == expected else WRONG_VERSION


class GateUser(FastHttpUser):
    """Takes the next due slot of the schedule, sends it, records the corrected latency."""

    network_timeout = 10.0
    connection_timeout = 5.0
    concurrency = 2

    @task
    def send_slot(self) -> None:
        plan = _plan
        if plan is None or not plan.ready.wait(timeout=1.0):
            return
        k = plan.take()
        if k is None:
            gevent.sleep(0.2)  # schedule over: idle until the stopper ends the test
            return
        taken = time.time()
        t = k / plan.cfg.slot_rate
        gevent.sleep(max(0.0, plan.start + t - taken))
        self._send(plan, k, t, max(t, taken - plan.start))

    def _send(self, plan: Plan, k: int, t: float, origin: float) -> None:
        """Send slot ``k`` (due at ``t``); ``origin``: when a free user held it, at ``t`` or
        later (then every user was busy: coordinated omission, charged to the target)."""
        tgt = plan.target_of(k)
        target = plan.cfg.targets[tgt]
        sent = time.time()
        plan.in_flight[k] = (t, origin, sent, tgt)
        body = plan.bodies[k % len(plan.bodies)]
        with self.client.request(
            # bytes work (typed str): bodies are encoded once, not per request
            # ?from=gate: the Bento does not keep this synthetic row among its recent ones
            "POST", target["url"] + "/predict?from=gate", data=body, headers=HEADERS,  # type: ignore[arg-type]
            name=target["name"], catch_response=True,
        ) as resp:  # fmt: skip
            done = time.time()
            kind = _classify(resp, target["expected_version"])
            # Locust's own stats then show the corrected latency too.
            resp.request_meta["response_time"] = (done - plan.start - origin) * 1e3
            if kind == OK:
                resp.success()
            else:
                resp.failure(f"{KINDS[kind]} {resp.status_code}")
        del plan.in_flight[k]
        server = server_time(resp.headers.get("server-timing")) if kind == OK else NAN
        plan.record(
            t, sent - plan.start - t, sent - plan.start - origin, done - plan.start - origin,
            server, resp.status_code, kind, tgt,
        )  # fmt: skip
