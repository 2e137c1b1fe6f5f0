"""The "Connections" page: the calendar (CalDAV by hand) and the CRM credentials.

CalDAV against a real Radicale, the CRM against the SuiteCRM emulator; the consent-page
providers are in test_calendar_oauth.py.
"""

from __future__ import annotations

import pytest
from api_helpers import Browser, error_of
from connect_helpers import (  # noqa: F401 - fixtures
    CRM_PASSWORD,
    CRM_USER,
    choose_crm,
    env,
    store_connection,
    suitecrm,
)
from flask import Flask
from sqlalchemy import select

from calendars.conftest import RadicaleServer, new_calendar, radicale  # noqa: F401 - fixture
from calsync.calendars.caldav import CaldavCalendar, DiscoveredCalendar
from calsync.db import transaction
from calsync.models import Connection, SyncState
from calsync.sandbox.suitecrm import SuiteCrmEmulator


def caldav_account(server: RadicaleServer, **changes: str) -> dict[str, str]:
    return {
        "server_url": server.url,
        "username": server.username,
        "password": server.password,
        **changes,
    }


def connect_caldav(b: Browser, server: RadicaleServer, calendar_url: str):  # type: ignore[no-untyped-def]
    return b.post(
        "/api/connections/calendar/caldav",
        json=caldav_account(server, calendar_url=calendar_url),
    )


def stored(app: Flask, user_id: int, kind: str) -> Connection | None:
    with transaction(app.extensions["calsync"].sessions) as db:
        return db.scalars(
            select(Connection).where(Connection.user_id == user_id, Connection.kind == kind)
        ).one_or_none()


# -- the page ----------------------------------------------------------------------------------


def test_the_calendar_dropdown_offers_outlook_office_365_google_and_caldav(
    member: Browser,
) -> None:
    providers = member.get("/api/connections").get_json()["calendar_providers"]

    assert providers == [
        {"key": "outlook", "label": "Outlook", "method": "oauth", "two_way": True},
        {"key": "office365", "label": "Office 365", "method": "oauth", "two_way": True},
        {"key": "google", "label": "Google", "method": "oauth", "two_way": True},
        {"key": "caldav", "label": "CalDAV server", "method": "manual", "two_way": False},
    ]


def test_nothing_is_connected_before_the_user_connects(member: Browser) -> None:
    page = member.get("/api/connections").get_json()

    assert page["calendar"] is None
    assert page["crm_connection"] is None
    assert page["crm_info"] == {"type": None, "label": None, "needs_url": False, "url": None}


def test_the_page_shows_the_crm_and_custom_url_the_administrator_chose(
    admin: Browser, member: Browser
) -> None:
    choose_crm(admin, "https://crm.example.com/")

    info = member.get("/api/connections").get_json()["crm_info"]

    assert info == {
        "type": "suitecrm",
        "label": "SuiteCRM",
        "needs_url": True,
        "url": "https://crm.example.com/",
    }


def test_caldav_presets_fill_in_icloud_fastmail_and_nextcloud(member: Browser) -> None:
    presets = member.get("/api/connections/calendar/caldav/presets").get_json()

    assert [(p["key"], p["label"], p["server_url"]) for p in presets] == [
        ("icloud", "iCloud", "https://caldav.icloud.com/"),
        ("fastmail", "Fastmail", "https://caldav.fastmail.com/"),
        ("nextcloud", "Nextcloud", "https://HOST/remote.php/dav/"),
    ]
    assert all(p["hint"] for p in presets)


# -- CalDAV ------------------------------------------------------------------------------------


def test_caldav_discovery_lists_the_accounts_calendars(
    member: Browser,
    radicale: RadicaleServer,  # noqa: F811
) -> None:
    url = new_calendar(radicale, "Sales meetings")

    reply = member.post("/api/connections/calendar/caldav/discover", json=caldav_account(radicale))

    assert reply.status_code == 200, reply.get_json()
    assert {"url": url, "name": "Sales meetings"} in reply.get_json()["calendars"]


