"""Unit tests of the planner: one per rule of the spec, named after the behaviour."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sync_fakes import NOW, USER, meeting

from calsync.sync import (
    Capabilities,
    Event,
    Invitee,
    Link,
    MovedOccurrence,
    PlanContext,
    Recurrence,
    SideChanges,
    SyncSettings,
    content_hash,
    plan_sync,
)
from calsync.sync import policies as pol
from calsync.sync.model import write_fingerprint
from calsync.sync.planner import Plan, reads_needed

TWO_WAY = SyncSettings(direction="two_way", record_option="all")


def ids() -> itertools.count:
    return itertools.count(1)


def plan(
    *,
    links: list[Link] = (),  # type: ignore[assignment]
    cal: list[Event] = (),  # type: ignore[assignment]
    crm: list[Event] = (),  # type: ignore[assignment]
    cal_deleted: tuple[str, ...] = (),
    crm_deleted: tuple[str, ...] = (),
    cal_context: list[Event] = (),  # type: ignore[assignment]
    crm_context: list[Event] = (),  # type: ignore[assignment]
    settings: SyncSettings = TWO_WAY,
    first_sync: bool = False,
    cal_caps: Capabilities | None = None,
    crm_caps: Capabilities | None = None,
    now: datetime = NOW,
) -> Plan:
    counter = ids()
    return plan_sync(
        links,
        SideChanges(
            events={e.calendar_id: e for e in cal},  # type: ignore[misc]
            deleted=frozenset(cal_deleted),
            context={e.calendar_id: e for e in cal_context},  # type: ignore[misc]
        ),
        SideChanges(
            events={e.crm_id: e for e in crm},  # type: ignore[misc]
            deleted=frozenset(crm_deleted),
            context={e.crm_id: e for e in crm_context},  # type: ignore[misc]
        ),
        settings,
        PlanContext(
            now=now,
            calendar_caps=cal_caps or Capabilities(),
            crm_caps=crm_caps or Capabilities(),
            first_sync=first_sync,
            user_email=USER,
        ),
        new_link_id=lambda: f"L{next(counter)}",
    )


def on_cal(ev: Event, item_id: str = "c1", version: str = "cv1") -> Event:
    return ev.with_identity("calendar", item_id, version)


def on_crm(ev: Event, item_id: str = "m1", version: str = "mv1") -> Event:
    return ev.with_identity("crm", item_id, version)


def synced_pair(ev: Event) -> tuple[Link, Event, Event]:
    """A link in steady state plus both sides' current copies."""
    link = Link(
        link_id="L0",
        calendar_id="c1",
        crm_id="m1",
        calendar_version="cv1",
        crm_version="mv1",
        content_hash=content_hash(ev),
        origin="calendar",
    )
    return link, on_cal(ev), on_crm(ev)


def only(p: Plan, kind: str) -> list:
    return [a for a in p.actions if a.kind == kind]


def skip_reasons(p: Plan) -> list[str]:
    return [a.reason for a in only(p, "skip")]


# -- conflicts -----------------------------------------------------------------------------


def test_two_way_conflict_most_recent_wins() -> None:
    link, cal, crm = synced_pair(meeting("Demo"))
    t = NOW
    cal2 = replace(cal, title="Demo (cal)", calendar_version="cv2", last_modified=t)
    crm2 = replace(crm, title="Demo (crm)", crm_version="mv2", last_modified=t + timedelta(1))
    p = plan(links=[link], cal=[cal2], crm=[crm2])
    [update] = p.writes
    assert update.side == "calendar" and update.event.title == "Demo (crm)"
    assert update.conflict.winner == "crm"
    assert update.conflict.loser_event.title == "Demo (cal)"
    assert update.conflict.to_dict()["loser_version"]["title"] == "Demo (cal)"


@pytest.mark.parametrize(("policy", "winner"), [("calendar_wins", "cal"), ("crm_wins", "crm")])
def test_two_way_conflict_fixed_policy_wins(policy: str, winner: str) -> None:
    link, cal, crm = synced_pair(meeting("Demo"))
    cal2 = replace(cal, title="cal", calendar_version="cv2", last_modified=NOW)
    crm2 = replace(crm, title="crm", crm_version="mv2", last_modified=NOW + timedelta(1))
    p = plan(
        links=[link], cal=[cal2], crm=[crm2], settings=replace(TWO_WAY, conflict_policy=policy)
    )
    [update] = p.writes
    assert update.event.title == winner
    assert update.conflict.loser_event.title == ("crm" if winner == "cal" else "cal")


def test_same_change_on_both_sides_is_no_conflict() -> None:
    link, cal, crm = synced_pair(meeting("Demo"))
    p = plan(
        links=[link],
        cal=[replace(cal, title="New", calendar_version="cv2")],
        crm=[replace(crm, title="New", crm_version="mv2")],
    )
    assert not p.writes
    [refresh] = only(p, "refresh")
    assert refresh.link.calendar_version == "cv2" and refresh.link.crm_version == "mv2"


