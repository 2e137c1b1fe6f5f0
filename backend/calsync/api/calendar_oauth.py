"""Connecting a calendar through the provider's consent page (Outlook, Office 365, Google).

The authorization-code flow with state and PKCE: `POST .../oauth` starts it and keeps
the flow (state, PKCE verifier, nonce) in the signed session cookie of this browser;
the provider sends the browser back to `GET .../oauth/callback`, which redeems the code
once (the flow is taken out of the session first, so a replayed or forged redirect finds
nothing) and returns the browser to the Automatic sync page with the outcome in its URL.
"""

from __future__ import annotations

import hmac
import os
import secrets
from importlib import import_module
from typing import Any
from urllib.parse import urlencode

import marshmallow as ma
import requests
from flask import redirect, session
from flask_login import login_required
from flask_smorest import Blueprint
from werkzeug.wrappers import Response

from calsync.api.access import me
from calsync.api.connections import CALENDAR_PROVIDERS, save_connection
from calsync.api.errors import ErrorSchema, refuse
from calsync.api.services import services
from calsync.config import DEFAULT_MICROSOFT_AUTHORITY_HOST, Config
from calsync.provider_errors import ProviderError, ProviderTransientError
from calsync.security.ratelimit import rate_limited

AUTOSYNC_PAGE = "/addin/autosync.html"
FLOW_KEY = "calsync.calendar_flow"
CALLBACK_PATH = "/api/connections/calendar/oauth/callback"
REFUSED = "You did not grant calsync access to your calendar. Click Connect to try again."
STALE = (
    "This sign-in does not match a connection attempt of this browser (it expired or was "
    "already used). Click Connect to try again."
)
LABELS = {p.key: p.label for p in CALENDAR_PROVIDERS if p.method == "oauth"}

blp = Blueprint(
    "calendar_oauth",
    __name__,
    url_prefix="/api/connections/calendar/oauth",
    description="Connect Outlook, Office 365 or Google through the provider's consent page.",
)


class NotAvailable(Exception):
    """The provider cannot be used on this server; the message says what the admin must do."""


class StartSchema(ma.Schema):
    provider = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(
            tuple(LABELS), error='"Provider" must be one of "outlook", "office365", "google".'
        ),
        error_messages={"required": '"Provider" is required.', "null": '"Provider" is required.'},
        metadata={"title": "Provider"},
    )


class AuthorizeSchema(ma.Schema):
    authorize_url = ma.fields.String(
        required=True, metadata={"description": "Send the browser there (the consent page)."}
    )


class CallbackArgs(ma.Schema):
    """What the provider sends back; everything goes to the provider's flow as it came."""

    class Meta:
        unknown = ma.INCLUDE

    code = ma.fields.String()
    state = ma.fields.String()
    error = ma.fields.String()
    error_description = ma.fields.String()


def oauth_client(provider: str, config: Config) -> Any:
    """The provider's connect flow (GraphOAuth or GoogleOAuth: start_auth, finish_auth)."""
    return _google(config) if provider == "google" else _microsoft(provider, config)


def stored_details(provider: str, config: Config) -> dict[str, Any]:
    """The non-secret details `calsync.connections` opens the calendar with."""
    if provider == "google":
        return {}
    details: dict[str, Any] = {"account_type": provider}
    # Development only: the sandbox's emulator stands in for Microsoft's login host and
    # Graph (both on one address) with a certificate of its own. `connections._graph`
    # honours these outside production only.
    if not config.is_production and config.microsoft_authority_host != (
        DEFAULT_MICROSOFT_AUTHORITY_HOST
    ):
        details["authority_host"] = config.microsoft_authority_host
        details["graph_base"] = f"{config.microsoft_authority_host}/v1.0"
        if os.environ.get("REQUESTS_CA_BUNDLE"):
            details["ca_file"] = os.environ["REQUESTS_CA_BUNDLE"]
    return details