def test_caldav_discovery_stores_nothing(
    app: Flask,
    member: Browser,
    radicale: RadicaleServer,  # noqa: F811
) -> None:
    new_calendar(radicale)

    member.post("/api/connections/calendar/caldav/discover", json=caldav_account(radicale))

    assert stored(app, member.user["id"], "calendar") is None  # type: ignore[index]


def test_caldav_with_a_wrong_password_says_the_server_refused_it(
    member: Browser,
    radicale: RadicaleServer,  # noqa: F811
) -> None:
    reply = member.post(
        "/api/connections/calendar/caldav/discover",
        json=caldav_account(radicale, password="not the password"),
    )

    assert reply.status_code == 400
    assert error_of(reply)["message"] == "The server refused this user name and password."


def test_caldav_at_an_address_that_is_not_caldav_says_so(
    member: Browser,
    suitecrm: SuiteCrmEmulator,  # noqa: F811
) -> None:
    reply = member.post(
        "/api/connections/calendar/caldav/discover",
        json={"server_url": suitecrm.url, "username": "a", "password": "b"},
    )

    assert reply.status_code == 400
    assert "does not answer like a CalDAV server" in error_of(reply)["message"]


def test_caldav_at_an_internal_address_is_refused_before_connecting(member: Browser) -> None:
    # The test hosts table resolves this name to 10.1.2.3, a private address.
    reply = member.post(
        "/api/connections/calendar/caldav/discover",
        json={"server_url": "https://intranet.example.com/dav/", "username": "a", "password": "b"},
    )

    error = error_of(reply)
    assert reply.status_code == 400
    assert "internal addresses" in error["message"]
    assert error["fields"] == {"server_url": error["message"]}


def test_caldav_connect_stores_the_chosen_calendar(
    member: Browser,
    radicale: RadicaleServer,  # noqa: F811
) -> None:
    url = new_calendar(radicale, "Work")

    reply = connect_caldav(member, radicale, url)

    assert reply.status_code == 201, reply.get_json()
    conn = reply.get_json()
    assert conn["provider"] == "caldav" and conn["provider_label"] == "CalDAV server"
    assert conn["account"] == radicale.username
    assert conn["status"] == "connected"
    assert conn["status_message"] == 'Connected to the calendar "Work" on 127.0.0.1.'
    assert conn["details"] == {
        "server_url": radicale.url,
        "calendar_url": url,
        "calendar_name": "Work",
    }
    assert member.get("/api/connections").get_json()["calendar"] == conn


def test_caldav_connect_keeps_the_password_encrypted_and_never_shows_it(
    app: Flask,
    member: Browser,
    radicale: RadicaleServer,  # noqa: F811
) -> None:
    reply = connect_caldav(member, radicale, new_calendar(radicale))

    with app.extensions["calsync"].engine.connect() as connection:
        raw = connection.exec_driver_sql("SELECT secret, details FROM connections").one()
    assert radicale.password not in "".join(map(str, raw))
    assert radicale.password not in reply.get_data(as_text=True)
    assert radicale.password not in member.get("/api/connections").get_data(as_text=True)
    assert stored(app, member.user["id"], "calendar").secret == {"password": radicale.password}  # type: ignore[index, union-attr]


def test_caldav_connect_replaces_the_calendar_connected_before(
    app: Flask,
    member: Browser,
    radicale: RadicaleServer,  # noqa: F811
) -> None:
    connect_caldav(member, radicale, new_calendar(radicale, "Old"))

    reply = connect_caldav(member, radicale, new_calendar(radicale, "New"))

    assert reply.status_code == 201
    assert stored(app, member.user["id"], "calendar").details["calendar_name"] == "New"  # type: ignore[index, union-attr]


def test_connecting_another_calendar_makes_the_next_sync_list_everything(
    app: Flask,
    member: Browser,
    radicale: RadicaleServer,  # noqa: F811
) -> None:
    connect_caldav(member, radicale, new_calendar(radicale, "Old"))
    with transaction(app.extensions["calsync"].sessions) as db:
        db.add(SyncState(user_id=member.user["id"], calendar_cursor="sync:1", crm_cursor="c"))  # type: ignore[index]

    connect_caldav(member, radicale, new_calendar(radicale, "New"))

    with transaction(app.extensions["calsync"].sessions) as db:
        state = db.scalars(select(SyncState)).one()
        assert (state.calendar_cursor, state.crm_cursor) == (None, "c")


