"""Opening a user's two sides: their stored connections turned into engine adapters.

This is the one place that knows how each provider's adapter is constructed from what
a connection stores (non-secret `details`, encrypted `secret`) and from the deployment's
settings. Everything user-supplied goes through the SSRF-guarded session; the cloud
providers' fixed endpoints use a plain one. Providers rotate credentials as they work
(msal refreshes tokens, SuiteCRM's V8 refresh tokens are single use), so the caller
saves `Sides.rotated_credentials()` back after the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from sqlalchemy.orm import Session

from calsync import calendars, crm
from calsync.config import Config
from calsync.models import Connection, User
from calsync.profiles import effective_profile, engine_settings
from calsync.provider_errors import ProviderAuthError, ProviderConfigError
from calsync.runtime import Runtime
from calsync.security.outbound import safe_session
from calsync.security.urls import URLPolicy
from calsync.sync.settings import SyncSettings

# Shown when a side is missing: where in the UI to go (labels as the manual spells them).
NO_CALENDAR = 'Connect your calendar first: "Connections" > "Calendar", then "Connect".'
NO_CRM = 'Enter your CRM credentials first on the "Connections" page.'
RECONNECT = {
    "calendar": "Your calendar connection needs attention: connect it again.",
    "crm": "Your CRM connection needs attention: enter your credentials again.",
}


def url_policy(config: Config) -> URLPolicy:
    return URLPolicy(allow_http=not config.is_production, allowed_hosts=config.url_allowed_hosts)


@dataclass
class Opened:
    adapter: Any
    # Returns the credentials to store again, or None when they did not change.
    rotated: Callable[[], Mapping[str, Any] | None] = lambda: None


@dataclass
class Sides:
    calendar: Any
    crm: Any
    settings: SyncSettings
    user_email: str
    _opened: dict[int, Opened] = field(default_factory=dict)

    def rotated_credentials(self) -> dict[int, Mapping[str, Any]]:
        """Connection id -> credentials to save, for the sides whose tokens rotated."""
        changed = {}
        for connection_id, opened in self._opened.items():
            blob = opened.rotated()
            if blob is not None:
                changed[connection_id] = blob
        return changed


def open_sides(session: Session, user: User, rt: Runtime) -> Sides:
    """Both adapters and the effective settings of `user`; ProviderError if one is missing."""
    by_kind = {c.kind: c for c in user.connections}
    calendar_conn, crm_conn = by_kind.get("calendar"), by_kind.get("crm")
    if calendar_conn is None:
        raise ProviderConfigError(NO_CALENDAR)
    if crm_conn is None:
        raise ProviderConfigError(NO_CRM)
    for conn in (calendar_conn, crm_conn):
        if conn.status in ("needs_reconnect", "no_permission"):
            raise ProviderAuthError(conn.status_message or RECONNECT[conn.kind])
    settings = engine_settings(effective_profile(session, user))
    opened_calendar = open_calendar(calendar_conn, rt.config)
    opened_crm = open_crm(crm_conn, rt.config)
    return Sides(
        calendar=opened_calendar.adapter,
        crm=opened_crm.adapter,
        settings=settings,
        user_email=user.email,
        _opened={calendar_conn.id: opened_calendar, crm_conn.id: opened_crm},
    )


def open_calendar(connection: Connection, config: Config) -> Opened:
    opener = _CALENDAR_OPENERS.get(connection.provider)
    if opener is None:
        raise ProviderConfigError(
            f"calsync cannot open calendars of type {connection.provider!r}; connect again."
        )
    return opener(connection.details or {}, connection.secret or {}, config)


def open_crm(connection: Connection, config: Config) -> Opened:
    opener = _CRM_OPENERS.get(connection.provider)
    if opener is None:
        raise ProviderConfigError(
            f"calsync cannot open a CRM of type {connection.provider!r}; ask your administrator."
        )
    return opener(connection.details or {}, connection.secret or {}, config)


def _caldav(details: Mapping[str, Any], secret: Mapping[str, Any], config: Config) -> Opened:
    cls = calendars.adapter_class("caldav")
    return Opened(
        cls(
            details["server_url"],
            details["username"],
            secret["password"],
            details.get("calendar_url"),
            session=safe_session(url_policy(config)),
        )
    )


def _graph(details: Mapping[str, Any], secret: Mapping[str, Any], config: Config) -> Opened:
    cls = calendars.adapter_class("office365")
    if not config.microsoft_client_id or not config.microsoft_client_secret:
        raise ProviderConfigError(
            "Microsoft sign-in is not configured on this calsync server "
            "(MICROSOFT_CLIENT_ID and MICROSOFT_CLIENT_SECRET); tell your administrator."
        )
    options: dict[str, Any] = {}
    # Development only: the sandbox's emulator stands in for Microsoft (the API refuses
    # to store these overrides in production).
    if not config.is_production:
        for key in ("authority_host", "graph_base"):
            if details.get(key):
                options[key] = details[key]
    session = requests.Session()
    if details.get("ca_file") and not config.is_production:
        session.trust_env = False
        session.verify = details["ca_file"]
    adapter = cls(
        secret,
        client_id=config.microsoft_client_id,
        client_secret=config.microsoft_client_secret,
        account_type=details.get("account_type"),
        session=session,
        **options,
    )
    return Opened(adapter, lambda: adapter.credentials() if adapter.credentials_changed else None)


def _suitecrm(details: Mapping[str, Any], secret: Mapping[str, Any], config: Config) -> Opened:
    cls = crm.adapter_class("suitecrm")
    latest: dict[str, Any] = {}
    adapter = cls(
        secret,
        session=safe_session(url_policy(config)),
        on_credentials_changed=latest.update,
    )
    return Opened(adapter, lambda: dict(latest) if latest else None)


_CALENDAR_OPENERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], Config], Opened]] = {
    "caldav": _caldav,
    "outlook": _graph,
    "office365": _graph,
}
_CRM_OPENERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], Config], Opened]] = {
    "suitecrm": _suitecrm,
}
