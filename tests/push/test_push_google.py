"""Google Calendar through the same design: a watch channel opened, renewed and stopped.

calsync.connections has no Google opener yet (the Google connect flow is being written),
so these tests register one for the emulator the way connections.py opens Graph.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from calendars.google_fixtures import connect, google_adapter, google_session, new_account
from calsync import connections, push
from calsync.db import transaction
from calsync.models import Connection, utcnow
from calsync.sandbox.google import GoogleEmulator


@pytest.fixture(scope="module")
def google() -> Iterator[GoogleEmulator]:
    with GoogleEmulator(seed=29, tls=True) as emu:
        yield emu


@pytest.fixture
def google_calendar(rt, mailbox, google, monkeypatch) -> str:  # type: ignore[no-untyped-def]
    """Turns the user's calendar connection into a Google account of the emulator."""
    address = new_account(google)
    http = google_session(google)
    blob = connect(google, http, address)

    def open_google(details: Any, secret: Any, config: Any) -> connections.Opened:
        return connections.Opened(google_adapter(google, google_session(google), dict(secret)))

    monkeypatch.setitem(connections._CALENDAR_OPENERS, "google", open_google)
    with transaction(rt.sessions) as session:
        connection = session.get(Connection, mailbox.connection_id)
        connection.provider, connection.account, connection.secret = "google", address, blob
    return address


def channels(emu: GoogleEmulator, address: str) -> list[Any]:
    return [c for c in emu._channels.values() if c.calendar == address.lower()]


def test_a_google_calendar_gets_a_watch_channel_on_the_webhook(
    rt, mailbox, google, google_calendar, live_server
) -> None:  # type: ignore[no-untyped-def]
    report = push.renew_push_channels(rt)
    google.wait_for_notifications()

    assert report.created == 1
    [channel] = channels(google, google_calendar)
    stored = mailbox.channel(rt)
    assert (stored.provider, stored.channel_id) == ("google", channel.id)
    assert channel.address == f"{live_server.url}/webhooks/google"
    # The "sync" handshake reached the webhook and queued nothing.
    assert google.notification_log[-1]["status"] == 200
    assert mailbox.runs(rt) == []


def test_a_change_in_the_google_calendar_queues_a_sync(
    rt, mailbox, google, google_calendar
) -> None:  # type: ignore[no-untyped-def]
    [event_id] = google.bulk_insert(
        google_calendar,
        [
            {
                "summary": "Call",
                "start": {"dateTime": "2030-01-01T10:00:00Z"},
                "end": {"dateTime": "2030-01-01T11:00:00Z"},
            }
        ],
    )
    push.renew_push_channels(rt)
    google.wait_for_notifications()

    google.change_event(google_calendar, event_id, {"summary": "Call (moved)"})
    google.wait_for_notifications()

    assert google.notification_log[-1]["status"] == 200
    assert [r.trigger for r in mailbox.runs(rt)] == ["push"]


def test_renewing_a_google_channel_opens_a_new_one_and_stops_the_old(
    rt, mailbox, google, google_calendar
) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)
    old = mailbox.channel(rt)

    report = push.renew_push_channels(rt, now=old.expires_at - timedelta(minutes=30))

    assert report.renewed == 1
    [channel] = channels(google, google_calendar)
    assert mailbox.channel(rt).channel_id == channel.id != old.channel_id


def test_turning_automatic_sync_off_stops_the_google_channel(
    rt, mailbox, google, google_calendar
) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)
    mailbox.update(rt, auto_sync_enabled=False)

    push.renew_push_channels(rt, now=utcnow())

    assert channels(google, google_calendar) == []
    assert mailbox.channel(rt) is None
