"""The duplicate scan itself (pure): which items are one meeting."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from sync_fakes import NOW, USER, meeting

from calsync.sync import Event
from calsync.sync.dedupe import ScanOptions, find_duplicates

OPTIONS = ScanOptions(NOW - timedelta(days=30), NOW + timedelta(days=365), user_email=USER)


def cal(ev: Event, n: int) -> Event:
    return ev.with_identity("calendar", f"c{n}", "v")


def crm(ev: Event, n: int) -> Event:
    return ev.with_identity("crm", f"m{n}", "v")


def grouped(calendar: list[Event], records: list[Event] = ()) -> list[set[str]]:  # type: ignore[assignment]
    groups = find_duplicates(calendar, records, [], OPTIONS)
    return [{i.item_id for i in g.items} for g in groups]


def test_an_item_without_an_organizer_joins_copies_whose_organizer_is_known() -> None:
    assert grouped([cal(meeting("Demo"), 1), cal(meeting("Demo", organizer=None), 2)]) == [
        {"c1", "c2"}
    ]


def test_copies_with_different_known_organizers_are_different_meetings() -> None:
    assert grouped([cal(meeting("Demo"), 1), cal(meeting("Demo", organizer="x@y.org"), 2)]) == []


def test_one_copy_on_each_side_is_a_pair_of_twins_not_duplicates() -> None:
    assert grouped([cal(meeting("Demo"), 1)], [crm(meeting("Demo"), 1)]) == []


def test_an_all_day_event_and_its_midnight_copy_are_one_meeting() -> None:
    day = Event(title="Off", start=date(2026, 3, 4), end=date(2026, 3, 5), organizer=USER)
    midnight = replace(
        day, start=datetime(2026, 3, 4, tzinfo=UTC), end=datetime(2026, 3, 5, tzinfo=UTC)
    )

    assert grouped([cal(day, 1)], [crm(midnight, 1), crm(midnight, 2)]) == [{"c1", "m1", "m2"}]
