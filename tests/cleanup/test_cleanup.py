"""Duplicate cleanup on the engine's in-memory sides: one behaviour of "Run duplicate
cleanup" per test (find, preview, remove exactly, protect, stop on change, restore)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sync_fakes import NOW, USER, MemorySide, meeting

from calsync.cleanup import (
    InMemoryTrash,
    PreviewStale,
    event_from_dict,
    preview_cleanup,
    remove_duplicates,
    restore_item,
)
from calsync.sync import (
    Event,
    InMemoryStore,
    Invitee,
    MovedOccurrence,
    Recurrence,
    SyncSettings,
    run_sync,
)
from calsync.sync.dedupe import (
    PROTECT_ATTENDEE,
    PROTECT_LINKED,
    PROTECT_NOT_YOURS,
    PROTECT_WINDOW,
)

TWO_WAY = SyncSettings(direction="two_way", record_option="all")


def preview(calendar: MemorySide, crm: MemorySide, store: InMemoryStore) -> dict[str, Any]:
    return preview_cleanup(calendar, crm, store, TWO_WAY, NOW, user_email=USER).to_dict()


def items(p: dict[str, Any], action: str | None = None) -> list[dict[str, Any]]:
    return [i for g in p["groups"] for i in g["items"] if action is None or i["action"] == action]


def ids(p: dict[str, Any], action: str) -> set[tuple[str, str]]:
    return {(i["side"], i["id"]) for i in items(p, action)}


def sync(calendar: MemorySide, crm: MemorySide, store: InMemoryStore) -> None:
    result = run_sync(calendar, crm, store, TWO_WAY, NOW, user_email=USER)
    assert result.ok, result.to_dict()


def remove(calendar, crm, store, trash, p):  # type: ignore[no-untyped-def]
    return remove_duplicates(calendar, crm, store, trash, p, NOW)


# -- finding and previewing ----------------------------------------------------------------


def test_duplicates_made_by_hand_on_the_calendar_are_found_and_previewed(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore
) -> None:
    first = calendar.user_create(meeting("Demo"))
    second = calendar.user_create(meeting("  demo "))

    p = preview(calendar, crm, store)

    assert ids(p, "keep") == {("calendar", first)}
    assert ids(p, "remove") == {("calendar", second)}
    [removed] = items(p, "remove")
    assert removed["reason"] == "duplicate of the kept copy (same title, start and end)"
    assert p["counts"]["remove_calendar"] == 1 and p["counts"]["groups"] == 1


def test_duplicates_made_by_hand_on_the_crm_are_found_and_previewed(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore
) -> None:
    first = crm.user_create(meeting("Pricing call"))
    second = crm.user_create(meeting("Pricing call"))
    third = crm.user_create(meeting("Pricing call"))

    p = preview(calendar, crm, store)

    assert ids(p, "keep") == {("crm", first)}
    assert ids(p, "remove") == {("crm", second), ("crm", third)}
    assert p["counts"]["remove_crm"] == 2


def test_duplicates_across_the_sides_are_found_and_previewed(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore
) -> None:
    original = calendar.user_create(meeting("Kick-off"))
    sync(calendar, crm, store)
    [copy] = crm.items
    # An earlier tool copied the same meeting again, with its own iCalUID on both copies.
    left_behind = crm.user_create(replace(crm.items[copy], link_id=None, ical_uid=None))

    p = preview(calendar, crm, store)

    assert ids(p, "keep") == {("calendar", original), ("crm", copy)}
    assert ids(p, "remove") == {("crm", left_behind)}


def test_copies_sharing_an_ical_uid_are_one_group_even_when_retitled(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore
) -> None:
    calendar.user_create(meeting("Board meeting", ical_uid="uid-7"))
    retitled = calendar.user_create(meeting("Board meeting (copy)", ical_uid="uid-7"))

    p = preview(calendar, crm, store)

    assert ids(p, "similar") == {("calendar", retitled)}
    assert "title" in items(p, "similar")[0]["reason"]


def test_the_linked_copy_is_kept_even_when_an_unlinked_one_is_older(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore
) -> None:
    linked = calendar.user_create(meeting("Review"))
    sync(calendar, crm, store)
    older = calendar.user_create(
        meeting("Review", extra={"created": NOW - timedelta(days=3)}, ical_uid="other")
    )

    p = preview(calendar, crm, store)

    assert ids(p, "keep") >= {("calendar", linked)}
    assert ids(p, "remove") == {("calendar", older)}
    assert items(p, "keep")[0]["reason"] == "kept: linked to its twin on the other side"


def test_the_preview_gives_each_item_its_side_id_version_times_and_reason(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore
) -> None:
    calendar.user_create(meeting("Demo"))
    calendar.user_create(meeting("Demo"))

    p = preview(calendar, crm, store)

    assert set(p) >= {"phase", "created_at", "window", "scanned", "counts", "groups"}
    assert p["phase"] == "preview" and p["scanned"] == {"calendar": 2, "crm": 0}
    for item in items(p):
        assert set(item) >= {"side", "id", "version", "title", "start", "end", "action", "reason"}
        assert item["version"] and item["reason"]


# -- what is never removed -----------------------------------------------------------------


def test_the_only_copy_of_a_meeting_is_never_removed(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    calendar.user_create(meeting("Demo"))
    calendar.user_create(meeting("Another meeting"))
    sync(calendar, crm, store)
    before = (dict(calendar.items), dict(crm.items))

    p = preview(calendar, crm, store)
    remove(calendar, crm, store, trash, p)

    assert p["groups"] == []
    assert (calendar.items, crm.items) == before


def test_an_event_where_you_are_an_attendee_is_never_removed(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    invitation = meeting("Their meeting", organizer="boss@example.org", invitees=(USER,))
    calendar.user_create(invitation)
    again = calendar.user_create(invitation)

    p = preview(calendar, crm, store)
    remove(calendar, crm, store, trash, p)

    assert ids(p, "protected") == {("calendar", again)}
    assert items(p, "protected")[0]["reason"] == PROTECT_ATTENDEE
    assert len(calendar.items) == 2


def test_a_crm_meeting_someone_else_owns_is_never_removed(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    # CRM connectors leave the organizer unknown on a meeting another user owns.
    theirs = meeting("Their pipeline review", organizer=None)
    crm.user_create(theirs)
    crm.user_create(theirs)

    p = preview(calendar, crm, store)
    remove(calendar, crm, store, trash, p)

    assert [i["reason"] for i in items(p, "protected")] == [PROTECT_NOT_YOURS]
    assert len(crm.items) == 2


def test_an_event_outside_the_sync_window_is_never_removed(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    long_ago = meeting("Old meeting", start=NOW - timedelta(days=60))
    calendar.user_create(long_ago)
    calendar.user_create(long_ago)

    p = preview(calendar, crm, store)
    remove(calendar, crm, store, trash, p)

    assert [i["reason"] for i in items(p, "protected")] == [PROTECT_WINDOW]
    assert len(calendar.items) == 2


@pytest.mark.parametrize("field", ["location", "description"])
def test_a_similar_event_that_differs_in_more_than_title_and_time_is_shown_not_removed(
    calendar: MemorySide,
    crm: MemorySide,
    store: InMemoryStore,
    trash: InMemoryTrash,
    field: str,
) -> None:
    calendar.user_create(meeting("Demo", **{field: "Room 1"}))
    other = calendar.user_create(meeting("Demo", **{field: "Room 2"}))

    p = preview(calendar, crm, store)
    remove(calendar, crm, store, trash, p)

    assert ids(p, "similar") == {("calendar", other)}
    assert field in items(p, "similar")[0]["reason"]
    assert len(calendar.items) == 2


def test_a_linked_copy_whose_twin_stays_is_never_removed(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore
) -> None:
    calendar.user_create(meeting("Demo"))
    calendar.user_create(meeting("Demo"))
    sync(calendar, crm, store)  # both copied: two linked pairs
    # The second CRM copy differs, so it stays; its calendar twin must stay linked to it.
    second_copy = sorted(crm.items)[1]
    crm.user_update(second_copy, location="Room 9")  # not synced yet

    p = preview(calendar, crm, store)

    protected = [i for i in items(p, "protected") if i["side"] == "calendar"]
    assert [i["reason"] for i in protected] == [PROTECT_LINKED]
    assert ids(p, "remove") == set()


# -- confirmed removal ---------------------------------------------------------------------


def test_confirmed_removal_removes_exactly_the_previewed_items(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    calendar.user_create(meeting("Demo"))
    calendar.user_create(meeting("Demo"))
    sync(calendar, crm, store)  # the calendar pair is copied: duplicates on both sides
    crm.user_create(meeting("CRM only"))
    crm.user_create(meeting("CRM only"))
    calendar.user_create(meeting("Single"))
    p = preview(calendar, crm, store)
    before = {("calendar", i) for i in calendar.items} | {("crm", i) for i in crm.items}

    result = remove(calendar, crm, store, trash, p)

    after = {("calendar", i) for i in calendar.items} | {("crm", i) for i in crm.items}
    assert before - after == ids(p, "remove")
    assert len(ids(p, "remove")) == 3
    assert result.removed == {"calendar": 1, "crm": 2} and result.ok


def test_removal_drops_the_links_of_a_removed_pair_so_the_next_sync_deletes_nothing(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    calendar.user_create(meeting("Demo"))
    calendar.user_create(meeting("Demo"))
    sync(calendar, crm, store)

    remove(calendar, crm, store, trash, preview(calendar, crm, store))
    result = run_sync(calendar, crm, store, TWO_WAY, NOW, user_email=USER)

    assert result.writes == 0
    assert len(store.links()) == 1 and len(calendar.items) == len(crm.items) == 1


def test_an_item_changed_after_the_preview_stops_the_removal(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    calendar.user_create(meeting("Demo"))
    second = calendar.user_create(meeting("Demo"))
    crm.user_create(meeting("Budget"))
    crm.user_create(meeting("Budget"))
    p = preview(calendar, crm, store)
    calendar.user_update(second, description="now with an agenda")

    with pytest.raises(PreviewStale) as stopped:
        remove(calendar, crm, store, trash, p)

    assert [c["id"] for c in stopped.value.changed] == [second]
    assert len(calendar.items) == 2 and len(crm.items) == 2  # nothing at all removed
    assert trash.entries == {}


def test_an_item_linked_by_a_sync_after_the_preview_stops_the_removal(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    calendar.user_create(meeting("Demo"))
    calendar.user_create(meeting("Demo"))
    p = preview(calendar, crm, store)
    sync(calendar, crm, store)  # links both copies to new CRM copies

    with pytest.raises(PreviewStale):
        remove(calendar, crm, store, trash, p)

    assert len(calendar.items) == 2


def test_a_preview_confirmed_twice_removes_nothing_the_second_time(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    calendar.user_create(meeting("Demo"))
    calendar.user_create(meeting("Demo"))
    p = preview(calendar, crm, store)
    remove(calendar, crm, store, trash, p)

    with pytest.raises(PreviewStale):
        remove(calendar, crm, store, trash, p)

    assert len(calendar.items) == 1


def test_an_invitee_only_a_removed_copy_had_is_merged_into_the_kept_one(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    kept = crm.user_create(meeting("Demo", invitees=("ann@client.org",)))
    crm.user_create(meeting("Demo", invitees=("ann@client.org", "bob@client.org")))
    p = preview(calendar, crm, store)

    result = remove(calendar, crm, store, trash, p)

    assert [i["merge_invitees"] for i in items(p, "keep")] == [
        [{"email": "bob@client.org", "name": None}]
    ]
    assert {i.email for i in crm.items[kept].invitees} == {"ann@client.org", "bob@client.org"}
    assert result.merged_invitees == 1
    assert not any(s.notify for s in crm.sent)


# -- the trash and restore -----------------------------------------------------------------


def test_a_removed_item_is_kept_whole_in_the_trash(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    calendar.user_create(meeting("Demo"))
    second = calendar.user_create(meeting("Demo"))
    whole = calendar.items[second]

    result = remove(calendar, crm, store, trash, preview(calendar, crm, store))

    [entry] = [trash.get(e) for e in result.entries]
    assert entry is not None
    assert (entry.side, entry.original_id, entry.event) == ("calendar", second, whole)
    assert entry.expires_at == NOW + timedelta(days=30)


def test_an_event_survives_its_json_round_trip_whole() -> None:
    start = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    series = Event(
        title="Weekly",
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/Berlin",
        location="Room 1",
        description="Agenda",
        organizer=USER,
        invitees=(Invitee("a@x.org", "A", "accepted"),),
        recurrence=Recurrence(
            "FREQ=WEEKLY;COUNT=5",
            (start + timedelta(days=7),),
            (MovedOccurrence(start + timedelta(days=14), start, start + timedelta(hours=2)),),
        ),
        private=True,
        calendar_id="c1",
        calendar_version="v1",
        last_modified=start,
        ical_uid="uid",
        link_id="L",
    )
    all_day = Event(title="Off", start=date(2026, 3, 4), end=date(2026, 3, 5), crm_id="m1")

    assert event_from_dict(series.to_dict()) == series
    assert event_from_dict(all_day.to_dict()) == all_day


def test_restore_brings_a_removed_item_back(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    calendar.user_create(meeting("Demo", location="Room 1"))
    second = calendar.user_create(meeting("Demo", location="Room 1"))
    gone = calendar.items[second]
    [entry] = remove(calendar, crm, store, trash, preview(calendar, crm, store)).entries

    restored = restore_item(calendar, crm, store, trash, entry, NOW)

    assert restored.status == "restored"
    back = calendar.items[restored.item_id]
    assert back.content() == replace(gone.content(), last_modified=None, extra={})
    assert not calendar.sent[-1].notify


def test_a_second_restore_does_nothing(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    calendar.user_create(meeting("Demo"))
    calendar.user_create(meeting("Demo"))
    [entry] = remove(calendar, crm, store, trash, preview(calendar, crm, store)).entries
    first = restore_item(calendar, crm, store, trash, entry, NOW)
    writes = len(calendar.sent)

    again = restore_item(calendar, crm, store, trash, entry, NOW)

    assert (again.status, again.item_id) == ("already_restored", first.item_id)
    assert len(calendar.sent) == writes and len(calendar.items) == 2


def test_a_restore_cut_short_before_it_was_recorded_does_not_duplicate_the_item(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    calendar.user_create(meeting("Demo"))
    calendar.user_create(meeting("Demo"))
    [entry_id] = remove(calendar, crm, store, trash, preview(calendar, crm, store)).entries
    entry = trash.get(entry_id)
    assert entry is not None
    # The create happened, then the worker died before the trash learnt of it.
    calendar.create(entry.event.content(), link_id=entry.restore_link_id, notify=False)

    again = restore_item(calendar, crm, store, trash, entry_id, NOW)

    assert again.status == "already_back" and len(calendar.items) == 2


def test_restoring_a_removed_linked_pair_links_it_again_and_the_next_sync_writes_nothing(
    calendar: MemorySide, crm: MemorySide, store: InMemoryStore, trash: InMemoryTrash
) -> None:
    calendar.user_create(meeting("Demo"))
    calendar.user_create(meeting("Demo"))
    sync(calendar, crm, store)
    result = remove(calendar, crm, store, trash, preview(calendar, crm, store))
    assert len(result.entries) == 2 and len(store.links()) == 1

    for entry in result.entries:
        assert restore_item(calendar, crm, store, trash, entry, NOW).relinked
    after = run_sync(calendar, crm, store, TWO_WAY, NOW, user_email=USER)

    assert len(store.links()) == 2
    assert all(lk.calendar_id and lk.crm_id for lk in store.links())
    assert after.writes == 0
