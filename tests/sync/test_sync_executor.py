"""The executor over in-memory sides: guards, idempotent creates, cursors, run results."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sync_fakes import NOW, USER, FlakySide, MemorySide, SimulatedCrash, live_links, meeting

from calsync.sync import (
    Capabilities,
    DirectionNotSupported,
    InMemoryStore,
    ListingFailed,
    Recurrence,
    StorageEmpty,
    SyncSettings,
    run_sync,
)
from calsync.sync import policies as pol

TWO_WAY = SyncSettings(direction="two_way", record_option="all")


def sync(cal: MemorySide, crm: MemorySide, store: InMemoryStore, settings=TWO_WAY, **kw):
    return run_sync(cal, crm, store, settings, NOW, user_email=USER, **kw)


def titles(side: MemorySide) -> list[str]:
    return sorted(e.title for e in side.items.values())


def test_first_sync_copies_both_ways_and_second_sync_writes_nothing(calendar, crm, store) -> None:
    calendar.user_create(meeting("A"))
    crm.user_create(meeting("B", start=NOW + timedelta(days=2)))
    result = sync(calendar, crm, store)
    assert titles(calendar) == titles(crm) == ["A", "B"]
    assert (result.crm.created, result.calendar.created) == (1, 1)
    again = sync(calendar, crm, store)
    assert again.writes == 0 and again.ok
    assert store.first_sync_completed_at() == NOW


def test_two_way_refused_with_a_sentence_when_calendar_cannot(clock, crm, store) -> None:
    one_way_only = MemorySide("calendar", Capabilities(two_way=False), clock)
    with pytest.raises(DirectionNotSupported, match="Two way sync is not available"):
        sync(one_way_only, crm, store)
    assert isinstance(DirectionNotSupported("x"), ValueError)


def test_empty_full_listing_with_links_stops_the_run(calendar, crm, store) -> None:
    calendar.user_create(meeting("A"))
    sync(calendar, crm, store)
    calendar.items.clear()  # e.g. the account was emptied or re-created
    store.save_cursor("calendar", None)
    with pytest.raises(StorageEmpty, match="returned no items") as err:
        sync(calendar, crm, store)
    assert err.value.side == "calendar" and err.value.result is not None
    assert titles(crm) == ["A"] and not crm.sent[1:]


def test_different_calendar_stops_the_run(calendar, crm, store) -> None:
    calendar.user_create(meeting("A"))
    sync(calendar, crm, store)
    other = MemorySide("calendar", Capabilities(), calendar.clock)
    other._n = 100
    other.user_create(meeting("Someone else's"))
    other.expire_cursor = True  # our cursor means nothing to another calendar
    with pytest.raises(StorageEmpty, match="different calendar"):
        sync(other, crm, store)
    assert titles(crm) == ["A"]


def test_failed_listing_stops_the_run_before_anything_is_written(calendar, crm, store) -> None:
    calendar.user_create(meeting("A"))
    crm.fail_listing = True
    with pytest.raises(ListingFailed, match="could not be read") as err:
        sync(calendar, crm, store)
    assert err.value.side == "crm"
    assert not crm.items and not crm.sent and not store.links()
    assert store.get_cursor("calendar") is None


def test_expired_cursor_means_full_listing_not_an_error(calendar, crm, store) -> None:
    calendar.user_create(meeting("A"))
    sync(calendar, crm, store)
    calendar.user_create(meeting("B", start=NOW + timedelta(days=3)))
    calendar.expire_cursor = True
    result = sync(calendar, crm, store)
    assert result.full_listing["calendar"] and result.ok
    assert titles(crm) == ["A", "B"]


def test_full_listing_missing_linked_item_is_checked_before_deleting(clock, crm, store) -> None:
    calendar = MemorySide("calendar", Capabilities(), clock, window_filter=True)
    calendar.user_create(meeting("A"))
    a2 = calendar.user_create(meeting("A2", start=NOW + timedelta(days=2)))
    sync(calendar, crm, store)
    # Moved far outside the window: a full listing leaves it out, yet it still exists.
    calendar.user_update(
        a2, start=NOW + timedelta(days=900), end=NOW + timedelta(days=900, hours=1)
    )
    calendar.expire_cursor = True
    sync(calendar, crm, store)
    assert titles(crm) == ["A", "A2"]
    moved = next(e for e in crm.items.values() if e.title == "A2")
    assert moved.start == NOW + timedelta(days=900)


def test_create_crash_then_retry_finds_item_instead_of_doubling(clock, crm, store) -> None:
    flaky = FlakySide("crm", Capabilities(), clock)
    calendar = MemorySide("calendar", Capabilities(), clock)
    calendar.user_create(meeting("A"))

    def crash_after_create(stage: str) -> None:
        if stage == "after create":
            raise SimulatedCrash(stage)

    flaky._maybe_fail = crash_after_create  # type: ignore[method-assign]
    with pytest.raises(SimulatedCrash):
        sync(calendar, flaky, store)
    [pending] = store.links()
    assert pending.pending == "crm" and pending.crm_id is None
    [created] = flaky.items.values()
    assert created.link_id == pending.link_id  # the link id travelled with the create

    flaky._maybe_fail = lambda stage: None  # type: ignore[method-assign]
    sync(calendar, flaky, store)
    assert titles(flaky) == ["A"]
    [link] = store.links()
    assert link.pending is None and link.crm_id == created.crm_id


def test_create_that_failed_before_reaching_the_side_is_redone(clock, store) -> None:
    flaky = FlakySide("crm", Capabilities(), clock)
    calendar = MemorySide("calendar", Capabilities(), clock)
    calendar.user_create(meeting("A"))
    flaky._maybe_fail = lambda stage: (_ for _ in ()).throw(RuntimeError("503"))  # type: ignore[method-assign]
    result = sync(calendar, flaky, store)
    assert result.errors and result.errors[0]["message"] == "503"
    assert store.get_cursor("calendar") is None  # not advanced: the change is not applied
    flaky._maybe_fail = lambda stage: None  # type: ignore[method-assign]
    sync(calendar, flaky, store)
    assert titles(flaky) == ["A"]


def test_cursor_saved_only_after_changes_are_applied(calendar, crm, store) -> None:
    calendar.user_create(meeting("A"))
    sync(calendar, crm, store)
    before = store.get_cursor("calendar")
    assert before is not None
    calendar.user_create(meeting("B", start=NOW + timedelta(days=2)))
    crm.fail_listing = True
    with pytest.raises(ListingFailed):
        sync(calendar, crm, store)
    assert store.get_cursor("calendar") == before
    crm.fail_listing = False
    sync(calendar, crm, store)
    assert int(store.get_cursor("calendar")) > int(before)
    assert titles(crm) == ["A", "B"]


def test_own_writes_are_not_sent_back(calendar, crm, store) -> None:
    calendar.user_create(meeting("A"))
    sync(calendar, crm, store)
    sent = len(calendar.sent) + len(crm.sent)
    for _ in range(3):
        assert sync(calendar, crm, store).writes == 0
    assert len(calendar.sent) + len(crm.sent) == sent


def test_progress_reports_each_phase(calendar, crm, store) -> None:
    calendar.user_create(meeting("A"))
    seen: list[tuple[str, int, int]] = []
    sync(calendar, crm, store, progress=lambda *a: seen.append(a))
    phases = [p for p, _, _ in seen]
    assert phases[0] == "listing" and "planning" in phases and phases[-1] == "writing"
    assert seen[-1][1] == seen[-1][2]


def test_run_result_is_json_ready_with_conflict_loser(calendar, crm, store) -> None:
    cid = calendar.user_create(meeting("A"))
    sync(calendar, crm, store)
    [mid] = crm.items
    calendar.user_update(cid, title="cal edit")
    crm.user_update(mid, title="crm edit")  # later: wins under most_recent
    result = sync(calendar, crm, store)
    data = json.loads(json.dumps(result.to_dict()))
    [conflict] = data["conflicts"]
    assert conflict["winner"] == "crm" and conflict["loser_version"]["title"] == "cal edit"
    assert titles(calendar) == titles(crm) == ["crm edit"]
    assert set(data) >= {"calendar", "crm", "skipped", "conflicts", "errors", "notes"}


def test_attendees_withheld_is_noted_and_nobody_is_emailed(clock, crm, store) -> None:
    loud = MemorySide("calendar", Capabilities(suppress_invitations=False), clock)
    crm.user_create(meeting("From CRM"))
    settings = replace(TWO_WAY, invitations="after_first_sync")
    result = sync(loud, crm, store, settings)
    assert result.notes[pol.NOTE_ATTENDEES_WITHHELD] == 1
    assert loud.emailed == []
    assert result.to_dict()["notes"] == {pol.NOTE_ATTENDEES_WITHHELD: 1}


def test_invitations_always_notifies_and_after_first_sync_waits(calendar, crm, store) -> None:
    crm.user_create(meeting("first"))
    settings = replace(TWO_WAY, invitations="after_first_sync")
    sync(calendar, crm, store, settings)
    assert calendar.emailed == []
    crm.user_create(meeting("second", start=NOW + timedelta(days=4)))
    sync(calendar, crm, store, settings)
    assert calendar.emailed == [("calendar", "client@example.org")]


def test_expanded_series_round_trip_through_executor(clock, store) -> None:
    calendar = MemorySide("calendar", Capabilities(), clock)
    crm = MemorySide("crm", Capabilities(recurrence=False), clock)
    start = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    sid = calendar.user_create(
        meeting(
            "Weekly",
            start=start,
            timezone="Europe/Berlin",
            recurrence=Recurrence("FREQ=WEEKLY;COUNT=5"),
        )
    )
    sync(calendar, crm, store)
    assert len(crm.items) == 5
    # A copy deleted in the CRM becomes a cancelled occurrence of the series.
    victim = sorted(crm.items.values(), key=lambda e: e.start)[1]
    crm.user_delete(victim.crm_id)
    sync(calendar, crm, store)
    assert calendar.items[sid].recurrence.cancelled == (victim.start,)
    assert len(crm.items) == 4
    # The series renamed: every copy follows; nothing bounces back.
    calendar.user_update(sid, title="Weekly sync")
    sync(calendar, crm, store)
    assert {e.title for e in crm.items.values()} == {"Weekly sync"}
    assert len(crm.items) == 4
    assert sync(calendar, crm, store).writes == 0
    # Deleting the series removes its copies.
    calendar.user_delete(sid)
    sync(calendar, crm, store)
    assert crm.items == {} and live_links(store) == []


def test_time_zone_and_all_day_round_trip_through_both_sides(calendar, crm, store) -> None:
    from datetime import date
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    nine = datetime(2026, 6, 1, 9, 0, tzinfo=berlin).astimezone(UTC)
    calendar.user_create(meeting("Berlin", start=nine, timezone="Europe/Berlin"))
    day = replace(meeting("Offsite"), start=date(2026, 6, 2), end=date(2026, 6, 3), timezone=None)
    calendar.user_create(day)
    sync(calendar, crm, store)
    by_title = {e.title: e for e in crm.items.values()}
    assert by_title["Berlin"].start.astimezone(berlin).hour == 9
    assert by_title["Berlin"].timezone == "Europe/Berlin"
    assert by_title["Offsite"].start == date(2026, 6, 2) and by_title["Offsite"].all_day
    assert sync(calendar, crm, store).writes == 0


def test_bad_items_are_counted_and_do_not_stop_the_run(calendar, crm, store) -> None:
    calendar.user_create(replace(meeting("broken"), end=None))
    calendar.user_create(meeting("fine"))
    result = sync(calendar, crm, store)
    assert titles(crm) == ["fine"]
    assert sum(result.skipped.values()) == 1
    assert "no end" in next(iter(result.skipped))


def test_one_way_destination_edit_is_restored(calendar, crm, store) -> None:
    calendar.user_create(meeting("A"))
    settings = SyncSettings(direction="calendar_to_crm", record_option="all")
    sync(calendar, crm, store, settings)
    [mid] = crm.items
    crm.user_update(mid, title="hacked")
    sync(calendar, crm, store, settings)
    assert titles(crm) == ["A"] and titles(calendar) == ["A"]


def test_single_turned_series_becomes_occurrences_where_side_lacks_series(clock, store) -> None:
    calendar = MemorySide("calendar", Capabilities(), clock)
    crm = MemorySide("crm", Capabilities(recurrence=False), clock)
    cid = calendar.user_create(meeting("Sync", start=NOW + timedelta(days=1)))
    sync(calendar, crm, store)
    assert len(crm.items) == 1
    calendar.user_update(cid, recurrence=Recurrence("FREQ=DAILY;COUNT=3"))
    result = sync(calendar, crm, store)
    assert result.errors == []
    assert sorted(e.start for e in crm.items.values()) == [
        NOW + timedelta(days=d) for d in (1, 2, 3)
    ]
    assert sync(calendar, crm, store).writes == 0


def test_a_create_that_lands_after_its_retry_is_removed_by_the_next_sync(clock, store) -> None:
    flaky = FlakySide("crm", Capabilities(), clock)
    calendar = MemorySide("calendar", Capabilities(), clock)
    calendar.user_create(meeting("A"))
    late: list[tuple] = []

    def lost(event, *, link_id, notify):  # the answer is lost; the write lands later
        late.append((event, link_id))
        raise TimeoutError("read timed out")

    flaky.create = lost  # type: ignore[method-assign]
    assert sync(calendar, flaky, store).errors
    del flaky.create  # the retry finds nothing by link id and writes again
    assert sync(calendar, flaky, store).ok
    [(event, link_id)] = late
    MemorySide.create(flaky, event, link_id=link_id, notify=False)  # the late write lands
    assert len(flaky.items) == 2

    result = sync(calendar, flaky, store)
    assert result.ok and titles(flaky) == ["A"] and titles(calendar) == ["A"]
    assert result.notes == {pol.NOTE_STRAY_REMOVED: 1}
    assert flaky.sent[-1].op == "delete" and flaky.sent[-1].notify is False
    [link] = store.links()
    assert link.crm_id in flaky.items  # the linked copy stays
    assert sync(calendar, flaky, store).writes == 0


def test_an_update_landing_after_a_newer_one_ends_with_the_newer_one(clock, store) -> None:
    # Our update of the CRM copy times out but reaches the CRM only after the next run
    # wrote the user's newer edit: the late, older content is written over, not adopted.
    flaky = FlakySide("crm", Capabilities(), clock)
    calendar = MemorySide("calendar", Capabilities(), clock)
    cal_id = calendar.user_create(meeting("A"))
    assert sync(calendar, flaky, store).ok
    calendar.user_update(cal_id, title="A v1")
    late: list[tuple] = []

    def lost(item_id, event, *, notify):  # the answer is lost; the write lands later
        late.append((item_id, event))
        raise TimeoutError("read timed out")

    flaky.update = lost  # type: ignore[method-assign]
    assert sync(calendar, flaky, store).errors
    [link] = store.links()
    assert link.unanswered_hash is not None and link.unsure_since == NOW
    del flaky.update
    calendar.user_update(cal_id, title="A v2")
    assert sync(calendar, flaky, store).ok and titles(flaky) == ["A v2"]
    [(item_id, event)] = late
    MemorySide.update(flaky, item_id, event, notify=False)  # "A v1" lands now
    assert titles(flaky) == ["A v1"]

    result = sync(calendar, flaky, store)
    assert result.ok and titles(flaky) == ["A v2"] and titles(calendar) == ["A v2"]
    assert sync(calendar, flaky, store).writes == 0
