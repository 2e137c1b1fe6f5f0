"""The settings turned into decisions about single events."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from calsync.sync.adapters import Window
from calsync.sync.model import (
    WITHHELD_INVITEES,
    Capabilities,
    Event,
    Invitee,
    Side,
    participants,
    to_utc_instant,
)
from calsync.sync.recurrence import overlaps_window, series_ended
from calsync.sync.settings import SyncSettings

# Reasons and notes are user-facing sentences; the run result counts them.
SKIP_NOT_RELATED = "no invitee other than you (Sync related calendar records only)"
SKIP_OUTSIDE_WINDOW = "outside the sync window"
SKIP_PRIVATE = "private event (private events are not synced)"
SKIP_CANCELLED_UNSYNCED = "cancelled before it was ever synced"
SKIP_ONE_WAY = "one way sync does not copy items from this side"
SKIP_BUSY_COPY_EDITED = "a busy block was edited; a private event's details stay on its own side"
SKIP_OCCURRENCE_DETAILS = (
    "only moves and cancellations of a single occurrence are copied back to its series"
)
SKIP_SOURCE_GONE = "the item this copy mirrors could not be read"
SKIP_SERIES_ON_DESTINATION = "a series was edited on the destination side of a one way sync"
SKIP_INVITEES_UNKNOWN = "the invitees withheld from this copy could not be read from the other side"
NOTE_ATTENDEES_WITHHELD = "attendees withheld to avoid emailing them"
NOTE_STRAY_REMOVED = "a duplicate left by an interrupted write was removed"
SKIP_STRAY_ON_SOURCE = (
    "a duplicate left by an interrupted write, on a side one way sync does not change"
)
SKIP_STRAY_KEPT = (
    "a duplicate left by an interrupted write was kept: removing it would email its invitees"
)
NOTE_INVITEES_OFF = "invitees not copied to the calendar (Sync invitees is off)"
BUSY_TITLE = "Busy"


def sync_window(settings: SyncSettings, now: datetime) -> Window:
    return Window(
        now - timedelta(days=settings.window_days_back),
        now + timedelta(days=settings.window_days_ahead),
    )


def scope_skip_reason(
    event: Event, settings: SyncSettings, window: Window, user_email: str | None
) -> str | None:
    """Why a not-yet-synced event stays out of the sync, or None to sync it."""
    if event.status == "cancelled":
        return SKIP_CANCELLED_UNSYNCED
    if event.private and settings.private_events == "skip":
        return SKIP_PRIVATE
    if settings.record_option == "related_only" and not is_related(event, user_email):
        return SKIP_NOT_RELATED
    if not overlaps_window(event, window.start, window.end):
        return SKIP_OUTSIDE_WINDOW
    return None


def is_related(event: Event, user_email: str | None) -> bool:
    """At least one person other than the user takes part."""
    if user_email:
        return bool(participants(event) - {user_email.strip().lower()})
    # Without the user's address the organizer stands for the user.
    organizer = (event.organizer or "").strip().lower()
    return any(i.email and i.email.strip().lower() != organizer for i in event.invitees)


def wants_notify(settings: SyncSettings, event: Event, first_sync: bool, now: datetime) -> bool:
    """Whether writing `event` may e-mail its invitees.

    "After first sync" is silent until the user's first sync has been applied in full.
    """
    if settings.invitations == "never":
        return False
    if settings.invitations == "after_first_sync" and first_sync:
        return False
    # Nobody needs an invitation to a meeting that is over: a single event whose end has
    # passed, or a series (UNTIL or COUNT) whose every occurrence has ended.
    return not ended(event, now)


def ended(event: Event, now: datetime) -> bool:
    if event.recurrence is not None:
        return series_ended(event, now)
    return event.end is not None and to_utc_instant(event.end) < now


@dataclass(frozen=True)
class Outgoing:
    event: Event
    notify: bool
    notes: tuple[str, ...] = ()
    # Invitees left out of `event` (so nobody is e-mailed, or Sync invitees is off); they
    # remain the meeting's invitees.
    withheld: tuple[Invitee, ...] = ()


def for_destination(
    event: Event,
    source: Side,
    dest_caps: Capabilities,
    settings: SyncSettings,
    first_sync: bool,
    now: datetime,
) -> Outgoing:
    """The content and notification flag to write on the other side of `source`."""
    notes: list[str] = []
    out = event.content()
    if out.private and settings.private_events == "busy":
        out = replace(
            out,
            title=BUSY_TITLE,
            location=None,
            description=None,
            organizer=None,
            invitees=(),
        )
    withheld: tuple[Invitee, ...] = ()
    if source == "crm" and not settings.sync_invitees and out.invitees:
        withheld = out.invitees
        out = replace(out, invitees=())
        notes.append(NOTE_INVITEES_OFF)
    notify = dest_caps.notify and wants_notify(settings, out, first_sync, now)
    extra = {k: v for k, v in out.extra.items() if k != WITHHELD_INVITEES}
    if not notify and dest_caps.notify and not dest_caps.suppress_invitations and out.invitees:
        # The destination would email every attendee; silence is only possible without them.
        # They travel in `extra` so the adapter can list them in the body instead.
        withheld = out.invitees
        extra[WITHHELD_INVITEES] = withheld
        notes.append(NOTE_ATTENDEES_WITHHELD)
        out = replace(out, invitees=())
    return Outgoing(replace(out, extra=extra), notify, tuple(notes), withheld)


def conflict_winner(settings: SyncSettings, calendar: Event | None, crm: Event | None) -> Side:
    """Which side's version survives when both changed. None stands for a deletion."""
    if settings.conflict_policy == "calendar_wins":
        return "calendar"
    if settings.conflict_policy == "crm_wins":
        return "crm"
    # A deletion has no timestamp; treat it as the latest thing the user did.
    if calendar is None:
        return "calendar"
    if crm is None:
        return "crm"
    cal_t = calendar.last_modified
    crm_t = crm.last_modified
    if crm_t is not None and (cal_t is None or crm_t > cal_t):
        return "crm"
    return "calendar"
