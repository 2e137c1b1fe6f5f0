"""Expansion of a series into single occurrences, for a side without native series."""

from __future__ import annotations

import re
from calendar import month_name
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from calsync.sync.model import Event, When, occurrence_key, to_utc_instant

# A runaway rule (FREQ=MINUTELY without end) must not stall a run.
MAX_OCCURRENCES = 1000

_UNTIL = re.compile(r"UNTIL=([0-9T]+Z?)", re.IGNORECASE)


@dataclass(frozen=True)
class Occurrence:
    key: str  # occurrence_key of the original start
    event: Event


def _normalised_rule(text: str, aware: bool) -> str:
    """dateutil insists UNTIL matches DTSTART's awareness; vendors are not that strict."""
    text = text.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]

    def fix(match: re.Match[str]) -> str:
        value = match.group(1)
        if aware and not value.upper().endswith("Z"):
            day = value[:8]
            clock = value[9:15] if "T" in value.upper() else "235959"
            return f"UNTIL={day}T{clock}Z"
        if not aware and value.upper().endswith("Z"):
            return f"UNTIL={value[:-1]}"
        return match.group(0)

    return _UNTIL.sub(fix, text)


def _rule(event: Event) -> tuple[rrule, ZoneInfo | None]:
    assert event.recurrence is not None and event.start is not None
    if event.all_day:
        start = datetime.combine(event.start, time())  # type: ignore[arg-type]
        return rrulestr(_normalised_rule(event.recurrence.rrule, False), dtstart=start), None
    # Expanded in the event's own zone so 09:00 stays 09:00 across a DST change.
    zone = ZoneInfo(event.timezone or "UTC")
    start = event.start.astimezone(zone)  # type: ignore[union-attr]
    return rrulestr(_normalised_rule(event.recurrence.rrule, True), dtstart=start), zone


# RFC 5545 3.3.10: the rule parts, and the range of each numeric one as (low, high, signed).
_FREQUENCIES = {"SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"}
_NUMERIC_PARTS = {
    "BYSECOND": (0, 60, False),
    "BYMINUTE": (0, 59, False),
    "BYHOUR": (0, 23, False),
    "BYMONTHDAY": (1, 31, True),
    "BYYEARDAY": (1, 366, True),
    "BYWEEKNO": (1, 53, True),
    "BYMONTH": (1, 12, False),
    "BYSETPOS": (1, 366, True),
}
_RULE_PARTS = {"FREQ", "UNTIL", "COUNT", "INTERVAL", "BYDAY", "WKST", *_NUMERIC_PARTS}
_WEEKDAYS = {"MO", "TU", "WE", "TH", "FR", "SA", "SU"}
_BYDAY = re.compile(r"^[+-]?(\d{1,2})?([A-Z]{2})$")
_UNTIL_VALUE = re.compile(r"^(\d{8})(?:T(\d{6})(Z?))?$")
# The most days each month can have (February in a leap year).
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def rule_defect(rrule: str, start: When | None) -> str | None:
    """Why a recurrence rule has no occurrence anyone can compute, or None.

    dateutil and servers are lenient where RFC 5545 is not, and fail slowly or silently:
    dateutil takes BYMONTH=13 or February 30 and then searches every year up to 9999 for
    an occurrence (seconds per event, for none); Radicale stores such a series and leaves
    it out of every time-range query. A rule is checked against the RFC here instead.
    """
    parts: dict[str, str] = {}
    for piece in rrule.strip().removeprefix("RRULE:").split(";"):
        name, sep, value = piece.partition("=")
        name = name.strip().upper()
        if not sep or not name or not value:
            return f"{piece!r} is not a rule part"
        if name not in _RULE_PARTS:
            return f"calsync does not know the {name} part"
        if name in parts:
            return f"it names {name} twice"
        parts[name] = value.strip().upper()
    freq = parts.get("FREQ")
    if freq is None:
        return "it has no FREQ"
    if freq not in _FREQUENCIES:
        return f"FREQ={freq} is not a frequency"
    for name in ("INTERVAL", "COUNT"):
        if name in parts and not (parts[name].isdigit() and int(parts[name]) >= 1):
            return f"{name}={parts[name]} is not a whole number of at least 1"
    numbers: dict[str, list[int]] = {}
    for name, (low, high, signed) in _NUMERIC_PARTS.items():
        if name not in parts:
            continue
        values = []
        for item in parts[name].split(","):
            try:
                number = int(item)
            except ValueError:
                return f"{name}={item} is not a number"
            if not (low <= number <= high or (signed and -high <= number <= -low)):
                span = f"{low} and {high}" + (f" or -{high} and -{low}" if signed else "")
                return f"{name}={number} is not between {span}"
            values.append(number)
        numbers[name] = values
    for day in parts.get("BYDAY", "").split(",") if "BYDAY" in parts else ():
        match = _BYDAY.match(day)
        if not match or match.group(2) not in _WEEKDAYS or match.group(1) in ("0", "00"):
            return f"BYDAY={day} is not a weekday"
        if match.group(1) and int(match.group(1)) > 53:
            return f"BYDAY={day} is not a weekday of a month or year"
    if "WKST" in parts and parts["WKST"] not in _WEEKDAYS:
        return f"WKST={parts['WKST']} is not a weekday"
    months, days = numbers.get("BYMONTH"), numbers.get("BYMONTHDAY")
    if months and days and not any(abs(d) <= _MONTH_DAYS[m - 1] for m in months for d in days):
        named = ", ".join(month_name[m] for m in sorted(set(months)))
        return f"{named} never {'has' if len(months) == 1 else 'have'} day {days[0]}"
    if "UNTIL" in parts:
        return _until_defect(parts["UNTIL"], start)
    return None


