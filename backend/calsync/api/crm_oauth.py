"""Connecting Dynamics 365 with the user's Microsoft sign-in ("Sign in with Microsoft").

Dynamics 365 takes no user name and password: calsync acts as the user through the
delegated scope ``{org_url}/user_impersonation`` (msal adds openid, profile and
offline_access). `POST /api/connections/crm/oauth` starts msal's authorization-code flow
(state, PKCE, nonce) and keeps it in the signed session cookie of this browser, next to the
user and the organization URL it was started for. Microsoft sends the browser back to the
one redirect URI the app registration has, the calendar's callback
(`calendar_oauth.callback`), which recognises this flow by its state and calls `finish`:
redeem the code, test the connection live (WhoAmI, the user's activity privileges, one read),
store the credential encrypted, and return to the Automatic sync page's CRM tab with the
outcome.

The organization URL is the administrator's "Custom URL": it goes through the SSRF guard
when the flow starts and every request to it through the guarded session.

"Sandbox Dynamics 365" (development only, while `calsync sandbox` runs) is the same flow
against the sandbox's Dynamics emulator, which is the organization and Microsoft's login
host at once: its address and certificate are the ones the sandbox wrote, not a user's.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import marshmallow as ma
import requests
from flask import redirect, session
from flask_login import login_required
from flask_smorest import Blueprint
from werkzeug.wrappers import Response

from calsync.api.access import db, me
from calsync.api.connections import (
    NO_CRM_CHOSEN,
    SANDBOX_NOT_RUNNING,
    SIGN_IN_CRMS,
    running_sandbox,
    save_connection,
)
from calsync.api.errors import ErrorSchema, refuse
from calsync.api.organization import crm_types
from calsync.api.services import services
from calsync.config import Config
from calsync.crm.dynamics import DynamicsAdapter, DynamicsOAuth
from calsync.models import Organization
from calsync.provider_errors import ProviderConfigError, ProviderError
from calsync.security.outbound import safe_session
from calsync.security.ratelimit import rate_limited
from calsync.security.urls import UnsafeURL

AUTOSYNC_PAGE = "/addin/autosync.html"
# The calendar's callback: the app registration has one redirect URI for both flows.
CALLBACK_PATH = "/api/connections/calendar/oauth/callback"
FLOW_KEY = "calsync.crm_flow"
API_LABEL = "Dataverse Web API v9.2"
# Development only: the sandbox's Dynamics 365 emulator (`calsync sandbox`).
SANDBOX_DYNAMICS = "sandbox-dynamics"

AGAIN = 'Select "Sign in with Microsoft" to try again.'
REFUSED = (
    "You did not allow calsync to use Dynamics 365 as you, so your CRM is not connected. " + AGAIN
)
NEEDS_ADMIN_CONSENT = (
    "Your organization lets only an administrator allow apps to use Dynamics 365. Ask your "
    "Microsoft 365 administrator to grant calsync access for the organization, then "
    'select "Sign in with Microsoft" again.'
)
WRONG_ORGANIZATION = (
    "Microsoft does not know a Dynamics 365 organization at {org} for your account. Ask your "
    'administrator to check the CRM\'s "Custom URL": it must be the address you open '
    "Dynamics 365 with, in your organization's Microsoft 365."
)
STALE = (
    "This sign-in does not match a connection attempt of this browser (it expired or was "
    "already used). " + AGAIN
)
CHANGED = (
    "Your organization's CRM changed while you were signing in. Nothing was connected. " + AGAIN
)
NOT_DYNAMICS = (
    "Your organization's CRM ({label}) connects with a user name and password, not a "
    "Microsoft sign-in: enter them on the CRM tab."
)
NOT_SET_UP = (
    "Dynamics 365 sign-in is not set up on this server: the administrator must set "
    "MICROSOFT_CLIENT_ID and MICROSOFT_CLIENT_SECRET."
)

blp = Blueprint(
    "crm_oauth",
    __name__,
    url_prefix="/api/connections/crm/oauth",
    description="Connect Dynamics 365 through the user's Microsoft sign-in.",
)


class NotAvailable(Exception):
    """Dynamics 365 sign-in cannot be used here; the message says what the admin must do."""


class CrmSignInSchema(ma.Schema):
    """Nothing to enter: the organization's CRM and address are the administrator's."""


class CrmAuthorizeSchema(ma.Schema):
    authorize_url = ma.fields.String(
        required=True, metadata={"description": "Send the browser there (Microsoft sign-in)."}
    )


# -- where the flow talks to ---------------------------------------------------------------


@dataclass(frozen=True)
class _Dynamics:
    """The deployment's Microsoft app, and how the organization is reached."""

    client_id: str
    client_secret: str
    authority_host: str
    org_url: str
    org_session: requests.Session  # SSRF-guarded: the address is the administrator's
    ca_file: str | None
    allow_local: bool
    # The sandbox: msal must trust its emulator, and the browser goes to the plain-http
    # address of the same consent page (it does not trust the emulator's certificate).
    login_session: requests.Session | None = None
    browser_authority: str | None = None

    def oauth(self) -> DynamicsOAuth:
        return _BrowserAuthority(
            self.client_id,
            self.client_secret,
            self.org_url,
            authority_host=self.authority_host,
            # Microsoft's login host is fixed by the deployment, not typed by a user.
            session=self.login_session or requests.Session(),
            allow_local=self.allow_local,
            browser_authority=self.browser_authority,
        )


