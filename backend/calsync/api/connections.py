"""My connections: the calendar and CRM accounts calsync syncs ("Connections" page).

What each provider needs to connect lives in its adapter; this module only checks input,
calls the adapter's live test, and stores the result (`calsync.connections`). Secrets go
into the encrypted `secret` column and never come back out: a connection is shown with
its non-secret details only. The calendar's connect flows are in `calendar_oauth` and
`caldav`; this module has what they share.

Function routes put ``login_required`` right under ``blp.route``: outside the argument
parsing, so a caller who is not signed in hears 401, not what is wrong with their input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlencode, urlsplit

import marshmallow as ma
from flask import current_app
from flask.views import MethodView
from flask_login import login_required
from flask_smorest import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from calsync import connections as stored
from calsync import push
from calsync.api.access import db, me
from calsync.api.errors import ErrorSchema, refuse
from calsync.api.organization import crm_types
from calsync.api.services import services
from calsync.models import Connection, Organization
from calsync.provider_errors import (
    ProviderAuthError,
    ProviderConfigError,
    ProviderError,
    ProviderTransientError,
)
from calsync.security.outbound import safe_session
from calsync.security.ratelimit import rate_limited
from calsync.security.urls import UnsafeURL

blp = Blueprint(
    "connections",
    __name__,
    url_prefix="/api/connections",
    description='My calendar and CRM connections (the "Connections" page).',
)

# Details a connection may show: everything else in `details` is for the adapters only.
PUBLIC_DETAILS = ("server_url", "calendar_url", "calendar_name", "api")
NO_CRM_CHOSEN = "Your administrator has not chosen a CRM yet."
CRM_NOT_READY = (
    "calsync cannot connect to {label} yet on this server. Ask your administrator to "
    "choose another CRM, or try again after the next update."
)
# Dynamics 365 signs in with the user's Microsoft account (OAuth, `calsync.api.crm_oauth`),
# never a password: the user name and password of this route cannot connect it.
CRM_NEEDS_SIGN_IN = (
    "{label} connects with your Microsoft account, not a user name and password: select "
    '"Sign in with Microsoft" on the CRM tab.'
)
SIGN_IN_CRMS = ("dynamics",)


@dataclass(frozen=True)
class CalendarProvider:
    key: str
    label: str
    method: str  # "oauth": the provider's consent page; "manual": server URL and password
    two_way: bool  # "Two way" is offered for Google, Outlook and Office 365 only


CALENDAR_PROVIDERS = (
    CalendarProvider("outlook", "Outlook", "oauth", True),
    CalendarProvider("office365", "Office 365", "oauth", True),
    CalendarProvider("google", "Google", "oauth", True),
    CalendarProvider("caldav", "CalDAV server", "manual", False),
)
# Development only, and only while `calsync sandbox` runs (a child of `calsync up`).
DEVELOPMENT_PROVIDERS: tuple[CalendarProvider, ...] = (
    CalendarProvider("sandbox-outlook", "Sandbox Outlook", "oauth", True),
)
SANDBOX_NOT_RUNNING = (
    "The sandbox is not running on this server: start calsync with `make run` "
    "(or run `calsync sandbox`)."
)


def running_sandbox() -> dict[str, Any] | None:
    """Where the development sandbox listens; always None in production (never read)."""
    config = services().config
    if config.is_production:
        return None
    from calsync.sandbox.demo import running_sandbox as read

    return read(config)


def calendar_providers() -> tuple[CalendarProvider, ...]:
    return CALENDAR_PROVIDERS + (DEVELOPMENT_PROVIDERS if running_sandbox() else ())


def provider_label(connection: Connection) -> str:
    if connection.kind == "calendar":
        labels = {p.key: p.label for p in CALENDAR_PROVIDERS + DEVELOPMENT_PROVIDERS}
    else:
        labels = {key: label for key, (label, _) in crm_types().items()}
    return labels.get(connection.provider, connection.provider)


# -- schemas ---------------------------------------------------------------------------------


def text_field(label: str, description: str, *, max_length: int = 255) -> ma.fields.String:
    """A required text input whose errors name the label the user sees."""
    return ma.fields.String(
        required=True,
        validate=ma.validate.Length(
            min=1, max=max_length, error=f'"{label}" must be 1 to {max_length} characters.'
        ),
        error_messages={
            "required": f'"{label}" is required.',
            "null": f'"{label}" is required.',
            "invalid": f'"{label}" must be text.',
        },
        metadata={"title": label, "description": description},
    )


class DetailsSchema(ma.Schema):
    server_url = ma.fields.String(metadata={"description": "The CalDAV server or CRM address."})
    calendar_url = ma.fields.String(metadata={"description": "The chosen CalDAV calendar."})
    calendar_name = ma.fields.String(metadata={"description": "Its name on the server."})
    api = ma.fields.String(metadata={"description": "The CRM API calsync uses."})


class ConnectionSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True, metadata={"description": '"calendar" or "crm".'})
    provider = ma.fields.String(required=True)
    provider_label = ma.fields.String(required=True)
    account = ma.fields.String(required=True, metadata={"description": "User name or e-mail."})
    status = ma.fields.String(
        required=True,
        metadata={"description": '"connected", "needs_reconnect", "no_permission" or "error".'},
    )
    status_message = ma.fields.String(
        required=True, metadata={"description": "What calsync last had to say about it."}
    )
    auto_sync_enabled = ma.fields.Boolean(
        required=True, metadata={"title": "Enable automatic calendar sync"}
    )
    details = ma.fields.Nested(DetailsSchema, required=True)
    created_at = ma.fields.AwareDateTime(required=True)


class CalendarProviderSchema(ma.Schema):
    key = ma.fields.String(required=True)
    label = ma.fields.String(required=True)
    method = ma.fields.String(
        required=True,
        metadata={"description": '"oauth": POST .../calendar/oauth; "manual": CalDAV details.'},
    )
    two_way = ma.fields.Boolean(required=True, metadata={"description": '"Two way" possible.'})


class CrmInfoSchema(ma.Schema):
    type = ma.fields.String(
        allow_none=True, required=True, metadata={"description": "null: no CRM chosen yet."}
    )
    label = ma.fields.String(allow_none=True, required=True)
    needs_url = ma.fields.Boolean(required=True)
    url = ma.fields.String(allow_none=True, required=True)


class OverviewSchema(ma.Schema):
    calendar = ma.fields.Nested(ConnectionSchema, allow_none=True, required=True)
    crm_connection = ma.fields.Nested(ConnectionSchema, allow_none=True, required=True)
    calendar_providers = ma.fields.List(ma.fields.Nested(CalendarProviderSchema), required=True)
    crm_info = ma.fields.Nested(
        CrmInfoSchema, required=True, metadata={"description": "The organization's CRM."}
    )


class CalendarPatchSchema(ma.Schema):
    auto_sync_enabled = ma.fields.Boolean(
        required=True,
        error_messages={
            "required": '"Enable automatic calendar sync" is required.',
            "null": '"Enable automatic calendar sync" must be true or false.',
            "invalid": '"Enable automatic calendar sync" must be true or false.',
        },
        metadata={"title": "Enable automatic calendar sync"},
    )


class CrmCredentialsSchema(ma.Schema):
    user_name = text_field("User name", "Your user name in the CRM.")
    password = text_field("Password", "Your CRM password (stored encrypted).", max_length=1024)


# -- helpers shared by the calendar connect flows -----------------------------------------------


def connection_dict(connection: Connection) -> dict[str, Any]:
    details = connection.details or {}
    return {
        "id": connection.id,
        "kind": connection.kind,
        "provider": connection.provider,
        "provider_label": provider_label(connection),
        "account": connection.account,
        "status": connection.status,
        "status_message": connection.status_message,
        "auto_sync_enabled": connection.auto_sync_enabled,
        "details": {k: details[k] for k in PUBLIC_DETAILS if details.get(k) is not None},
        "created_at": connection.created_at,
    }


def own_connection(session: Session, kind: str) -> Connection | None:
    return session.scalars(
        select(Connection).where(Connection.user_id == me().id, Connection.kind == kind)
    ).one_or_none()


def save_connection(
    kind: str,
    *,
    provider: str,
    account: str,
    details: Mapping[str, Any],
    secret: Mapping[str, Any],
    status_message: str,
) -> dict[str, Any]:
    with db() as session:
        connection = stored.replace_connection(
            session,
            me().id,
            kind,
            provider=provider,
            account=account,
            details=details,
            secret=secret,
            status_message=status_message,
        )
        return connection_dict(connection)


def refuse_provider_error(
    exc: ProviderError, *, auth_message: str | None = None, unreachable: str | None = None
) -> NoReturn:
    """A live test failed: 400 when the user's input is wrong, 502 when the service is."""
    if isinstance(exc, ProviderAuthError) and auth_message:
        refuse(400, auth_message)
    if isinstance(exc, ProviderTransientError):
        refuse(502, unreachable or exc.message)
    refuse(400, exc.message)


