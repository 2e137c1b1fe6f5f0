"""The neutral event model both sides are converted to, and what can be said about it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Side = Literal["calendar", "crm"]
SIDES: tuple[Side, Side] = ("calendar", "crm")

Response = Literal["needs_action", "accepted", "declined", "tentative"]
Status = Literal["confirmed", "cancelled"]

# Key of `Event.extra` on an outgoing event whose invitees the engine withheld (the
# destination would e-mail them): the tuple of withheld Invitees, for the adapter to list
# in the event's body if it can. Never written as attendees.
WITHHELD_INVITEES = "withheld_invitees"

# A time is an aware UTC datetime, or a date for all-day events (never a midnight).
When = datetime | date


def other_side(side: Side) -> Side:
    return "crm" if side == "calendar" else "calendar"


@dataclass(frozen=True)
class Invitee:
    email: str
    name: str | None = None
    response: Response = "needs_action"


@dataclass(frozen=True)
class MovedOccurrence:
    """One occurrence of a series shown at another time than its rule says."""

    original_start: When
    start: When
    end: When


@dataclass(frozen=True)
class Recurrence:
    """An RRULE value (without the "RRULE:" prefix) plus its exceptions."""

    rrule: str
    cancelled: tuple[When, ...] = ()  # original starts (EXDATE)
    moved: tuple[MovedOccurrence, ...] = ()


@dataclass(frozen=True)
class Capabilities:
    """What a side can do; the engine adapts its plan to it."""

    two_way: bool = True
    suppress_invitations: bool = True
    recurrence: bool = True
    notify: bool = True
    # False: an incremental listing never reports deletions (the side cannot see them). A
    # linked item it leaves out is then unknown, never deleted; a `deleted_ids` entry is
    # read back with `get` before it counts; absences are found by full listings, which
    # the adapter asks for from time to time by raising CursorExpired.
    lists_deletions: bool = True


@dataclass(frozen=True)
class Event:
    title: str = ""
    start: When | None = None
    end: When | None = None
    timezone: str | None = None  # IANA name; kept so local wall time survives a round trip
    location: str | None = None
    description: str | None = None
    organizer: str | None = None  # email
    invitees: tuple[Invitee, ...] = ()
    recurrence: Recurrence | None = None
    status: Status = "confirmed"
    private: bool = False
    calendar_id: str | None = None
    calendar_version: str | None = None
    crm_id: str | None = None
    crm_version: str | None = None
    last_modified: datetime | None = None
    ical_uid: str | None = None
    link_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def all_day(self) -> bool:
        return isinstance(self.start, date) and not isinstance(self.start, datetime)

    def id_on(self, side: Side) -> str | None:
        return self.calendar_id if side == "calendar" else self.crm_id

    def version_on(self, side: Side) -> str | None:
        return self.calendar_version if side == "calendar" else self.crm_version

    def with_identity(self, side: Side, item_id: str | None, version: str | None) -> Event:
        if side == "calendar":
            return replace(self, calendar_id=item_id, calendar_version=version)
        return replace(self, crm_id=item_id, crm_version=version)

    def content(self) -> Event:
        """The event without anything that identifies it on a side."""
        return replace(
            self,
            calendar_id=None,
            calendar_version=None,
            crm_id=None,
            crm_version=None,
            last_modified=None,
            link_id=None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "all_day": self.all_day,
            "timezone": self.timezone,
            "location": self.location,
            "description": self.description,
            "organizer": self.organizer,
            "invitees": [
                {"email": i.email, "name": i.name, "response": i.response} for i in self.invitees
            ],
            "recurrence": _recurrence_dict(self.recurrence),
            "status": self.status,
            "private": self.private,
            "calendar_id": self.calendar_id,
            "calendar_version": self.calendar_version,
            "crm_id": self.crm_id,
            "crm_version": self.crm_version,
            "last_modified": _iso(self.last_modified),
            "ical_uid": self.ical_uid,
            "link_id": self.link_id,
        }


def _iso(value: When | None) -> str | None:
    return value.isoformat() if value is not None else None


def _recurrence_dict(rec: Recurrence | None, canonical: bool = False) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {
        "rrule": canonical_rrule(rec.rrule) if canonical else rec.rrule,
        "cancelled": sorted(_iso(c) or "" for c in rec.cancelled),
        "moved": sorted([_iso(m.original_start), _iso(m.start), _iso(m.end)] for m in rec.moved),
    }


def occurrence_key(original_start: When) -> str:
    """Stable text key of an occurrence: its original start, in UTC or as a date."""
    if isinstance(original_start, datetime):
        return original_start.astimezone(UTC).isoformat()
    return original_start.isoformat()


# Parts whose value is the RFC 5545 default: writing them or not is the same rule.
_RRULE_DEFAULTS = {"INTERVAL": "1", "WKST": "MO"}
# Parts whose value is a set: BYDAY=TU,MO is BYDAY=MO,TU.
_RRULE_LISTS = {
    "BYSECOND",
    "BYMINUTE",
    "BYHOUR",
    "BYDAY",
    "BYMONTHDAY",
    "BYYEARDAY",
    "BYWEEKNO",
    "BYMONTH",
    "BYSETPOS",
}


def canonical_rrule(text: str) -> str:
    """One spelling per rule: FREQ first, the other parts sorted by name, upper case, no
    "RRULE:" prefix, no default (INTERVAL=1, WKST=MO), list values sorted, no "+" signs.

    A text parse on purpose: dateutil needs a DTSTART and folds defaults taken from it
    into the rule, icalendar's vRecur keeps the written order. A rule that cannot be
    split into NAME=VALUE parts is returned stripped and upper-cased (`problem` reports it).
    """
    body = text.strip().upper()
    if body.startswith("RRULE:"):
        body = body[6:]
    parts: dict[str, str] = {}
    for chunk in body.split(";"):
        if not chunk.strip():
            continue
        name, sep, value = chunk.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            return body
        if name in _RRULE_LISTS:
            items = {v.strip().lstrip("+") for v in value.split(",") if v.strip()}
            value = ",".join(sorted(items, key=_list_order))
        if _RRULE_DEFAULTS.get(name) == value:
            continue
        parts[name] = value
    freq = parts.pop("FREQ", None)
    ordered = [f"{k}={parts[k]}" for k in sorted(parts)]
    return ";".join(([f"FREQ={freq}"] if freq is not None else []) + ordered)


_WEEKDAYS = {d: n for n, d in enumerate(("MO", "TU", "WE", "TH", "FR", "SA", "SU"))}


def _list_order(value: str) -> tuple[int, int, str]:
    """Numbers by value, weekdays Monday first (an ordinal before its day: 1MO, -1FR)."""
    day = value[-2:]
    if day in _WEEKDAYS:
        num = value[:-2]
        try:
            return (_WEEKDAYS[day], int(num) if num else 0, value)
        except ValueError:
            return (99, 0, value)
    try:
        return (int(value), 0, value)
    except ValueError:
        return (99, 0, value)


def content_hash(event: Event) -> str:
    """Hash of what a user would call the meeting's content; ids and versions excluded.

    Stored in the link so our own write, read back later, is recognised as ours.
    """
    payload = {
        "title": event.title,
        "start": _iso(event.start),
        "end": _iso(event.end),
        "timezone": event.timezone,
        "location": event.location or None,
        "description": event.description or None,
        "organizer": (event.organizer or "").lower() or None,
        "invitees": sorted([i.email.lower(), i.name or "", i.response] for i in event.invitees),
        "recurrence": _recurrence_dict(event.recurrence, canonical=True),
        "status": event.status,
        "private": event.private,
    }
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def write_fingerprint(event: Event) -> str:
    """Hash of what a write of ours sets and a provider keeps as sent: title, times, place,
    text, status. Coarser than `content_hash` on purpose: providers rewrite the organizer,
    invitee names and answers, and the time zone, so our own write read back differs there."""
    payload = [
        event.title,
        _iso(to_utc_instant(event.start)) if event.start is not None else None,
        _iso(to_utc_instant(event.end)) if event.end is not None else None,
        event.location or None,
        event.description or None,
        event.status,
    ]
    raw = json.dumps(payload, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def problem(event: Event) -> str | None:
    """Why an event cannot be synced, or None when it can."""
    if event.start is None:
        return "the event has no start"
    if event.end is None:
        return "the event has no end"
    if isinstance(event.start, datetime) != isinstance(event.end, datetime):
        return "the event mixes an all-day date with a time"
    if isinstance(event.start, datetime) and (
        event.start.tzinfo is None or event.end.tzinfo is None  # type: ignore[union-attr]
    ):
        return "the event's time has no time zone"
    if event.end < event.start:  # type: ignore[operator]
        return "the event ends before it starts"
    if event.timezone:
        try:
            ZoneInfo(event.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return f"unknown time zone {event.timezone!r}"
    if event.recurrence is not None:
        # Imported here: recurrence imports this module.
        from calsync.sync.recurrence import rule_problem

        why = rule_problem(event)
        if why:
            return why
    return None


def to_utc_instant(value: When) -> datetime:
    """A comparable instant; an all-day date counts from its UTC midnight."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def participants(event: Event) -> set[str]:
    emails = {i.email.strip().lower() for i in event.invitees if i.email}
    if event.organizer:
        emails.add(event.organizer.strip().lower())
    return emails
