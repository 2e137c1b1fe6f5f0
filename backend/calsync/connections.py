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
from sqlalchemy import select
from sqlalchemy.orm import Session

from calsync import calendars, crm
from calsync.config import Config
from calsync.models import Connection, SyncState, User
from calsync.profiles import effective_profile, engine_settings
from calsync.provider_errors import ProviderAuthError, ProviderConfigError
from calsync.runtime import Runtime
from calsync.security.outbound import safe_session
from calsync.security.urls import policy_for
from calsync.sync.settings import SyncSettings

# Shown when a side is missing: where in the UI to go (labels as the manual spells them).
NO_CALENDAR = 'Connect your calendar first: "Connections" > "Calendar", then "Connect".'
NO_CRM = 'Enter your CRM credentials first on the "Connections" page.'
RECONNECT = {
    "calendar": "Your calendar connection needs attention: connect it again.",
    "crm": "Your CRM connection needs attention: enter your credentials again.",
}


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
    if opener is None and not config.is_production:
        opener = _SANDBOX_CALENDAR_OPENERS.get(connection.provider)
    if opener is None:
        raise ProviderConfigError(
            f"calsync cannot open calendars of type {connection.provider!r}; connect again."
        )
    return opener(connection.details or {}, connection.secret or {}, config)


def open_crm(connection: Connection, config: Config) -> Opened:
    opener = _CRM_OPENERS.get(connection.provider)
    if opener is None and not config.is_production:
        opener = _SANDBOX_CRM_OPENERS.get(connection.provider)
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
            session=safe_session(policy_for(config)),
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


def _google(details: Mapping[str, Any], secret: Mapping[str, Any], config: Config) -> Opened:
    cls = calendars.adapter_class("google")
    if not config.google_client_id or not config.google_client_secret:
        raise ProviderConfigError(
            "Google sign-in is not configured on this calsync server "
            "(GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET); tell your administrator."
        )
    options: dict[str, Any] = {}
    session = requests.Session()
    # Development only, as for Graph: the sandbox's emulator stands in for Google.
    if not config.is_production:
        for key in ("token_endpoint", "api_base"):
            if details.get(key):
                options[key] = details[key]
        if details.get("ca_file"):
            session.trust_env = False
            session.verify = details["ca_file"]
    if details.get("calendar_id"):
        options["calendar_id"] = details["calendar_id"]
    adapter = cls(
        secret,
        client_id=config.google_client_id,
        client_secret=config.google_client_secret,
        session=session,
        **options,
    )
    return Opened(adapter, lambda: adapter.credentials() if adapter.credentials_changed else None)


def _dynamics(details: Mapping[str, Any], secret: Mapping[str, Any], config: Config) -> Opened:
    cls = crm.adapter_class("dynamics")
    if not config.microsoft_client_id or not config.microsoft_client_secret:
        raise ProviderConfigError(
            "Microsoft sign-in is not configured on this calsync server "
            "(MICROSOFT_CLIENT_ID and MICROSOFT_CLIENT_SECRET); tell your administrator."
        )
    # The organization URL inside the credentials was checked when they were saved; the
    # guarded session re-checks every address it actually connects to.
    session = safe_session(policy_for(config))
    if details.get("ca_file") and not config.is_production:
        # Development only: an emulator with a certificate of its own stands in (the API
        # stores this outside production only).
        session.verify = details["ca_file"]
    adapter = cls(
        secret,
        client_id=config.microsoft_client_id,
        client_secret=config.microsoft_client_secret,
        authority_host=config.microsoft_authority_host,
        session=session,
        allow_local=not config.is_production,
    )
    return Opened(adapter, lambda: adapter.credentials if adapter.credentials_changed else None)


def _suitecrm(details: Mapping[str, Any], secret: Mapping[str, Any], config: Config) -> Opened:
    cls = crm.adapter_class("suitecrm")
    latest: dict[str, Any] = {}
    adapter = cls(
        secret,
        session=safe_session(policy_for(config)),
        on_credentials_changed=latest.update,
    )
    return Opened(adapter, lambda: dict(latest) if latest else None)


_CALENDAR_OPENERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], Config], Opened]] = {
    "caldav": _caldav,
    "outlook": _graph,
    "office365": _graph,
    "google": _google,
}
_CRM_OPENERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], Config], Opened]] = {
    "suitecrm": _suitecrm,
    "dynamics": _dynamics,
}


# -- development only: the sandbox's emulators (`calsync sandbox`) ---------------------------

SANDBOX_NOT_RUNNING = (
    "The sandbox is not running: start calsync with `make run` (or run `calsync sandbox`). "
    "Its data lives in memory, so after a restart connect again and use "
    '"Reset calendar sync".'
)


