"""GET /api/me: who I am, my organization, whether I administer it, my effective settings."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_login import login_required
from flask_smorest import Blueprint
from sqlalchemy.orm import Session

from calsync.api.access import db, me
from calsync.api.schemas import (
    FullSettingsSchema,
    OrganizationRefSchema,
    ProfileRefSchema,
    UserSchema,
    user_dict,
)
from calsync.models import SyncProfile, User
from calsync.profiles import effective_profile, stored_settings, user_with_effective_profile

blp = Blueprint("me", __name__, url_prefix="/api/me", description="The signed-in user.")


class MeSchema(UserSchema):
    organization = ma.fields.Nested(OrganizationRefSchema, required=True)
    effective_profile = ma.fields.Nested(
        ProfileRefSchema,
        required=True,
        metadata={"description": "Where my settings come from: my profile or the global one."},
    )
    settings = ma.fields.Nested(
        FullSettingsSchema, required=True, metadata={"description": "My effective settings."}
    )


def me_dict(session: Session, user: User, profile: SyncProfile | None = None) -> dict[str, Any]:
    """``profile``: the user's effective one when the caller already loaded it."""
    organization = user.organization
    if profile is None:
        profile = effective_profile(session, user)
    return {
        **user_dict(user),
        "organization": {
            "id": organization.id,
            "name": organization.name,
            "tenant_id": organization.tenant_id,
            "crm_type": organization.crm_type,
            "crm_url": organization.crm_base_url,
        },
        "effective_profile": {
            "id": profile.id,
            "name": profile.name,
            "is_global": profile.is_global,
        },
        "settings": stored_settings(profile),
    }


@blp.route("")
class Me(MethodView):
    decorators = [login_required]

    @blp.response(200, MeSchema)
    def get(self) -> dict[str, Any]:
        """Who I am, my organization, my admin flag and the sync settings that apply to me."""
        with db() as session:
            found = user_with_effective_profile(session, me().id)
            assert found is not None  # the loader just found it
            user, profile = found
            return me_dict(session, user, profile)
