"""The SSRF guard: may the server connect to a URL a user typed?

A user-supplied URL (a CalDAV server, a CRM's custom URL) is checked twice:

- when it is saved (``check_url``): https only (http in development), no user name or
  password in it, and every address its host resolves to must be a public one;
- when the server connects (``calsync.security.outbound``): the address actually
  connected to is checked again, because DNS may answer differently a minute later
  (DNS rebinding).

Hosts the operator names in ``CALSYNC_URL_ALLOWED_HOSTS`` (an on-premises CRM, the local
sandbox) skip the address check; the scheme rule still applies to them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# (host, port) -> the IP addresses it resolves to. Tests swap in a hosts-style table.
Resolver = Callable[[str, int], list[str]]

# Cloud metadata and platform endpoints. Most are link-local or private anyway; these two
# are not: Azure's wireserver is a public address, Alibaba's sits in CGNAT space.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack...
        "169.254.170.2",  # AWS ECS task metadata
        "168.63.129.16",  # Azure wireserver
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURL(ValueError):
    """The URL may not be used; the message says why, in words for the user."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeURL(f"The server name {host!r} could not be found. Check the URL.") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def forbidden_reason(address: str | IPAddress) -> str | None:
    """Why the server must not connect to ``address``, or None if it is a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address wrapped in IPv6 reaches the IPv4 host: judge that one.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None and ip.teredo:
            embedded = ip.teredo[1]
        if embedded is not None:
            return forbidden_reason(embedded)
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return "a carrier-grade NAT address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private network address"
    if not ip.is_global:
        return "a reserved address"
    return None


@dataclass(frozen=True)
class URLPolicy:
    """What a deployment lets the server connect to."""

    allow_http: bool = False
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    resolver: Resolver = system_resolver

    def host_is_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.allowed_hosts

    def check_address(self, host: str, address: str) -> None:
        """Refuse to connect to ``address`` (which ``host`` resolved to) unless allowed."""
        if self.host_is_allowed(host):
            return
        reason = forbidden_reason(address)
        if reason:
            raise UnsafeURL(
                f"{host} points to {reason}; calsync does not connect to internal addresses. "
                "Use the server's public address."
            )

    def check_url(self, url: str) -> str:
        """Check a URL at save time; return it normalised (no fragment, trailing space)."""
        url = url.strip()
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise UnsafeURL(
                "This is not a valid URL. Copy the address from your browser."
            ) from None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http") or not parts.hostname:
            raise UnsafeURL(
                "Enter the full address, starting with https://, e.g. https://crm.example.com."
            )
        if scheme == "http" and not self.allow_http:
            raise UnsafeURL(
                "The address must start with https://: calsync only uses secure connections."
            )
        if parts.username or parts.password:
            raise UnsafeURL("Leave the user name and password out of the address.")
        host = parts.hostname.rstrip(".")
        if host in METADATA_HOSTS:
            raise UnsafeURL(f"{host} is a cloud metadata service; calsync does not connect to it.")
        if not self.host_is_allowed(host):
            addresses = self.resolver(host, port or (443 if scheme == "https" else 80))
            if not addresses:
                raise UnsafeURL(f"The server name {host!r} could not be found. Check the URL.")
            for address in addresses:
                self.check_address(host, address)
        return parts._replace(scheme=scheme, fragment="").geturl()


def policy_for(config: object, resolver: Resolver | None = None) -> URLPolicy:
    """The policy a deployment's settings describe (``calsync.config.Config``)."""
    return URLPolicy(
        allow_http=not getattr(config, "is_production", True),
        allowed_hosts=frozenset(getattr(config, "url_allowed_hosts", frozenset())),
        resolver=resolver or system_resolver,
    )


def hosts_resolver(table: dict[str, Iterable[str]]) -> Resolver:
    """A resolver answering from a fixed table (like /etc/hosts); unknown names fail."""

    def resolve(host: str, port: int) -> list[str]:
        try:
            return list(table[host.lower()])
        except KeyError:
            raise UnsafeURL(
                f"The server name {host!r} could not be found. Check the URL."
            ) from None

    return resolve
