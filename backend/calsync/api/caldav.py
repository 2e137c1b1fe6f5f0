"""Connecting a CalDAV calendar by hand: server URL, user name, password, then a calendar.

The server URL is the user's, so it passes the SSRF guard (`check_url`) before anything
connects, and every request goes through the guarded session. Discovery stores nothing;
saving tests the account again (the password may have been typed for discovery only)
and checks that the chosen calendar is one of the account's own.
"""

from __future__ import annotations

from typing import Any, NoReturn

import marshmallow as ma
from flask.views import MethodView
from flask_login import login_required
from flask_smorest import Blueprint

from calsync.api.connections import (
    ConnectionSchema,
    host_of,
    refuse_provider_error,
    save_connection,
    text_field,
)
from calsync.api.errors import ErrorSchema, refuse
from calsync.api.services import services
from calsync.calendars.caldav import CaldavCalendar, DiscoveredCalendar
from calsync.provider_errors import ProviderError
from calsync.security.outbound import safe_session
from calsync.security.ratelimit import rate_limited
from calsync.security.urls import UnsafeURL

WRONG_PASSWORD = "The server refused this user name and password."

blp = Blueprint(
    "caldav",
    __name__,
    url_prefix="/api/connections/calendar/caldav",
    description="Connect a CalDAV calendar with a server URL, user name and password.",
)

# Well-known servers: the UI fills in the address (HOST is for the user to replace).
PRESETS = (
    {
        "key": "icloud",
        "label": "iCloud",
        "server_url": "https://caldav.icloud.com/",
        "hint": "Use your Apple ID and an app-specific password from appleid.apple.com.",
    },
    {
        "key": "fastmail",
        "label": "Fastmail",
        "server_url": "https://caldav.fastmail.com/",
        "hint": "Use your Fastmail address and an app password (Settings > Privacy & Security).",
    },
    {
        "key": "nextcloud",
        "label": "Nextcloud",
        "server_url": "https://HOST/remote.php/dav/",
        "hint": "Replace HOST with your Nextcloud's address; use an app password if you "
        "sign in with two-factor authentication.",
    },
)


class PresetSchema(ma.Schema):
    key = ma.fields.String(required=True)
    label = ma.fields.String(required=True)
    server_url = ma.fields.String(required=True)
    hint = ma.fields.String(required=True)


class AccountSchema(ma.Schema):
    server_url = text_field("Server URL", "The CalDAV server's address.", max_length=2048)
    username = text_field("User name", "Your user name on the CalDAV server.")
    password = text_field("Password", "Your password (stored encrypted).", max_length=1024)


class SaveSchema(AccountSchema):
    calendar_url = text_field(
        "Calendar", "One of the calendars discovery listed (its url).", max_length=2048
    )


class FoundCalendarSchema(ma.Schema):
    url = ma.fields.String(required=True)
    name = ma.fields.String(required=True)


class DiscoveredSchema(ma.Schema):
    calendars = ma.fields.List(ma.fields.Nested(FoundCalendarSchema), required=True)


@blp.route("/presets")
class Presets(MethodView):
    decorators = [login_required]

    @blp.response(200, PresetSchema(many=True))
    def get(self) -> list[dict[str, str]]:
        """Server addresses of well-known CalDAV providers (iCloud, Fastmail, Nextcloud)."""
        return list(PRESETS)


@blp.route("/discover", methods=["POST"])
@login_required
@rate_limited("connect")
@blp.arguments(AccountSchema)
@blp.response(200, DiscoveredSchema)
@blp.alt_response(400, schema=ErrorSchema, description="The server or the account refused.")
@blp.alt_response(429, schema=ErrorSchema, description="Too many connect attempts.")
@blp.alt_response(502, schema=ErrorSchema, description="The server could not be reached.")
def discover(body: dict[str, str]) -> dict[str, Any]:
    """Sign in to the CalDAV server and list the account's calendars (nothing is stored)."""
    _, found = _sign_in(body)
    return {"calendars": [{"url": c.url, "name": c.name} for c in found]}


@blp.route("", methods=["POST"])
@login_required
@rate_limited("connect")
@blp.arguments(SaveSchema)
@blp.response(201, ConnectionSchema)
@blp.alt_response(400, schema=ErrorSchema, description="The server or the account refused.")
@blp.alt_response(429, schema=ErrorSchema, description="Too many connect attempts.")
@blp.alt_response(502, schema=ErrorSchema, description="The server could not be reached.")
def connect(body: dict[str, str]) -> dict[str, Any]:
    """Connect a CalDAV calendar (it replaces the calendar I had connected)."""
    server_url, found = _sign_in(body)
    wanted = _collection(body["calendar_url"])
    chosen = next((c for c in found if _collection(c.url) == wanted), None)
    if chosen is None:
        message = (
            '"Calendar": this account has no such calendar on the server. Choose one of the '
            "calendars calsync listed."
        )
        refuse(400, message, {"calendar_url": message})
    try:
        # Servers may name calendars on another host (iCloud does): saved, so checked.
        calendar_url = services().url_policy.check_url(chosen.url)
    except UnsafeURL as exc:
        _refuse_field("calendar_url", f'"Calendar": {exc}')
    return save_connection(
        "calendar",
        provider="caldav",
        account=body["username"],
        details={
            "server_url": server_url,
            "username": body["username"],
            "calendar_url": calendar_url,
            "calendar_name": chosen.name,
        },
        secret={"password": body["password"]},
        status_message=f'Connected to the calendar "{chosen.name}" on {host_of(server_url)}.',
    )


def _sign_in(body: dict[str, str]) -> tuple[str, list[DiscoveredCalendar]]:
    """The checked server URL and the account's calendars, or a refusal the user can act on."""
    policy = services().url_policy
    try:
        server_url = policy.check_url(body["server_url"])
    except UnsafeURL as exc:
        _refuse_field("server_url", f'"Server URL": {exc}')
    calendar = CaldavCalendar(
        server_url, body["username"], body["password"], session=safe_session(policy)
    )
    try:
        with calendar:
            found = calendar.discover_calendars()
    except ProviderError as exc:
        refuse_provider_error(
            exc,
            auth_message=WRONG_PASSWORD,
            unreachable=f"calsync could not reach {host_of(server_url)}. Check the server "
            "address, or try again in a minute if the server is down.",
        )
    if not found:
        refuse(
            400,
            "This account has no calendar on the server. Create one in your calendar app, "
            "then try again.",
        )
    return server_url, found


def _collection(url: str) -> str:
    return url.strip().rstrip("/") + "/"


def _refuse_field(field: str, message: str) -> NoReturn:
    refuse(400, message, {field: message})