def test_two_way_conflict_delete_against_edit_follows_policy() -> None:
    link, _, crm = synced_pair(meeting("Demo"))
    crm2 = replace(crm, title="edited", crm_version="mv2", last_modified=NOW)
    # most_recent: the deletion counts as the latest act.
    p = plan(links=[link], cal_deleted=("c1",), crm=[crm2])
    [delete] = p.writes
    assert (delete.kind, delete.side, delete.target_id) == ("delete", "crm", "m1")
    # crm_wins: the edited CRM meeting is put back on the calendar.
    p = plan(
        links=[link],
        cal_deleted=("c1",),
        crm=[crm2],
        settings=replace(TWO_WAY, conflict_policy="crm_wins"),
    )
    [create] = p.writes
    assert (create.kind, create.side, create.event.title) == ("create", "calendar", "edited")
    assert create.link.link_id == "L0"


# -- deletes and cancellations -------------------------------------------------------------


def test_delete_propagates_in_allowed_direction() -> None:
    link, _, _ = synced_pair(meeting())
    p = plan(links=[link], cal_deleted=("c1",), settings=SyncSettings(direction="calendar_to_crm"))
    [delete] = p.writes
    assert (delete.side, delete.target_id, delete.drop_link_ids) == ("crm", "m1", ("L0",))


def test_delete_against_direction_is_not_propagated_and_copy_is_restored() -> None:
    ev = meeting()
    link, cal, _ = synced_pair(ev)
    p = plan(
        links=[link],
        crm_deleted=("m1",),
        cal_context=[cal],
        settings=SyncSettings(direction="calendar_to_crm"),
    )
    [create] = p.writes
    assert create.kind == "create" and create.side == "crm"
    assert create.link.link_id == "L0" and create.link.crm_id is None
    assert not [a for a in p.actions if a.kind == "delete" and a.side == "calendar"]


def test_cancelled_meeting_becomes_cancelled_on_other_side() -> None:
    link, cal, _ = synced_pair(meeting())
    p = plan(links=[link], cal=[replace(cal, status="cancelled", calendar_version="cv2")])
    [update] = p.writes
    assert (update.side, update.event.status) == ("crm", "cancelled")


def test_cancelled_meeting_never_synced_is_skipped() -> None:
    p = plan(cal=[on_cal(meeting(status="cancelled"))])
    assert not p.writes
    assert skip_reasons(p) == [pol.SKIP_CANCELLED_UNSYNCED]


# -- creates -------------------------------------------------------------------------------


def test_create_carries_new_link_id() -> None:
    p = plan(cal=[on_cal(meeting())])
    [create] = p.writes
    assert create.kind == "create" and create.side == "crm"
    assert create.link.link_id == "L1" and create.link.calendar_id == "c1"
    assert create.link.origin == "calendar" and create.link.crm_id is None


def test_unfinished_create_is_retried_with_same_link_id() -> None:
    pending = Link("L9", calendar_id="c1", calendar_version="cv1", origin="calendar", pending="crm")
    p = plan(links=[pending], cal_context=[on_cal(meeting())])
    [create] = p.writes
    assert create.kind == "create" and create.link.link_id == "L9"


def test_own_create_read_back_completes_the_pending_link() -> None:
    pending = Link(
        "L9", "c1", None, "cv1", None, content_hash(meeting()), "calendar", pending="crm"
    )
    copy = replace(on_crm(meeting(), "m7", "mv7"), link_id="L9")
    p = plan(links=[pending], crm=[copy])
    assert not p.writes
    [refresh] = only(p, "refresh")
    assert refresh.link.crm_id == "m7" and refresh.link.pending is None
    # Edited after our create but before we learnt its id: the edit is not lost.
    p = plan(links=[pending], crm=[replace(copy, title="edited")])
    [update] = p.writes
    assert (update.side, update.event.title) == ("calendar", "edited")


# -- first sync twins ----------------------------------------------------------------------


def test_first_sync_links_twins_by_ical_uid() -> None:
    cal = on_cal(meeting("Quarterly review", ical_uid="uid-1"))
    crm = on_crm(meeting("QBR", ical_uid="uid-1"))
    p = plan(cal=[cal], crm=[crm], first_sync=True)
    assert not p.writes
    [link] = only(p, "link")
    assert (link.link.calendar_id, link.link.crm_id) == ("c1", "m1")


def test_first_sync_links_twins_by_title_start_end_organizer() -> None:
    cal = on_cal(meeting("  Quarterly   Review "))
    crm = on_crm(replace(meeting("quarterly review"), organizer=USER.upper(), description="x"))
    p = plan(cal=[cal], crm=[crm], first_sync=True)
    assert not p.writes
    assert len(only(p, "link")) == 1
    # Different start: not the same meeting.
    crm_other = on_crm(meeting("Quarterly review", start=NOW + timedelta(days=2)))
    assert len(plan(cal=[cal], crm=[crm_other]).writes) == 2


# -- recurrence ----------------------------------------------------------------------------


def weekly(**kw: object) -> Event:
    start = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 09:00 Berlin
    kw.setdefault("recurrence", Recurrence("FREQ=WEEKLY;COUNT=10"))
    return meeting("Weekly", start=start, timezone="Europe/Berlin", **kw)


def test_series_stays_a_series_where_both_sides_support_recurrence() -> None:
    p = plan(cal=[on_cal(weekly())])
    [create] = p.writes
    assert create.event.recurrence == Recurrence("FREQ=WEEKLY;COUNT=10")