class _BrowserAuthority(DynamicsOAuth):
    """msal's authorize URL, sent to the browser at `browser_authority` when one is set."""

    def __init__(self, *args: Any, browser_authority: str | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.browser_authority = browser_authority

    def start_auth(
        self, redirect_uri: str, state: str, *, login_hint: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        url, flow = super().start_auth(redirect_uri, state, login_hint=login_hint)
        if self.browser_authority:
            url = url.replace(self.authority_host, self.browser_authority, 1)
        return url, flow


def _dynamics(crm_type: str | None, crm_url: str | None, config: Config) -> _Dynamics:
    if crm_type == SANDBOX_DYNAMICS:
        return _sandbox_dynamics(config)
    if not config.microsoft_client_id or not config.microsoft_client_secret:
        raise NotAvailable(NOT_SET_UP)
    # Checked again: the deployment's rules may have changed since the admin saved it.
    org_url = services().url_policy.check_url(crm_url or "")
    org_session = safe_session(services().url_policy)
    ca_file = None
    if not config.is_production and os.environ.get("REQUESTS_CA_BUNDLE"):
        # Development only: an emulator with its own certificate stands in for Dataverse
        # (the guarded session ignores the environment's CA bundle otherwise).
        ca_file = os.environ["REQUESTS_CA_BUNDLE"]
        org_session.verify = ca_file
    return _Dynamics(
        client_id=config.microsoft_client_id,
        client_secret=config.microsoft_client_secret,
        authority_host=config.microsoft_authority_host,
        org_url=org_url,
        org_session=org_session,
        ca_file=ca_file,
        allow_local=not config.is_production,
    )


def _sandbox_dynamics(config: Config) -> _Dynamics:
    """Sandbox Dynamics 365 (development): the emulator `calsync sandbox` runs, with the
    client it accepts; no Entra ID app is needed."""
    if config.is_production:  # never reached (not a CRM choice in production)
        raise NotAvailable(NOT_SET_UP)
    info = running_sandbox()
    if info is None or not info.get("dynamics_url"):
        raise NotAvailable(SANDBOX_NOT_RUNNING)
    # An address calsync wrote itself, on 127.0.0.1: the SSRF guard (which refuses it) does
    # not apply, and no proxy of the environment must see it.
    session = requests.Session()
    session.trust_env = False
    session.verify = info["dynamics_ca_file"]
    return _Dynamics(
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        authority_host=info["dynamics_url"],
        org_url=info["dynamics_url"],
        org_session=session,
        ca_file=None,  # `connections._sandbox_dynamics` reads where the sandbox is now
        allow_local=True,
        login_session=session,
        browser_authority=info["dynamics_consent_url"],
    )


def _organization_crm() -> tuple[str | None, str | None]:
    with db() as s:
        organization = s.get(Organization, me().organization_id)
        assert organization is not None  # a user's organization cannot vanish under them
        return organization.crm_type, organization.crm_base_url


def signs_in_with_microsoft(crm_type: str | None) -> bool:
    # The sandbox's is a choice outside production only (`crm_types`).
    sandbox = crm_type == SANDBOX_DYNAMICS and crm_type in crm_types()
    return crm_type in SIGN_IN_CRMS or sandbox


# -- routes --------------------------------------------------------------------------------


@blp.route("", methods=["POST"])
@login_required
@rate_limited("connect")
@blp.arguments(CrmSignInSchema)
@blp.response(200, CrmAuthorizeSchema)
@blp.alt_response(409, schema=ErrorSchema, description="No CRM, or not one to sign in to.")
@blp.alt_response(429, schema=ErrorSchema, description="Too many connect attempts.")
@blp.alt_response(502, schema=ErrorSchema, description="Microsoft or the CRM is unreachable.")
@blp.alt_response(503, schema=ErrorSchema, description="Microsoft sign-in is not set up here.")
def start(body: dict[str, Any]) -> dict[str, str]:
    """Start connecting Dynamics 365: where to send the browser to sign in with Microsoft."""
    crm_type, crm_url = _organization_crm()
    if crm_type is None:
        refuse(409, NO_CRM_CHOSEN)
    if not signs_in_with_microsoft(crm_type):
        label = crm_types().get(crm_type, (crm_type, False))[0]
        refuse(409, NOT_DYNAMICS.format(label=label))
    config = services().config
    try:
        target = _dynamics(crm_type, crm_url, config)
        oauth = target.oauth()
        # Dataverse answers an anonymous call with a Bearer challenge: a wrong address is
        # said now, before the user goes through Microsoft's pages for nothing.
        DynamicsAdapter.probe(
            target.org_url, session=target.org_session, allow_local=target.allow_local
        )
        state = secrets.token_urlsafe(32)
        # Work accounts sign in with the address they use here.
        url, flow = oauth.start_auth(redirect_uri(config), state, login_hint=me().email)
    except NotAvailable as exc:
        refuse(503, str(exc))
    except UnsafeURL as exc:
        refuse(409, _admin_must_fix(f"Your organization's CRM address cannot be used: {exc}"))
    except ProviderConfigError as exc:
        refuse(409, _admin_must_fix(exc.message))
    except ProviderError as exc:  # Microsoft's login host or the organization unreachable
        refuse(502, exc.message)
    session[FLOW_KEY] = {
        "state": state,
        "flow": flow,
        "user_id": me().id,
        "crm_type": crm_type,
        "crm_url": crm_url,
        "org_url": oauth.org_url,
    }
    return {"authorize_url": url}


def _admin_must_fix(message: str) -> str:
    return f'{message} Ask your administrator to correct the CRM\'s "Custom URL".'


# -- the shared callback's CRM half ----------------------------------------------------------


def take_flow(state: str) -> dict[str, Any] | None:
    """The pending CRM flow of this browser if `state` is its state (taken out: a redirect
    is used once); None otherwise, leaving it pending."""
    pending = session.get(FLOW_KEY)
    if not isinstance(pending, dict) or not hmac.compare_digest(
        state.encode(), str(pending.get("state", "")).encode()
    ):
        return None
    session.pop(FLOW_KEY, None)
    return pending


def drop_flow() -> bool:
    """Forget this browser's pending CRM flow; True if there was one."""
    return session.pop(FLOW_KEY, None) is not None


def stale() -> Response:
    return back(error=STALE)


def finish(pending: dict[str, Any], reply: dict[str, str]) -> Response:
    """Finish the CRM flow `pending` (its state matched) with Microsoft's redirect `reply`."""
    if pending.get("user_id") != me().id:
        # Started by someone else who signed in on this browser: never theirs to finish.
        return back(error=STALE)
    org_url = str(pending["org_url"])
    if reply.get("error"):
        return back(error=_refusal(reply, org_url))
    crm_type, crm_url = _organization_crm()
    if crm_type != pending["crm_type"] or crm_url != pending["crm_url"]:
        return back(error=CHANGED)
    config = services().config
    try:
        target = _dynamics(crm_type, crm_url, config)
        credentials, email = target.oauth().finish_auth(pending["flow"], reply)
        connection = DynamicsAdapter.connect(
            credentials,
            client_id=target.client_id,
            client_secret=target.client_secret,
            authority_host=target.authority_host,
            session=target.org_session,
            allow_local=target.allow_local,
        )
    except NotAvailable as exc:
        return back(error=str(exc))
    except UnsafeURL as exc:
        return back(error=_admin_must_fix(f"Your organization's CRM address cannot be used: {exc}"))
    except ProviderConfigError as exc:
        return back(error=_admin_must_fix(exc.message))
    except ProviderError as exc:
        return back(error=exc.message)
    details: dict[str, Any] = {"server_url": org_url, "api": API_LABEL}
    if target.ca_file and not config.is_production:
        details["ca_file"] = target.ca_file  # `calsync.connections` honours it outside production
    save_connection(
        "crm",
        provider=str(crm_type),
        account=email or connection.user_name,
        details=details,
        secret=connection.credentials,
        status_message=connection.message,
    )
    return back(connected="crm")


def _refusal(reply: dict[str, str], org_url: str) -> str:
    """A sentence the user can act on for Microsoft's error redirect (authorization
    endpoint errors: error code, then AADSTS code in error_description)."""
    error = reply.get("error", "")
    description = reply.get("error_description", "")
    if error == "consent_required" or any(
        code in description for code in ("AADSTS65001", "AADSTS90094", "AADSTS90008")
    ):
        return NEEDS_ADMIN_CONSENT
    if error == "access_denied":
        return REFUSED
    if error == "invalid_resource" or "AADSTS500011" in description:
        return WRONG_ORGANIZATION.format(org=urlsplit(org_url).netloc or org_url)
    if error in ("login_required", "interaction_required"):
        return "Microsoft needs you to sign in again. " + AGAIN
    return f"Microsoft sign-in did not connect Dynamics 365 ({error}). {AGAIN}"


def redirect_uri(config: Config) -> str:
    return f"{config.base_url}{CALLBACK_PATH}"


def back(**outcome: str) -> Response:
    """To the Automatic sync page's CRM tab, with the outcome in the URL."""
    return redirect(f"{AUTOSYNC_PAGE}?{urlencode({**outcome, 'tab': 'crm'})}", 302)