# -- routes -------------------------------------------------------------------------------------


@blp.route("")
class Overview(MethodView):
    decorators = [login_required]

    @blp.response(200, OverviewSchema)
    def get(self) -> dict[str, Any]:
        """My calendar and CRM connections, the calendar providers, and my organization's CRM."""
        with db() as session:
            calendar = own_connection(session, "calendar")
            crm = own_connection(session, "crm")
            organization = session.get(Organization, me().organization_id)
            assert organization is not None  # a user's organization cannot vanish under them
            return {
                "calendar": connection_dict(calendar) if calendar else None,
                "crm_connection": connection_dict(crm) if crm else None,
                "calendar_providers": [vars(p) for p in calendar_providers()],
                "crm_info": crm_info(organization),
            }


def crm_info(organization: Organization) -> dict[str, Any]:
    if organization.crm_type is None:
        return {"type": None, "label": None, "needs_url": False, "url": None}
    label, needs_url = crm_types().get(organization.crm_type, (organization.crm_type, False))
    return {
        "type": organization.crm_type,
        "label": label,
        "needs_url": needs_url,
        "url": organization.crm_base_url,
    }


@blp.route("/calendar")
class CalendarConnection(MethodView):
    decorators = [login_required]

    @blp.arguments(CalendarPatchSchema)
    @blp.response(200, ConnectionSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No calendar is connected.")
    def patch(self, body: dict[str, Any]) -> dict[str, Any]:
        """Turn "Enable automatic calendar sync" on or off."""
        with db() as session:
            connection = own_connection(session, "calendar")
            if connection is None:
                refuse(404, stored.NO_CALENDAR)
            connection.auto_sync_enabled = body["auto_sync_enabled"]
            session.flush()
            return connection_dict(connection)

    @blp.response(204)
    def delete(self) -> None:
        """Disconnect my calendar (nothing in the calendar or the CRM is deleted)."""
        _disconnect("calendar")


@blp.route("/crm", methods=["PUT"])
@login_required
@rate_limited("connect")
@blp.arguments(CrmCredentialsSchema)
@blp.response(200, ConnectionSchema)
@blp.alt_response(400, schema=ErrorSchema, description="The CRM refused these credentials.")
@blp.alt_response(
    409,
    schema=ErrorSchema,
    description="No CRM is chosen, it is unusable, or it connects with a Microsoft sign-in.",
)
@blp.alt_response(429, schema=ErrorSchema, description="Too many connect attempts.")
@blp.alt_response(502, schema=ErrorSchema, description="The CRM could not be reached.")
@blp.alt_response(503, schema=ErrorSchema, description="This CRM cannot be connected yet.")
def connect_crm(body: dict[str, Any]) -> dict[str, Any]:
    """Enter my CRM credentials: tested live against my organization's CRM, then stored."""
    with db() as session:
        organization = session.get(Organization, me().organization_id)
        assert organization is not None
        crm_type, crm_url = organization.crm_type, organization.crm_base_url
    if crm_type is None:
        refuse(409, NO_CRM_CHOSEN)
    label = crm_types().get(crm_type, (crm_type, False))[0]
    if crm_type == "sandbox" and crm_type in crm_types():  # development only
        return save_connection(
            "crm", provider=crm_type, **_connect_sandbox_crm(body["user_name"], body["password"])
        )
    # (The sandbox's Dynamics signs in too; it is never a choice in production.)
    if crm_type in (*SIGN_IN_CRMS, "sandbox-dynamics"):
        refuse(409, CRM_NEEDS_SIGN_IN.format(label=label))
    connector = CRM_CONNECTORS.get(crm_type)
    if connector is None:
        refuse(503, CRM_NOT_READY.format(label=label))
    try:
        # Checked again: the deployment's rules may have changed since the admin saved it.
        url = services().url_policy.check_url(crm_url or "")
    except UnsafeURL as exc:
        refuse(
            409,
            f"Your organization's CRM address cannot be used: {exc} Ask your administrator "
            'to correct the "Custom URL".',
        )
    try:
        saved = connector(url, body["user_name"], body["password"])
    except ProviderConfigError as exc:
        # The address is the administrator's, not something this user can correct.
        refuse(502, f'{exc.message} Your administrator enters this address as the "Custom URL".')
    except ProviderError as exc:
        refuse_provider_error(exc)
    return save_connection("crm", provider=crm_type, **saved)


@blp.route("/crm", methods=["DELETE"])
@login_required
@blp.response(204)
def disconnect_crm() -> None:
    """Forget my CRM credentials."""
    _disconnect("crm")


def _disconnect(kind: str) -> None:
    # Links and cursors stay: reconnecting the same account carries on where it stopped,
    # and `replace_connection` drops the cursor if another account is connected instead.
    with db() as session:
        connection = own_connection(session, kind)
        connection_id = connection.id if connection is not None else None
    if connection_id is not None and kind == "calendar":
        # Tell the provider to stop notifying while the credentials still exist; the
        # row's cascade alone would leave the subscription running until it expires.
        push.remove_channel(current_app.extensions["calsync"], connection_id)
    with db() as session:
        connection = own_connection(session, kind)
        if connection is not None:
            session.delete(connection)


def _connect_suitecrm(url: str, user_name: str, password: str) -> dict[str, Any]:
    from calsync.crm.suitecrm import SuiteCrmAdapter

    # SuiteCRM's V8 API needs an OAuth client the deployment does not configure, so the
    # connector picks REST v4_1 (and says so in its message).
    connection = SuiteCrmAdapter.connect(
        url, user_name, password, session=safe_session(services().url_policy)
    )
    probe_root = connection.credentials.get("base_url", url) + connection.credentials.get(
        "prefix", ""
    )
    return {
        "account": user_name,
        "details": {"server_url": probe_root, "api": connection.api},
        "secret": connection.credentials,
        "status_message": connection.message,
    }


CRM_CONNECTORS = {"suitecrm": _connect_suitecrm}


def _connect_sandbox_crm(user_name: str, password: str) -> dict[str, Any]:
    """The "Sandbox CRM" (development): the SuiteCRM emulator `calsync sandbox` runs. Its
    address is calsync's own, not a user's, so the SSRF guard (which refuses 127.0.0.1)
    does not apply."""
    import requests

    from calsync.crm.suitecrm import SuiteCrmAdapter

    info = running_sandbox()
    if info is None:
        refuse(503, SANDBOX_NOT_RUNNING)
    session = requests.Session()
    session.trust_env = False
    try:
        connection = SuiteCrmAdapter.connect(info["crm_url"], user_name, password, session=session)
    except ProviderError as exc:
        refuse_provider_error(exc)
    return {
        "account": user_name,
        "details": {"server_url": info["crm_url"], "api": connection.api},
        "secret": connection.credentials,
        "status_message": connection.message,
    }


def crm_record_url(
    connection: Connection, organization: Organization, record_id: str
) -> str | None:
    """Where the user opens a CRM record in the browser, when the CRM has such a page."""
    if connection.provider != "suitecrm":
        return None
    base = (connection.details or {}).get("server_url") or organization.crm_base_url
    if not base:
        return None
    query = urlencode({"module": "Meetings", "action": "DetailView", "record": record_id})
    return f"{str(base).rstrip('/')}/index.php?{query}"


def host_of(url: str) -> str:
    return urlsplit(url).hostname or url