def test_series_exception_on_one_side_becomes_same_exception_on_other() -> None:
    link, cal, _ = synced_pair(weekly())
    moved_from = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    moved = MovedOccurrence(
        moved_from, moved_from + timedelta(hours=2), moved_from + timedelta(hours=3)
    )
    rec = Recurrence("FREQ=WEEKLY;COUNT=10", (datetime(2026, 3, 16, 8, 0, tzinfo=UTC),), (moved,))
    p = plan(links=[link], cal=[replace(cal, recurrence=rec, calendar_version="cv2")])
    [update] = p.writes
    assert update.side == "crm" and update.event.recurrence == rec


def test_series_expanded_into_occurrences_where_side_lacks_recurrence() -> None:
    moved_from = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    rec = Recurrence(
        "FREQ=WEEKLY;COUNT=4",
        cancelled=(datetime(2026, 3, 16, 8, 0, tzinfo=UTC),),
        moved=(
            MovedOccurrence(
                moved_from, moved_from + timedelta(hours=1), moved_from + timedelta(hours=2)
            ),
        ),
    )
    p = plan(cal=[on_cal(weekly(recurrence=rec))], crm_caps=Capabilities(recurrence=False))
    creates = only(p, "create")
    starts = [a.event.start for a in creates]
    assert starts == [
        datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
        datetime(2026, 3, 9, 9, 0, tzinfo=UTC),  # moved
        datetime(2026, 3, 23, 8, 0, tzinfo=UTC),  # 09:00 Berlin is 08:00 UTC until the 29th
    ]
    assert all(a.event.recurrence is None and a.side == "crm" for a in creates)
    master = only(p, "refresh")[0].link
    assert master.expanded and master.calendar_id == "c1"
    assert {a.link.series_link_id for a in creates} == {master.link_id}
    assert len({a.link.occurrence_key for a in creates}) == 3


def test_series_change_updates_its_expanded_occurrences() -> None:
    series = on_cal(weekly(recurrence=Recurrence("FREQ=WEEKLY;COUNT=3")))
    first = plan(cal=[series], crm_caps=Capabilities(recurrence=False))
    master = only(first, "refresh")[-1].link
    children = [
        a.link.with_side("crm", f"m{i}", f"mv{i}") for i, a in enumerate(only(first, "create"))
    ]
    # The series is renamed and shortened to two occurrences.
    changed = replace(
        series,
        title="Weekly sync",
        recurrence=Recurrence("FREQ=WEEKLY;COUNT=2"),
        calendar_version="cv2",
    )
    p = plan(links=[master, *children], cal=[changed], crm_caps=Capabilities(recurrence=False))
    updates, deletes = only(p, "update"), only(p, "delete")
    assert [u.event.title for u in updates] == ["Weekly sync", "Weekly sync"]
    assert [d.target_id for d in deletes] == ["m2"]
    assert only(p, "refresh")[-1].link.calendar_version == "cv2"


def test_occurrence_deleted_on_side_without_series_cancels_that_occurrence() -> None:
    series = on_cal(weekly(recurrence=Recurrence("FREQ=WEEKLY;COUNT=3")))
    first = plan(cal=[series], crm_caps=Capabilities(recurrence=False))
    master = replace(only(first, "refresh")[-1].link, calendar_version="cv1")
    children = [
        a.link.with_side("crm", f"m{i}", f"mv{i}") for i, a in enumerate(only(first, "create"))
    ]
    p = plan(
        links=[master, *children],
        crm_deleted=("m1",),
        cal_context=[series],
        crm_caps=Capabilities(recurrence=False),
    )
    [update] = p.writes
    assert update.side == "calendar" and update.target_id == "c1"
    assert update.event.recurrence.cancelled == (datetime(2026, 3, 9, 8, 0, tzinfo=UTC),)
    assert update.drop_link_ids == (children[1].link_id,)


# -- time zones and all-day ----------------------------------------------------------------


def test_time_zone_round_trips_unchanged() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 7, 1, 9, 0, tzinfo=berlin).astimezone(UTC)
    ev = meeting(start=start, timezone="Europe/Berlin")
    [create] = plan(cal=[on_cal(ev)]).writes
    assert create.event.timezone == "Europe/Berlin"
    assert create.event.start.astimezone(berlin).hour == 9
    # And back: the copy, read from the CRM, changes nothing on the calendar.
    link = replace(create.link, crm_id="m1", crm_version="mv1")
    back = on_crm(replace(create.event), "m1", "mv2")
    assert not plan(links=[link], crm=[back]).writes


def test_all_day_event_stays_a_date() -> None:
    ev = meeting(start=None, timezone=None)
    ev = replace(ev, start=date(2026, 3, 10), end=date(2026, 3, 11))
    [create] = plan(cal=[on_cal(ev)]).writes
    assert create.event.start == date(2026, 3, 10) and not isinstance(create.event.start, datetime)
    assert create.event.all_day


# -- loops and bad items -------------------------------------------------------------------


