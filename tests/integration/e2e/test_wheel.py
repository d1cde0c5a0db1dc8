"""The README's first command, `bentogate demo`, as a user of the wheel runs it: bentogate built
into a wheel from this checkout, installed with its dependencies into a new virtual environment
outside it, and run from there in its own process with the default settings (only the ports
moved to a free block, the state to a temporary home). The suite's one demo run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hosts import leftovers, port_layout
from machine import Machine

from bentogate.context import Context
from bentogate.settings import BentoSettings, Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
# As ./run installs bentogate: the Bento's pinned serving requirements constrain the rest.
CONSTRAINTS = ROOT / "bentos" / "requirements-serve.txt"
INSTALL_TIMEOUT_S = 900  # every dependency, from the pip cache at best, on two cores


def _source(directory: Path) -> Path:
    """The checkout's files as git sees them (tracked, and new ones not ignored) copied into
    ``directory``, links as links: a wheel built in the checkout itself would also take what
    an earlier build left in its build/ (files deleted since)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source, target = ROOT / name, directory / name
        if not (source.is_symlink() or source.is_file()):
            continue  # deleted in the checkout, not yet in git
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copyfile(source, target)
    return directory


def _wheel(source: Path, out_dir: Path) -> Path:
    """Build bentogate's wheel from ``source`` with this environment's setuptools (no
    network); returns its path."""
    build = ["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out_dir)]
    subprocess.run([sys.executable, "-m", "pip", *build, str(source)], check=True, timeout=300)
    (wheel,) = out_dir.glob("bentogate-*.whl")
    return wheel


def _install(venv: Path, wheel: Path) -> None:
    """A new virtual environment at ``venv`` with ``wheel`` and its dependencies installed;
    skips the test if the install fails because the package index cannot be reached."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    # --no-compile: what runs is byte-compiled as it is imported, not all of it up front
    done = subprocess.run(
        [*pip, "install", "-q", "--no-compile", "-c", str(CONSTRAINTS), str(wheel)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    if done.returncode == 0:
        return
    fetch = ["download", "-q", "--no-deps", "--no-cache-dir", "-d", str(venv / "probe")]
    probe = subprocess.run(  # any small package, past every cache
        [*pip, *fetch, "click"], capture_output=True, text=True, timeout=120
    )
    if probe.returncode != 0:
        pytest.skip(f"the package index cannot be reached: {probe.stderr.strip()[-500:]}")
    pytest.fail(f"installing the wheel failed:\n{done.stderr[-3000:]}")


def _check_installed(venv: Path, env: dict[str, str], cwd: Path) -> None:
    """What the wheel installed: files (not links) under one import name, ``bentogate``, and
    the Bento source it builds from among them."""
    (record,) = venv.glob("lib/python*/site-packages/bentogate-*.dist-info/RECORD")
    paths = [line.split(",")[0] for line in record.read_text().splitlines() if line]
    tops = {p.split("/")[0] for p in paths if not p.startswith("..")}  # ../../bin: scripts
    assert tops - {record.parent.name} == {"bentogate"}
    package = record.parent.parent / "bentogate"
    assert [p for p in package.rglob("*") if p.is_symlink()] == []
    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import bentogate.context as c; print(c.PROJECT_DIR)"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()) == package / "_bento"


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 900)
def test_the_installed_wheel_takes_v2_live_through_the_gate_and_leaves_nothing_running(
    tmp_path: Path, port_block: Callable[[int], int], machine: Machine
) -> None:
    venv = tmp_path / "venv"
    _install(venv, _wheel(_source(tmp_path / "source"), tmp_path / "dist"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BENTOGATE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    _check_installed(venv, env, cwd=tmp_path)
    home = tmp_path / "home"
    ports = port_layout(port_block(16), models=1)
    base = ports["production_start"]
    env["BENTOGATE_HOME"] = str(home)
    env.update({f"BENTOGATE_PORTS__{key.upper()}": str(port) for key, port in ports.items()})
    # The demo gates v2 at the default policy, whose absolute client-side limits (p99 25 ms)
    # another worker's load test can push into "inconclusive", as it can on any busy host:
    # the demo runs as on a user's quiet host, the other workers waiting. (Holding the machine
    # whole only for the demo's gates, through a hook in the wheel's venv that converted this
    # test's inherited hold, gained nothing measurable: 15.3 and 15.8 min against 13.5, 14.3
    # and 16.7 without, the same code's runs spreading that much; this test's shared hold
    # still kept every other worker's gate waiting for the whole demo.)
    with machine.alone():
        done = subprocess.run(
            [venv / "bin" / "bentogate", "demo", "--workdir", str(tmp_path / "demo")],
            cwd=tmp_path,  # outside the checkout: no bentogate.toml of it applies, nothing of it
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"fraud:1 is live on port {base}" in done.stderr
    assert f"fraud:2 is live on port {base}" in done.stderr
    # The status table closes the output: v2 live and v1 warm, each on the default number
    # of replicas (one per core), each with its memory.
    lines = done.stdout.strip().splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:2] == ["production_port", "model"])
    assert lines[at].split()[:4] == ["production_port", "model", "version", "role"]
    assert lines[at].split()[-1] == "memory_mb"
    rows = [r.split() for r in lines[at + 1 :]]
    assert sorted(tuple(r[1:4]) for r in rows) == sorted(
        [("fraud", "2", "live"), ("fraud", "1", "previous")] * BentoSettings().replica_count()
    )
    assert all(float(r[-1]) > 50 for r in rows), rows  # a Bento's MB: interpreter, model
    assert (tmp_path / "demo" / "example.json").is_file()  # what the README curls
    ctx = Context(Settings(home=home, ports=ports))
    try:
        live = ctx.registry.production_version("fraud")
        assert live is not None and live.version == "2"
        assert [r.verdict for r in ctx.registry.gate_runs("fraud", "2")] == ["pass"]
        assert ctx.registry.deployments(host=ctx.settings.host) == []  # shut down
        assert not ctx.sidecar.is_running()
        # one machine named four people: their sign-offs are recorded as unauthenticated
        assert "named, not authenticated" in done.stderr
        sign_offs = [e for e in ctx.registry.audit("fraud", "2") if e.action == "approve"]
        assert [(e.actor, e.authenticated) for e in sign_offs] == [("ana.approver", False)]
        ok, _, message = ctx.registry.verify_audit()  # and anchored by signed checkpoints
        assert ok and "signed checkpoints verified" in message, message
    finally:
        ctx.close()
    # Nothing of it runs: no Bento, no haproxy, no warm-version expirer.
    assert leftovers(home) == []
