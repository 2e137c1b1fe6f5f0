"""Connections to user-supplied URLs check the address they actually reach (DNS rebinding)."""

from __future__ import annotations

import socket

import pytest
import requests
from werkzeug.wrappers import Response

from calsync.security.outbound import safe_session, verify_peer
from calsync.security.urls import UnsafeURL, URLPolicy, hosts_resolver

PUBLIC = "93.184.215.14"


def ok(_request):  # type: ignore[no-untyped-def]
    return Response("hello")


def test_a_name_that_rebinds_to_loopback_after_the_save_check_is_not_connected_to(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(ok)
    hosts = {"crm.rebind.test": [PUBLIC]}
    policy = URLPolicy(allow_http=True, resolver=hosts_resolver(hosts))
    url = policy.check_url(f"http://crm.rebind.test:{server.port}/")  # accepted at save time
    hosts["crm.rebind.test"] = ["127.0.0.1"]  # the attacker's DNS now answers loopback

    with pytest.raises(UnsafeURL, match="loopback"):
        safe_session(policy).get(url, timeout=5)
    assert server.requests == []


def test_an_allowed_host_is_reached_over_a_real_socket(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(ok)
    policy = URLPolicy(
        allow_http=True,
        allowed_hosts=frozenset({"crm.local.test"}),
        resolver=hosts_resolver({"crm.local.test": ["127.0.0.1"]}),
    )

    reply = safe_session(policy).get(f"http://crm.local.test:{server.port}/ping", timeout=5)

    assert reply.text == "hello"
    assert server.requests == ["/ping?"]


def test_a_redirect_to_an_internal_address_is_not_followed(serve) -> None:  # type: ignore[no-untyped-def]
    internal = serve(ok)
    allowed = serve(lambda _r: Response(status=302, headers={"Location": f"{internal.url}/secret"}))
    policy = URLPolicy(
        allow_http=True,
        allowed_hosts=frozenset({"crm.local.test"}),
        resolver=hosts_resolver({"crm.local.test": ["127.0.0.1"]}),
    )

    with pytest.raises(UnsafeURL, match="loopback"):
        safe_session(policy).get(f"http://crm.local.test:{allowed.port}/", timeout=5)
    assert internal.requests == []


def test_plain_http_is_refused_by_a_production_session(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(ok)
    policy = URLPolicy(
        allowed_hosts=frozenset({"crm.local.test"}),
        resolver=hosts_resolver({"crm.local.test": ["127.0.0.1"]}),
    )

    with pytest.raises(UnsafeURL, match="https"):
        safe_session(policy).get(f"http://crm.local.test:{server.port}/", timeout=5)
    assert server.requests == []


def test_the_session_ignores_proxy_settings_from_the_environment(monkeypatch, serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(ok)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    policy = URLPolicy(
        allow_http=True,
        allowed_hosts=frozenset({"crm.local.test"}),
        resolver=hosts_resolver({"crm.local.test": ["127.0.0.1"]}),
    )

    reply = safe_session(policy).get(f"http://crm.local.test:{server.port}/", timeout=5)

    assert reply.status_code == 200


def test_a_socket_connected_to_a_forbidden_peer_is_closed(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(ok)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)

    with pytest.raises(UnsafeURL, match="loopback"):
        verify_peer(URLPolicy(), "crm.example.com", sock)
    assert sock.fileno() == -1  # closed


def test_an_unreachable_public_address_is_an_ordinary_connection_error() -> None:
    # A closed port on an allowed host: requests' own error, not a security refusal.
    policy = URLPolicy(
        allow_http=True,
        allowed_hosts=frozenset({"down.local.test"}),
        resolver=hosts_resolver({"down.local.test": ["127.0.0.1"]}),
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(requests.ConnectionError):
        safe_session(policy).get(f"http://down.local.test:{port}/", timeout=5)
