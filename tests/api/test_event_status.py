"""The task pane next to a calendar event: is this event synced with a CRM meeting?"""

from __future__ import annotations

import pytest
from api_helpers import Browser
from connect_helpers import store_connection, store_run
from flask import Flask

from calsync.db import transaction
from calsync.models import EventLink

ITEM = "AAMkAGI2TG93AAA="  # an Outlook REST item id


@pytest.fixture
def connected(app: Flask, member: Browser) -> Browser:
    store_connection(app, member.user["id"], "calendar", provider="office365")  # type: ignore[index]
    store_connection(
        app,
        member.user["id"],  # type: ignore[index]
        "crm",
        details={"server_url": "https://crm.example.com/legacy", "api": "v4_1"},
    )
    return member


def link(app: Flask, user_id: int, **values: str | None) -> None:
    defaults = {
        "link_id": "link-1",
        "calendar_item_id": ITEM,
        "crm_record_id": "6f1c-meeting",
        "origin_side": "calendar",
    }
    with transaction(app.extensions["calsync"].sessions) as db:
        db.add(EventLink(user_id=user_id, **{**defaults, **values}))


def status(b: Browser, item_id: str = ITEM) -> dict:  # type: ignore[type-arg]
    reply = b.get("/api/events/status", query_string={"item_id": item_id})
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()  # type: ignore[no-any-return]


def test_a_synced_event_names_its_crm_meeting_and_where_to_open_it(
    app: Flask, connected: Browser
) -> None:
    link(app, connected.user["id"])  # type: ignore[index]

    answer = status(connected)

    assert answer["synced"] is True
    assert answer["crm_record_id"] == "6f1c-meeting"
    assert answer["crm_url"] == (
        "https://crm.example.com/legacy/index.php?module=Meetings&action=DetailView"
        "&record=6f1c-meeting"
    )
    assert answer["reason"] is None


def test_an_event_not_linked_yet_says_why(connected: Browser) -> None:
    answer = status(connected)

    assert answer["synced"] is False and answer["crm_record_id"] is None
    assert "not linked to a CRM meeting" in answer["reason"]


def test_an_event_being_copied_is_not_synced_yet(app: Flask, connected: Browser) -> None:
    link(app, connected.user["id"], crm_record_id=None, pending_side="crm")  # type: ignore[index]

    answer = status(connected)

    assert answer["synced"] is False
    assert answer["reason"] == "calsync is copying this event; the next sync finishes it."


def test_without_a_calendar_the_reason_says_to_connect_it(member: Browser) -> None:
    answer = status(member)

    assert answer["synced"] is False
    assert answer["reason"].startswith("Connect your calendar first")


def test_the_latest_sync_run_is_shown_beside_the_event(app: Flask, connected: Browser) -> None:
    user = connected.user["id"]  # type: ignore[index]
    store_run(app, user, status="failed")
    latest = store_run(app, user, status="succeeded")
    store_run(app, user, kind="cleanup")

    answer = status(connected)

    assert answer["last_run"]["id"] == latest


def test_another_users_link_does_not_make_my_event_synced(
    app: Flask, admin: Browser, connected: Browser
) -> None:
    link(app, admin.user["id"])  # type: ignore[index]

    assert status(connected)["synced"] is False
