from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from calsync.sync import Event, MovedOccurrence, Recurrence, problem
from calsync.sync.recurrence import expand

BERLIN = ZoneInfo("Europe/Berlin")
WIDE = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def berlin_series(rule: str, **rec: object) -> Event:
    start = datetime(2026, 3, 23, 9, 0, tzinfo=BERLIN).astimezone(UTC)
    return Event(
        title="Standup",
        start=start,
        end=start + timedelta(minutes=15),
        timezone="Europe/Berlin",
        recurrence=Recurrence(rule, **rec),  # type: ignore[arg-type]
    )


def test_occurrences_keep_local_time_across_dst() -> None:
    occs = expand(berlin_series("FREQ=WEEKLY;COUNT=3"), *WIDE)
    local = [o.event.start.astimezone(BERLIN) for o in occs]
    assert [t.hour for t in local] == [9, 9, 9]
    assert [o.event.start.hour for o in occs] == [8, 7, 7]  # UTC shifts on 29 March
    assert all(o.event.timezone == "Europe/Berlin" for o in occs)


def test_until_in_utc_or_as_a_date_is_accepted() -> None:
    assert len(expand(berlin_series("FREQ=DAILY;UNTIL=20260325T235959Z"), *WIDE)) == 3
    assert len(expand(berlin_series("FREQ=DAILY;UNTIL=20260325"), *WIDE)) == 3


def test_cancelled_and_moved_occurrences_are_respected() -> None:
    series = berlin_series("FREQ=DAILY;COUNT=4")
    starts = [o.event.start for o in expand(series, *WIDE)]
    moved_to = starts[2] + timedelta(hours=3)
    series = berlin_series(
        "FREQ=DAILY;COUNT=4",
        cancelled=(starts[1],),
        moved=(MovedOccurrence(starts[2], moved_to, moved_to + timedelta(minutes=15)),),
    )
    got = expand(series, *WIDE)
    assert [o.event.start for o in got] == [starts[0], moved_to, starts[3]]
    # The key stays the original start, so the copy of a moved occurrence is found again.
    assert got[1].key == starts[2].isoformat()


def test_all_day_series_expand_to_dates() -> None:
    series = Event(
        title="Holiday",
        start=date(2026, 5, 1),
        end=date(2026, 5, 2),
        recurrence=Recurrence("FREQ=YEARLY;UNTIL=20280501T000000Z"),
    )
    got = expand(series, datetime(2026, 1, 1, tzinfo=UTC), datetime(2029, 1, 1, tzinfo=UTC))
    assert [o.event.start for o in got] == [date(2026, 5, 1), date(2027, 5, 1), date(2028, 5, 1)]
    assert all(o.event.end - o.event.start == timedelta(days=1) for o in got)


def test_only_the_window_is_expanded_and_runaway_rules_are_capped() -> None:
    series = berlin_series("FREQ=DAILY")
    window = (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 8, tzinfo=UTC))
    assert len(expand(series, *window)) == 7
    minutely = berlin_series("FREQ=MINUTELY")
    assert len(expand(minutely, *WIDE)) == 1000


def test_unreadable_rule_is_a_problem_not_a_crash() -> None:
    assert "recurrence rule" in (problem(berlin_series("FREQ=NEVER")) or "")
    assert problem(berlin_series("FREQ=WEEKLY;COUNT=2")) is None


def test_a_rule_that_never_occurs_is_unreadable_whoever_provides_it() -> None:
    # dateutil would search every year up to 9999 for February 30 before giving up.
    never = berlin_series("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30")
    assert problem(never) == ("the recurrence rule cannot be read (February never has day 30)")
    assert problem(berlin_series("FREQ=WEEKLY;BYDAY=XX")) == (
        "the recurrence rule cannot be read (BYDAY=XX is not a weekday)"
    )
    assert problem(berlin_series("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29")) is None  # leap years
