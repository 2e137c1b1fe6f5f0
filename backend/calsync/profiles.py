"""A user's effective settings: their assigned sync profile, or the organization's global one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from calsync.models import SyncProfile, User
from calsync.sync.settings import SyncSettings

AUTO_SYNC_INTERVAL_DEFAULT = 15
AUTO_SYNC_INTERVAL_MINIMUM = 5
# Profile settings that belong to scheduling, not to the engine.
SCHEDULING_KEYS = ("auto_sync_interval_minutes",)


def effective_profile(session: Session, user: User) -> SyncProfile | None:
    if user.sync_profile_id is not None:
        profile = session.get(SyncProfile, user.sync_profile_id)
        if profile is not None and profile.organization_id == user.organization_id:
            return profile
    return session.scalar(
        select(SyncProfile).where(
            SyncProfile.organization_id == user.organization_id, SyncProfile.is_global
        )
    )


def engine_settings(stored: dict[str, Any] | None) -> SyncSettings:
    """The engine's settings from a profile's stored JSON (scheduling keys left out)."""
    values = {k: v for k, v in (stored or {}).items() if k not in SCHEDULING_KEYS}
    return SyncSettings.from_dict(values)


def auto_sync_interval_minutes(stored: dict[str, Any] | None) -> int:
    value = (stored or {}).get("auto_sync_interval_minutes", AUTO_SYNC_INTERVAL_DEFAULT)
    if isinstance(value, bool) or not isinstance(value, int):
        return AUTO_SYNC_INTERVAL_DEFAULT
    return max(value, AUTO_SYNC_INTERVAL_MINIMUM)
