"""Sync profiles: named settings an administrator assigns to some users."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from calsync.api.access import ID_CONVERTER, admin_required, db, me, not_found
from calsync.api.errors import ErrorSchema, refuse
from calsync.api.organization import merged_settings
from calsync.api.schemas import FullSettingsSchema, SettingsSchema
from calsync.models import SyncProfile, User
from calsync.profiles import default_profile_settings, global_profile, stored_settings

blp = Blueprint(
    "profiles",
    __name__,
    url_prefix="/api/profiles",
    description="Sync profiles: settings that override the global ones for chosen users.",
)

NAME = ma.fields.String(
    validate=ma.validate.Length(min=1, max=100, error='"Name" must be 1 to 100 characters.'),
    metadata={"description": "Unique within the organization."},
)


class ProfileSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    is_global = ma.fields.Boolean(
        required=True, metadata={"description": "The global settings (cannot be deleted)."}
    )
    settings = ma.fields.Nested(FullSettingsSchema, required=True)
    user_count = ma.fields.Integer(
        required=True, metadata={"description": "Users these settings apply to."}
    )


class ProfileCreateSchema(ma.Schema):
    name = NAME
    settings = ma.fields.Nested(
        SettingsSchema, metadata={"description": "Settings left out take their defaults."}
    )

    def on_bind_field(self, field_name: str, field_obj: ma.fields.Field) -> None:
        field_obj.required = field_name == "name"


class ProfilePatchSchema(ma.Schema):
    name = NAME
    settings = ma.fields.Nested(
        SettingsSchema, metadata={"description": "Settings left out keep their value."}
    )


def profile_dict(session: Session, profile: SyncProfile) -> dict[str, Any]:
    users = select(func.count(User.id)).where(User.organization_id == profile.organization_id)
    if profile.is_global:
        users = users.where(User.sync_profile_id.is_(None))
    else:
        users = users.where(User.sync_profile_id == profile.id)
    return {
        "id": profile.id,
        "name": profile.name,
        "is_global": profile.is_global,
        "settings": stored_settings(profile),
        "user_count": session.scalar(users) or 0,
    }


def own_profile(session: Session, profile_id: int) -> SyncProfile:
    """A profile of my organization; anything else is 'not found'."""
    profile = session.get(SyncProfile, profile_id)
    if profile is None or profile.organization_id != me().organization_id:
        not_found("sync profile")
    assert profile is not None
    return profile


def _save(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        message = '"Name": another sync profile already has this name.'
        refuse(409, message, {"name": message})


@blp.route("")
class Profiles(MethodView):
    decorators = [admin_required]

    @blp.response(200, ProfileSchema(many=True))
    def get(self) -> list[dict[str, Any]]:
        """Every sync profile of my organization, the global settings first."""
        with db() as session:
            global_profile(session, me().organization_id)
            profiles = session.scalars(
                select(SyncProfile)
                .where(SyncProfile.organization_id == me().organization_id)
                .order_by(SyncProfile.is_global.desc(), SyncProfile.name)
            )
            return [profile_dict(session, p) for p in profiles]

    @blp.arguments(ProfileCreateSchema)
    @blp.response(201, ProfileSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="Another profile has this name.")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a sync profile."""
        with db() as session:
            profile = SyncProfile(
                organization_id=me().organization_id,
                name=body["name"].strip(),
                is_global=False,
                settings=merged_settings(default_profile_settings(), body.get("settings") or {}),
            )
            session.add(profile)
            _save(session)
            return profile_dict(session, profile)


@blp.route(f"/<{ID_CONVERTER}:profile_id>")
class Profile(MethodView):
    decorators = [admin_required]

    @blp.response(200, ProfileSchema)
    def get(self, profile_id: int) -> dict[str, Any]:
        """One sync profile."""
        with db() as session:
            return profile_dict(session, own_profile(session, profile_id))

    @blp.arguments(ProfilePatchSchema)
    @blp.response(200, ProfileSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="Another profile has this name.")
    def patch(self, body: dict[str, Any], profile_id: int) -> dict[str, Any]:
        """Rename a sync profile or change its settings (those left out keep their value)."""
        with db() as session:
            profile = own_profile(session, profile_id)
            if "name" in body:
                profile.name = body["name"].strip()
            if "settings" in body:
                profile.settings = merged_settings(stored_settings(profile), body["settings"])
            _save(session)
            return profile_dict(session, profile)

    @blp.response(204)
    @blp.alt_response(409, schema=ErrorSchema, description="The global settings cannot be deleted.")
    def delete(self, profile_id: int) -> None:
        """Delete a sync profile; its users go back to the global settings."""
        with db() as session:
            profile = own_profile(session, profile_id)
            if profile.is_global:
                refuse(409, "The global settings cannot be deleted; change them instead.")
            # Explicitly, not only through ON DELETE SET NULL: SQLite may run without it.
            for user in session.scalars(select(User).where(User.sync_profile_id == profile.id)):
                user.sync_profile_id = None
            session.delete(profile)
