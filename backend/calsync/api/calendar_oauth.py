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
from calsync.api.connections import (
    CALENDAR_PROVIDERS,
    DEVELOPMENT_PROVIDERS,
    SANDBOX_NOT_RUNNING,
    running_sandbox,
    save_connection,
)
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
# Development only: "Sandbox Outlook", the Graph emulator of `calsync sandbox`.
SANDBOX_LABELS = {p.key: p.label for p in DEVELOPMENT_PROVIDERS if p.method == "oauth"}
UNKNOWN_PROVIDER = '"Provider" must be one of "outlook", "office365", "google".'

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
        # The sandbox's keys pass here; `start` refuses them in production.
        validate=ma.validate.OneOf((*LABELS, *SANDBOX_LABELS), error=UNKNOWN_PROVIDER),
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
    if provider in SANDBOX_LABELS:
        return _sandbox(config)
    return _google(config) if provider == "google" else _microsoft(provider, config)


def label_of(provider: str) -> str:
    return LABELS.get(provider) or SANDBOX_LABELS.get(provider, provider)


def stored_details(provider: str, config: Config) -> dict[str, Any]:
    """The non-secret details `calsync.connections` opens the calendar with."""
    if provider == "google":
        return {}
    if provider in SANDBOX_LABELS:
        # Where the emulator listened at connect time; `connections._sandbox_graph` opens
        # it where it listens now (instance/sandbox.json), outside production only.
        info = running_sandbox() or {}
        return {
            "account_type": "office365",
            "sandbox": True,
            "authority_host": info.get("graph_url"),
            "graph_base": f"{info.get('graph_url')}/v1.0",
            "ca_file": info.get("ca_file"),
        }
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
            f"{label_of(provider)} sign-in is not set up on this server: the administrator must "
            "set MICROSOFT_CLIENT_ID and MICROSOFT_CLIENT_SECRET."
        )
    return GraphOAuth(
        config.microsoft_client_id,
        config.microsoft_client_secret,
        provider,  # type: ignore[arg-type]  # "outlook" | "office365", checked by StartSchema
        authority_host=config.microsoft_authority_host,
        session=requests.Session(),
    )


def _sandbox(config: Config) -> Any:
    """Sandbox Outlook (development): the real msal flow against the Graph emulator."""
    from calsync.calendars.graph import GraphOAuth

    if config.is_production:
        raise NotAvailable(UNKNOWN_PROVIDER)
    info = running_sandbox()
    if info is None:
        raise NotAvailable(SANDBOX_NOT_RUNNING)
    session = requests.Session()
    session.trust_env = False
    session.verify = info["ca_file"]

    class SandboxOAuth(GraphOAuth):
        def start_auth(
            self, redirect_uri: str, state: str, *, login_hint: str | None = None
        ) -> tuple[str, dict[str, Any]]:
            url, flow = super().start_auth(redirect_uri, state, login_hint=login_hint)
            # The browser visits the consent page over plain http: it does not trust the
            # emulator's certificate (msal, on the server, does).
            return url.replace(info["graph_url"], info["consent_url"], 1), flow

    return SandboxOAuth(
        info["client_id"],
        info["client_secret"],
        "office365",
        authority_host=info["graph_url"],
        session=session,
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
    if provider in SANDBOX_LABELS and config.is_production:
        refuse(422, UNKNOWN_PROVIDER, {"provider": UNKNOWN_PROVIDER})
    try:
        client = oauth_client(provider, config)
        # Work accounts usually sign in to Office 365 with the address they use here; the
        # sandbox creates (and seeds) the mailbox of that address at the first consent.
        hint = me().email if provider in ("office365", *SANDBOX_LABELS) else None
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
@blp.response(
    302,
    description="Back to the Automatic sync page: ?connected=calendar, ?connected=crm&tab=crm "
    "(Dynamics 365) or ?error=",
)
def callback(**reply: Any) -> Response:
    """Where the provider sends the browser back after the consent page (also for
    "Sign in with Microsoft" of Dynamics 365: the app registration has one redirect URI)."""
    from calsync.api import crm_oauth  # it builds on `calsync.api.connections` too

    params = {k: str(v) for k, v in reply.items()}
    state = params.get("state", "")
    # Which attempt of this browser the state names; taken out first, so whatever happens
    # next, this redirect cannot be replayed.
    crm_flow = crm_oauth.take_flow(state)
    if crm_flow is not None:
        return crm_oauth.finish(crm_flow, params)
    pending = session.pop(FLOW_KEY, None)
    if not isinstance(pending, dict) or not hmac.compare_digest(
        state.encode(), str(pending.get("state", "")).encode()
    ):
        # A forged, replayed or foreign redirect ends every attempt pending here.
        if crm_oauth.drop_flow() and pending is None:
            return crm_oauth.stale()
        return _back(error=STALE)
    provider = str(pending["provider"])
    if params.get("error"):
        if params["error"] in ("access_denied", "consent_required", "interaction_required"):
            return _back(error=REFUSED)
        return _back(
            error=f"{label_of(provider)} did not connect your calendar. Click Connect to try again."
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
        status_message=f"Connected to {label_of(provider)} as {email}.",
    )
    return _back(connected="calendar")


def redirect_uri(config: Config) -> str:
    return f"{config.base_url}{CALLBACK_PATH}"


def _back(**outcome: str) -> Response:
    return redirect(f"{AUTOSYNC_PAGE}?{urlencode(outcome)}", 302)
