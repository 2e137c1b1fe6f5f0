"""Time-zone and recurrence helpers shared by the emulators.

Both vendors expand a series in the series' own time zone (wall-clock), so a 09:00 weekly
meeting stays at 09:00 across a DST change; the expansion here does the same and only
then converts to UTC. Outlook's recurrence model (pattern + range) is the neutral form;
Google's RRULE strings are translated into it.
"""

from __future__ import annotations

import calendar as _cal
import dataclasses
import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

UTC = dt.UTC

# Graph accepts every Windows zone name as well as IANA ones. The full CLDR
# windowsZones.xml table ships with icalendar; unknown names are rejected as the real
# API does.
WINDOWS_ZONES = {"UTC": "UTC", "Coordinated Universal Time": "UTC", **WINDOWS_TO_OLSON}

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
INDEXES = ["first", "second", "third", "fourth", "last"]


class BadTimeZone(ValueError):
    pass


def zone(name: str | None) -> ZoneInfo:
    """Resolve a Windows or IANA zone name; raise BadTimeZone for anything else."""
    if not name:
        raise BadTimeZone(name or "")
    iana = WINDOWS_ZONES.get(name, name)
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadTimeZone(name) from exc


def parse_naive(value: str) -> dt.datetime:
    """Parse "2024-01-01T10:00:00[.fffffff]" (Graph sends 7 fractional digits)."""
    value = value.strip()
    if "." in value:
        head, frac = value.split(".", 1)
        digits = "".join(ch for ch in frac if ch.isdigit())[:6]
        rest = frac[len("".join(ch for ch in frac if ch.isdigit())) :]
        value = f"{head}.{digits}{rest}" if digits else head + rest
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def parse_instant(value: str, default_tz: dt.tzinfo = UTC) -> dt.datetime:
    """Parse an ISO 8601 instant; a value without offset is taken in ``default_tz``."""
    parsed = parse_naive(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_tz)
    return parsed.astimezone(UTC)


def rfc3339(value: dt.datetime) -> str:
    """UTC instant with millisecond precision and a Z, as both vendors emit timestamps."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


@dataclasses.dataclass
class Pattern:
    """Outlook-style recurrence: pattern (type/interval/days...) and range."""

    # daily | weekly | absoluteMonthly | relativeMonthly | absoluteYearly | relativeYearly
    type: str
    interval: int = 1
    days_of_week: tuple[str, ...] = ()
    day_of_month: int = 0
    month: int = 0
    index: str = "first"
    first_day_of_week: str = "sunday"
    range_type: str = "noEnd"  # endDate | noEnd | numbered
    start_date: dt.date = dt.date(1970, 1, 1)
    end_date: dt.date | None = None
    count: int = 0


def _matches(p: Pattern, day: dt.date) -> bool:
    start = p.start_date
    wd = WEEKDAYS[day.weekday()]
    months = (day.year - start.year) * 12 + day.month - start.month
    if p.type == "daily":
        return (day - start).days % p.interval == 0
    if p.type == "weekly":
        fdw = WEEKDAYS.index(p.first_day_of_week)
        week0 = start - dt.timedelta(days=(start.weekday() - fdw) % 7)
        return ((day - week0).days // 7) % p.interval == 0 and wd in p.days_of_week
    if p.type in ("absoluteMonthly", "relativeMonthly") and months % p.interval:
        return False
    yearly = p.type in ("absoluteYearly", "relativeYearly")
    if yearly and (day.month != p.month or (day.year - start.year) % p.interval):
        return False
    if p.type in ("absoluteMonthly", "absoluteYearly"):
        return day.day == p.day_of_month
    if p.type in ("relativeMonthly", "relativeYearly"):
        if wd not in p.days_of_week:
            return False
        if p.index == "last":
            return day.day + 7 > _cal.monthrange(day.year, day.month)[1]
        return (day.day - 1) // 7 == INDEXES.index(p.index)
    raise ValueError(f"unsupported recurrence pattern {p.type!r}")


def occurrence_dates(p: Pattern, until: dt.date) -> Iterator[dt.date]:
    """Dates of the series from its range start up to ``until`` (inclusive)."""
    day = p.start_date
    last = until if p.end_date is None else min(until, p.end_date)
    emitted = 0
    if p.range_type == "numbered" and p.count <= 0:
        return
    while day <= last:
        if _matches(p, day):
            yield day
            emitted += 1
            if p.range_type == "numbered" and emitted >= p.count:
                return
        day += dt.timedelta(days=1)


def expand(
    p: Pattern,
    local_start: dt.datetime,
    duration: dt.timedelta,
    tz: dt.tzinfo,
    window_start: dt.datetime,
    window_end: dt.datetime,
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """UTC (start, end) of occurrences overlapping [window_start, window_end)."""
    until = (window_end.astimezone(tz) + dt.timedelta(days=1)).date()
    for day in occurrence_dates(p, until):
        start = dt.datetime.combine(day, local_start.time(), tzinfo=tz).astimezone(UTC)
        end = start + duration
        if end > window_start and start < window_end:
            yield start, end
        elif start >= window_end:
            return


# -- Google RRULE <-> Pattern -------------------------------------------------------------

_RR_DAYS = {
    "MO": "monday",
    "TU": "tuesday",
    "WE": "wednesday",
    "TH": "thursday",
    "FR": "friday",
    "SA": "saturday",
    "SU": "sunday",
}


def pattern_from_rrule(rule: str, start_date: dt.date) -> Pattern:
    """Translate the RRULE subset calendars actually produce; reject anything else."""
    if not rule.startswith("RRULE:"):
        raise ValueError("recurrence lines must start with RRULE:, EXRULE:, RDATE: or EXDATE:")
    parts = dict(item.split("=", 1) for item in rule[len("RRULE:") :].split(";") if item)
    freq = parts.get("FREQ")
    p = Pattern(type="daily", start_date=start_date, interval=int(parts.get("INTERVAL", 1)))
    byday = [d for d in parts.get("BYDAY", "").split(",") if d]
    if freq == "DAILY":
        p.type = "daily"
    elif freq == "WEEKLY":
        p.type = "weekly"
        days = byday or [list(_RR_DAYS)[start_date.weekday()]]
        p.days_of_week = tuple(_RR_DAYS[d] for d in days)
        p.first_day_of_week = _RR_DAYS[parts.get("WKST", "MO")]
    elif freq in ("MONTHLY", "YEARLY"):
        yearly = freq == "YEARLY"
        p.month = start_date.month if yearly else 0
        if byday:
            ordinal, day = byday[0][:-2], byday[0][-2:]
            p.type = "relativeYearly" if yearly else "relativeMonthly"
            p.days_of_week = (_RR_DAYS[day],)
            p.index = "last" if ordinal == "-1" else INDEXES[int(ordinal or 1) - 1]
        else:
            p.type = "absoluteYearly" if yearly else "absoluteMonthly"
            p.day_of_month = int(parts.get("BYMONTHDAY", start_date.day))
    else:
        raise ValueError(f"unsupported FREQ {freq!r}")
    if "COUNT" in parts:
        p.range_type, p.count = "numbered", int(parts["COUNT"])
    elif "UNTIL" in parts:
        until = parts["UNTIL"]
        p.range_type = "endDate"
        p.end_date = dt.date(int(until[:4]), int(until[4:6]), int(until[6:8]))
    return p
