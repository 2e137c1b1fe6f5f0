"""The CRM contract: what every CRM connector must do for the sync engine.

Run once per `crm_provider` (see conftest.py), against an emulator over real HTTP. Each
test is one promise the engine relies on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from calsync.sync import CursorExpired, Event, Invitee, Window

from .conftest import CrmProvider

START = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
WINDOW = Window(datetime.now(UTC) - timedelta(days=30), datetime.now(UTC) + timedelta(days=365))


@dataclass
class Listing:
    events: dict[str, Event] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    cursor: str | None = None
    full: bool = False
    pages: int = 0


def listing(adapter: object, cursor: str | None) -> Listing:
    """All pages of one listing, read the way the engine reads them (an expired cursor
    means a full listing)."""
    try:
        return _pages(adapter, cursor)
    except CursorExpired:
        return _pages(adapter, None)


def _pages(adapter: object, cursor: str | None) -> Listing:
    out = Listing(full=cursor is None)
    token = None
    while True:
        page = adapter.list_changes(cursor, WINDOW, token)  # type: ignore[attr-defined]
        out.pages += 1
        for ev in page.events:
            assert ev.crm_id and ev.crm_version, "every listed event carries id and version"
            out.events[ev.crm_id] = ev
        out.deleted.update(page.deleted_ids)
        if page.next_page_token is None:
            out.cursor = page.next_cursor
            return out
        token = page.next_page_token


def meeting(title: str = "Quarterly review", *invitees: str, hours: int = 0) -> Event:
    start = START + timedelta(hours=hours)
    return Event(
        title=title,
        start=start,
        end=start + timedelta(minutes=45),
        location="Room 4",
        description="Agenda: numbers.",
        invitees=tuple(Invitee(e) for e in invitees),
    )


def new_link() -> str:
    return str(uuid.uuid4())


# -- listing ------------------------------------------------------------------------------


def test_a_full_listing_returns_every_meeting_in_the_window_and_a_cursor(
    crm_provider: CrmProvider,
) -> None:
    ids = [crm_provider.user_create(f"Call {i}", START + timedelta(hours=i)) for i in range(3)]
    far = crm_provider.user_create("Next decade", START + timedelta(days=3000))

    result = listing(crm_provider.adapter, None)

    assert set(ids) <= set(result.events)
    assert far not in result.events
    assert result.cursor


def test_a_listing_spanning_several_pages_misses_nothing(crm_provider: CrmProvider) -> None:
    crm_provider.adapter.page_size = 3
    ids = {crm_provider.user_create(f"Call {i}", START + timedelta(hours=i)) for i in range(8)}

    full = listing(crm_provider.adapter, None)
    for item_id in ids:
        crm_provider.user_edit(item_id, "Renamed")
    changes = listing(crm_provider.adapter, full.cursor)

    assert full.pages > 1 and ids <= set(full.events)
    assert changes.pages > 1 and set(changes.events) == ids


def test_changes_since_a_cursor_include_a_meeting_created_in_the_crm(
    crm_provider: CrmProvider,
) -> None:
    cursor = listing(crm_provider.adapter, None).cursor

    new_id = crm_provider.user_create("Intro call", START)
    changes = listing(crm_provider.adapter, cursor)

    assert changes.events[new_id].title == "Intro call"
    assert changes.events[new_id].start == START


def test_changes_since_a_cursor_include_a_meeting_edited_in_the_crm(
    crm_provider: CrmProvider,
) -> None:
    item_id = crm_provider.user_create("Intro call", START)
    cursor = listing(crm_provider.adapter, None).cursor

    crm_provider.user_edit(item_id, "Intro call (moved)")
    changes = listing(crm_provider.adapter, cursor)

    assert changes.events[item_id].title == "Intro call (moved)"


def test_a_meeting_deleted_in_the_crm_is_reported_deleted(crm_provider: CrmProvider) -> None:
    adapter = crm_provider.adapter
    item_id = crm_provider.user_create("Cancelled lunch", START)
    cursor = listing(adapter, None).cursor

    crm_provider.user_delete(item_id)
    crm_provider.reveal_deletions()
    changes = listing(adapter, cursor)

    if changes.full:
        # A CRM that cannot list deletions has the engine do a full listing instead: the
        # meeting is gone from it, and reading it confirms the deletion.
        assert item_id not in changes.events
        assert adapter.get(item_id) is None
    else:
        assert item_id in changes.deleted


def test_a_listing_with_nothing_new_reports_nothing(crm_provider: CrmProvider) -> None:
    crm_provider.user_create("Standing meeting", START)
    first = listing(crm_provider.adapter, None)
    second = listing(crm_provider.adapter, first.cursor)

    third = listing(crm_provider.adapter, second.cursor)

    assert not second.events and not second.deleted
    assert not third.events and not third.deleted


def test_two_meetings_changed_in_the_same_instant_around_the_cursor_are_each_reported_once(
    crm_provider: CrmProvider,
) -> None:
    adapter = crm_provider.adapter
    cursor = listing(adapter, None).cursor
    with crm_provider.same_instant():
        before = crm_provider.user_create("Changed before the cursor", START)
        taken = listing(adapter, cursor)
        after = crm_provider.user_create("Changed after the cursor, same instant", START)
        next_changes = listing(adapter, taken.cursor)
        again = listing(adapter, next_changes.cursor)

    assert before in taken.events
    assert set(next_changes.events) == {after}  # not missed, and `before` not replayed
    assert not again.events  # and neither replayed forever


def test_a_meeting_edited_again_in_the_same_instant_is_reported_again(
    crm_provider: CrmProvider,
) -> None:
    adapter = crm_provider.adapter
    cursor = listing(adapter, None).cursor
    with crm_provider.same_instant():
        item_id = crm_provider.user_create("First title", START)
        taken = listing(adapter, cursor)
        crm_provider.user_edit(item_id, "Second title")
        changes = listing(adapter, taken.cursor)

    assert changes.events[item_id].title == "Second title"


def test_an_unreadable_cursor_asks_for_a_full_listing(crm_provider: CrmProvider) -> None:
    with pytest.raises(CursorExpired):
        crm_provider.adapter.list_changes("not a cursor", WINDOW)


# -- writing ------------------------------------------------------------------------------


def test_create_writes_the_meeting_with_our_link_id(crm_provider: CrmProvider) -> None:
    adapter = crm_provider.adapter
    link = new_link()

    created = adapter.create(meeting(), link_id=link, notify=False)
    read = adapter.get(created.crm_id)

    assert created.crm_id and created.crm_version
    assert read is not None
    assert (read.title, read.start, read.end) == ("Quarterly review", START, meeting().end)
    assert (read.location, read.description, read.link_id) == ("Room 4", "Agenda: numbers.", link)


def test_our_own_create_is_listed_with_the_version_create_returned(
    crm_provider: CrmProvider,
) -> None:
    adapter = crm_provider.adapter
    cursor = listing(adapter, None).cursor

    created = adapter.create(meeting(), link_id=new_link(), notify=False)
    changes = listing(adapter, cursor)

    # The engine recognises its own write by this version and does not copy it back.
    assert changes.events[created.crm_id].crm_version == created.crm_version


def test_update_changes_the_meeting_and_its_version(crm_provider: CrmProvider) -> None:
    adapter = crm_provider.adapter
    created = adapter.create(meeting(), link_id=new_link(), notify=False)

    later = START + timedelta(hours=3)
    updated = adapter.update(
        created.crm_id,
        Event(title="Moved review", start=later, end=later + timedelta(hours=1)),
        notify=False,
    )
    read = adapter.get(created.crm_id)

    assert updated.crm_id == created.crm_id
    assert updated.crm_version != created.crm_version
    assert read is not None and (read.title, read.start) == ("Moved review", later)
    assert read.link_id == created.link_id  # the link survives an update


def test_delete_removes_the_meeting(crm_provider: CrmProvider) -> None:
    adapter = crm_provider.adapter
    created = adapter.create(meeting(), link_id=new_link(), notify=False)

    adapter.delete(created.crm_id, notify=False)

    assert adapter.get(created.crm_id) is None
    adapter.delete(created.crm_id, notify=False)  # deleting twice is harmless


def test_a_cancelled_event_is_written_and_read_as_cancelled(crm_provider: CrmProvider) -> None:
    adapter = crm_provider.adapter
    ev = Event(title="Off", start=START, end=START + timedelta(hours=1), status="cancelled")

    created = adapter.create(ev, link_id=new_link(), notify=False)

    assert adapter.get(created.crm_id).status == "cancelled"


# -- invitees -----------------------------------------------------------------------------


def test_create_relates_the_contacts_leads_and_users_whose_email_is_an_invitee(
    crm_provider: CrmProvider,
) -> None:
    crm_provider.add_person("contact", "carla@client.test")
    crm_provider.add_person("lead", "leo@prospect.test")
    crm_provider.add_person("user", "bob@acme.test")

    created = crm_provider.adapter.create(
        meeting("Demo", "Carla@Client.test", "leo@prospect.test", "bob@acme.test", "x@nowhere"),
        link_id=new_link(),
        notify=False,
    )

    related = crm_provider.related_emails(created.crm_id)
    assert {"carla@client.test", "leo@prospect.test", "bob@acme.test"} <= related
    assert "x@nowhere" not in related


def test_invitees_are_read_back_with_their_emails(crm_provider: CrmProvider) -> None:
    crm_provider.add_person("contact", "carla@client.test")
    crm_provider.add_person("lead", "leo@prospect.test")
    adapter = crm_provider.adapter
    cursor = listing(adapter, None).cursor

    created = adapter.create(
        meeting("Demo", "carla@client.test", "leo@prospect.test"), link_id=new_link(), notify=False
    )
    via_get = adapter.get(created.crm_id)
    via_listing = listing(adapter, cursor).events[created.crm_id]

    for ev in (via_get, via_listing):
        assert {i.email.lower() for i in ev.invitees} == {"carla@client.test", "leo@prospect.test"}


def test_update_unrelates_people_no_longer_invited(crm_provider: CrmProvider) -> None:
    crm_provider.add_person("contact", "carla@client.test")
    crm_provider.add_person("lead", "leo@prospect.test")
    adapter = crm_provider.adapter
    created = adapter.create(
        meeting("Demo", "carla@client.test", "leo@prospect.test"), link_id=new_link(), notify=False
    )

    adapter.update(created.crm_id, meeting("Demo", "carla@client.test"), notify=False)

    related = crm_provider.related_emails(created.crm_id)
    assert "carla@client.test" in related and "leo@prospect.test" not in related


# -- crashes and idempotence ----------------------------------------------------------------


def test_a_create_whose_answer_was_lost_is_found_by_its_link_id(
    crm_provider: CrmProvider,
) -> None:
    adapter = crm_provider.adapter
    link = new_link()
    crm_provider.session.lose = crm_provider.is_create_request

    with pytest.raises(Exception):  # noqa: B017 - whatever the transport error becomes
        adapter.create(meeting("Lost answer"), link_id=link, notify=False)
    found = adapter.find_by_link_id(link)

    assert found is not None and found.title == "Lost answer" and found.link_id == link


def test_a_retried_create_does_not_double_the_meeting(crm_provider: CrmProvider) -> None:
    adapter = crm_provider.adapter
    link = new_link()

    first = adapter.create(meeting("Once"), link_id=link, notify=False)
    second = adapter.create(meeting("Once"), link_id=link, notify=False)

    assert second.crm_id == first.crm_id
    titles = [e.title for e in listing(adapter, None).events.values()]
    assert titles.count("Once") == 1


def test_find_by_link_id_is_none_for_an_unknown_link(crm_provider: CrmProvider) -> None:
    assert crm_provider.adapter.find_by_link_id(new_link()) is None


# -- what the CRM can do --------------------------------------------------------------------


def test_capabilities_say_the_crm_sends_no_invitations(crm_provider: CrmProvider) -> None:
    caps = crm_provider.adapter.capabilities()

    assert caps.two_way
    assert caps.notify is False  # the engine never asks the CRM to email anyone


def test_text_with_quotes_ampersands_and_angle_brackets_survives_the_round_trip(
    crm_provider: CrmProvider,
) -> None:
    adapter = crm_provider.adapter
    tricky = 'Tom\'s "Q&A" <draft>'
    ev = Event(
        title=tricky,
        start=START,
        end=START + timedelta(hours=1),
        location=tricky,
        description=tricky,
    )

    created = adapter.create(ev, link_id=new_link(), notify=False)
    read = adapter.get(created.crm_id)

    assert read is not None and (read.title, read.location, read.description) == (tricky,) * 3
