"""What every calendar provider promises the sync engine (the CalendarAdapter contract).

Each test runs once per provider in `calendar_provider` (conftest.py), against the real
server or a faithful emulator, never a mock. A provider passing this module can be handed
to `run_sync`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from calsync.calendars import ProviderAuthError
from calsync.sync import (
    ChangePage,
    CursorExpired,
    Event,
    Invitee,
    MovedOccurrence,
    Recurrence,
    Window,
    content_hash,
)

NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW = Window(NOW - timedelta(days=30), NOW + timedelta(days=180))
BERLIN = ZoneInfo("Europe/Berlin")


def _next_monday_at(hour: int, zone: ZoneInfo = BERLIN) -> datetime:
    day = (NOW + timedelta(days=7 - NOW.weekday())).date()
    return datetime(day.year, day.month, day.day, hour, tzinfo=zone).astimezone(UTC)


def meeting(title: str = "Pipeline review", **changes: object) -> Event:
    start = _next_monday_at(9)
    fields: dict[str, object] = {
        "title": title,
        "start": start,
        "end": start + timedelta(hours=1),
        "timezone": "Europe/Berlin",
        "location": "Room 4",
        "description": "Quarterly numbers",
        "organizer": "alice@example.com",
        "invitees": (Invitee("bob@example.com", "Bob Baker", "accepted"),),
    }
    fields.update(changes)
    return Event(**fields)  # type: ignore[arg-type]


def as_stored(provider, event: Event) -> Event:  # type: ignore[no-untyped-def]
    """The event as this provider can keep it when written silently: some make the account's
    owner the organizer of everything written to it, and some cannot hold attendees without
    emailing them. The engine sees exactly this read back; anything else must survive."""
    changes: dict[str, object] = {}
    if provider.organizer_is_the_owner:
        changes["organizer"] = provider.owner
    if not provider.keeps_silent_attendees:
        changes["invitees"] = ()
    return replace(event, **changes)  # type: ignore[arg-type]


def listed(page: ChangePage) -> dict[str, Event]:
    assert page.next_page_token is None, "tests use calendars small enough for one page"
    return {e.calendar_id: e for e in page.events if e.calendar_id}


def test_discovery_offers_the_connected_calendar(calendar_provider):
    urls = [c.url for c in calendar_provider.adapter.discover_calendars()]
    assert calendar_provider.calendar_url in urls


def test_wrong_password_is_an_auth_error_asking_to_reconnect(calendar_provider):
    adapter = calendar_provider.with_wrong_password()
    # With a stale cursor too: the password problem must not pass for an expired cursor.
    with pytest.raises(ProviderAuthError) as caught:
        adapter.list_changes(calendar_provider.stale_cursor(), WINDOW)
    assert caught.value.connection_status == "needs_reconnect"
    assert not isinstance(caught.value, CursorExpired)


def test_full_listing_of_an_empty_calendar_has_no_events_and_a_cursor(calendar_provider):
    page = calendar_provider.adapter.list_changes(None, WINDOW)
    assert list(page.events) == [] and list(page.deleted_ids) == []
    assert page.next_cursor


def test_full_listing_returns_every_event_in_the_window(calendar_provider):
    adapter = calendar_provider.adapter
    a = adapter.create(meeting("A"), link_id="link-full-a", notify=False)
    b = adapter.create(meeting("B"), link_id="link-full-b", notify=False)
    events = listed(adapter.list_changes(None, WINDOW))
    assert {events[a.calendar_id].title, events[b.calendar_id].title} == {"A", "B"}


def test_full_listing_leaves_out_events_far_outside_the_window(calendar_provider):
    adapter = calendar_provider.adapter
    old_start = WINDOW.start - timedelta(days=400)
    old = adapter.create(
        meeting("Ancient", start=old_start, end=old_start + timedelta(hours=1)),
        link_id="link-ancient",
        notify=False,
    )
    assert old.calendar_id not in listed(adapter.list_changes(None, WINDOW))


def test_incremental_listing_after_a_full_one_holds_only_what_changed(calendar_provider):
    adapter = calendar_provider.adapter
    adapter.create(meeting("Before"), link_id="link-before", notify=False)
    cursor = adapter.list_changes(None, WINDOW).next_cursor
    after = adapter.create(meeting("After"), link_id="link-after", notify=False)
    page = adapter.list_changes(cursor, WINDOW)
    assert list(listed(page)) == [after.calendar_id]
    assert page.next_cursor


def test_incremental_listing_without_changes_is_empty(calendar_provider):
    adapter = calendar_provider.adapter
    adapter.create(meeting(), link_id="link-quiet", notify=False)
    cursor = adapter.list_changes(None, WINDOW).next_cursor
    page = adapter.list_changes(cursor, WINDOW)
    assert list(page.events) == [] and list(page.deleted_ids) == []


def test_created_single_event_reads_back_with_the_same_content(calendar_provider):
    event = meeting(private=True)
    written = calendar_provider.adapter.create(event, link_id="link-single", notify=False)
    assert written.calendar_id and written.calendar_version
    assert written.link_id == "link-single"
    expected = content_hash(as_stored(calendar_provider, event))
    assert content_hash(written) == expected
    assert content_hash(calendar_provider.adapter.get(written.calendar_id)) == expected


def test_all_day_event_is_stored_as_dates_not_midnights(calendar_provider):
    day = _next_monday_at(9).date()
    event = Event(title="Trade fair", start=day, end=day + timedelta(days=2))
    written = calendar_provider.adapter.create(event, link_id="link-all-day", notify=False)
    read = calendar_provider.adapter.get(written.calendar_id)
    assert read.all_day
    assert (read.start, read.end) == (day, day + timedelta(days=2))
    assert type(read.start) is date


def test_nine_oclock_in_berlin_round_trips_exactly(calendar_provider):
    start = datetime(2026, 1, 12, 9, 0, tzinfo=BERLIN)  # winter: 08:00 UTC
    event = Event(
        title="Stand-up",
        start=start.astimezone(UTC),
        end=(start + timedelta(minutes=15)).astimezone(UTC),
        timezone="Europe/Berlin",
    )
    written = calendar_provider.adapter.create(event, link_id="link-berlin", notify=False)
    read = calendar_provider.adapter.get(written.calendar_id)
    assert read.timezone == "Europe/Berlin"
    assert read.start == datetime(2026, 1, 12, 8, 0, tzinfo=UTC)
    assert read.start.astimezone(BERLIN).hour == 9


def test_weekly_series_keeps_its_moved_and_cancelled_occurrences(calendar_provider):
    first = _next_monday_at(9)
    second, third = first + timedelta(weeks=1), first + timedelta(weeks=2)
    series = meeting(
        "Weekly sync",
        start=first,
        end=first + timedelta(hours=1),
        recurrence=Recurrence(
            rrule="FREQ=WEEKLY;COUNT=6;BYDAY=MO",
            cancelled=(second,),
            moved=(
                MovedOccurrence(
                    original_start=third,
                    start=third + timedelta(days=1, hours=2),
                    end=third + timedelta(days=1, hours=3),
                ),
            ),
        ),
    )
    written = calendar_provider.adapter.create(series, link_id="link-series", notify=False)
    read = calendar_provider.adapter.get(written.calendar_id)
    assert read.recurrence is not None
    assert read.recurrence.rrule == "FREQ=WEEKLY;COUNT=6;BYDAY=MO"
    assert read.recurrence.cancelled == (second,)
    assert read.recurrence.moved == series.recurrence.moved
    assert content_hash(read) == content_hash(as_stored(calendar_provider, series))


def test_all_day_series_keeps_its_date_exceptions(calendar_provider):
    day = _next_monday_at(9).date()
    series = Event(
        title="Office day",
        start=day,
        end=day + timedelta(days=1),
        recurrence=Recurrence(
            rrule="FREQ=WEEKLY;COUNT=5",
            cancelled=(day + timedelta(weeks=1),),
            moved=(
                MovedOccurrence(
                    original_start=day + timedelta(weeks=2),
                    start=day + timedelta(weeks=2, days=1),
                    end=day + timedelta(weeks=2, days=2),
                ),
            ),
        ),
    )
    written = calendar_provider.adapter.create(series, link_id="link-day-series", notify=False)
    read = calendar_provider.adapter.get(written.calendar_id)
    assert read.recurrence == series.recurrence
    assert content_hash(read) == content_hash(as_stored(calendar_provider, series))


def test_a_series_that_began_before_the_window_is_listed_when_it_recurs_into_it(
    calendar_provider,
):
    begun = WINDOW.start - timedelta(days=365)
    series = Event(
        title="Weekly since last year",
        start=begun,
        end=begun + timedelta(hours=1),
        recurrence=Recurrence(rrule="FREQ=WEEKLY"),
    )
    written = calendar_provider.adapter.create(series, link_id="link-long-series", notify=False)
    assert written.calendar_id in listed(calendar_provider.adapter.list_changes(None, WINDOW))


def test_change_by_another_client_shows_in_the_incremental_listing(calendar_provider):
    adapter = calendar_provider.adapter
    written = adapter.create(meeting("Draft"), link_id="link-retitled", notify=False)
    cursor = adapter.list_changes(None, WINDOW).next_cursor
    calendar_provider.retitle_behind(written.calendar_id, "Final")
    events = listed(adapter.list_changes(cursor, WINDOW))
    assert events[written.calendar_id].title == "Final"
    assert events[written.calendar_id].calendar_version != written.calendar_version


def test_deletion_by_another_client_shows_as_a_deleted_id(calendar_provider):
    adapter = calendar_provider.adapter
    written = adapter.create(meeting(), link_id="link-deleted-behind", notify=False)
    cursor = adapter.list_changes(None, WINDOW).next_cursor
    calendar_provider.delete_behind(written.calendar_id)
    page = adapter.list_changes(cursor, WINDOW)
    assert list(page.deleted_ids) == [written.calendar_id]
    assert adapter.get(written.calendar_id) is None


def test_delete_removes_the_event_and_shows_as_a_deletion(calendar_provider):
    adapter = calendar_provider.adapter
    written = adapter.create(meeting(), link_id="link-deleted", notify=False)
    cursor = adapter.list_changes(None, WINDOW).next_cursor
    adapter.delete(written.calendar_id, notify=False)
    assert adapter.get(written.calendar_id) is None
    assert list(adapter.list_changes(cursor, WINDOW).deleted_ids) == [written.calendar_id]


def test_deleting_an_event_already_gone_is_not_an_error(calendar_provider):
    adapter = calendar_provider.adapter
    written = adapter.create(meeting(), link_id="link-gone-twice", notify=False)
    adapter.delete(written.calendar_id, notify=False)
    adapter.delete(written.calendar_id, notify=False)


def test_update_changes_the_event_and_its_version(calendar_provider):
    adapter = calendar_provider.adapter
    written = adapter.create(meeting("Old title"), link_id="link-updated", notify=False)
    updated = adapter.update(written.calendar_id, meeting("New title"), notify=False)
    assert updated.calendar_id == written.calendar_id
    assert updated.calendar_version != written.calendar_version
    assert adapter.get(written.calendar_id).title == "New title"


def test_refused_cursor_raises_cursor_expired(calendar_provider):
    with pytest.raises(CursorExpired):
        calendar_provider.adapter.list_changes(calendar_provider.stale_cursor(), WINDOW)


def test_unreadable_cursor_raises_cursor_expired(calendar_provider):
    with pytest.raises(CursorExpired):
        calendar_provider.adapter.list_changes("not a cursor of ours", WINDOW)


def test_retried_create_with_the_same_link_id_does_not_double(calendar_provider):
    adapter = calendar_provider.adapter
    first = adapter.create(meeting(), link_id="link-retried", notify=False)
    again = adapter.create(meeting(), link_id="link-retried", notify=False)
    assert again.calendar_id == first.calendar_id
    assert len(listed(adapter.list_changes(None, WINDOW))) == 1


def test_find_by_link_id_finds_our_create(calendar_provider):
    adapter = calendar_provider.adapter
    written = adapter.create(meeting(), link_id="link-findable", notify=False)
    found = adapter.find_by_link_id("link-findable")
    assert found is not None and found.calendar_id == written.calendar_id
    assert adapter.find_by_link_id("link-never-created") is None


def test_get_of_an_unknown_item_is_none(calendar_provider):
    adapter = calendar_provider.adapter
    written = adapter.create(meeting(), link_id="link-probe", notify=False)
    missing = written.calendar_id.rsplit("/", 1)[0] + "/no-such-item.ics"
    assert adapter.get(missing) is None


def test_create_without_notify_tells_the_server_not_to_invite(calendar_provider):
    written = calendar_provider.adapter.create(meeting(), link_id="link-silent", notify=False)
    assert calendar_provider.invitations_suppressed(written.calendar_id)


def test_create_with_notify_lets_the_server_invite(calendar_provider):
    written = calendar_provider.adapter.create(meeting(), link_id="link-loud", notify=True)
    assert not calendar_provider.invitations_suppressed(written.calendar_id)
