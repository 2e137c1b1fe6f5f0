"""Security headers fit an Office add-in: framed by Outlook's hosts and by no other site."""

from __future__ import annotations

import pytest

OFFICE_HOSTS = {
    "'self'",
    "https://outlook.office.com",
    "https://outlook.office365.com",
    "https://outlook.live.com",
    "https://outlook.cloud.microsoft",
    "https://*.cloud.microsoft",
    "https://*.office.com",
    "https://*.office365.com",
    "https://*.officeapps.live.com",
    "https://*.microsoft365.com",
    "https://*.microsoft.com",
}


def directives(reply) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    policy = reply.headers["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}


@pytest.mark.parametrize("path", ["/addin/support.html", "/api/me", "/healthz", "/nowhere"])
def test_only_office_hosts_may_frame_calsync(client, path: str) -> None:  # type: ignore[no-untyped-def]
    assert set(directives(client.get(path))["frame-ancestors"]) == OFFICE_HOSTS


def test_scripts_come_from_calsync_and_office_js_only(client) -> None:  # type: ignore[no-untyped-def]
    csp = directives(client.get("/addin/support.html"))

    assert csp["script-src"] == ["'self'", "https://appsforoffice.microsoft.com"]
    assert csp["object-src"] == ["'none'"]


def test_responses_are_not_sniffed_and_keep_their_referrer_on_site(client) -> None:  # type: ignore[no-untyped-def]
    reply = client.get("/addin/support.html")

    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Referrer-Policy"] == "same-origin"
    assert "X-Frame-Options" not in reply.headers  # it would forbid Outlook's frame


def test_api_answers_are_not_cached(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/auth/csrf").headers["Cache-Control"] == "no-store"


def test_development_sends_no_hsts(client) -> None:  # type: ignore[no-untyped-def]
    assert "Strict-Transport-Security" not in client.get("/healthz").headers


def test_only_the_api_docs_may_load_the_swagger_cdn(client) -> None:  # type: ignore[no-untyped-def]
    docs = directives(client.get("/api/docs"))
    page = directives(client.get("/addin/support.html"))

    assert "https://cdn.jsdelivr.net" in docs["script-src"]
    assert "https://cdn.jsdelivr.net" not in page["script-src"]
    assert docs["frame-ancestors"] == ["'self'"]