def test_caldav_connect_refuses_a_calendar_the_account_does_not_have(
    app: Flask,
    member: Browser,
    radicale: RadicaleServer,  # noqa: F811
) -> None:
    new_calendar(radicale)

    reply = connect_caldav(member, radicale, "https://elsewhere.example.com/cal/")

    assert reply.status_code == 400
    assert error_of(reply)["fields"].keys() == {"calendar_url"}
    assert stored(app, member.user["id"], "calendar") is None  # type: ignore[index]


def test_missing_caldav_details_are_named_as_the_user_sees_them(member: Browser) -> None:
    reply = member.post("/api/connections/calendar/caldav/discover", json={"username": "a"})

    error = error_of(reply)
    assert reply.status_code == 422
    assert '"Server URL" is required.' in error["message"]
    assert '"Password" is required.' in error["message"]
    assert set(error["fields"]) == {"server_url", "password"}


def test_connect_attempts_are_rate_limited(member: Browser) -> None:
    attempt = {"server_url": "https://intranet.example.com/", "username": "a", "password": "b"}
    replies = [
        member.post("/api/connections/calendar/caldav/discover", json=attempt).status_code
        for _ in range(11)
    ]

    assert replies[:10] == [400] * 10
    assert replies[10] == 429


# -- Enable automatic calendar sync, disconnecting ------------------------------------------


def test_enable_automatic_calendar_sync_turns_it_on_and_off(app: Flask, member: Browser) -> None:
    store_connection(app, member.user["id"], "calendar")  # type: ignore[index]

    on = member.patch("/api/connections/calendar", json={"auto_sync_enabled": True})
    off = member.patch("/api/connections/calendar", json={"auto_sync_enabled": False})

    assert on.status_code == 200 and on.get_json()["auto_sync_enabled"] is True
    assert off.get_json()["auto_sync_enabled"] is False
    assert stored(app, member.user["id"], "calendar").auto_sync_enabled is False  # type: ignore[index, union-attr]


def test_enable_automatic_calendar_sync_needs_a_connected_calendar(member: Browser) -> None:
    reply = member.patch("/api/connections/calendar", json={"auto_sync_enabled": True})

    assert reply.status_code == 404
    assert error_of(reply)["message"].startswith("Connect your calendar first")


def test_enable_automatic_calendar_sync_must_be_true_or_false(member: Browser) -> None:
    reply = member.patch("/api/connections/calendar", json={"auto_sync_enabled": "sometimes"})

    assert reply.status_code == 422
    assert '"Enable automatic calendar sync" must be true or false.' in error_of(reply)["message"]


def test_disconnecting_the_calendar_keeps_the_crm(app: Flask, member: Browser) -> None:
    store_connection(app, member.user["id"], "calendar")  # type: ignore[index]
    store_connection(app, member.user["id"], "crm")  # type: ignore[index]

    reply = member.delete("/api/connections/calendar")

    page = member.get("/api/connections").get_json()
    assert reply.status_code == 204
    assert page["calendar"] is None and page["crm_connection"] is not None


def test_disconnecting_the_crm_keeps_the_calendar(app: Flask, member: Browser) -> None:
    store_connection(app, member.user["id"], "calendar")  # type: ignore[index]
    store_connection(app, member.user["id"], "crm")  # type: ignore[index]

    reply = member.delete("/api/connections/crm")

    page = member.get("/api/connections").get_json()
    assert reply.status_code == 204
    assert page["crm_connection"] is None and page["calendar"] is not None


def test_disconnecting_affects_only_my_own_connection(
    app: Flask, admin: Browser, member: Browser
) -> None:
    store_connection(app, admin.user["id"], "calendar")  # type: ignore[index]

    member.delete("/api/connections/calendar")

    assert stored(app, admin.user["id"], "calendar") is not None  # type: ignore[index]


