"""Effective sync settings, with the machine values the database stores."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from calsync.sync.errors import DirectionNotSupported
from calsync.sync.model import Capabilities

RECORD_OPTIONS = ("related_only", "all")
DIRECTIONS = ("calendar_to_crm", "crm_to_calendar", "two_way")
INVITATIONS = ("never", "always", "after_first_sync")
PRIVATE_EVENTS = ("busy", "full", "skip")
CONFLICT_POLICIES = ("most_recent", "calendar_wins", "crm_wins")
MAX_WINDOW_DAYS = 3650

# The labels the user sees, for messages.
LABELS = {
    "record_option": "Sync record option",
    "direction": "Sync direction",
    "sync_invitees": "Sync invitees",
    "invitations": "Email invitations / updates",
    "window_days_back": "Days back",
    "window_days_ahead": "Days ahead",
    "private_events": "Private events",
    "conflict_policy": "Conflict policy",
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "record_option": RECORD_OPTIONS,
    "direction": DIRECTIONS,
    "invitations": INVITATIONS,
    "private_events": PRIVATE_EVENTS,
    "conflict_policy": CONFLICT_POLICIES,
}


@dataclass(frozen=True)
class SyncSettings:
    # Defaults are the cautious ones: nothing written to the user's calendar and nobody
    # emailed until an administrator decides otherwise.
    record_option: str = "related_only"
    direction: str = "calendar_to_crm"
    sync_invitees: bool = True
    invitations: str = "never"
    window_days_back: int = 30
    window_days_ahead: int = 365
    private_events: str = "busy"
    conflict_policy: str = "most_recent"

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SyncSettings:
        """Build from stored or submitted values; missing keys take their default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown sync setting {unknown[0]!r}.")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def allows(self, source: str) -> bool:
        """Whether changes made on `source` ("calendar" or "crm") are copied across."""
        if self.direction == "two_way":
            return True
        return self.direction == f"{source}_to_{'crm' if source == 'calendar' else 'calendar'}"


def _validate(s: SyncSettings) -> None:
    for name, choices in _CHOICES.items():
        value = getattr(s, name)
        if value not in choices:
            allowed = ", ".join(f'"{c}"' for c in choices)
            raise ValueError(f'"{LABELS[name]}" must be one of {allowed}, not {value!r}.')
    if not isinstance(s.sync_invitees, bool):
        raise ValueError(f'"{LABELS["sync_invitees"]}" must be true or false.')
    for name in ("window_days_back", "window_days_ahead"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'"{LABELS[name]}" must be a whole number of days.')
        if not 0 <= value <= MAX_WINDOW_DAYS:
            raise ValueError(f'"{LABELS[name]}" must be between 0 and {MAX_WINDOW_DAYS} days.')


def check_direction(settings: SyncSettings, calendar: Capabilities) -> None:
    """Refuse two way sync for a calendar that cannot do it, with a sentence for the user."""
    if settings.direction == "two_way" and not calendar.two_way:
        raise DirectionNotSupported(
            "Two way sync is not available for this calendar. Choose "
            '"One way (calendar to CRM)" or "One way (CRM to calendar)".'
        )
