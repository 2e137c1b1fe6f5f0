"""Reset calendar sync on the engine's in-memory sides: links rebuilt, nothing copied
again, nothing deleted, and a second reset changes nothing."""

from __future__ import annotations

from datetime import timedelta

from sync_fakes import NOW, USER, MemorySide, meeting

from calsync.reset import reset_preview, reset_sync
from calsync.sync import InMemoryStore, Recurrence, SyncSettings, run_sync

TWO_WAY = SyncSettings(direction="two_way", record_option="all")


def synced(calendar: MemorySide, crm: MemorySide, store: InMemoryStore) -> None:
    calendar.user_create(meeting("Demo"))
    calendar.user_create(meeting("No organizer", organizer=None))
    crm.user_create(meeting("From the CRM", start=NOW + timedelta(days=2)))
    crm.user_create(meeting("Hand made twin"))
    calendar.user_create(meeting("Hand made twin"))
    result = run_sync(calendar, crm, store, TWO_WAY, NOW, user_email=USER)
    assert result.ok


def test_the_reset_preview_says_how_many_links_are_rebuilt_and_that_nothing_is_deleted(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore
) -> None:
    synced(calendar, crm, store)

    shown = reset_preview(store)

    assert shown.links == 4
    assert shown.message == "4 links will be rebuilt; nothing is deleted."


def test_a_reset_followed_by_a_sync_creates_no_new_event_on_either_side(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore
) -> None:
    synced(calendar, crm, store)
    before = (set(calendar.items), set(crm.items), len(calendar.sent), len(crm.sent))

    outcome = reset_sync(calendar, crm, store, TWO_WAY, NOW, user_email=USER)
    after_sync = run_sync(calendar, crm, store, TWO_WAY, NOW, user_email=USER)

    assert outcome.cleared == 4 and outcome.sync.writes == 0 and after_sync.writes == 0
    assert (set(calendar.items), set(crm.items)) == before[:2]
    assert not [s for s in calendar.sent[before[2] :] + crm.sent[before[3] :] if s.op != "update"]
    assert len(store.links()) == 4


def test_a_reset_relinks_twins_that_lost_their_links_by_our_link_id(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore
) -> None:
    calendar.user_create(meeting("Demo"))
    run_sync(calendar, crm, store, TWO_WAY, NOW, user_email=USER)
    [copy] = crm.items
    # The CRM copy was retitled since: only our link id still ties the two together.
    crm.user_update(copy, title="Demo (moved to CRM)")
    link_id = crm.items[copy].link_id

    reset_sync(calendar, crm, store, TWO_WAY, NOW, user_email=USER)

    assert [lk.link_id for lk in store.links()] == [link_id]
    assert len(calendar.items) == len(crm.items) == 1


def test_a_second_reset_changes_nothing(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore
) -> None:
    synced(calendar, crm, store)
    reset_sync(calendar, crm, store, TWO_WAY, NOW, user_email=USER)
    items = (dict(calendar.items), dict(crm.items))

    again = reset_sync(calendar, crm, store, TWO_WAY, NOW, user_email=USER)

    assert again.sync.writes == 0
    assert (calendar.items, crm.items) == items


def test_the_run_after_a_reset_is_a_first_sync_and_emails_nobody(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore
) -> None:
    settings = SyncSettings(
        direction="two_way", record_option="all", invitations="after_first_sync"
    )
    run_sync(calendar, crm, store, settings, NOW, user_email=USER)
    crm.user_create(meeting("New in the CRM"))

    reset_sync(calendar, crm, store, settings, NOW, user_email=USER)

    assert calendar.emailed == []
    assert store.first_sync_completed_at() == NOW


def test_a_reset_relinks_the_occurrence_copies_of_a_series(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore
) -> None:
    calendar.user_create(meeting("Weekly", recurrence=Recurrence("FREQ=WEEKLY;COUNT=3")))
    run_sync(calendar, crm, store, TWO_WAY, NOW, user_email=USER)
    copies = set(crm.items)

    reset_sync(calendar, crm, store, TWO_WAY, NOW, user_email=USER)

    assert set(crm.items) == copies
