"""The organization's users: who they are, who administers, which profile applies.

Each user is shown with their connections' state and their last sync, so an administrator
sees who needs attention. A connection is shown by its status and status message only:
its account, details and secret stay with its owner (the columns are not even read).
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, aliased, joinedload

from calsync.api.access import ID_CONVERTER, MAX_ID, admin_required, db, me, not_found
from calsync.api.errors import ErrorSchema, refuse
from calsync.api.profiles import own_profile
from calsync.api.runs import RunSchema, run_dict
from calsync.api.schemas import UserSchema, user_dict
from calsync.auth.provisioning import lock_organization
from calsync.models import Connection, SyncRun, User

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


class ConnectionStateSchema(ma.Schema):
    status = ma.fields.String(
        required=True,
        metadata={"description": '"connected", "needs_reconnect", "no_permission" or "error".'},
    )
    status_message = ma.fields.String(
        required=True, metadata={"description": "What calsync last had to say about it."}
    )


class OrganizationUserSchema(UserSchema):
    calendar = ma.fields.Nested(
        ConnectionStateSchema,
        allow_none=True,
        required=True,
        metadata={"description": "Their calendar connection; null: none connected."},
    )
    crm = ma.fields.Nested(
        ConnectionStateSchema,
        allow_none=True,
        required=True,
        metadata={"description": "Their CRM connection; null: none connected."},
    )
    last_run = ma.fields.Nested(
        RunSchema,
        allow_none=True,
        required=True,
        metadata={"description": "Their latest sync; null: never synced."},
    )
    attention = ma.fields.Boolean(
        required=True,
        metadata={
            "description": "A connection needs reconnecting, lacks permission or has an "
            "error, or the latest sync failed."
        },
    )


def organization_users(session: Session, scope: ColumnElement[bool]) -> list[dict[str, Any]]:
    """The users `scope` selects, each with their connections' state and last sync.

    Three queries however many users: the users (with their profile), their connections'
    status columns, and each one's latest sync (a window function, on SQLite and PostgreSQL).
    """
    users = session.scalars(
        select(User)
        .options(joinedload(User.sync_profile))
        .where(scope)
        .order_by(User.email, User.id)
    ).all()
    states: dict[tuple[int, str], dict[str, str]] = {}
    for user_id, kind, status, status_message in session.execute(
        select(Connection.user_id, Connection.kind, Connection.status, Connection.status_message)
        .join(User, User.id == Connection.user_id)
        .where(scope)
    ):
        states[(user_id, kind)] = {"status": status, "status_message": status_message or ""}
    ranked = (
        select(
            SyncRun,
            func.row_number()
            .over(
                partition_by=SyncRun.user_id,
                # Ids break ties: two runs may be created within one clock tick.
                order_by=(SyncRun.created_at.desc(), SyncRun.id.desc()),
            )
            .label("position"),
        )
        .join(User, User.id == SyncRun.user_id)
        .where(scope, SyncRun.kind == "sync")
        .subquery()
    )
    latest = aliased(SyncRun, ranked)
    last_runs = {
        run.user_id: run for run in session.scalars(select(latest).where(ranked.c.position == 1))
    }
    return [
        user_view(
            user,
            states.get((user.id, "calendar")),
            states.get((user.id, "crm")),
            last_runs.get(user.id),
        )
        for user in users
    ]


def user_view(
    user: User,
    calendar: dict[str, str] | None,
    crm: dict[str, str] | None,
    last_run: SyncRun | None,
) -> dict[str, Any]:
    # A user who has not connected both sides cannot be synced: that needs attention too.
    attention = any(c is None or c["status"] != "connected" for c in (calendar, crm)) or (
        last_run is not None and last_run.status == "failed"
    )
    return {
        **user_dict(user),
        "calendar": calendar,
        "crm": crm,
        "last_run": run_dict(last_run) if last_run is not None else None,
        "attention": attention,
    }


def own_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or user.organization_id != me().organization_id:
        not_found("user")
    assert user is not None
    return user


def one_user(session: Session, user_id: int) -> dict[str, Any]:
    (view,) = organization_users(
        session, (User.id == user_id) & (User.organization_id == me().organization_id)
    )
    return view


@blp.route("")
class Users(MethodView):
    decorators = [admin_required]

    @blp.response(200, OrganizationUserSchema(many=True))
    def get(self) -> list[dict[str, Any]]:
        """Every user of my organization: sync profile, connections' state, last sync."""
        with db() as session:
            return organization_users(session, User.organization_id == me().organization_id)


@blp.route(f"/<{ID_CONVERTER}:user_id>")
class UserResource(MethodView):
    decorators = [admin_required]

    @blp.response(200, OrganizationUserSchema)
    def get(self, user_id: int) -> dict[str, Any]:
        """One user of my organization, with their connections' state and last sync."""
        with db() as session:
            return one_user(session, own_user(session, user_id).id)

    @blp.arguments(UserPatchSchema)
    @blp.response(200, OrganizationUserSchema)
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
            return one_user(session, user.id)