def _until_defect(value: str, start: When | None) -> str | None:
    match = _UNTIL_VALUE.match(value)
    if not match:
        return f"UNTIL={value} is not a date"
    try:
        day = datetime.strptime(match.group(1), "%Y%m%d").date()
        clock = datetime.strptime(match.group(2) or "235959", "%H%M%S").time()
    except ValueError:
        return f"UNTIL={value} is not a date"
    if start is None:
        return None
    if isinstance(start, datetime) and match.group(3):
        ends_before = datetime.combine(day, clock, UTC) < start
    else:
        # A date or local time: a day of slack covers any zone's offset.
        start_day = start.date() if isinstance(start, datetime) else start
        ends_before = day < start_day - timedelta(days=1)
    return f"it ends (UNTIL={value}) before it starts" if ends_before else None


def rule_problem(event: Event) -> str | None:
    assert event.recurrence is not None
    defect = rule_defect(event.recurrence.rrule, event.start)
    if defect:
        return f"the recurrence rule cannot be read ({defect})"
    try:
        rule, _ = _rule(event)
    except (ValueError, TypeError, KeyError) as exc:
        return f"the recurrence rule cannot be read ({exc})"
    if not isinstance(rule, rrule):
        return "the recurrence rule cannot be read"
    return None


def expand(event: Event, window_start: datetime, window_end: datetime) -> list[Occurrence]:
    """Occurrences of a series overlapping the window, cancelled ones left out, moved ones moved.

    Each occurrence is a single event with no ids: it is a new item for the other side.
    """
    assert event.recurrence is not None and event.start is not None and event.end is not None
    rule, zone = _rule(event)
    duration = event.end - event.start  # type: ignore[operator]
    cancelled = {occurrence_key(c) for c in event.recurrence.cancelled}
    moved = {occurrence_key(m.original_start): m for m in event.recurrence.moved}

    if zone is None:
        lo = datetime.combine(window_start.date(), time()) - duration - timedelta(days=1)
        hi = datetime.combine(window_end.date(), time()) + timedelta(days=1)
    else:
        lo, hi = window_start - duration, window_end
    out: list[Occurrence] = []
    for count, when in enumerate(rule.xafter(lo, inc=True)):
        if when > hi or count >= MAX_OCCURRENCES:
            break
        original: When = when.date() if zone is None else when.astimezone(UTC)
        key = occurrence_key(original)
        if key in cancelled:
            continue
        if key in moved:
            start, end = moved[key].start, moved[key].end
        elif zone is None:
            start, end = original, original + duration  # type: ignore[operator]
        else:
            start, end = original, (when + duration).astimezone(UTC)
        if to_utc_instant(end) <= window_start or to_utc_instant(start) >= window_end:
            continue
        occ = replace(
            event,
            start=start,
            end=end,
            recurrence=None,
            calendar_id=None,
            calendar_version=None,
            crm_id=None,
            crm_version=None,
            link_id=None,
            ical_uid=None,
        )
        out.append(Occurrence(key, occ))
    return out


# How many occurrences `series_ended` looks at past the instant it asks about.
_ENDED_LOOKAHEAD = 10_000


def series_ended(event: Event, now: datetime) -> bool:
    """Whether every occurrence of a series has ended before `now`.

    Only a rule with UNTIL or COUNT can end; moved occurrences count where they were moved
    to, cancelled ones not at all. An unreadable rule counts as not ended.
    """
    assert event.recurrence is not None
    if event.start is None or event.end is None:
        return False
    text = _normalised_rule(event.recurrence.rrule, not event.all_day).upper()
    if "UNTIL=" not in text and "COUNT=" not in text:
        return False
    try:
        rule, zone = _rule(event)
    except (ValueError, TypeError, KeyError):
        return False
    duration = event.end - event.start  # type: ignore[operator]
    cancelled = {occurrence_key(c) for c in event.recurrence.cancelled}
    moved = {occurrence_key(m.original_start): m for m in event.recurrence.moved}
    if any(to_utc_instant(m.end) >= now for k, m in moved.items() if k not in cancelled):
        return False
    if zone is None:
        # All-day: an occurrence on day d ends at UTC midnight of d + duration.
        threshold = now.astimezone(UTC).replace(tzinfo=None) - duration
    else:
        threshold = now - duration
    # The first occurrence that has not ended by the rule; skip those cancelled or moved.
    for count, when in enumerate(rule.xafter(threshold, inc=True)):
        if count >= _ENDED_LOOKAHEAD:
            return False
        original: When = when.date() if zone is None else when.astimezone(UTC)
        key = occurrence_key(original)
        if key not in cancelled and key not in moved:
            return False
    return True


def original_occurrence(event: Event, key: str) -> tuple[When, When] | None:
    """Start and end an occurrence has by the rule alone, to tell whether a copy was moved."""
    assert event.recurrence is not None and event.start is not None and event.end is not None
    duration = event.end - event.start  # type: ignore[operator]
    if event.all_day:
        start: When = date.fromisoformat(key)
    else:
        start = datetime.fromisoformat(key)
    return start, start + duration  # type: ignore[operator]


def overlaps_window(event: Event, window_start: datetime, window_end: datetime) -> bool:
    if event.recurrence is not None:
        return bool(expand(event, window_start, window_end))
    assert event.start is not None and event.end is not None
    end = to_utc_instant(event.end)
    start = to_utc_instant(event.start)
    if end == start:
        return window_start <= start < window_end
    return end > window_start and start < window_end
