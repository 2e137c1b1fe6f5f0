"""Sync settings as a profile stores them: the engine's settings plus the sync interval.

Used by the API (validation, effective settings) and by the jobs (engine settings,
automatic sync interval).

``auto_sync_interval_minutes`` belongs to the profile (the scheduler reads it), not to
the engine, so it is validated here and stripped before ``SyncSettings`` sees the rest.
A user's effective settings are their profile's, or the organization's global ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, aliased, joinedload

from calsync.models import SyncProfile, User
from calsync.sync.settings import LABELS, SyncSettings

GLOBAL_PROFILE_NAME = "Global settings"
INTERVAL = "auto_sync_interval_minutes"
DEFAULT_INTERVAL_MINUTES = 15
MIN_INTERVAL_MINUTES = 5
MAX_INTERVAL_MINUTES = 24 * 60

# Every label the user sees for a profile setting, for error messages.
SETTING_LABELS = {**LABELS, INTERVAL: "Automatic sync interval (minutes)"}


class InvalidSettings(ValueError):
    """Settings refused; ``field`` names the setting, the message uses its label."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def default_profile_settings() -> dict[str, Any]:
    return {**SyncSettings().to_dict(), INTERVAL: DEFAULT_INTERVAL_MINUTES}


def validate_profile_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """Complete ``values`` with defaults and validate them; return the dict to store."""
    engine_values = {k: v for k, v in values.items() if k != INTERVAL}
    interval = values.get(INTERVAL, DEFAULT_INTERVAL_MINUTES)
    label = SETTING_LABELS[INTERVAL]
    if isinstance(interval, bool) or not isinstance(interval, int):
        raise InvalidSettings(INTERVAL, f'"{label}" must be a whole number of minutes.')
    if not MIN_INTERVAL_MINUTES <= interval <= MAX_INTERVAL_MINUTES:
        raise InvalidSettings(
            INTERVAL,
            f'"{label}" must be between {MIN_INTERVAL_MINUTES} and {MAX_INTERVAL_MINUTES}.',
        )
    try:
        engine = SyncSettings.from_dict(engine_values)
    except (ValueError, TypeError) as exc:
        raise InvalidSettings(_field_named_in(str(exc), engine_values), str(exc)) from None
    return {**engine.to_dict(), INTERVAL: interval}


def stored_settings(profile: SyncProfile) -> dict[str, Any]:
    """A profile's settings, completed with defaults for keys added since it was saved."""
    merged = {**default_profile_settings(), **(profile.settings or {})}
    try:
        return validate_profile_settings(merged)
    except InvalidSettings:
        # A value no longer accepted (an option removed): fall back to the defaults rather
        # than fail every sync of the users on this profile.
        return default_profile_settings()


def global_profile(session: Session, organization_id: int) -> SyncProfile:
    profile = session.scalar(
        select(SyncProfile).where(
            SyncProfile.organization_id == organization_id, SyncProfile.is_global.is_(True)
        )
    )
    if profile is None:  # organizations made before profiles existed
        profile = SyncProfile(
            organization_id=organization_id,
            name=GLOBAL_PROFILE_NAME,
            is_global=True,
            settings=default_profile_settings(),
        )
        session.add(profile)
        session.flush()
    return profile


def effective_profile(session: Session, user: User) -> SyncProfile:
    """The profile whose settings apply to ``user``: their own, or the global one."""
    if user.sync_profile_id is not None:
        profile = session.get(SyncProfile, user.sync_profile_id)
        if profile is not None and profile.organization_id == user.organization_id:
            return profile
    return global_profile(session, user.organization_id)


_GLOBAL = aliased(SyncProfile)
# Built once: adapting the aliased join costs more CPU than running the query on SQLite.
_USER_WITH_PROFILES = (
    select(User, _GLOBAL)
    .options(joinedload(User.organization, innerjoin=True), joinedload(User.sync_profile))
    .outerjoin(
        _GLOBAL, (_GLOBAL.organization_id == User.organization_id) & _GLOBAL.is_global.is_(True)
    )
    .where(User.id == bindparam("user_id"))
)


def user_with_effective_profile(session: Session, user_id: int) -> tuple[User, SyncProfile] | None:
    """A user, their organization and the profile whose settings apply, in one query.

    The same answer as ``effective_profile``, for the hot read paths (``GET /api/me`` is
    the first call of every page the add-in opens): the organization, the assigned profile
    and the organization's global profile come back joined instead of one lazy load each.
    """
    row = session.execute(_USER_WITH_PROFILES, {"user_id": user_id}).first()
    if row is None:
        return None
    user, global_profile_ = row
    assigned = user.sync_profile
    if assigned is not None and assigned.organization_id == user.organization_id:
        return user, assigned
    if global_profile_ is None:  # organizations made before profiles existed
        global_profile_ = global_profile(session, user.organization_id)
    return user, global_profile_


def _field_named_in(message: str, values: Mapping[str, Any]) -> str | None:
    for name, label in LABELS.items():
        if f'"{label}"' in message:
            return name
    for name in values:
        if repr(name) in message:
            return name
    return None


def engine_settings(profile: SyncProfile | None) -> SyncSettings:
    """The engine's settings of a profile (the interval left out); defaults without one."""
    if profile is None:
        return SyncSettings()
    values = stored_settings(profile)
    values.pop(INTERVAL)
    return SyncSettings.from_dict(values)


def auto_sync_interval_minutes(profile: SyncProfile | None) -> int:
    if profile is None:
        return DEFAULT_INTERVAL_MINUTES
    return int(stored_settings(profile)[INTERVAL])