def test_own_write_read_back_is_not_sent_back() -> None:
    link, cal, crm = synced_pair(meeting())
    # Same version as stored: untouched.
    assert not plan(links=[link], cal=[cal], crm=[crm]).actions
    # New version but identical content (the vendor bumped its etag): no write either.
    p = plan(links=[link], crm=[replace(crm, crm_version="mv9")])
    assert not p.writes
    assert only(p, "refresh")[0].link.crm_version == "mv9"


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({"end": None}, "no end"),
        ({"start": None}, "no start"),
        ({"end": NOW}, "ends before it starts"),
        ({"timezone": "Mars/Olympus_Mons"}, "unknown time zone"),
        ({"end": date(2026, 3, 4)}, "mixes an all-day date"),
        ({"recurrence": Recurrence("FREQ=SOMETIMES")}, "recurrence rule"),
    ],
)
def test_bad_event_is_skipped_with_reason(bad: dict, why: str) -> None:
    good = on_cal(meeting("fine"), "c2")
    p = plan(cal=[on_cal(replace(meeting(), **bad)), good])
    [reason] = skip_reasons(p)
    assert why in reason
    assert [a.event.title for a in p.writes] == ["fine"]


# -- settings ------------------------------------------------------------------------------


def test_sync_related_records_only_skips_events_without_other_invitees() -> None:
    settings = replace(TWO_WAY, record_option="related_only")
    alone = on_cal(meeting("Focus time", invitees=()), "c1")
    only_me = on_cal(meeting("Me", invitees=(USER,)), "c2")
    related = on_cal(meeting("Client call"), "c3")
    p = plan(cal=[alone, only_me, related], settings=settings)
    assert [a.event.title for a in p.writes] == ["Client call"]
    assert skip_reasons(p) == [pol.SKIP_NOT_RELATED] * 2
    p = plan(cal=[alone, only_me, related], settings=replace(settings, record_option="all"))
    assert len(p.writes) == 3


@pytest.mark.parametrize(
    ("direction", "written"),
    [
        ("calendar_to_crm", ["crm"]),
        ("crm_to_calendar", ["calendar"]),
        ("two_way", ["crm", "calendar"]),
    ],
)
def test_sync_direction_decides_which_new_items_are_copied(direction: str, written: list) -> None:
    p = plan(
        cal=[on_cal(meeting("from cal"))],
        crm=[on_crm(meeting("from crm", start=NOW + timedelta(days=3)))],
        settings=replace(TWO_WAY, direction=direction),
    )
    assert [a.side for a in p.writes] == written
    if direction != "two_way":
        assert skip_reasons(p) == [pol.SKIP_ONE_WAY]


def test_calendar_invitees_are_passed_to_the_crm_for_matching() -> None:
    ev = meeting(invitees=("a@x.org", "lead@y.org"))
    [create] = plan(cal=[on_cal(ev)], settings=SyncSettings(direction="calendar_to_crm")).writes
    assert [i.email for i in create.event.invitees] == ["a@x.org", "lead@y.org"]


def test_sync_invitees_off_creates_calendar_events_without_attendees() -> None:
    settings = replace(TWO_WAY, sync_invitees=False)
    [create] = plan(crm=[on_crm(meeting())], settings=settings).writes
    assert create.side == "calendar" and create.event.invitees == ()
    assert pol.NOTE_INVITEES_OFF in create.notes
    [create] = plan(crm=[on_crm(meeting())], settings=TWO_WAY).writes
    assert create.event.invitees


def test_calendar_edit_keeps_crm_invitees_when_calendar_copy_has_none() -> None:
    ev = meeting()
    link = Link("L0", "c1", "m1", "cv1", "mv1", content_hash(replace(ev, invitees=())), "crm")
    cal_copy = on_cal(replace(ev, invitees=(), title="renamed"), "c1", "cv2")
    quiet = replace(TWO_WAY, sync_invitees=False)
    p = plan(links=[link], cal=[cal_copy], crm_context=[on_crm(ev)], settings=quiet)
    [update] = p.writes
    assert update.event.title == "renamed" and update.event.invitees == ev.invitees
    # With Sync invitees on, an empty attendee list on the calendar is a real removal.
    p = plan(links=[link], cal=[cal_copy], crm_context=[on_crm(ev)])
    [update] = p.writes
    assert update.event.invitees == ()


@pytest.mark.parametrize(
    ("policy", "first_sync", "notify"),
    [
        ("never", False, False),
        ("always", True, True),
        ("after_first_sync", True, False),
        ("after_first_sync", False, True),
    ],
)
def test_email_invitations_policy(policy: str, first_sync: bool, notify: bool) -> None:
    settings = replace(TWO_WAY, invitations=policy)
    [create] = plan(crm=[on_crm(meeting())], settings=settings, first_sync=first_sync).writes
    assert create.notify is notify


def test_events_that_ended_never_notify() -> None:
    past = meeting(start=NOW - timedelta(days=2))
    settings = replace(TWO_WAY, invitations="always")
    [create] = plan(crm=[on_crm(past)], settings=settings).writes
    assert create.notify is False


def test_attendees_withheld_where_destination_cannot_suppress_invitations() -> None:
    loud = Capabilities(suppress_invitations=False)
    settings = replace(TWO_WAY, invitations="after_first_sync")
    [create] = plan(
        crm=[on_crm(meeting())], settings=settings, first_sync=True, cal_caps=loud
    ).writes
    assert create.event.invitees == () and create.notify is False
    assert pol.NOTE_ATTENDEES_WITHHELD in create.notes
    # After the first sync invitations are wanted, so attendees go along.
    [create] = plan(crm=[on_crm(meeting())], settings=settings, cal_caps=loud).writes
    assert create.event.invitees and create.notify


