"""HTTP sessions for user-supplied URLs that re-check where they actually connect.

``check_url`` at save time is not enough: a host name that resolved to a public address
then may resolve to 127.0.0.1 now (DNS rebinding), and a server may redirect anywhere.
The CalDAV and CRM adapters therefore talk through ``safe_session()``: its connections
resolve the host through the policy, refuse forbidden addresses before connecting, and
check the peer of the socket they actually opened. TLS still verifies the host name,
because only the socket is replaced.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError
from urllib3.util.connection import create_connection

from calsync.security.urls import UnsafeURL, URLPolicy


def verify_peer(policy: URLPolicy, host: str, sock: socket.socket) -> None:
    """Close ``sock`` and refuse if the address it is connected to is not allowed for host."""
    peer = sock.getpeername()[0]
    try:
        policy.check_address(host, peer)
    except UnsafeURL:
        sock.close()
        raise


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _guarded(base: type[HTTPConnection], policy: URLPolicy) -> type[HTTPConnection]:
    class GuardedConnection(base):  # type: ignore[valid-type, misc]
        def _new_conn(self) -> socket.socket:
            host = self._dns_host
            addresses = (
                [host.strip("[]")] if _is_ip_literal(host) else policy.resolver(host, self.port)
            )
            error: OSError | None = None
            for address in addresses:
                # Before connecting: never even send a SYN to a forbidden address.
                policy.check_address(host, address)
                try:
                    sock = create_connection(
                        (address, self.port),
                        self.timeout,
                        source_address=self.source_address,
                        socket_options=self.socket_options,
                    )
                except OSError as exc:
                    error = exc
                    continue
                # After connecting: the peer is what counts, whatever resolved it.
                verify_peer(policy, host, sock)
                return sock
            raise NewConnectionError(self, f"Failed to establish a new connection: {error}")

    return GuardedConnection


class GuardedAdapter(HTTPAdapter):
    """An adapter whose every connection obeys ``policy``; no proxies, no http in production."""

    def __init__(self, policy: URLPolicy, **kwargs: Any) -> None:
        self.policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        policy = self.policy

        class Pool(HTTPConnectionPool):
            ConnectionCls = _guarded(HTTPConnection, policy)

        class TLSPool(HTTPSConnectionPool):
            ConnectionCls = _guarded(HTTPSConnection, policy)

        self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(request.url or "")
        if parts.scheme == "http" and not self.policy.allow_http:
            raise UnsafeURL("calsync only uses secure (https) connections to this server.")
        if parts.username or parts.password:
            raise UnsafeURL("Leave the user name and password out of the address.")
        # A proxy would make the peer check meaningless: always connect directly.
        kwargs["proxies"] = {}
        return super().send(request, **kwargs)


def safe_session(policy: URLPolicy) -> requests.Session:
    """A ``requests.Session`` for user-supplied URLs (see the module docstring)."""
    session = requests.Session()
    session.trust_env = False  # no HTTP(S)_PROXY, no .netrc credentials sent anywhere
    adapter = GuardedAdapter(policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
