"""The SSRF guard refuses URLs that would make the server reach internal addresses."""

from __future__ import annotations

import pytest

from calsync.security.urls import UnsafeURL, URLPolicy, forbidden_reason, hosts_resolver

PUBLIC = "93.184.215.14"


def policy(table: dict[str, list[str]], **kwargs: object) -> URLPolicy:
    return URLPolicy(resolver=hosts_resolver(table), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "metadata"),
        ("168.63.129.16", "metadata"),
        ("100.100.100.200", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:7f00:1::", "loopback"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_internal_addresses_are_forbidden(address: str, reason: str) -> None:
    assert reason in (forbidden_reason(address) or "")


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(address) is None


def test_a_public_https_url_is_accepted() -> None:
    url = policy({"crm.example.com": [PUBLIC]}).check_url("https://crm.example.com/suite#top")

    assert url == "https://crm.example.com/suite"


def test_plain_http_is_refused_outside_development() -> None:
    with pytest.raises(UnsafeURL, match="https://"):
        policy({"crm.example.com": [PUBLIC]}).check_url("http://crm.example.com")


def test_plain_http_is_accepted_in_development() -> None:
    dev = policy({"crm.example.com": [PUBLIC]}, allow_http=True)

    assert dev.check_url("http://crm.example.com") == "http://crm.example.com"


@pytest.mark.parametrize("url", ["ftp://crm.example.com", "crm.example.com", "file:///etc/passwd"])
def test_only_web_addresses_are_accepted(url: str) -> None:
    with pytest.raises(UnsafeURL, match="full address"):
        policy({}).check_url(url)


def test_a_url_with_a_password_in_it_is_refused() -> None:
    with pytest.raises(UnsafeURL, match="user name and password"):
        policy({"crm.example.com": [PUBLIC]}).check_url("https://me:pw@crm.example.com")


def test_a_name_resolving_to_one_internal_address_among_public_ones_is_refused() -> None:
    mixed = policy({"crm.example.com": [PUBLIC, "10.0.0.7"]})

    with pytest.raises(UnsafeURL, match="private network"):
        mixed.check_url("https://crm.example.com")


@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1/", "https://[::1]/", "https://[::ffff:127.0.0.1]/", "https://2130706433/"],
)
def test_internal_ip_literals_are_refused(url: str) -> None:
    # The real resolver: literals resolve without DNS, decimal ones included.
    with pytest.raises(UnsafeURL, match="loopback"):
        URLPolicy().check_url(url)


def test_cloud_metadata_names_are_refused_without_a_lookup() -> None:
    with pytest.raises(UnsafeURL, match="metadata"):
        policy({}).check_url("https://metadata.google.internal/computeMetadata/v1/")


def test_an_unknown_name_is_refused() -> None:
    with pytest.raises(UnsafeURL, match="could not be found"):
        policy({}).check_url("https://nowhere.example.com")


def test_a_host_on_the_operators_allow_list_may_be_internal() -> None:
    onprem = policy({"crm.corp": ["10.0.0.7"]}, allowed_hosts=frozenset({"crm.corp"}))

    assert onprem.check_url("https://crm.corp/") == "https://crm.corp/"


def test_the_allow_list_still_requires_https_in_production() -> None:
    onprem = policy({"crm.corp": ["10.0.0.7"]}, allowed_hosts=frozenset({"crm.corp"}))

    with pytest.raises(UnsafeURL, match="https://"):
        onprem.check_url("http://crm.corp/")
