"""Client load on every fleet host's production address at once, counted per address: what
the fleet demo drives during a promotion, and the fleet tests during each fault.

    with Load([address, ...], port, source, body) as load:   one keep-alive client each
        load.versions[(address, version)]    answers per address and model version
        load.first[(address, version)]       when a version first answered there (monotonic)
        load.failed(address, ...)            each failed request, with its time
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field


@dataclass
class Load:
    """Steady client traffic on ``port`` of every address (keep-alive, one client each,
    connecting from ``source``), POSTing ``body`` to ``/predict``, counted per address:
    answers per version, when each version first answered (``time.monotonic()``), and each
    failure with its time. A request gets ``timeout_s`` to answer: a host that cannot be
    reached fails a request every ``timeout_s``."""

    addresses: list[str]
    port: int
    source: str
    body: bytes
    pause_s: float = 0.01
    timeout_s: float = 2.0
    versions: Counter[tuple[str, str]] = field(default_factory=Counter)
    first: dict[tuple[str, str], float] = field(default_factory=dict)
    failures: defaultdict[str, list[tuple[float, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for address in self.addresses:
            thread = threading.Thread(target=self._drive, args=(address,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    @property
    def total(self) -> int:
        return sum(self.versions.values())

    def answered(self, address: str) -> int:
        return sum(n for (where, _), n in self.versions.items() if where == address)

    def failed(self, *addresses: str) -> list[str]:
        """The failures on these addresses (all, if none named), with their times."""
        named = addresses or tuple(self.failures)
        return [f"{a} at {t:.1f}: {text}" for a in named for t, text in self.failures[a]]

    def _connect(self, address: str) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(
            address, self.port, timeout=self.timeout_s, source_address=(self.source, 0)
        )

    def _drive(self, address: str) -> None:
        headers = {"Content-Type": "application/json"}
        connection = self._connect(address)
        while not self._stop.is_set():
            try:
                connection.request("POST", "/predict", self.body, headers)
                response = connection.getresponse()
                payload = response.read()
                if response.status != 200:
                    self._fail(address, f"{response.status} {payload[:120]!r}")
                else:
                    key = (address, str(json.loads(payload)["model_version"]))
                    self.first.setdefault(key, time.monotonic())
                    self.versions[key] += 1
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
            except (OSError, http.client.HTTPException, ValueError) as err:
                self._fail(address, f"{type(err).__name__}: {err}")
                connection.close()
                connection = self._connect(address)
            time.sleep(self.pause_s)
        connection.close()

    def _fail(self, address: str, text: str) -> None:
        self.failures[address].append((time.monotonic(), text))
