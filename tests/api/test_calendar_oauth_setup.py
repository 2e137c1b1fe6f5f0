"""Consent-page providers on a server whose administrator has not set them up."""

from __future__ import annotations

from api_helpers import Browser, error_of


def test_outlook_without_microsoft_settings_tells_the_administrator_what_to_set(
    member: Browser,
) -> None:
    reply = member.post("/api/connections/calendar/oauth", json={"provider": "outlook"})

    assert reply.status_code == 503
    assert error_of(reply)["message"] == (
        "Outlook sign-in is not set up on this server: the administrator must set "
        "MICROSOFT_CLIENT_ID and MICROSOFT_CLIENT_SECRET."
    )


def test_google_without_google_settings_tells_the_administrator_what_to_set(
    member: Browser,
) -> None:
    reply = member.post("/api/connections/calendar/oauth", json={"provider": "google"})

    assert reply.status_code == 503
    assert "GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET" in error_of(reply)["message"]


def test_a_callback_without_a_connection_attempt_goes_back_with_an_error(
    member: Browser,
) -> None:
    reply = member.get("/api/connections/calendar/oauth/callback?code=abc&state=xyz")

    assert reply.status_code == 302
    assert reply.headers["Location"].startswith("/addin/autosync.html?error=")
