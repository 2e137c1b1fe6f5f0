"""The organization's users: who they are, who administers, which profile applies."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from calsync.api.access import ID_CONVERTER, MAX_ID, admin_required, db, me, not_found
from calsync.api.errors import ErrorSchema, refuse
from calsync.api.profiles import own_profile
from calsync.api.schemas import UserSchema, user_dict
from calsync.auth.provisioning import lock_organization
from calsync.models import User

blp = Blueprint(
    "users",
    __name__,
    url_prefix="/api/users",
    description="The organization's users, their admin flag and sync profile (administrators).",
)


class UserPatchSchema(ma.Schema):
    is_admin = ma.fields.Boolean(metadata={"description": "Make or unmake an administrator."})
    sync_profile_id = ma.fields.Integer(
        allow_none=True,
        strict=True,
        validate=ma.validate.Range(1, MAX_ID, error='"Sync profile" is not a sync profile id.'),
        metadata={"description": "Assign a sync profile; null: the global settings."},
    )


def own_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or user.organization_id != me().organization_id:
        not_found("user")
    assert user is not None
    return user


@blp.route("")
class Users(MethodView):
    decorators = [admin_required]

    @blp.response(200, UserSchema(many=True))
    def get(self) -> list[dict[str, Any]]:
        """Every user of my organization, with their sync profile."""
        with db() as session:
            users = session.scalars(
                select(User)
                .where(User.organization_id == me().organization_id)
                .order_by(User.email, User.id)
            )
            return [user_dict(u) for u in users]


@blp.route(f"/<{ID_CONVERTER}:user_id>")
class UserResource(MethodView):
    decorators = [admin_required]

    @blp.response(200, UserSchema)
    def get(self, user_id: int) -> dict[str, Any]:
        """One user of my organization."""
        with db() as session:
            return user_dict(own_user(session, user_id))

    @blp.arguments(UserPatchSchema)
    @blp.response(200, UserSchema)
    @blp.alt_response(
        409, schema=ErrorSchema, description="This would leave the organization without an admin."
    )
    def patch(self, body: dict[str, Any], user_id: int) -> dict[str, Any]:
        """Make a user an administrator (or not), or assign their sync profile."""
        with db() as session:
            # Two admins removing each other at once must not leave the organization
            # with none: decide while holding the organization's lock.
            lock_organization(session, me().organization_id)
            user = own_user(session, user_id)
            if "sync_profile_id" in body:
                profile_id = body["sync_profile_id"]
                if profile_id is None:
                    user.sync_profile_id = None
                else:
                    profile = own_profile(session, profile_id)
                    user.sync_profile_id = None if profile.is_global else profile.id
            if "is_admin" in body and body["is_admin"] != user.is_admin:
                if not body["is_admin"]:
                    admins = session.scalar(
                        select(func.count(User.id)).where(
                            User.organization_id == me().organization_id,
                            User.is_admin.is_(True),
                        )
                    )
                    if admins <= 1:
                        refuse(
                            409,
                            "Your organization needs at least one administrator: make "
                            "someone else an administrator first.",
                        )
                user.is_admin = body["is_admin"]
            session.flush()
            session.refresh(user)
            return user_dict(user)