def _microsoft(provider: str, config: Config) -> Any:
    from calsync.calendars.graph import GraphOAuth

    if not config.microsoft_client_id or not config.microsoft_client_secret:
        raise NotAvailable(
            f"{LABELS[provider]} sign-in is not set up on this server: the administrator must "
            "set MICROSOFT_CLIENT_ID and MICROSOFT_CLIENT_SECRET."
        )
    return GraphOAuth(
        config.microsoft_client_id,
        config.microsoft_client_secret,
        provider,  # type: ignore[arg-type]  # "outlook" | "office365", checked by StartSchema
        authority_host=config.microsoft_authority_host,
        session=requests.Session(),
    )


def _google(config: Config) -> Any:
    try:
        oauth_class = import_module("calsync.calendars.google").GoogleOAuth
    except (ImportError, AttributeError):
        raise NotAvailable("Google sign-in is not available yet on this server.") from None
    if not config.google_client_id or not config.google_client_secret:
        raise NotAvailable(
            "Google sign-in is not set up on this server: the administrator must set "
            "GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET."
        )
    return oauth_class(config.google_client_id, config.google_client_secret)


@blp.route("", methods=["POST"])
@login_required
@rate_limited("connect")
@blp.arguments(StartSchema)
@blp.response(200, AuthorizeSchema)
@blp.alt_response(429, schema=ErrorSchema, description="Too many connect attempts.")
@blp.alt_response(502, schema=ErrorSchema, description="The provider could not be reached.")
@blp.alt_response(503, schema=ErrorSchema, description="This provider is not set up here.")
def start(body: dict[str, str]) -> dict[str, str]:
    """Start connecting a calendar: where to send the browser for the provider's consent."""
    provider = body["provider"]
    config = services().config
    try:
        client = oauth_client(provider, config)
        # Work accounts usually sign in to Office 365 with the address they use here.
        hint = me().email if provider == "office365" else None
        state = secrets.token_urlsafe(32)
        url, flow = client.start_auth(redirect_uri(config), state, login_hint=hint)
    except NotAvailable as exc:
        refuse(503, str(exc))
    except ProviderTransientError as exc:
        refuse(502, exc.message)
    except ProviderError as exc:
        refuse(503, exc.message)
    session[FLOW_KEY] = {"provider": provider, "state": state, "flow": flow}
    return {"authorize_url": url}


@blp.route("/callback", methods=["GET"])
@login_required
@blp.arguments(CallbackArgs, location="query", as_kwargs=True)
@blp.response(302, description="Back to the Automatic sync page: ?connected=calendar or ?error=")
def callback(**reply: Any) -> Response:
    """Where the provider sends the browser back after the consent page."""
    # Taken out first: whatever happens next, this redirect cannot be replayed.
    pending = session.pop(FLOW_KEY, None)
    params = {k: str(v) for k, v in reply.items()}
    state = params.get("state", "")
    if not isinstance(pending, dict) or not hmac.compare_digest(
        state.encode(), str(pending.get("state", "")).encode()
    ):
        return _back(error=STALE)
    provider = str(pending["provider"])
    if params.get("error"):
        if params["error"] in ("access_denied", "consent_required", "interaction_required"):
            return _back(error=REFUSED)
        return _back(
            error=f"{LABELS[provider]} did not connect your calendar. Click Connect to try again."
        )
    config = services().config
    try:
        credentials, email = oauth_client(provider, config).finish_auth(pending["flow"], params)
    except NotAvailable as exc:
        return _back(error=str(exc))
    except ProviderError as exc:
        return _back(error=exc.message)
    save_connection(
        "calendar",
        provider=provider,
        account=email,
        details=stored_details(provider, config),
        secret=credentials,
        status_message=f"Connected to {LABELS[provider]} as {email}.",
    )
    return _back(connected="calendar")


def redirect_uri(config: Config) -> str:
    return f"{config.base_url}{CALLBACK_PATH}"


def _back(**outcome: str) -> Response:
    return redirect(f"{AUTOSYNC_PAGE}?{urlencode(outcome)}", 302)
