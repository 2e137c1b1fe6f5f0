"""Schemas shared by several resources: sync settings, a user, an organization."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import validate

from calsync.profiles import (
    INTERVAL,
    MAX_INTERVAL_MINUTES,
    MIN_INTERVAL_MINUTES,
    SETTING_LABELS,
)
from calsync.sync import settings as engine


def _choice(name: str, choices: tuple[str, ...], description: str) -> ma.fields.String:
    allowed = ", ".join(f'"{c}"' for c in choices)
    return ma.fields.String(
        validate=validate.OneOf(
            choices, error=f'"{SETTING_LABELS[name]}" must be one of {allowed}.'
        ),
        metadata={"title": SETTING_LABELS[name], "description": description},
    )


def _days(name: str, description: str) -> ma.fields.Integer:
    return ma.fields.Integer(
        strict=True,
        validate=validate.Range(
            0,
            engine.MAX_WINDOW_DAYS,
            error=f'"{SETTING_LABELS[name]}" must be between 0 and {engine.MAX_WINDOW_DAYS} days.',
        ),
        metadata={"title": SETTING_LABELS[name], "description": description},
    )


class SettingsSchema(ma.Schema):
    """Sync settings. In a request every field is optional: those left out keep their value."""

    record_option = _choice(
        "record_option",
        engine.RECORD_OPTIONS,
        '"related_only": only events with invitees are synced; "all": every event.',
    )
    direction = _choice(
        "direction",
        engine.DIRECTIONS,
        "Which way changes are copied. Two way needs Google, Outlook or Office 365.",
    )
    sync_invitees = ma.fields.Boolean(
        metadata={
            "title": SETTING_LABELS["sync_invitees"],
            "description": "Copy the CRM meeting's invitees to the calendar event.",
        }
    )
    invitations = _choice(
        "invitations", engine.INVITATIONS, "When the calendar may email invitations and updates."
    )
    window_days_back = _days("window_days_back", "How many days of the past are synced.")
    window_days_ahead = _days("window_days_ahead", "How many days of the future are synced.")
    private_events = _choice(
        "private_events", engine.PRIVATE_EVENTS, "How private calendar events are copied."
    )
    conflict_policy = _choice(
        "conflict_policy", engine.CONFLICT_POLICIES, "Who wins when both sides changed."
    )
    auto_sync_interval_minutes = ma.fields.Integer(
        strict=True,
        data_key=INTERVAL,
        validate=validate.Range(
            MIN_INTERVAL_MINUTES,
            MAX_INTERVAL_MINUTES,
            error=f'"{SETTING_LABELS[INTERVAL]}" must be between {MIN_INTERVAL_MINUTES} and '
            f"{MAX_INTERVAL_MINUTES}.",
        ),
        metadata={
            "title": SETTING_LABELS[INTERVAL],
            "description": "How often automatic sync runs for users with these settings.",
        },
    )


class FullSettingsSchema(SettingsSchema):
    """Settings as stored: every field present."""

    def on_bind_field(self, field_name: str, field_obj: ma.fields.Field) -> None:
        field_obj.required = True


class ProfileRefSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    is_global = ma.fields.Boolean(required=True)


class OrganizationRefSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    tenant_id = ma.fields.String(required=True, metadata={"description": "Microsoft tenant id."})
    crm_type = ma.fields.String(allow_none=True, required=True)
    crm_url = ma.fields.String(allow_none=True, required=True)


class UserSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    email = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    is_admin = ma.fields.Boolean(required=True)
    profile = ma.fields.Nested(
        ProfileRefSchema,
        allow_none=True,
        required=True,
        metadata={"description": "The assigned sync profile; null: the global settings."},
    )
    last_login_at = ma.fields.AwareDateTime(allow_none=True, required=True)


def user_dict(user: Any) -> dict[str, Any]:
    profile = user.sync_profile
    return {
        "id": user.id,
        "email": user.email,
        "name": user.display_name,
        "is_admin": user.is_admin,
        "profile": None
        if profile is None
        else {"id": profile.id, "name": profile.name, "is_global": profile.is_global},
        "last_login_at": user.last_login_at,
    }
