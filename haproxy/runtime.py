"""The Runtime API over a unix socket (admin socket, or the master CLI).

One connection per command (HAProxy's non-interactive mode: send a line, read to EOF), a
default timeout on every call, and socket errors translated once, here, into
``HAProxyError``. Commands that answer with text on failure (``set map``, ``set server``)
are checked by their typed wrappers.
"""

from __future__ import annotations

import csv
import io
import socket
from pathlib import Path

from bentogate.errors import HAProxyError, NotFoundError

SERVER_STATES = ("ready", "drain", "maint")


class RuntimeAPI:
    """Typed commands on HAProxy's Runtime API socket."""

    def __init__(self, socket_path: Path, timeout: float = 5.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout

    def execute(self, command: str) -> str:
        """Send one command, return the whole answer.

        Raises ``HAProxyError`` if the socket cannot be reached or does not answer in time.
        """
        if "\n" in command or ";" in command:
            raise HAProxyError(f"refusing a multi-command line: {command!r}")
        chunks: list[bytes] = []
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.socket_path))
                sock.sendall(command.encode() + b"\n")
                # The master CLI answers only once the client is done sending.
                sock.shutdown(socket.SHUT_WR)
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:  # includes TimeoutError, ConnectionRefusedError
            raise HAProxyError(f"runtime API {self.socket_path}: {command!r}: {exc}") from exc
        return b"".join(chunks).decode(errors="replace")

    def _quiet(self, command: str) -> None:
        """Run a command that answers nothing (or a blank line) on success."""
        answer = self.execute(command).strip()
        if answer:
            raise HAProxyError(f"HAProxy refused {command!r}: {answer}")

    def show_info(self, worker: int | None = None) -> dict[str, str]:
        """``show info`` as a dict (e.g. ``Pid``, ``Uptime_sec``); on the master CLI, of the
        (old or current) ``worker`` given (empty once it is gone)."""
        info: dict[str, str] = {}
        command = "show info" if worker is None else f"@!{worker} show info"
        for line in self.execute(command).splitlines():
            key, sep, value = line.partition(":")
            if sep:
                info[key.strip()] = value.strip()
        return info

    def show_stat(self) -> list[dict[str, str]]:
        """``show stat``: one dict per proxy/server row, keyed by the CSV header."""
        return parse_stat_csv(self.execute("show stat"))

    def show_map(self, map_path: Path | str) -> dict[str, str]:
        """The running entries of a map (``show map <file>``): key → value.

        Raises ``NotFoundError`` if HAProxy does not know this map.
        """
        text = self.execute(f"show map {map_path}")
        if "Unknown map identifier" in text:
            raise NotFoundError(f"HAProxy has no map {map_path}: {text.strip()}")
        return parse_show_map(text)

    def set_map(self, map_path: Path | str, key: str, value: str) -> None:
        """Change an existing map entry (``set map``)."""
        self._quiet(f"set map {map_path} {key} {value}")

    def add_map(self, map_path: Path | str, key: str, value: str) -> None:
        """Add a map entry (``add map``)."""
        self._quiet(f"add map {map_path} {key} {value}")

    def add_acl(self, acl_file: Path | str, pattern: str) -> None:
        """Add ``pattern`` to the running ACL loaded from ``acl_file`` (``add acl``; the file
        itself is not changed)."""
        self._quiet(f"add acl {acl_file} {pattern}")

    def del_acl(self, acl_file: Path | str, pattern: str) -> None:
        """Remove every entry ``pattern`` from the running ACL of ``acl_file`` (``del acl``);
        none there is no error (HAProxy answers "Key not found.")."""
        answer = self.execute(f"del acl {acl_file} {pattern}").strip()
        if answer and answer != "Key not found.":
            raise HAProxyError(f"HAProxy refused 'del acl {acl_file} {pattern}': {answer}")

    def set_server_state(self, backend: str, server: str, state: str) -> None:
        """``set server <backend>/<server> state ready|drain|maint``."""
        if state not in SERVER_STATES:
            raise HAProxyError(f"unknown server state {state!r}, expected one of {SERVER_STATES}")
        self._quiet(f"set server {backend}/{server} state {state}")

    def show_servers_state(self) -> str:
        """``show servers state``: the raw text, in the format of a server-state file."""
        return self.execute("show servers state")


def parse_stat_csv(text: str) -> list[dict[str, str]]:
    """Parse ``show stat`` / ``/stats;csv`` output (header line starts with ``# ``)."""
    body = text.lstrip()
    if not body.startswith("# "):
        raise HAProxyError(f"unexpected show stat answer: {text[:200]!r}")
    reader = csv.DictReader(io.StringIO(body[2:]))
    return [{k: v for k, v in row.items() if k} for row in reader if row.get("pxname")]


def parse_show_map(text: str) -> dict[str, str]:
    """Parse ``show map`` lines ``<ref> <key> <value>``."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0].startswith("0x"):
            entries[parts[1]] = parts[2].strip()
    return entries


def parse_servers_state(text: str) -> list[dict[str, str]]:
    """Parse ``show servers state`` (version line, ``# `` header, space-separated rows)."""
    lines = text.splitlines()
    header = next((ln[2:].split() for ln in lines if ln.startswith("# ")), None)
    if header is None:
        return []
    rows = []
    for line in lines:
        fields = line.split()
        if line.startswith("#") or len(fields) != len(header):
            continue
        rows.append(dict(zip(header, fields, strict=True)))
    return rows