def test_sync_window_bounds_new_items() -> None:
    settings = replace(TWO_WAY, window_days_back=30, window_days_ahead=365)
    inside = on_cal(meeting("inside", start=NOW - timedelta(days=29)), "c1")
    too_old = on_cal(meeting("old", start=NOW - timedelta(days=31)), "c2")
    too_far = on_cal(meeting("far", start=NOW + timedelta(days=366)), "c3")
    p = plan(cal=[inside, too_old, too_far], settings=settings)
    assert [a.event.title for a in p.writes] == ["inside"]
    assert skip_reasons(p) == [pol.SKIP_OUTSIDE_WINDOW] * 2


def test_private_events_busy_full_skip() -> None:
    secret = on_cal(meeting("Doctor", private=True, location="Clinic", description="x"))
    [busy] = plan(cal=[secret]).writes
    assert (busy.event.title, busy.event.location, busy.event.invitees) == ("Busy", None, ())
    assert busy.event.private and busy.event.start == secret.start
    [full] = plan(cal=[secret], settings=replace(TWO_WAY, private_events="full")).writes
    assert full.event.title == "Doctor"
    p = plan(cal=[secret], settings=replace(TWO_WAY, private_events="skip"))
    assert not p.writes and skip_reasons(p) == [pol.SKIP_PRIVATE]


def test_busy_block_edit_does_not_overwrite_private_original() -> None:
    secret = meeting("Doctor", private=True)
    link = Link("L0", "c1", "m1", "cv1", "mv1", "h", "calendar")
    busy_copy = on_crm(replace(secret, title="Busy lunch"), "m1", "mv2")
    p = plan(links=[link], crm=[busy_copy])
    assert not p.writes
    assert skip_reasons(p) == [pol.SKIP_BUSY_COPY_EDITED]


def test_invitee_response_reaches_the_other_side() -> None:
    link, cal, _ = synced_pair(meeting())
    accepted = replace(
        cal, invitees=(Invitee("client@example.org", response="accepted"),), calendar_version="cv2"
    )
    [update] = plan(links=[link], cal=[accepted]).writes
    assert update.event.invitees[0].response == "accepted"


def test_empty_full_listing_while_links_exist_stops_the_plan() -> None:
    from calsync.sync import StorageEmpty

    link, _, _ = synced_pair(meeting())
    empty_full = SideChanges(full=True)
    ctx = PlanContext(now=NOW)
    with pytest.raises(StorageEmpty, match="no items at all"):
        plan_sync([link], empty_full, SideChanges(), TWO_WAY, ctx)
    # Confirmed by the user: the deletions may go ahead.
    confirmed = replace(ctx, allow_empty=True)
    assert plan_sync([link], empty_full, SideChanges(), TWO_WAY, confirmed).actions == ()


def test_expanded_series_rolls_forward_with_the_window_and_keeps_past_copies() -> None:
    series = on_cal(weekly(recurrence=Recurrence("FREQ=WEEKLY")))  # no end
    short = replace(TWO_WAY, window_days_ahead=14, window_days_back=0)
    first = plan(cal=[series], crm_caps=Capabilities(recurrence=False), settings=short)
    creates = only(first, "create")
    assert len(creates) == 2  # 2 and 9 March; the 16th starts as the window ends
    master = only(first, "refresh")[-1].link
    children = [a.link.with_side("crm", f"m{i}", f"mv{i}") for i, a in enumerate(creates)]
    # Three weeks later a full listing shows the unchanged series again.
    later = NOW + timedelta(days=21)
    p = plan(
        links=[master, *children],
        cal=[series],
        crm_caps=Capabilities(recurrence=False),
        settings=short,
        now=later,
    )
    new_starts = [a.event.start for a in only(p, "create")]
    assert new_starts[0] == datetime(2026, 3, 23, 8, 0, tzinfo=UTC)
    assert not only(p, "delete")  # copies now in the past stay in the CRM


# -- occurrence copies already on the side without series ---------------------------------

NO_SERIES = Capabilities(recurrence=False)


def copies_of(series: Event, side: str = "crm", **changes: object) -> list[Event]:
    """Unlinked single items on `side` showing the series' occurrences (as after a reset)."""
    from calsync.sync.recurrence import expand

    window_start, window_end = NOW - timedelta(days=30), NOW + timedelta(days=365)
    out = []
    for n, occ in enumerate(expand(series, window_start, window_end)):
        ev = replace(occ.event, link_id=f"old-{n}", extra={}, **changes)
        out.append(on_crm(ev, f"m{n}", f"mv{n}") if side == "crm" else on_cal(ev, f"c{n}"))
    return out


def test_first_sync_adopts_occurrence_copies_by_title_start_end_instead_of_copying_them() -> None:
    series = on_cal(weekly(recurrence=Recurrence("FREQ=WEEKLY;COUNT=3")), "s1")
    # The copies' own link ids name no stored link (a reset forgot them); only title/start/end
    # still ties them to the occurrences, whatever the title's spacing and case.
    copies = copies_of(series, title="  weekly ")

    p = plan(cal=[series], crm=copies, crm_caps=NO_SERIES, first_sync=True)

    assert not p.writes
    links = [a.link for a in only(p, "link")]
    assert sorted(lk.crm_id for lk in links) == ["m0", "m1", "m2"]
    master = only(p, "refresh")[-1].link
    assert master.expanded and master.calendar_id == "s1"
    assert {lk.series_link_id for lk in links} == {master.link_id}
    assert len({lk.occurrence_key for lk in links}) == 3