# -- the CRM -----------------------------------------------------------------------------------


def test_crm_credentials_are_tested_and_stored(
    admin: Browser,
    member: Browser,
    suitecrm: SuiteCrmEmulator,  # noqa: F811
) -> None:
    choose_crm(admin, suitecrm.url)

    reply = member.put(
        "/api/connections/crm", json={"user_name": CRM_USER, "password": CRM_PASSWORD}
    )

    assert reply.status_code == 200, reply.get_json()
    conn = reply.get_json()
    assert (conn["kind"], conn["provider"], conn["provider_label"]) == (
        "crm",
        "suitecrm",
        "SuiteCRM",
    )
    assert conn["account"] == CRM_USER
    assert conn["status_message"] == (
        f"Connected to SuiteCRM at {suitecrm.url} through the REST v4_1 API."
    )
    assert conn["details"] == {"server_url": suitecrm.url, "api": "v4_1"}
    assert member.get("/api/connections").get_json()["crm_connection"] == conn


def test_crm_credentials_are_never_shown_again(
    app: Flask,
    admin: Browser,
    member: Browser,
    suitecrm: SuiteCrmEmulator,  # noqa: F811
) -> None:
    choose_crm(admin, suitecrm.url)
    member.put("/api/connections/crm", json={"user_name": CRM_USER, "password": CRM_PASSWORD})

    secret = stored(app, member.user["id"], "crm").secret  # type: ignore[index, union-attr]
    page = member.get("/api/connections").get_data(as_text=True)

    assert secret["password_md5"] not in page and CRM_PASSWORD not in page


def test_crm_credentials_the_crm_refuses_are_not_stored(
    app: Flask,
    admin: Browser,
    member: Browser,
    suitecrm: SuiteCrmEmulator,  # noqa: F811
) -> None:
    choose_crm(admin, suitecrm.url)

    reply = member.put("/api/connections/crm", json={"user_name": CRM_USER, "password": "wrong"})

    assert reply.status_code == 400
    assert "SuiteCRM" in error_of(reply)["message"]
    assert stored(app, member.user["id"], "crm") is None  # type: ignore[index]


def test_crm_credentials_before_the_administrator_chose_a_crm_are_refused(
    member: Browser,
) -> None:
    reply = member.put("/api/connections/crm", json={"user_name": "a", "password": "b"})

    assert reply.status_code == 409
    assert error_of(reply)["message"] == "Your administrator has not chosen a CRM yet."


def test_dynamics_365_cannot_be_connected_with_a_password(admin: Browser, member: Browser) -> None:
    choose_crm(admin, "https://org.crm4.dynamics.com/", crm_type="dynamics")

    reply = member.put("/api/connections/crm", json={"user_name": "a", "password": "b"})

    assert reply.status_code == 409
    assert "Sign in with Microsoft" in error_of(reply)["message"]


def test_a_crm_address_that_is_not_the_crm_points_to_the_administrators_custom_url(
    admin: Browser,
    member: Browser,
    radicale: RadicaleServer,  # noqa: F811
) -> None:
    choose_crm(admin, radicale.url)

    reply = member.put("/api/connections/crm", json={"user_name": "a", "password": "b"})

    assert reply.status_code == 502
    assert "not like SuiteCRM" in error_of(reply)["message"]
    assert error_of(reply)["message"].endswith('as the "Custom URL".')


def test_a_calendar_the_server_places_at_an_internal_address_is_refused(
    app: Flask, member: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server may name its calendars on another host; that host is checked like the server.
    internal = DiscoveredCalendar("https://intranet.example.com/cal/", "Work")
    monkeypatch.setattr(CaldavCalendar, "discover_calendars", lambda self: [internal])

    reply = member.post(
        "/api/connections/calendar/caldav",
        json={
            "server_url": "https://crm.example.com/dav/",
            "username": "a",
            "password": "b",
            "calendar_url": internal.url,
        },
    )

    assert reply.status_code == 400
    assert "internal addresses" in error_of(reply)["fields"]["calendar_url"]
    assert stored(app, member.user["id"], "calendar") is None  # type: ignore[index]
