"""First-sync twin matching (what a reset relies on): our link id first, then the iCalUID,
then title/start/end, with the organizer compared only where both sides know it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

from sync_fakes import meeting

from calsync.sync import Event, Recurrence, pair_twins


def on_cal(ev, n: int = 1):  # type: ignore[no-untyped-def]
    return replace(ev, calendar_id=f"c{n}", calendar_version="v")


def on_crm(ev, n: int = 1):  # type: ignore[no-untyped-def]
    return replace(ev, crm_id=f"m{n}", crm_version="v")


def test_our_link_id_wins_over_a_title_start_end_match() -> None:
    look_alike = on_cal(meeting("Demo"), 1)  # sorted first, same title and time
    ours = on_cal(meeting("Demo", link_id="L1"), 2)
    twin = on_crm(meeting("Demo", link_id="L1"))

    assert pair_twins([look_alike, ours], [twin]) == [(ours, twin)]


def test_the_ical_uid_wins_over_a_title_start_end_match() -> None:
    look_alike = on_cal(meeting("Demo"), 1)
    same_uid = on_cal(meeting("Demo", ical_uid="U"), 2)
    twin = on_crm(meeting("Demo", ical_uid="U"))

    assert pair_twins([look_alike, same_uid], [twin]) == [(same_uid, twin)]


def test_twins_match_when_only_one_side_knows_the_organizer() -> None:
    cal = on_cal(meeting("Demo", organizer=None))
    crm = on_crm(meeting("Demo"))

    assert pair_twins([cal], [crm]) == [(cal, crm)]


def test_twins_with_different_known_organizers_do_not_match() -> None:
    cal = on_cal(meeting("Demo", organizer="boss@example.org"))
    crm = on_crm(meeting("Demo"))

    assert pair_twins([cal], [crm]) == []


def test_an_all_day_event_matches_its_copy_at_utc_midnight() -> None:
    cal = on_cal(Event(title="Off", start=date(2026, 3, 4), end=date(2026, 3, 5)))
    crm = on_crm(
        replace(
            cal,
            calendar_id=None,
            start=datetime(2026, 3, 4, tzinfo=UTC),
            end=datetime(2026, 3, 5, tzinfo=UTC),
        )
    )

    assert pair_twins([cal], [crm]) == [(cal, crm)]


def test_a_series_never_matches_a_single_event_by_title_and_time() -> None:
    series = on_cal(meeting("Weekly", recurrence=Recurrence("FREQ=WEEKLY;COUNT=3")))
    first_occurrence = on_crm(meeting("Weekly"))

    assert pair_twins([series], [first_occurrence]) == []