def test_adopted_occurrence_copy_equal_to_the_occurrence_needs_no_write_later() -> None:
    series = on_cal(weekly(recurrence=Recurrence("FREQ=WEEKLY;COUNT=2")), "s1")
    first = plan(cal=[series], crm=copies_of(series), crm_caps=NO_SERIES, first_sync=True)
    links = [a.link for a in only(first, "link")]
    master = only(first, "refresh")[-1].link
    assert all(lk.content_hash for lk in links)  # the copies show what the series says

    # The series is listed again, unchanged: nothing to write.
    again = plan(links=[master, *links], cal=[series], crm_caps=NO_SERIES)

    assert not again.writes


def test_series_on_the_crm_adopts_its_calendar_copies_and_none_is_copied_back() -> None:
    series = on_crm(weekly(recurrence=Recurrence("FREQ=WEEKLY;COUNT=3")), "s1")
    copies = copies_of(series, side="calendar")

    p = plan(cal=copies, crm=[series], cal_caps=NO_SERIES, first_sync=True)

    assert not p.writes
    assert sorted(a.link.calendar_id for a in only(p, "link")) == ["c0", "c1", "c2"]


def test_all_day_series_adopts_copies_stored_at_utc_midnight() -> None:
    day = date(2026, 3, 3)
    series = on_cal(
        meeting(
            "Offsite",
            start=datetime(2026, 3, 3, tzinfo=UTC),
            recurrence=Recurrence("FREQ=WEEKLY;COUNT=2"),
        ),
        "s1",
    )
    series = replace(series, start=day, end=day + timedelta(days=1), timezone=None)
    copies = [
        on_crm(
            meeting("Offsite", start=datetime(2026, 3, 3 + 7 * n, tzinfo=UTC), hours=24),
            f"m{n}",
        )
        for n in range(2)
    ]

    p = plan(cal=[series], crm=copies, crm_caps=NO_SERIES, first_sync=True)

    assert not p.writes
    assert sorted(a.link.crm_id for a in only(p, "link")) == ["m0", "m1"]


def test_expanded_series_adopts_the_unlinked_copy_carrying_the_occurrences_link_id() -> None:
    one_way = replace(TWO_WAY, direction="calendar_to_crm")
    series = on_cal(weekly(recurrence=Recurrence("FREQ=WEEKLY;COUNT=3")))
    first = plan(cal=[series], crm_caps=NO_SERIES, settings=one_way)
    master = replace(only(first, "refresh")[-1].link, calendar_version="cv1")
    children = [
        a.link.with_side("crm", f"m{i}", f"mv{i}") for i, a in enumerate(only(first, "create"))
    ]
    second = children[1]
    shown = only(first, "create")[1].event
    # The CRM now holds the second copy under another id (restored, retitled there), and
    # a look-alike with the occurrence's exact title and time but without our link id.
    restored = on_crm(replace(shown, title="Weekly (CRM)", link_id=second.link_id), "m9")
    look_alike = on_crm(shown, "m8")

    p = plan(
        links=[master, *children],
        crm=[restored, look_alike],
        crm_deleted=("m1",),
        cal_context=[series],
        crm_caps=NO_SERIES,
        settings=one_way,
    )

    assert not only(p, "create")
    [adopted] = only(p, "link")
    assert (adopted.link.link_id, adopted.link.crm_id) == (second.link_id, "m9")
    assert adopted.link.occurrence_key == second.occurrence_key


def test_expansion_never_adopts_an_item_already_linked() -> None:
    series = on_cal(weekly(recurrence=Recurrence("FREQ=WEEKLY;COUNT=2")), "s1")
    [occ_copy, _] = copies_of(series)
    single = replace(occ_copy, link_id=None, crm_id=None, crm_version=None)
    # A single meeting at the first occurrence's title and time, linked to its own twin.
    link, cal_single, crm_single = synced_pair(single)

    p = plan(
        links=[link],
        cal=[series, cal_single],
        crm=[crm_single],
        crm_caps=NO_SERIES,
    )

    assert not only(p, "link")
    creates = only(p, "create")
    assert [a.side for a in creates] == ["crm", "crm"]
    assert all(a.link.series_link_id for a in creates)


def test_an_occurrence_copy_is_adopted_once_and_an_occurrence_without_one_is_created() -> None:
    series = on_cal(weekly(recurrence=Recurrence("FREQ=WEEKLY;COUNT=3")), "s1")
    twin_series = replace(series, calendar_id="s2")  # the same series twice on the calendar
    copies = copies_of(series)
    del copies[2]  # the third occurrence has no copy yet

    p = plan(cal=[series, twin_series], crm=copies, crm_caps=NO_SERIES, first_sync=True)

    assert sorted(a.link.crm_id for a in only(p, "link")) == ["m0", "m1"]
    creates = only(p, "create")
    # One occurrence of the first series, three of the second: no copy is taken twice.
    assert len(creates) == 4 and all(a.side == "crm" for a in creates)
    assert not [a for a in p.actions if a.kind == "create" and a.side == "calendar"]


# -- stray copies left by an interrupted write ----------------------------------------------


