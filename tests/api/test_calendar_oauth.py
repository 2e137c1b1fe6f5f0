"""Connecting Outlook, Office 365 and Google through the provider's consent page.

The Graph emulator (over TLS: msal refuses a plain-http authority) stands in for
Microsoft's login host and Graph, as MICROSOFT_AUTHORITY_HOST lets a development
deployment do. The browser's trip to the consent page is a plain request to the
emulator, which consents at once and redirects back to our callback.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import requests
from api_helpers import Browser
from flask import Flask
from sqlalchemy import select

from calendars.graph_fixtures import graph_emulator  # noqa: F401 - fixture
from calsync.connections import open_calendar
from calsync.db import transaction
from calsync.models import Connection
from calsync.sandbox.graph import GraphEmulator
from calsync.sync.adapters import Window

START = "/api/connections/calendar/oauth"
CALLBACK = "/api/connections/calendar/oauth/callback"
REFUSED = "You did not grant calsync access to your calendar. Click Connect to try again."


@pytest.fixture
def env(
    env: dict[str, str],
    graph_emulator: GraphEmulator,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    assert graph_emulator.ca_file
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", graph_emulator.ca_file)  # the server's msal
    return {
        **env,
        "MICROSOFT_CLIENT_ID": "calsync-test-app",
        "MICROSOFT_CLIENT_SECRET": "calsync-test-secret",
        "MICROSOFT_AUTHORITY_HOST": graph_emulator.url,
    }


@pytest.fixture
def mailbox(member: Browser, graph_emulator: GraphEmulator) -> Iterator[str]:  # noqa: F811
    # Office 365 signs in with the address the user has in calsync (login_hint).
    address = member.user["email"]  # type: ignore[index]
    graph_emulator.add_mailbox(address, "Bob")
    yield address


def consent(emu: GraphEmulator, authorize_url: str) -> dict[str, str]:
    """The browser's trip to the consent page: the query our callback receives."""
    reply = requests.get(authorize_url, allow_redirects=False, verify=emu.ca_file, timeout=10)
    assert reply.status_code == 302, reply.text
    location = urlsplit(reply.headers["Location"])
    assert location.path == CALLBACK
    return dict(parse_qsl(location.query))


def start(b: Browser, provider: str = "office365") -> str:
    reply = b.post(START, json={"provider": provider})
    assert reply.status_code == 200, reply.get_json()
    return str(reply.get_json()["authorize_url"])


def back(b: Browser, query: dict[str, str]) -> dict[str, list[str]]:
    """Call the callback; return the Automatic sync page's query it redirects to."""
    reply = b.get(CALLBACK, query_string=query)
    assert reply.status_code == 302
    location = urlsplit(reply.headers["Location"])
    assert location.path == "/addin/autosync.html"
    return parse_qs(location.query)


def calendar_of(app: Flask, user_id: int) -> Connection | None:
    with transaction(app.extensions["calsync"].sessions) as db:
        return db.scalars(
            select(Connection).where(Connection.user_id == user_id, Connection.kind == "calendar")
        ).one_or_none()


def test_connect_sends_the_browser_to_microsofts_consent_page(
    member: Browser,
    graph_emulator: GraphEmulator,  # noqa: F811
) -> None:
    url = urlsplit(start(member, "outlook"))
    query = parse_qs(url.query)

    assert f"{url.scheme}://{url.netloc}" == graph_emulator.url
    assert url.path == "/consumers/oauth2/v2.0/authorize"
    assert query["state"][0] and query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [f"http://localhost:3000{CALLBACK}"]


def test_office_365_consent_connects_the_calendar(
    member: Browser,
    mailbox: str,
    graph_emulator: GraphEmulator,  # noqa: F811
) -> None:
    outcome = back(member, consent(graph_emulator, start(member)))

    assert outcome == {"connected": ["calendar"]}
    conn = member.get("/api/connections").get_json()["calendar"]
    assert (conn["provider"], conn["provider_label"]) == ("office365", "Office 365")
    assert conn["account"] == mailbox
    assert conn["status"] == "connected"
    assert conn["status_message"] == f"Connected to Office 365 as {mailbox}."
    assert conn["details"] == {}  # the emulator's addresses are for the worker only


def test_a_connected_microsoft_calendar_opens_for_the_worker(
    app: Flask,
    member: Browser,
    mailbox: str,
    graph_emulator: GraphEmulator,  # noqa: F811
) -> None:
    back(member, consent(graph_emulator, start(member)))
    connection = calendar_of(app, member.user["id"])  # type: ignore[index]
    assert connection is not None

    adapter = open_calendar(connection, app.extensions["calsync"].config).adapter
    now = datetime.now(UTC)
    page = adapter.list_changes(None, Window(now - timedelta(days=1), now + timedelta(days=7)))

    assert page is not None
    assert "msal_cache" in connection.secret


def test_a_replayed_consent_redirect_stores_nothing(
    app: Flask,
    member: Browser,
    mailbox: str,
    graph_emulator: GraphEmulator,  # noqa: F811
) -> None:
    query = consent(graph_emulator, start(member))
    back(member, query)
    member.delete("/api/connections/calendar")

    outcome = back(member, query)

    assert "expired or was already used" in outcome["error"][0]
    assert calendar_of(app, member.user["id"]) is None  # type: ignore[index]


def test_a_consent_redirect_with_a_forged_state_stores_nothing(
    app: Flask,
    member: Browser,
    mailbox: str,
    graph_emulator: GraphEmulator,  # noqa: F811
) -> None:
    query = consent(graph_emulator, start(member))

    outcome = back(member, {**query, "state": "forged"})

    assert "Click Connect to try again." in outcome["error"][0]
    assert calendar_of(app, member.user["id"]) is None  # type: ignore[index]


def test_a_consent_redirect_meant_for_another_browser_stores_nothing(
    app: Flask,
    admin: Browser,
    member: Browser,
    mailbox: str,
    graph_emulator: GraphEmulator,  # noqa: F811
) -> None:
    query = consent(graph_emulator, start(member))

    outcome = back(admin, query)

    assert "error" in outcome
    assert calendar_of(app, admin.user["id"]) is None  # type: ignore[index]


def test_a_refused_consent_says_the_user_did_not_grant_access(
    app: Flask,
    member: Browser,
    graph_emulator: GraphEmulator,  # noqa: F811
) -> None:
    state = parse_qs(urlsplit(start(member)).query)["state"][0]
    refusal: dict[str, Any] = {
        "error": "access_denied",
        "error_description": "AADSTS65004: User declined to consent to access the app.",
        "state": state,
    }

    outcome = back(member, refusal)

    assert outcome == {"error": [REFUSED]}
    assert calendar_of(app, member.user["id"]) is None  # type: ignore[index]


def test_an_unknown_provider_is_refused(member: Browser) -> None:
    reply = member.post(START, json={"provider": "yahoo"})

    assert reply.status_code == 422
    assert '"Provider" must be one of' in reply.get_json()["error"]["message"]