def _running_sandbox(config: Config) -> Mapping[str, Any]:
    if config.is_production:  # never reached (not registered in production): belt and braces
        raise ProviderConfigError("The sandbox is not available in production.")
    from calsync.sandbox.demo import running_sandbox

    info = running_sandbox(config)
    if info is None:
        raise ProviderConfigError(SANDBOX_NOT_RUNNING)
    return info


def _sandbox_graph(details: Mapping[str, Any], secret: Mapping[str, Any], config: Config) -> Opened:
    """Sandbox Outlook: the Graph adapter against the emulator where it listens now."""
    info = _running_sandbox(config)
    cls = calendars.adapter_class("office365")
    session = requests.Session()
    session.trust_env = False
    session.verify = info["ca_file"]
    adapter = cls(
        secret,
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        account_type=details.get("account_type", "office365"),
        session=session,
        authority_host=info["graph_url"],
        graph_base=f"{info['graph_url']}/v1.0",
    )
    return Opened(adapter, lambda: adapter.credentials() if adapter.credentials_changed else None)


def _sandbox_crm(details: Mapping[str, Any], secret: Mapping[str, Any], config: Config) -> Opened:
    """Sandbox CRM: the SuiteCRM adapter against the emulator (an address calsync wrote
    itself, not a user's: no SSRF guard needed, and it must reach 127.0.0.1)."""
    info = _running_sandbox(config)
    cls = crm.adapter_class("suitecrm")
    latest: dict[str, Any] = {}
    session = requests.Session()
    session.trust_env = False
    adapter = cls(
        {**secret, "base_url": info["crm_url"]},
        session=session,
        on_credentials_changed=latest.update,
    )
    return Opened(adapter, lambda: dict(latest) if latest else None)


def _sandbox_dynamics(
    details: Mapping[str, Any], secret: Mapping[str, Any], config: Config
) -> Opened:
    """Sandbox Dynamics 365: the Dynamics adapter against the emulator where it listens now,
    which is also the Microsoft login host its tokens come from (an address calsync wrote
    itself: no SSRF guard, as for the Sandbox CRM)."""
    info = _running_sandbox(config)
    if not info.get("dynamics_url"):
        raise ProviderConfigError(SANDBOX_NOT_RUNNING)
    cls = crm.adapter_class("dynamics")
    session = requests.Session()
    session.trust_env = False
    session.verify = info["dynamics_ca_file"]
    adapter = cls(
        {**secret, "org_url": info["dynamics_url"]},
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        authority_host=info["dynamics_url"],
        session=session,
        allow_local=True,
    )
    return Opened(adapter, lambda: adapter.credentials if adapter.credentials_changed else None)


# Looked up only outside production (open_calendar, open_crm).
_SANDBOX_CALENDAR_OPENERS: dict[
    str, Callable[[Mapping[str, Any], Mapping[str, Any], Config], Opened]
] = {"sandbox-outlook": _sandbox_graph}
_SANDBOX_CRM_OPENERS: dict[
    str, Callable[[Mapping[str, Any], Mapping[str, Any], Config], Opened]
] = {"sandbox": _sandbox_crm, "sandbox-dynamics": _sandbox_dynamics}


def replace_connection(
    session: Session,
    user_id: int,
    kind: str,
    *,
    provider: str,
    account: str,
    details: Mapping[str, Any],
    secret: Mapping[str, Any],
    status_message: str,
) -> Connection:
    """Store the user's `kind` connection (one of each kind), replacing the one they had.

    A connection to another account or calendar makes the side's saved cursor meaningless
    (a sync token of one calendar says nothing about another), so the cursor is dropped and
    the next run lists everything; the engine's guard then stops before deleting anything
    because linked items are missing. Reconnecting the same account keeps the cursor.
    """
    existing = session.scalars(
        select(Connection).where(Connection.user_id == user_id, Connection.kind == kind)
    ).one_or_none()
    same = existing is not None and _identity(
        existing.provider, existing.account, existing.details
    ) == _identity(provider, account, details)
    if not same:
        _forget_cursor(session, user_id, kind)
    connection = existing or Connection(user_id=user_id, kind=kind)
    if existing is None:
        session.add(connection)
    connection.provider = provider
    connection.account = account
    connection.details = dict(details)
    connection.secret = dict(secret)
    connection.status = "connected"
    connection.status_message = status_message
    if existing is None:
        connection.auto_sync_enabled = False
    session.flush()
    return connection


def _identity(provider: str, account: str, details: Mapping[str, Any] | None) -> tuple[str, ...]:
    details = details or {}
    where = details.get("calendar_url") or details.get("server_url") or ""
    return (provider, account.lower(), str(where).rstrip("/"))


def _forget_cursor(session: Session, user_id: int, kind: str) -> None:
    state = session.scalars(select(SyncState).where(SyncState.user_id == user_id)).one_or_none()
    if state is None:
        return
    if kind == "calendar":
        state.calendar_cursor = None
    else:
        state.crm_cursor = None