def test_a_second_copy_under_a_linked_link_id_is_deleted_silently_with_a_note() -> None:
    link, _cal, crm = synced_pair(meeting("Demo"))
    real = replace(crm, link_id="L0")
    late = replace(on_crm(meeting("Demo"), "m2", "mv2"), link_id="L0")
    p = plan(links=[link], crm=[late], crm_context=[real])
    [delete] = p.writes
    assert (delete.kind, delete.side, delete.target_id) == ("delete", "crm", "m2")
    assert delete.notify is False and delete.link is None and not delete.drop_link_ids
    assert delete.notes == (pol.NOTE_STRAY_REMOVED,)
    # Listed together with the real copy: the real one is never touched.
    p = plan(links=[link], crm=[real, late])
    assert [(a.kind, a.target_id) for a in p.writes] == [("delete", "m2")]


def test_a_create_given_up_because_its_source_is_gone_is_kept_as_a_watch_not_dropped() -> None:
    # The create of "Demo" on the CRM lost its answer; then the user deleted the event.
    pending = Link("L0", calendar_id="c1", pending="crm")
    p = plan(links=[pending], cal_deleted=("c1",))
    assert not p.writes and not only(p, "unlink")
    [watch] = only(p, "refresh")
    assert watch.link == Link("L0", pending="crm", abandoned_at=NOW)


def test_a_late_copy_of_a_given_up_create_is_deleted_silently_when_it_lands() -> None:
    watch = Link("L0", pending="crm", abandoned_at=NOW)
    landed = replace(on_crm(meeting("Demo"), "m9", "mv9"), link_id="L0")
    p = plan(links=[watch], crm=[landed], now=NOW + timedelta(hours=1))
    [delete] = p.writes
    assert (delete.kind, delete.side, delete.target_id, delete.notify) == (
        "delete",
        "crm",
        "m9",
        False,
    )
    assert delete.notes == (pol.NOTE_STRAY_REMOVED,)
    assert not only(p, "link") and not [a for a in p.writes if a.kind == "create"]


def test_of_two_late_copies_under_one_link_id_one_is_kept_and_the_other_deleted() -> None:
    # The user deleted the linked copy m1; two retries of a lost create both landed later.
    link, cal, _ = synced_pair(meeting("Demo"))
    first = replace(on_crm(meeting("Demo"), "m2", "mv2"), link_id="L0")
    second = replace(on_crm(meeting("Demo"), "m3", "mv3"), link_id="L0")
    p = plan(links=[link], crm=[first, second], crm_deleted=("m1",), cal_context=[cal])
    [delete] = p.writes
    assert (delete.kind, delete.side, delete.target_id) == ("delete", "crm", "m3")
    [kept] = only(p, "refresh")
    assert kept.link.crm_id == "m2"


def test_a_link_deleted_within_a_day_of_its_create_leaves_a_watch_for_late_copies() -> None:
    # The create was answered, but an attempt the adapter retried may still land.
    link, _cal, crm = synced_pair(meeting("Demo"))
    recent = replace(link, unsure_since=NOW - timedelta(hours=2))
    p = plan(links=[recent], crm=[crm], cal_deleted=("c1",))
    [delete] = p.writes
    assert (delete.kind, delete.side, delete.target_id) == ("delete", "crm", "m1")
    assert not delete.drop_link_ids
    assert delete.also_save == (Link("L0", pending="crm", abandoned_at=NOW),)
    # A day later, the link is simply dropped.
    old = replace(link, unsure_since=NOW - timedelta(days=1))
    [delete] = plan(links=[old], crm=[crm], cal_deleted=("c1",)).writes
    assert delete.drop_link_ids == ("L0",) and not delete.also_save


def test_a_given_up_create_is_forgotten_after_a_day() -> None:
    watch = Link("L0", pending="crm", abandoned_at=NOW)
    assert not plan(links=[watch], now=NOW + timedelta(hours=23)).actions
    [unlink] = plan(links=[watch], now=NOW + timedelta(days=1)).actions
    assert (unlink.kind, unlink.drop_link_ids) == ("unlink", ("L0",))


def unanswered_in_crm(link: Link, sent: Event, ago: timedelta) -> Link:
    """`link` after an update carrying `sent` to the CRM got no answer, `ago`."""
    return replace(
        link,
        unanswered_hash=write_fingerprint(sent),
        unanswered_on="crm",
        unsure_since=NOW - ago,
    )


def test_our_update_landing_after_a_newer_one_is_written_over_not_taken_for_an_edit() -> None:
    # We wrote "Demo v1" (no answer), then "Demo v2" (answered); v1 lands last in the CRM.
    v1, v2 = meeting("Demo v1"), meeting("Demo v2")
    link, cal, _ = synced_pair(v2)
    link = unanswered_in_crm(link, v1, timedelta(hours=1))
    late = on_crm(v1, "m1", "mv9")
    p = plan(links=[link], crm=[late], cal_context=[cal])
    [update] = p.writes
    assert (update.kind, update.side, update.target_id) == ("update", "crm", "m1")
    assert update.event.title == "Demo v2" and not p.actions[0].conflict


def test_our_unanswered_write_found_in_place_yields_to_the_users_newer_edit() -> None:
    # Our update to "Demo v1" got no answer but landed; the user then edited the calendar.
    v0, v1 = meeting("Demo"), meeting("Demo v1")
    link, _, _ = synced_pair(v0)
    link = unanswered_in_crm(link, v1, timedelta(hours=1))
    edited = on_cal(meeting("Demo v3"), "c1", "cv7")
    p = plan(links=[link], cal=[edited], crm=[on_crm(v1, "m1", "mv9")])
    [update] = p.writes
    assert (update.side, update.event.title) == ("crm", "Demo v3")
    assert not [a for a in p.actions if a.conflict]


