"""Withheld invitees, notifications, rule spelling, deletion-blind sides and safety caps."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from sync_fakes import NOW, USER, FlakySide, MemorySide, live_links, meeting

from calsync.sync import (
    Capabilities,
    Event,
    InMemoryStore,
    Invitee,
    Link,
    NeedsConfirmation,
    PlanContext,
    Recurrence,
    SideChanges,
    SyncSettings,
    canonical_rrule,
    content_hash,
    plan_sync,
    run_sync,
)
from calsync.sync import policies as pol
from calsync.sync.executor import check_caps
from calsync.sync.model import WITHHELD_INVITEES
from calsync.sync.planner import Action, Plan

TWO_WAY = SyncSettings(direction="two_way", record_option="all")
LOUD = Capabilities(suppress_invitations=False)  # writing attendees e-mails them


def sync(cal: MemorySide, crm: MemorySide, store: InMemoryStore, settings=TWO_WAY, **kw):
    return run_sync(cal, crm, store, settings, NOW, user_email=USER, **kw)


def emails(ev: Event) -> list[str]:
    return sorted(i.email for i in ev.invitees)


def only_item(side: MemorySide) -> Event:
    [ev] = side.items.values()
    return ev


# -- 1. withheld attendees never erase invitees -------------------------------------------


@pytest.fixture
def loud(clock) -> MemorySide:
    return MemorySide("calendar", LOUD, clock)


def withheld_pair(loud: MemorySide, crm: MemorySide, store: InMemoryStore, settings=TWO_WAY):
    crm.user_create(meeting("Demo", invitees=("a@x.org", "b@y.org")))
    result = sync(loud, crm, store, settings)
    assert result.notes[pol.NOTE_ATTENDEES_WITHHELD] == 1
    [link] = store.links()
    return link


def test_link_remembers_the_side_whose_copy_lacks_its_invitees(loud, crm, store) -> None:
    link = withheld_pair(loud, crm, store)
    assert link.withheld_on == "calendar"
    assert only_item(loud).invitees == () and loud.emailed == []
    # The link's hash is of the meeting with its invitees, as the CRM shows it.
    assert link.content_hash == content_hash(only_item(crm))


def test_calendar_edit_of_withheld_copy_keeps_crm_invitees(loud, crm, store) -> None:
    withheld_pair(loud, crm, store)
    cal = only_item(loud)
    loud.user_update(cal.calendar_id, title="Demo (moved to Friday)")
    result = sync(loud, crm, store)
    assert result.crm.updated == 1
    mtg = only_item(crm)
    assert mtg.title == "Demo (moved to Friday)"
    assert emails(mtg) == ["a@x.org", "b@y.org"]  # not erased by the empty calendar copy
    [link] = store.links()
    assert link.withheld_on == "calendar"
    assert sync(loud, crm, store).writes == 0
    assert loud.emailed == []


def test_withheld_copy_does_not_look_changed_because_invitees_differ() -> None:
    ev = meeting(invitees=("a@x.org",))
    link = Link("L0", "c1", "m1", "cv1", "mv1", content_hash(ev), "crm", withheld_on="calendar")
    # The calendar copy comes back with a new version (say, a vendor's etag bump) and,
    # as written, without invitees: no change, so nothing is written either way.
    copy = replace(ev, invitees=()).with_identity("calendar", "c1", "cv2")
    p = plan_sync(
        [link],
        SideChanges(events={"c1": copy}),
        SideChanges(context={"m1": ev.with_identity("crm", "m1", "mv1")}),
        TWO_WAY,
        PlanContext(now=NOW, calendar_caps=LOUD),
    )
    assert not p.writes
    [refresh] = p.of_kind("refresh")
    assert refresh.link.calendar_version == "cv2" and refresh.link.withheld_on == "calendar"


def test_invitees_added_on_withheld_copy_join_the_crm_invitees(loud, crm, store) -> None:
    withheld_pair(loud, crm, store)
    cal = only_item(loud)
    loud.user_update(cal.calendar_id, invitees=(Invitee("c@z.org"),))
    sync(loud, crm, store)
    assert emails(only_item(crm)) == ["a@x.org", "b@y.org", "c@z.org"]
    assert sync(loud, crm, store).writes == 0


def test_withheld_invitees_travel_in_extra_for_the_adapter_to_list() -> None:
    ev = meeting(invitees=("a@x.org",)).with_identity("crm", "m1", "mv1")
    p = plan_sync(
        [], SideChanges(), SideChanges(events={"m1": ev}), TWO_WAY, PlanContext(NOW, LOUD)
    )
    [create] = p.writes
    assert create.event.invitees == () and not create.notify
    assert create.event.extra[WITHHELD_INVITEES] == ev.invitees
    assert create.link.withheld_on == "calendar"


def test_graph_lists_withheld_invitees_in_the_body() -> None:
    from calsync.calendars.graph import ATTENDEE_BLOCK, GraphCalendar, _split_attendee_block

    ev = replace(
        meeting(invitees=()),
        description="Agenda",
        extra={WITHHELD_INVITEES: (Invitee("a@x.org", "Ann"), Invitee("b@y.org"))},
    )
    body = GraphCalendar._body(SimpleNamespace(), ev, notify=False, with_times=False)  # type: ignore[arg-type]
    assert "attendees" not in body
    text = body["body"]["content"]
    assert ATTENDEE_BLOCK in text
    assert _split_attendee_block(text) == ("Agenda", ("Ann <a@x.org>", "b@y.org"))


def test_withheld_copy_gets_its_invitees_once_invitations_are_wanted(loud, crm, store) -> None:
    settings = replace(TWO_WAY, invitations="after_first_sync")
    withheld_pair(loud, crm, store, settings)
    mtg = only_item(crm)
    crm.user_update(mtg.crm_id, title="Demo v2")
    sync(loud, crm, store, settings)
    cal = only_item(loud)
    assert cal.title == "Demo v2" and emails(cal) == ["a@x.org", "b@y.org"]
    assert store.links()[0].withheld_on is None
    assert sorted(e for _, e in loud.emailed) == ["a@x.org", "b@y.org"]


def test_sync_invitees_off_remembers_the_calendar_copy_lacks_them(calendar, crm, store) -> None:
    quiet = replace(TWO_WAY, sync_invitees=False)
    crm.user_create(meeting("Demo", invitees=("a@x.org",)))
    sync(calendar, crm, store, quiet)
    [link] = store.links()
    assert link.withheld_on == "calendar" and only_item(calendar).invitees == ()
    assert WITHHELD_INVITEES not in only_item(calendar).extra  # nothing to list: policy
    calendar.user_update(only_item(calendar).calendar_id, title="renamed")
    sync(calendar, crm, store, quiet)
    assert emails(only_item(crm)) == ["a@x.org"] and only_item(crm).title == "renamed"


# -- 2. notifications ----------------------------------------------------------------------


def test_after_first_sync_is_silent_until_the_first_sync_is_applied_in_full(clock, store) -> None:
    settings = replace(TWO_WAY, invitations="after_first_sync")
    calendar = FlakySide("calendar", Capabilities(), clock)
    crm = MemorySide("crm", Capabilities(), clock)
    crm.user_create(meeting("A"))
    crm.user_create(meeting("B", start=NOW + timedelta(days=2)))
    fail = iter([RuntimeError("503")])

    def once(stage: str) -> None:
        if stage == "before create":
            exc = next(fail, None)
            if exc is not None:
                raise exc

    calendar._maybe_fail = once  # type: ignore[method-assign]
    result = sync(calendar, crm, store, settings)
    assert result.errors and store.first_sync_completed_at() is None
    sync(calendar, crm, store, settings)  # the rest of the first sync: still silent
    assert len(calendar.items) == 2 and calendar.emailed == []
    assert store.first_sync_completed_at() == NOW
    crm.user_create(meeting("C", start=NOW + timedelta(days=3)))
    sync(calendar, crm, store, settings)
    assert calendar.emailed == [("calendar", "client@example.org")]


def series(rule: str, days_ago: int = 30) -> Event:
    start = NOW - timedelta(days=days_ago)
    return meeting("Weekly", start=start, timezone="Europe/Berlin", recurrence=Recurrence(rule))


@pytest.mark.parametrize(
    ("rule", "notify"),
    [
        ("FREQ=WEEKLY;COUNT=3", False),  # last occurrence two weeks ago
        ("FREQ=WEEKLY;UNTIL=20260220T000000Z", False),
        ("FREQ=WEEKLY;UNTIL=20260220", False),
        ("FREQ=WEEKLY;COUNT=6", True),  # one more next week
        ("FREQ=WEEKLY", True),  # no end
    ],
)
def test_series_whose_last_occurrence_ended_never_notifies(rule: str, notify: bool) -> None:
    always = replace(TWO_WAY, invitations="always")
    ev = series(rule).with_identity("crm", "m1", "mv1")
    p = plan_sync([], SideChanges(), SideChanges(events={"m1": ev}), always, PlanContext(NOW))
    [create] = p.writes
    assert create.notify is notify


def test_series_ended_counts_moved_and_cancelled_occurrences() -> None:
    from calsync.sync import MovedOccurrence

    ev = series("FREQ=WEEKLY;COUNT=5", days_ago=28)  # the last one starts now
    last = ev.start + timedelta(weeks=4)
    assert not pol.ended(ev, NOW)
    rule = ev.recurrence.rrule
    assert pol.ended(replace(ev, recurrence=Recurrence(rule, cancelled=(last,))), NOW)
    later = last + timedelta(days=2)
    first_moved_later = MovedOccurrence(ev.start, later, later + timedelta(hours=1))
    rec = Recurrence(rule, cancelled=(last,), moved=(first_moved_later,))
    assert not pol.ended(replace(ev, recurrence=rec), NOW)
    day = Event(
        title="d",
        start=date(2026, 2, 1),
        end=date(2026, 2, 2),
        recurrence=Recurrence("FREQ=DAILY;COUNT=29"),  # last: 1 March, ended at midnight
    )
    assert pol.ended(day, NOW)
    assert not pol.ended(replace(day, recurrence=Recurrence("FREQ=DAILY;COUNT=30")), NOW)


# -- 3. rule spelling ----------------------------------------------------------------------


def test_equal_rules_written_differently_hash_the_same() -> None:
    a = meeting(recurrence=Recurrence("FREQ=WEEKLY;BYDAY=MO;COUNT=6"))
    b = replace(a, recurrence=Recurrence("COUNT=6;FREQ=WEEKLY;BYDAY=MO;INTERVAL=1"))
    assert content_hash(a) == content_hash(b)
    assert canonical_rrule("rrule:freq=weekly;wkst=mo;byday=fr,+1mo") == (
        "FREQ=WEEKLY;BYDAY=1MO,FR"
    )
    c = replace(a, recurrence=Recurrence("FREQ=WEEKLY;BYDAY=MO;COUNT=6;INTERVAL=2"))
    assert content_hash(c) != content_hash(a)


def test_rule_respelled_by_a_side_is_no_change() -> None:
    ev = meeting(recurrence=Recurrence("FREQ=WEEKLY;BYDAY=MO;COUNT=6"))
    link = Link("L0", "c1", "m1", "cv1", "mv1", content_hash(ev), "calendar")
    respelled = replace(ev, recurrence=Recurrence("COUNT=6;FREQ=WEEKLY;BYDAY=MO;INTERVAL=1"))
    p = plan_sync(
        [link],
        SideChanges(),
        SideChanges(events={"m1": respelled.with_identity("crm", "m1", "mv2")}),
        TWO_WAY,
        PlanContext(NOW),
    )
    assert not p.writes


# -- 4. sides that cannot list deletions ---------------------------------------------------


@pytest.fixture
def blind_crm(clock) -> MemorySide:
    return MemorySide("crm", Capabilities(lists_deletions=False), clock)


def test_deletion_blind_side_missing_item_is_unknown_until_a_full_listing(
    calendar, blind_crm, store
) -> None:
    calendar.user_create(meeting("A"))
    calendar.user_create(meeting("B", start=NOW + timedelta(days=2)))
    sync(calendar, blind_crm, store)
    gone = next(e for e in blind_crm.items.values() if e.title == "B")
    blind_crm.user_delete(gone.crm_id)
    result = sync(calendar, blind_crm, store)  # incremental: the deletion is invisible
    assert result.ok and result.writes == 0 and len(calendar.items) == 2
    assert len(store.links()) == 2
    blind_crm.expire_cursor = True  # the adapter's periodic full listing
    result = sync(calendar, blind_crm, store)
    assert result.full_listing["crm"] and result.calendar.deleted == 1
    assert [e.title for e in calendar.items.values()] == ["A"] and len(live_links(store)) == 1


def test_deletion_reported_by_a_blind_side_is_read_back_first(calendar, blind_crm, store) -> None:
    calendar.user_create(meeting("A"))
    calendar.user_create(meeting("B", start=NOW + timedelta(days=2)))
    sync(calendar, blind_crm, store)
    a, b = sorted(blind_crm.items.values(), key=lambda e: e.title)
    blind_crm.user_delete(b.crm_id)
    blind_crm.phantom_deleted = [a.crm_id, b.crm_id]  # A merely left the adapter's query
    sync(calendar, blind_crm, store)
    assert sorted(e.title for e in calendar.items.values()) == ["A"]
    assert [e.title for e in blind_crm.items.values()] == ["A"]


def test_side_that_lists_deletions_is_trusted(calendar, crm, store) -> None:
    calendar.user_create(meeting("A"))
    sync(calendar, crm, store)
    crm.user_delete(only_item(crm).crm_id)
    assert sync(calendar, crm, store).calendar.deleted == 1


# -- 5. safety caps ------------------------------------------------------------------------


def many(side: MemorySide, n: int, **kw) -> list[str]:
    return [
        side.user_create(meeting(f"M{i}", start=NOW + timedelta(days=1, hours=i), **kw))
        for i in range(n)
    ]


def test_bulk_delete_over_the_cap_needs_confirmation(calendar, crm, store) -> None:
    ids = many(calendar, 12)
    sync(calendar, crm, store)
    for item_id in ids[:11]:  # 11 > max(10, 20 % of 12)
        calendar.user_delete(item_id)
    with pytest.raises(NeedsConfirmation) as err:
        sync(calendar, crm, store)
    assert (
        err.value.message == "This sync would delete 11 meetings in your CRM. Confirm to continue."
    )
    assert err.value.deletes == {"crm": 11} and err.value.invitations == 0
    assert err.value.result.aborted == err.value.message
    assert len(crm.items) == 12  # nothing written
    result = sync(calendar, crm, store, confirmed=True)
    assert result.crm.deleted == 11 and len(crm.items) == 1


def test_bulk_delete_at_the_cap_goes_ahead(calendar, crm, store) -> None:
    ids = many(calendar, 12)
    sync(calendar, crm, store)
    for item_id in ids[:10]:
        calendar.user_delete(item_id)
    assert sync(calendar, crm, store).crm.deleted == 10


def test_delete_cap_is_a_fifth_of_the_links_above_fifty() -> None:
    def deletes(n: int, side: str = "calendar") -> Plan:
        return Plan(tuple(Action("delete", "x", side=side, target_id=f"i{i}") for i in range(n)))

    check_caps(deletes(20), 100)  # 20 % of 100
    with pytest.raises(NeedsConfirmation, match="delete 21 events in your calendar"):
        check_caps(deletes(21), 100)
    check_caps(deletes(21), 100, allow_deletes=True)  # "Reset"/emptied side confirmed
    with pytest.raises(NeedsConfirmation, match="140 meetings in your CRM"):
        check_caps(deletes(140, "crm"), 200)


def test_invitations_for_more_than_fifty_events_need_confirmation(calendar, crm, store) -> None:
    always = replace(TWO_WAY, invitations="always")
    many(crm, 51)
    with pytest.raises(NeedsConfirmation, match="invitees of 51 events") as err:
        sync(calendar, crm, store, always)
    assert err.value.invitations == 51 and calendar.items == {} and calendar.emailed == []
    sync(calendar, crm, store, always, confirmed=True)
    assert len(calendar.emailed) == 51


def test_invitations_for_fifty_events_go_ahead(calendar, crm, store) -> None:
    many(crm, 50)
    sync(calendar, crm, store, replace(TWO_WAY, invitations="always"))
    assert len(calendar.emailed) == 50


def test_silent_bulk_creates_need_no_confirmation(calendar, crm, store) -> None:
    many(crm, 80)
    sync(calendar, crm, store)  # invitations "never": nobody is e-mailed
    assert len(calendar.items) == 80


def test_occurrence_copies_imported_silently_are_not_invited_later(clock, store) -> None:
    settings = replace(TWO_WAY, invitations="after_first_sync")
    calendar = MemorySide("calendar", replace(LOUD, recurrence=False), clock)
    crm = MemorySide("crm", Capabilities(), clock)
    sid = crm.user_create(series("FREQ=WEEKLY;COUNT=3", days_ago=0))
    sync(calendar, crm, store, settings)  # the first sync: copies without attendees
    assert len(calendar.items) == 3 and calendar.emailed == []
    assert all(lk.withheld_on == "calendar" for lk in store.links() if lk.series_link_id)
    assert sync(calendar, crm, store, settings).writes == 0  # no invitations to old copies
    crm.user_update(sid, title="Weekly (new room)")  # a real change after the first sync
    sync(calendar, crm, store, settings)
    assert len(calendar.emailed) == 3
    assert sync(calendar, crm, store, settings).writes == 0
