"""Render the whole haproxy.cfg and the routes map from a spec (pure functions).

Choices verified against the real haproxy 2.6.12 (see tests/integration/haproxy):

- one frontend per model port; the backend comes from ONE map file, so a cutover is a
  ``set map`` (no reload); an unrouted key falls to ``be_unavailable`` (fast 503);
- one backend per model version, health-checked by POSTing the canary and expecting 200
  plus the version's identity strings; each expect carries a ``comment`` that shows up in
  ``show stat``'s ``last_chk``;
- servers HAProxy does not run yet are rendered ``disabled``: 2.6 has no ``init-state`` and
  a new server counts as UP before its first check; the sidecar moves them to ``drain``
  (checked, no traffic) and to ``ready`` after L7OK;
- one log line per request (``option httplog``: frontend, backend/server, timers, status,
  bytes, termination state), kept by HAProxy in a ring in its memory and saved to the
  request log by whoever reloads or stops it (:mod:`bentogate.haproxy.ring`); the stats
  frontend logs nothing;
- config words are single-quoted (literal in HAProxy, ``'`` spelled ``'\\''``), so JSON bodies
  and regexes need no other escaping.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

from bentogate.errors import HAProxyError
from bentogate.settings import HAProxySettings

from .ring import RING
from .spec import (
    LOCAL,
    UNAVAILABLE_BACKEND,
    ModelRoute,
    ProxyPaths,
    ProxySpec,
    VersionBackend,
    frontend_name,
    route_key,
    validate,
)

_HEADER = "# Rendered by bentogate from the governance DB. Do not edit: the next apply replaces it."
_MAXCONN = 4096


def quote(value: str) -> str:
    """One HAProxy config word holding exactly ``value``.

    Single quotes make everything literal (no ``\\``, ``$`` or ``#`` processing); a ``'`` is
    closed, escaped and reopened, as in a shell. Raises ``HAProxyError`` for control
    characters, which a config line cannot carry.
    """
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise HAProxyError(f"control character in a HAProxy config value: {value!r}")
    return "'" + value.replace("'", "'\\''") + "'"


def render_map(routing: dict[str, str]) -> str:
    """The routes map file: one ``<key> <backend>`` line per routed key, sorted."""
    return "".join(f"{key} {backend}\n" for key, backend in sorted(routing.items()))


def parse_map_file(text: str) -> dict[str, str]:
    """The entries of a map file (blank lines and ``#`` comments skipped)."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and not parts[0].startswith("#"):
            entries[parts[0]] = parts[1]
    return entries


def render(
    spec: ProxySpec,
    settings: HAProxySettings,
    paths: ProxyPaths,
    *,
    start_disabled: Collection[tuple[str, str]] = (),
) -> str:
    """The complete haproxy.cfg for ``spec``.

    ``start_disabled`` holds ``(backend, server)`` pairs rendered ``disabled`` (new servers,
    see the module docstring). With ``settings.access_log``, each request is
    logged into HAProxy's ring (:mod:`bentogate.haproxy.ring`). Raises ``HAProxyError`` if
    the spec is invalid.
    """
    validate(spec)
    logging = settings.access_log
    sections = [
        _global(settings, paths, logging),
        *([_ring(settings)] if logging else []),
        _defaults(settings, logging),
        _stats(spec.stats_port, logging),
        *(_frontends(route, paths.map_file, spec) for route in spec.routes),
        _unavailable(),
        *(_backend(b, settings, paths, start_disabled) for b in spec.backends()),
    ]
    return _HEADER + "\n\n" + "\n".join(sections)


def _section(title: str, lines: Iterable[str]) -> str:
    return title + "\n" + "".join(f"    {line}\n" for line in lines)


def _global(settings: HAProxySettings, paths: ProxyPaths, logging: bool) -> str:
    log = [f"log ring@{RING} local0"] if logging else []
    return _section(
        "global",
        [
            # expose-fd: a reload hands the listening sockets to the new worker (no refusal).
            f"stats socket {paths.admin_socket} mode 600 level admin expose-fd listeners",
            "stats timeout 30s",
            f"server-state-file {paths.state_file}",
            f"hard-stop-after {settings.hard_stop_after_s}s",
            f"maxconn {_MAXCONN}",
            *log,
        ],
    )


def _ring(settings: HAProxySettings) -> str:
    # The time each line was written, then the message (format iso): server state changes
    # have no other time of their own. maxlen: a longer line (a long URI) is cut, not lost.
    return _section(
        f"ring {RING}",
        [
            'description "request log"',
            "format iso",
            "maxlen 2048",
            f"size {settings.access_log_memory_bytes}",
        ],
    )


def _defaults(settings: HAProxySettings, logging: bool) -> str:
    # Connections that never sent a request (port probes) are not requests: not logged.
    log = ["log global", "option httplog", "option dontlognull"] if logging else []
    return _section(
        "defaults",
        [
            "mode http",
            *log,
            "load-server-state-from-file global",
            # A body that fits the buffer (HAProxy's default 16 KiB: a one-row body is ~4 KiB)
            # is read before the server is chosen, so a POST can be retried. No larger buffer:
            # one of 1 MiB to measure whole batches cost 1.1 ms on every request (serial p50
            # through HAProxy 1.9 ms vs 0.8 ms with 16 KiB, one run, 2 cores).
            "option http-buffer-request",
            # After a reload, old workers close idle keep-alive connections after a response.
            "option idle-close-on-response",
            "option redispatch 1",
            "retries 2",
            # Never on 500: a poison input would be replayed on every replica.
            "retry-on conn-failure empty-response 503",
            "http-reuse safe",
            f"timeout connect {settings.timeout_connect_ms}ms",
            f"timeout client {settings.timeout_client_ms}ms",
            f"timeout server {settings.timeout_server_ms}ms",
            f"timeout check {settings.timeout_check_ms}ms",
            # Queued (server maxconn reached) requests wait as long as a response may take.
            f"timeout queue {settings.timeout_server_ms}ms",
            f"timeout http-request {min(10000, settings.timeout_client_ms)}ms",
        ],
    )


def _stats(port: int, logging: bool) -> str:
    # Scrapes and the stats page are no model's requests.
    silent = ["http-request set-log-level silent"] if logging else []
    return _section(
        "frontend stats",
        [
            f"bind {LOCAL}:{port}",
            *silent,
            "http-request use-service prometheus-exporter if { path /metrics }",
            "stats enable",
            "stats uri /stats",
            "stats refresh 5s",
        ],
    )


_HOST_ONLY = quote('{"error":"not found"}')


def _frontends(route: ModelRoute, mapping: Path, spec: ProxySpec) -> str:
    parts = []
    # The candidate port is gated from the host itself: never served to the network.
    binds = {
        "live": spec.production_binds(route.production_port),
        "candidate": (f"{LOCAL}:{route.candidate_port}",),
    }
    for role, where in binds.items():
        name = frontend_name(route.model, role)
        key = route_key(route.model, role)
        lines = [
            *(f"bind {address}" for address in where),
            # Paths under /_ are the host's own (a Bento's kept recent rows): never routed.
            f"http-request return status 404 content-type application/json string {_HOST_ONLY}"
            " if { path_beg /_ }",
            f"use_backend %[str({key}),map({mapping},{UNAVAILABLE_BACKEND})]",
            f"default_backend {UNAVAILABLE_BACKEND}",
        ]
        parts.append(_section(f"frontend {name}", lines))
    return "\n".join(parts)


def _unavailable() -> str:
    body = quote('{"error":"no model version is routed to this port"}')
    return _section(
        f"backend {UNAVAILABLE_BACKEND}",
        [f"http-request return status 503 content-type application/json string {body}"],
    )


def _health_check(backend: VersionBackend) -> list[str]:
    send = (
        # The query string marks it as no client's: a Bento does not keep its row.
        "http-check send meth POST uri /predict?from=check ver HTTP/1.1 hdr Host localhost"
        " hdr Content-Type application/json hdr X-Health-Check 1"
        f" body {quote(backend.canary_body)}"
    )
    lines = [
        "option httpchk",
        send,
        "http-check expect status 200 comment " + quote("the canary prediction did not answer 200"),
    ]
    # show stat's last_chk keeps 127 characters, HAProxy's own prefix included: the reason
    # comes first, the detail after it.
    for text in backend.expect_strings:
        why = f"wrong model or version: the canary response lacks {text}"
        lines.append(f"http-check expect string {quote(text)} comment {quote(why)}")
    if backend.expect_rstring is not None:
        why = f"wrong model or version: the canary response does not match {backend.expect_rstring}"
        pattern = quote(backend.expect_rstring)
        lines.append(f"http-check expect rstring {pattern} comment {quote(why)}")
    return lines


def _body_limit(limit: int) -> list[str]:
    """413 above the version's own limit (the Bento's): one rule, two places cannot disagree.
    HAProxy judges the Content-Length (no buffering needed); a chunked body has none and
    is streamed to the Bento, which stops reading it at the same limit and answers 413."""
    too_large = "http-request return status 413 content-type application/json string " + quote(
        f'{{"error":"request body larger than {limit} bytes"}}'
    )
    return [
        f"{too_large} if {{ req.hdr_val(content-length) gt {limit} }}",
    ]


def in_service_entry(backend: str, server: str) -> str:
    """The line of :attr:`ProxyPaths.in_service_file` that puts ``server`` in service."""
    return f"{backend}/{server}"


# A replica with fewer requests than this in flight takes the next one before any replica
# after it in the backend's order (:func:`_first_replica_with_room`).
PREFER_BELOW_IN_FLIGHT = 2


def _first_replica_with_room(backend: VersionBackend, in_service: Path) -> list[str]:
    """A request goes to the first replica, in the backend's order, that is in service and
    has fewer than :data:`PREFER_BELOW_IN_FLIGHT` requests in flight; only when none has
    does ``leastconn`` choose.

    ``leastconn`` alone alternates idle replicas, so at a low rate each request meets a
    process whose caches the other one's requests have not warmed (≈ 90 µs of serial p50
    on this model: bench/README.md, "Routing to a hot replica"). Under load, a replica
    that is already awake with one request takes a second for less CPU than an idle one
    is woken for: with the first replica taking requests until two are in flight, rather
    than only while idle, the host spent 8-9 % less CPU per request at 3,000 and 8,000
    req/s with p99 no higher; up to three in flight saved more but queued enough behind
    one process to lift p99 1.8x at 8,000 req/s (bench/README.md, "A second request for a
    replica that is awake"). "In service" is the ``in_service`` ACL (servers set
    ``ready``; :mod:`.cutover` keeps it in step): HAProxy skips a DOWN or ``maint``
    server in a ``use-server`` rule but not one in ``drain``, and a new replica is in
    ``drain`` until its first passed check. The rules choose the first attempt only: a
    retry (``option redispatch 1``) is balanced by ``leastconn`` away from the server
    that failed. Rendered for one replica too: every server's state change updates the
    ACL, which HAProxy knows only if a rule loads it."""
    name = backend.backend_name
    return [
        f"use-server {s.name} if {{ srv_conn({name}/{s.name}) lt {PREFER_BELOW_IN_FLIGHT} }}"
        f" {{ str({in_service_entry(name, s.name)}) -m str -f {in_service} }}"
        for s in backend.servers
    ]


def _backend(
    backend: VersionBackend,
    settings: HAProxySettings,
    paths: ProxyPaths,
    start_disabled: Collection[tuple[str, str]],
) -> str:
    name = backend.backend_name
    server_defaults = (
        f"default-server check inter {settings.check_inter_ms}ms"
        f" fastinter {settings.check_fastinter_ms}ms downinter {settings.check_inter_ms}ms"
        f" fall {settings.check_fall} rise {settings.check_rise}"
        f" maxconn {settings.server_maxconn}"
        # fail-check, not mark-down: a burst of 5xx from one poison input must not take the
        # replica out at once; the next real check decides.
        " observe layer7 error-limit 10 on-error fail-check"
    )
    lines = [
        "balance leastconn",
        *_body_limit(backend.max_body_bytes),
        *_first_replica_with_room(backend, paths.in_service_file),
        *_health_check(backend),
        server_defaults,
    ]
    for server in backend.servers:
        disabled = " disabled" if (name, server.name) in start_disabled else ""
        lines.append(f"server {server.name} 127.0.0.1:{server.port}{disabled}")
    return _section(f"backend {name}", lines)
