"""What a bentogate host runs, read from ``/proc``: the resident memory of what serves (each
replica, HAProxy, the bare floors) and every process of the host that is neither a Bento nor
HAProxy (issue "Performance as deployed": none but the agent, on fleet hosts, once a cutover
ends).

A process belongs to a host if anything of it points into the host's ``BENTOGATE_HOME``: its
argv, a value of its environment (the expirer gets its settings as
``BENTOGATE_CONFIG=<home>/run/expirers/settings.json``), its working directory or a file it
holds open (every child bentogate starts writes its log under ``<home>/logs``). Looking at
all four, rather than for the names of today's helpers, lists a helper added tomorrow (an
expirer, a log writer) without a change here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from bench.stack import MODEL, listeners
from bentogate.bentos import resident_bytes
from bentogate.context import Context

MIB = 2**20


def parent(pid: int) -> int | None:
    """``pid``'s parent, or None if it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def tree_tops(pids: Collection[int]) -> list[int]:
    """Those of ``pids`` whose parent is not among them: one per process tree, so that
    :func:`resident_bytes` (a process with its descendants) counts each process once."""
    return sorted(pid for pid in pids if parent(pid) not in pids)


def resident_memory(ctx: Context, bare: Mapping[str, int | None]) -> dict[str, Any]:
    """Resident MiB (a process with its children, VmRSS summed, as ``bentogate status``
    shows a replica) of each replica of the production version (BentoML's arbiter and its
    worker), of them all, of HAProxy's master and workers, and of each bare floor (``bare``:
    name → port, None for a floor not run; every process listening on the port)."""
    live = ctx.registry.production_version(MODEL)
    if live is None:
        raise RuntimeError(f"{MODEL} has no production version to measure")
    pids = [
        d.pid for d in ctx.registry.deployments(host=ctx.settings.host, model=MODEL)
        if d.version == live.version and d.pid is not None
    ]  # fmt: skip
    replicas = [_mib(held) for held in resident_bytes(pids).values()]
    master = ctx.sidecar.process.master_pid()
    figures: dict[str, Any] = {
        "replica_mib": replicas,
        "replicas_total_mib": sum(replicas),
        "haproxy_mib": _mib(resident_bytes([master])[master]) if master is not None else None,
    }
    for name, port in bare.items():
        if port is not None:
            held = resident_bytes(tree_tops(listeners(port))).values()
            figures[f"{name}_mib"] = sum(_mib(b) for b in held)
    return figures


def _mib(held: int | None) -> float:
    return float("nan") if held is None else held / MIB


def processes_of(
    home: Path, *, bentos: Iterable[int] = (), haproxy: int | None = None
) -> list[dict[str, Any]]:
    """Every live process tree of the bentogate host at ``home`` (see the module's
    docstring), one row per tree (a Bento's arbiter with its worker is one): pid, kind,
    a short name, the command and resident MiB of the tree. The kind is "bento" for a tree
    started at one of ``bentos`` (the deployments' pids), "haproxy" for ``haproxy`` (the
    master's pid), "agent" for ``bentogate agent``, else by its command (a Bento or HAProxy
    the registry does not know of, e.g. a replica adopted from a stale record) or "other".
    This process is left out; processes gone while read are skipped."""
    root = str(home.resolve())
    mine = {pid for pid in _pids() if pid != os.getpid() and _points_into_home(pid, root)}
    known = {pid: "bento" for pid in bentos} | ({haproxy: "haproxy"} if haproxy else {})
    rows = []
    for pid in tree_tops(mine):
        with contextlib.suppress(OSError):
            argv = [w.decode(errors="replace") for w in _read(pid, "cmdline").split(b"\0") if w]
            held = resident_bytes([pid])[pid]
            if held is None:
                continue  # gone meanwhile
            rows.append({"pid": pid, "kind": known.get(pid) or _kind(argv),
                         "name": short_name(argv), "command": " ".join(argv)[:200],
                         "resident_mib": held / MIB})  # fmt: skip
    return rows


def _pids() -> list[int]:
    return [int(proc.name) for proc in Path("/proc").iterdir() if proc.name.isdigit()]


def _read(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def _points_into_home(pid: int, root: str) -> bool:
    """True if ``pid``'s argv, environment, working directory or an open file names a path
    under ``root``; False for a process gone or not readable (another user's)."""
    try:
        words = _read(pid, "cmdline").split(b"\0") + _read(pid, "environ").split(b"\0")
        for word in words:
            text = word.decode(errors="replace")
            # "--home=/x", "BENTOGATE_CONFIG=/x/y", "PYTHONPATH=/a:/x": every path in it
            for value in (text, *text.split("=", 1)[1:]):
                if any(_under(part, root) for part in value.split(":")):
                    return True
        if _under(os.readlink(f"/proc/{pid}/cwd"), root):
            return True
        fds = Path(f"/proc/{pid}/fd")
        return any(_under(_link(fd), root) for fd in fds.iterdir())
    except OSError:
        return False


def _link(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:  # closed since the directory was listed
        return ""


def _kind(argv: list[str]) -> str:
    command = " ".join(argv)
    if argv and os.path.basename(argv[0]).startswith("haproxy"):
        return "haproxy"
    if "bentoml" in command and " serve" in command:
        return "bento"
    if "bentogate agent" in command or "bentogate.agent" in command:
        return "agent"
    return "other"


def short_name(argv: list[str], limit: int = 80) -> str:
    """``argv`` with every path shortened to its last part (``/x/.venv/bin/python -m
    bentogate.expirer`` → ``python -m bentogate.expirer``), at most ``limit`` characters."""
    words = [os.path.basename(w.rstrip("/")) if "/" in w else w for w in argv]
    name = " ".join(words)
    return name if len(name) <= limit else name[: limit - 1] + "…"
