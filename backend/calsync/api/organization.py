"""The organization's CRM choice and global sync settings (administrators only)."""

from __future__ import annotations

from typing import Any, NoReturn

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from calsync.api.access import admin_required, db, me
from calsync.api.errors import refuse
from calsync.api.schemas import FullSettingsSchema, SettingsSchema
from calsync.api.services import services
from calsync.models import Organization
from calsync.profiles import (
    InvalidSettings,
    global_profile,
    stored_settings,
    validate_profile_settings,
)
from calsync.security.urls import UnsafeURL

blp = Blueprint(
    "organization",
    __name__,
    url_prefix="/api/organization",
    description="The organization's CRM and global sync settings (administrators).",
)

# type -> (label, needs a custom URL)
CRM_TYPES = {
    "suitecrm": ("SuiteCRM", True),
    "dynamics": ("Microsoft Dynamics 365", True),
}
SANDBOX_CRM = {
    "sandbox": ("Sandbox CRM (development)", False),
    "sandbox-dynamics": ("Sandbox Dynamics 365 (development)", False),
}
# Signing in needs the running sandbox (there is no password to fall back on), so it is
# offered only while `calsync sandbox` runs; its label stays known for a stored choice.
WHILE_SANDBOX_RUNS = frozenset({"sandbox-dynamics"})


def crm_types() -> dict[str, tuple[str, bool]]:
    development = not services().config.is_production
    return {**CRM_TYPES, **(SANDBOX_CRM if development else {})}


def crm_choices() -> dict[str, tuple[str, bool]]:
    """The CRMs an administrator may choose now."""
    from calsync.sandbox.demo import running_sandbox

    choices = crm_types()
    if running_sandbox(services().config) is None:
        return {key: value for key, value in choices.items() if key not in WHILE_SANDBOX_RUNS}
    return choices


class CrmChoiceSchema(ma.Schema):
    type = ma.fields.String(required=True)
    label = ma.fields.String(required=True)
    needs_url = ma.fields.Boolean(required=True)


class OrganizationSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    tenant_id = ma.fields.String(required=True)
    crm_type = ma.fields.String(allow_none=True, required=True)
    crm_url = ma.fields.String(allow_none=True, required=True)
    crm_choices = ma.fields.List(ma.fields.Nested(CrmChoiceSchema), required=True)


class OrganizationPatchSchema(ma.Schema):
    name = ma.fields.String(validate=ma.validate.Length(max=255))
    crm_type = ma.fields.String(
        allow_none=True,
        metadata={"description": "One of crm_choices' types; null: no CRM chosen yet."},
    )
    crm_url = ma.fields.String(
        allow_none=True,
        validate=ma.validate.Length(max=2048),
        metadata={"description": "The CRM's address, required for CRMs that need one."},
    )


def organization_dict(organization: Organization) -> dict[str, Any]:
    return {
        "id": organization.id,
        "name": organization.name,
        "tenant_id": organization.tenant_id,
        "crm_type": organization.crm_type,
        "crm_url": organization.crm_base_url,
        "crm_choices": [
            {"type": key, "label": label, "needs_url": needs_url}
            for key, (label, needs_url) in crm_choices().items()
        ],
    }


@blp.route("")
class OrganizationResource(MethodView):
    decorators = [admin_required]

    @blp.response(200, OrganizationSchema)
    def get(self) -> dict[str, Any]:
        """My organization and its CRM."""
        with db() as session:
            return organization_dict(_organization(session))

    @blp.arguments(OrganizationPatchSchema)
    @blp.response(200, OrganizationSchema)
    def patch(self, body: dict[str, Any]) -> dict[str, Any]:
        """Rename the organization or choose its CRM (and the CRM's custom URL)."""
        with db() as session:
            organization = _organization(session)
            if "name" in body:
                organization.name = body["name"].strip()
            if "crm_type" in body or "crm_url" in body:
                crm_type = body.get("crm_type", organization.crm_type)
                # A new CRM does not inherit the old one's address.
                keep_url = organization.crm_base_url if "crm_type" not in body else None
                organization.crm_type, organization.crm_base_url = _checked_crm(
                    crm_type, body.get("crm_url", keep_url)
                )
            session.flush()
            return organization_dict(organization)


@blp.route("/settings")
class GlobalSettings(MethodView):
    decorators = [admin_required]

    @blp.response(200, FullSettingsSchema)
    def get(self) -> dict[str, Any]:
        """The global sync settings: those of every user without a sync profile."""
        with db() as session:
            return stored_settings(global_profile(session, me().organization_id))

    @blp.arguments(SettingsSchema)
    @blp.response(200, FullSettingsSchema)
    def patch(self, body: dict[str, Any]) -> dict[str, Any]:
        """Change the global sync settings; settings left out keep their value."""
        with db() as session:
            profile = global_profile(session, me().organization_id)
            profile.settings = merged_settings(stored_settings(profile), body)
            return profile.settings


def merged_settings(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    try:
        return validate_profile_settings({**current, **changes})
    except InvalidSettings as exc:
        refuse(422, str(exc), {exc.field: str(exc)} if exc.field else None)


def _organization(session: Any) -> Organization:
    organization = session.get(Organization, me().organization_id)
    assert organization is not None  # a user's organization cannot vanish under them
    return organization


def _checked_crm(crm_type: str | None, crm_url: str | None) -> tuple[str | None, str | None]:
    choices = crm_choices()
    if crm_type is None:
        return None, None
    if crm_type not in choices:
        allowed = ", ".join(f'"{c}"' for c in choices)
        _refuse("crm_type", f'"CRM" must be one of {allowed}.')
    label, needs_url = choices[crm_type]
    crm_url = (crm_url or "").strip() or None
    if crm_url is None:
        if needs_url:
            _refuse("crm_url", f'"Custom URL" is required for {label}: enter your CRM\'s address.')
        return crm_type, None
    try:
        return crm_type, services().url_policy.check_url(crm_url)
    except UnsafeURL as exc:
        _refuse("crm_url", f'"Custom URL": {exc}')


def _refuse(field: str, message: str) -> NoReturn:
    refuse(422, message, {field: message})
