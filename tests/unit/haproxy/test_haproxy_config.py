"""render(), quoting and spec validation (pure; the real binary is in the integration tests)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from bentogate import haproxy
from bentogate.errors import HAProxyError
from bentogate.haproxy import (
    ModelRoute,
    ProxyPaths,
    ProxySpec,
    Server,
    VersionBackend,
    quote,
    render,
)
from bentogate.haproxy.config import parse_map_file, render_map
from bentogate.settings import HAProxySettings

PATHS = ProxyPaths(Path("/srv/hx"))


def backend(version: str = "3", *ports: int) -> VersionBackend:
    return VersionBackend(
        model="fraud",
        version=version,
        servers=tuple(Server(f"r{i}", p) for i, p in enumerate(ports or (3003,), 1)),
        canary_body='{"features":[1e-05,-2.5E+3]}',
        expect_strings=(f'"model":"fraud","model_version":"{version}"',),
        max_body_bytes=65536,
        expect_rstring=r'"score":0\.00[0-9]+',
    )


def spec(*backends: VersionBackend, live: str | None = "3", cand: str | None = None) -> ProxySpec:
    route = ModelRoute("fraud", 10000, 10001, live, cand, backends or (backend(),))
    return ProxySpec(routes=(route,), stats_port=9901)


def test_public_api_is_exported() -> None:
    for name in haproxy.__all__:
        assert getattr(haproxy, name) is not None
    assert {"Sidecar", "RuntimeAPI", "render", "ServerStatus", "ProxySpec"} <= set(haproxy.__all__)


@pytest.mark.parametrize(
    ("value", "word"),
    [
        ('{"a":1.5e-05}', "'{\"a\":1.5e-05}'"),
        ("it's", "'it'\\''s'"),
        ("$HOME #x \\n", "'$HOME #x \\n'"),
        ("", "''"),
    ],
)
def test_quote_makes_one_literal_word(value: str, word: str) -> None:
    assert quote(value) == word


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b", "tab\there"])
def test_quote_refuses_control_characters(bad: str) -> None:
    with pytest.raises(HAProxyError, match="control character"):
        quote(bad)


def test_render_has_the_verified_building_blocks() -> None:
    cfg = render(spec(), HAProxySettings(), PATHS)
    for line in [
        "stats socket /srv/hx/admin.sock mode 600 level admin expose-fd listeners",
        "server-state-file /srv/hx/server-state",
        "hard-stop-after 30s",
        "load-server-state-from-file global",
        "option http-buffer-request",
        "option idle-close-on-response",
        "retry-on conn-failure empty-response 503",
        "option redispatch 1",
        "http-reuse safe",
        "timeout check 500ms",
        "http-request use-service prometheus-exporter if { path /metrics }",
        "stats uri /stats",
        "bind 127.0.0.1:10000",
        "bind 127.0.0.1:10001",
        "use_backend %[str(fraud),map(/srv/hx/routes.map,be_unavailable)]",
        "use_backend %[str(fraud.candidate),map(/srv/hx/routes.map,be_unavailable)]",
        "if { req.hdr_val(content-length) gt 65536 }",
        "http-check send meth POST uri /predict?from=check ver HTTP/1.1 hdr Host localhost"
        " hdr Content-Type application/json hdr X-Health-Check 1"
        " body '{\"features\":[1e-05,-2.5E+3]}'",
        "http-check expect status 200 comment",
        'http-check expect string \'"model":"fraud","model_version":"3"\' comment',
        "http-check expect rstring '\"score\":0\\.00[0-9]+' comment",
        "observe layer7 error-limit 10 on-error fail-check",
        "fall 2 rise 2 maxconn 64",
        "server r1 127.0.0.1:3003\n",
    ]:
        assert line in cfg, line
    assert "500" not in cfg.split("retry-on")[1].splitlines()[0]
    assert "shutdown-sessions" not in cfg


def _binds(cfg: str, section: str) -> list[str]:
    body = cfg.split(f"\n{section}\n")[1].split("\n\n")[0]
    return [line.strip() for line in body.splitlines() if line.strip().startswith("bind ")]


def test_the_production_port_listens_on_the_hosts_address_too_the_others_only_locally() -> None:
    cfg = render(replace(spec(), address="10.77.0.2"), HAProxySettings(), PATHS)
    assert _binds(cfg, "frontend fe_fraud") == ["bind 127.0.0.1:10000", "bind 10.77.0.2:10000"]
    assert _binds(cfg, "frontend fe_fraud_candidate") == ["bind 127.0.0.1:10001"]
    assert _binds(cfg, "frontend stats") == ["bind 127.0.0.1:9901"]
    # the default: 127.0.0.1 only, once
    assert _binds(render(spec(), HAProxySettings(), PATHS), "frontend fe_fraud") == [
        "bind 127.0.0.1:10000"
    ]


def test_each_request_is_logged_into_a_ring_of_the_size_settings_give() -> None:
    cfg = render(spec(), HAProxySettings(access_log_memory_bytes=2 << 20), PATHS)
    glob, defaults = cfg.split("\ndefaults\n")[0], cfg.split("\ndefaults\n")[1].split("\n\n")[0]
    assert "log ring@requests local0" in glob
    ring = cfg.split("\nring requests\n")[1].split("\n\n")[0]
    assert "format iso" in ring and f"size {2 << 20}" in ring
    for line in ("log global", "option httplog", "option dontlognull"):
        assert line in defaults
    stats = cfg.split("frontend stats\n")[1].split("\n\n")[0]
    assert "http-request set-log-level silent" in stats  # scrapes are no model's requests
    off = render(spec(), HAProxySettings(access_log=False), PATHS)
    assert "log ring@" not in off and "\nring " not in off
    assert "httplog" not in off and "log-level" not in off


def test_settings_flow_into_the_config() -> None:
    settings = HAProxySettings(check_inter_ms=700, check_fall=4, server_maxconn=9)
    cfg = render(spec(), settings, PATHS)
    assert "inter 700ms" in cfg and "fall 4" in cfg and "maxconn 9" in cfg


def test_each_version_gets_413_above_its_own_body_limit_with_the_default_buffer() -> None:
    small = replace(backend("3"), max_body_bytes=10)
    large = replace(backend("4", 3004), max_body_bytes=2_000_000)
    cfg = render(spec(small, large), HAProxySettings(), PATHS)
    v3 = cfg.split("backend be_fraud_3\n")[1].split("\nbackend ")[0]
    v4 = cfg.split("backend be_fraud_4\n")[1].split("\nbackend ")[0]
    assert "content-length) gt 10 }" in v3 and "content-length) gt 2000000 }" in v4
    assert "gt 10 }" not in v4
    # No whole-body buffering: a 1 MiB tune.bufsize cost 1.1 ms a request (config.py).
    assert "tune.bufsize" not in cfg and "body_size" not in cfg


def test_new_servers_are_rendered_disabled() -> None:
    cfg = render(
        spec(backend("3", 1, 2)), HAProxySettings(), PATHS, start_disabled={("be_fraud_3", "r2")}
    )
    assert "server r1 127.0.0.1:1\n" in cfg
    assert "server r2 127.0.0.1:2 disabled\n" in cfg


def test_routing_and_map_file() -> None:
    s = spec(backend("3"), backend("4"), live="3", cand="4")
    assert s.routing() == {"fraud": "be_fraud_3", "fraud.candidate": "be_fraud_4"}
    text = render_map(s.routing())
    assert text == "fraud be_fraud_3\nfraud.candidate be_fraud_4\n"
    assert parse_map_file("# c\n\n" + text) == s.routing()
    assert spec(live=None).routing() == {}


def test_backend_name_is_sanitized() -> None:
    assert backend("1.2 rc/1").backend_name == "be_fraud_1.2_rc_1"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (spec(live="9"), "live version '9' has no backend"),
        (spec(backend("a/b"), backend("a_b"), live=None), "two versions"),
        (spec(backend("3", 1, 1)), None),  # same port twice is allowed (odd but harmless)
        (ProxySpec((ModelRoute("fr aud", 1, 2, None, None, ()),), 3), "model name"),
        (ProxySpec((ModelRoute("fraud", 1, 1, None, None, ()),), 3), "share a port"),
    ],
)
def test_invalid_specs_are_refused(bad: ProxySpec, message: str | None) -> None:
    if message is None:
        render(bad, HAProxySettings(), PATHS)
        return
    with pytest.raises(HAProxyError, match=message):
        render(bad, HAProxySettings(), PATHS)


def test_sockets_move_out_of_a_deep_directory_and_unquotable_dirs_are_refused() -> None:
    # HAProxy 2.6 takes a socket path of 97 bytes and refuses 98 (`haproxy -c`, measured)
    longest = "/master.sock"
    fits = ProxyPaths(Path("/" + "x" * (97 - len(longest) - 1)))
    assert fits.master_socket == fits.directory / "master.sock"
    deep = ProxyPaths(Path("/" + "x" * (98 - len(longest) - 1)))
    assert deep.sockets.parent == Path(tempfile.gettempdir())
    assert len(str(deep.master_socket)) <= 97 and deep.admin_socket.parent == deep.sockets
    assert ProxyPaths(deep.directory).sockets == deep.sockets  # every process finds them
    assert ProxyPaths(Path("/" + "y" * 120)).sockets != deep.sockets
    with pytest.raises(HAProxyError, match="unusable"):
        ProxyPaths(Path("/srv/my dir"))
    with pytest.raises(HAProxyError, match="unusable"):
        ProxyPaths(Path("/srv/my dir"))


def test_the_hosts_own_paths_are_never_routed_to_a_bento() -> None:
    cfg = render(spec(), HAProxySettings(), PATHS)
    frontends = [s for s in cfg.split("\n\n") if s.startswith("frontend fe_")]
    assert len(frontends) == 2  # production and candidate ports
    for section in frontends:
        block = next(line for line in section.splitlines() if "path_beg /_" in line)
        assert "return status 404" in block
        assert section.index("path_beg /_") < section.index("use_backend")


def test_a_request_prefers_the_first_replica_in_service_with_room_then_leastconn() -> None:
    cfg = render(spec(backend("3", 3003, 3004)), HAProxySettings(), PATHS)
    section = cfg.split("\nbackend be_fraud_3\n")[1].split("\n\n")[0]
    rules = [line.strip() for line in section.splitlines() if "use-server" in line]
    assert rules == [
        f"use-server {r} if {{ srv_conn(be_fraud_3/{r}) lt 2 }}"
        f" {{ str(be_fraud_3/{r}) -m str -f /srv/hx/in-service.acl }}"
        for r in ("r1", "r2")
    ]
    assert "balance leastconn" in section  # when every replica is busy, and for retries
    # HAProxy runs http-request rules first whatever their place, and warns otherwise
    assert section.index("http-request") < section.index("use-server")
    # one replica too: each state change updates the ACL, which only a rule loads
    assert "use-server r1 if" in render(spec(), HAProxySettings(), PATHS)