def test_a_day_after_an_unanswered_write_its_content_is_an_edit_like_any_other() -> None:
    v1, v2 = meeting("Demo v1"), meeting("Demo v2")
    link, cal, _ = synced_pair(v2)
    link = unanswered_in_crm(link, v1, timedelta(days=1))
    p = plan(links=[link], crm=[on_crm(v1, "m1", "mv9")], cal_context=[cal])
    [update] = p.writes
    assert (update.side, update.event.title) == ("calendar", "Demo v1")


def test_a_second_copy_stays_while_the_linked_copy_is_not_known_to_exist() -> None:
    link, _, _ = synced_pair(meeting("Demo"))
    late = replace(on_crm(meeting("Demo"), "m2", "mv2"), link_id="L0")
    for p in (
        plan(links=[link], crm=[late]),  # the linked copy could not be read
        plan(links=[link], crm=[late], crm_deleted=("m1",)),  # it was just deleted
    ):
        assert not [a for a in p.writes if a.side == "crm" and a.kind == "delete"]


def test_items_carrying_link_ids_without_a_link_are_linked_not_deleted_after_a_reset() -> None:
    cal = replace(on_cal(meeting("Demo")), link_id="L5")
    crm = replace(on_crm(meeting("Demo moved", start=NOW + timedelta(days=3))), link_id="L5")
    p = plan(cal=[cal], crm=[crm], first_sync=True)
    assert not p.writes
    [link] = only(p, "link")
    assert (link.link.link_id, link.link.calendar_id, link.link.crm_id) == ("L5", "c1", "m1")


def test_a_user_item_without_our_link_id_is_never_removed_as_a_stray() -> None:
    link, cal, crm = synced_pair(meeting("Demo"))
    mine = on_crm(meeting("Demo"), "m2", "mv2")
    p = plan(links=[link], crm=[mine], crm_context=[crm], cal_context=[cal])
    assert not [a for a in p.writes if a.kind == "delete"]
    [create] = p.writes
    assert (create.kind, create.side) == ("create", "calendar")


def test_a_stray_on_the_source_of_a_one_way_sync_is_neither_deleted_nor_copied() -> None:
    link, cal, _crm = synced_pair(meeting("Demo"))
    stray = replace(on_cal(meeting("Demo"), "c2", "cv2"), link_id="L0")
    p = plan(
        links=[link],
        cal=[stray],
        cal_context=[cal],
        settings=SyncSettings(direction="crm_to_calendar", record_option="all"),
    )
    assert [(a.kind, a.target_id) for a in p.writes] == [("delete", "c2")]  # destination
    p = plan(
        links=[link],
        cal=[stray],
        cal_context=[cal],
        settings=SyncSettings(direction="calendar_to_crm", record_option="all"),
    )
    assert not p.writes and pol.SKIP_STRAY_ON_SOURCE in skip_reasons(p)  # nor copied


def test_a_stray_with_invitees_on_a_side_that_would_email_them_is_kept_under_never() -> None:
    link, cal, _crm = synced_pair(meeting("Demo"))
    stray = replace(on_cal(meeting("Demo"), "c2", "cv2"), link_id="L0")
    loud = Capabilities(suppress_invitations=False)
    never = replace(TWO_WAY, invitations="never")
    p = plan(links=[link], cal=[stray], cal_context=[cal], cal_caps=loud, settings=never)
    assert not p.writes
    assert pol.SKIP_STRAY_KEPT in skip_reasons(p)


def test_a_stray_with_invitees_is_cancelled_where_the_policy_emails_invitees() -> None:
    link, cal, _crm = synced_pair(meeting("Demo"))
    stray = replace(on_cal(meeting("Demo"), "c2", "cv2"), link_id="L0")
    loud = Capabilities(suppress_invitations=False)
    always = replace(TWO_WAY, invitations="always")
    p = plan(links=[link], cal=[stray], cal_context=[cal], cal_caps=loud, settings=always)
    [delete] = p.writes
    assert (delete.kind, delete.target_id, delete.notify) == ("delete", "c2", True)


def test_the_linked_copy_of_a_stray_is_read_before_planning() -> None:
    link, _, _ = synced_pair(meeting("Demo"))
    late = replace(on_crm(meeting("Demo"), "m2", "mv2"), link_id="L0")
    wanted = reads_needed([link], SideChanges(), SideChanges(events={"m2": late}), TWO_WAY)
    assert ("crm", "m1") in wanted


def test_when_the_linked_copy_is_deleted_its_second_copy_becomes_the_linked_one() -> None:
    link, cal, _crm = synced_pair(meeting("Demo"))
    late = replace(on_crm(meeting("Demo"), "m2", "mv2"), link_id="L0")
    p = plan(links=[link], crm=[late], crm_deleted=("m1",), cal_context=[cal])
    assert not p.writes  # neither the meeting deleted on the calendar nor copied again
    [refresh] = only(p, "refresh")
    assert (refresh.link.link_id, refresh.link.calendar_id, refresh.link.crm_id) == (
        "L0",
        "c1",
        "m2",
    )
