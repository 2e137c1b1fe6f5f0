"""Google Calendar: the user's primary calendar through the Google Calendar API v3.

Everything Google-specific lives here; the engine sees a `CalendarAdapter`.

Sign-in: the OAuth 2.0 authorization-code flow for web server apps with PKCE (S256),
through authlib's `OAuth2Session` (`GoogleOAuth.start_auth` / `finish_auth`), with
access_type=offline and prompt=consent so Google returns a refresh token every time
(https://developers.google.com/identity/protocols/oauth2/web-server#offline). The credential
blob stored in `Connection.secret` is plain JSON: the account's e-mail and authlib's token
(access token, refresh token, expires_at). The adapter refreshes the access token through
authlib before it expires and once more when Google answers 401; the token update hook
sets `credentials_changed`, and `credentials()` hands back the blob to store again.

Listing: events.list on the primary calendar, series not expanded (singleEvents=false). A
full listing is bounded to the sync window with timeMin/timeMax and ends in a
nextSyncToken; an incremental one passes only that syncToken, since Google refuses it
together with timeMin/timeMax (https://developers.google.com/calendar/api/v3/reference/
events/list). The cursor therefore records the window it was started with, like graph.py's,
and once the engine's window has moved on by more than `window_slack` CursorExpired starts
a full listing over the new window (events that drift into the window without changing
would otherwise never be listed). HTTP 410 on a sync token is Google's "full sync
required" (https://developers.google.com/calendar/api/guides/sync), also CursorExpired.
Changed occurrences (`recurringEventId` + `originalStartTime`) are folded into their series,
read once per listing round with its instances. Unlike Graph's windowed delta, an
incremental Google listing is not bounded by a window, so an entry with status "cancelled"
is a deletion, not an event that left the window: it is reported as deleted without a read.

Writes: every create carries our link id in `extendedProperties.private.calsyncLinkId` and
an event id derived from it (base32hex, https://developers.google.com/calendar/api/v3/
reference/events#id), so a retried insert is refused with 409 "duplicate"
(https://developers.google.com/calendar/api/guides/errors#409_the_requested_identifier_already_exists)
and answered with the event the first insert made. `sendUpdates` is "all" or "none" from the
notify flag, so attendees are always written and Google mails them only when asked
(https://developers.google.com/calendar/api/v3/reference/events/insert). Updates are PATCHes
(fields we do not manage, like reminders or a Meet link, stay) under If-Match.

Limits: 403 rateLimitExceeded / userRateLimitExceeded and 429 are retried with exponential
backoff and jitter (Google sends no Retry-After;
https://developers.google.com/calendar/api/guides/errors#403_rate_limit_exceeded), at most
`max_retries` times, then ProviderTransientError.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from calsync.provider_errors import (
    ProviderAuthError,
    ProviderConfigError,
    ProviderConflict,
    ProviderError,
    ProviderPermissionError,
    ProviderTransientError,
)
from calsync.sync.adapters import BadItem, ChangePage, Window
from calsync.sync.errors import CursorExpired
from calsync.sync.model import (
    Capabilities,
    Event,
    Invitee,
    MovedOccurrence,
    Recurrence,
    Response,
    When,
    occurrence_key,
    to_utc_instant,
)

log = logging.getLogger(__name__)

__all__ = [
    "AUTH_LOST",
    "DEFAULT_API_BASE",
    "DEFAULT_AUTHORIZATION_ENDPOINT",
    "DEFAULT_TOKEN_ENDPOINT",
    "LINK_PROPERTY",
    "SCOPES",
    "Channel",
    "DiscoveredCalendar",
    "GoogleCalendar",
    "GoogleNotification",
    "GoogleOAuth",
    "event_id_for",
    "parse_notification",
]

# https://developers.google.com/identity/protocols/oauth2/web-server#httprest_1 (endpoints)
DEFAULT_AUTHORIZATION_ENDPOINT = "https://accounts.google.com/o/oauth2/v2/auth"
DEFAULT_TOKEN_ENDPOINT = "https://oauth2.googleapis.com/token"
DEFAULT_API_BASE = "https://www.googleapis.com/calendar/v3"
CALENDAR_EVENTS_SCOPE = "https://www.googleapis.com/auth/calendar.events"
# calendar.events reads and writes events (list, insert, patch, delete, instances, watch);
# listing the user's calendars needs calendar.calendarlist.readonly, the narrowest scope
# that allows calendarList.list; "openid email" put the account's address in the ID token
# (https://developers.google.com/calendar/api/auth,
# https://developers.google.com/identity/openid-connect/openid-connect#scope-param).
SCOPES = [
    "openid",
    "email",
    CALENDAR_EVENTS_SCOPE,
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
]
AUTH_LOST = "Your Google access was revoked. Connect again."
CREDENTIALS_VERSION = 1
CURSOR_PREFIX = "google1"
LINK_PROPERTY = "calsyncLinkId"
CHANGED_MEANWHILE = (
    "The event changed in Google Calendar while it was being synced; the next sync picks up "
    "the change."
)
# https://developers.google.com/calendar/api/guides/errors#403_user_rate_limit_exceeded,
# #403_rate_limit_exceeded and #429_too_many_requests: back off and retry.
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
# Daily and calendar usage limits do not lift within seconds: retry on a later run.
QUOTA_REASONS = frozenset({"dailyLimitExceeded", "quotaExceeded"})
# https://developers.google.com/calendar/api/guides/errors#500_backend_error: retry.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# What stops a whole listing; any other refusal about one item only skips that item.
_STOPS_A_LISTING = (ProviderTransientError, ProviderAuthError, ProviderPermissionError)
# https://developers.google.com/calendar/api/v3/reference/events/list: "The page size can
# never be larger than 2500 events".
MAX_PAGE = 2500
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/GMT", "GMT", "Etc/Universal", "Universal"})

_RESPONSES: dict[str, Response] = {
    "needsAction": "needs_action",
    "accepted": "accepted",
    "declined": "declined",
    "tentative": "tentative",
}
_GOOGLE_RESPONSES = {v: k for k, v in _RESPONSES.items()}


# -- small helpers -----------------------------------------------------------------------


def event_id_for(link_id: str) -> str:
    """The Google event id our create of `link_id` uses.

    Google takes client-chosen ids of base32hex characters (a-v, 0-9), 5 to 1024 long and
    unique per calendar (https://developers.google.com/calendar/api/v3/reference/events#id).
    Link ids are arbitrary text, so the id is the base32hex of their SHA-256: the same link
    id always gives the same event id, which is what makes a retried insert a duplicate.
    """
    digest = hashlib.sha256(link_id.encode()).digest()
    return base64.b32hexencode(digest).decode().rstrip("=").lower()


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _iana(name: str | None) -> str | None:
    """The event's IANA zone, None for UTC or a name this machine does not know."""
    if not name or name in _UTC_NAMES:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def _iso_z(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _read_when(value: Mapping[str, Any]) -> When:
    """An EventDateTime: a date for all-day events, else an aware UTC datetime
    (https://developers.google.com/calendar/api/v3/reference/events#start)."""
    if value.get("date"):
        return date.fromisoformat(str(value["date"]))
    parsed = datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        # "A time zone offset is required unless a time zone is explicitly specified in
        # timeZone" (same page).
        parsed = parsed.replace(tzinfo=_zone(value.get("timeZone")))
    return parsed.astimezone(UTC)


def _write_when(value: When, zone: str | None) -> dict[str, str]:
    if isinstance(value, datetime):
        name = zone or "UTC"
        local = value.astimezone(_zone(name))
        # The wall-clock time with its offset plus the IANA zone: Google keeps the zone,
        # so 09:00 Europe/Berlin reads back as 09:00 Europe/Berlin, across DST too. Series
        # need timeZone ("required for recurring events", events#start.timeZone).
        return {"dateTime": local.isoformat(timespec="seconds"), "timeZone": name}
    return {"date": value.isoformat()}


def _error_info(resp: requests.Response) -> tuple[list[str], str]:
    """The `reason`s and message of Google's error body
    (https://developers.google.com/calendar/api/guides/errors)."""
    try:
        err = resp.json().get("error") or {}
    except (ValueError, AttributeError):
        return [], resp.text[:200]
    if not isinstance(err, Mapping):
        return [], str(err)
    reasons = [str(e.get("reason") or "") for e in err.get("errors") or [] if isinstance(e, dict)]
    return reasons, str(err.get("message") or "")


def _quote(value: str) -> str:
    return quote(value, safe="")


def _id_token_claims(id_token: str | None) -> dict[str, Any]:
    """The ID token's claims, read without checking its signature.

    Allowed because the token came straight from Google's token endpoint over TLS
    (https://developers.google.com/identity/openid-connect/openid-connect#obtainuserinfo:
    "since you are communicating directly with Google over an intermediary-free HTTPS
    channel ... you can be confident that the token you receive really comes from Google").
    """
    if not id_token or id_token.count(".") < 2:
        return {}
    payload = id_token.split(".")[1]
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def _token_dict(token: Mapping[str, Any]) -> dict[str, Any]:
    """The token fields worth storing; the ID token is not needed after the e-mail is known."""
    keep = ("access_token", "refresh_token", "token_type", "expires_at", "scope")
    return {k: token[k] for k in keep if token.get(k) is not None}


# -- OAuth -------------------------------------------------------------------------------


class GoogleOAuth:
    """The connect flow. `start_auth` gives the URL to send the user to and a `flow` dict
    (JSON-serialisable: the API layer keeps it in the session); `finish_auth` redeems the
    redirect's query parameters for the credential blob and the account's e-mail.

    The endpoints default to Google's; the emulator passes its own.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        authorization_endpoint: str = DEFAULT_AUTHORIZATION_ENDPOINT,
        token_endpoint: str = DEFAULT_TOKEN_ENDPOINT,
        session: requests.Session | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.authorization_endpoint = authorization_endpoint
        self.token_endpoint = token_endpoint
        self.session = session or requests.Session()
        self.timeout = timeout

    def _client(self, redirect_uri: str) -> OAuth2Session:
        client = OAuth2Session(
            self.client_id,
            self.client_secret,
            scope=" ".join(SCOPES),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            # Google's examples send client_id and client_secret in the POST body
            # (https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code).
            token_endpoint_auth_method="client_secret_post",
        )
        # Token requests go through the injected session (its TLS trust, proxies, adapters).
        client.session = self.session
        return client

    def start_auth(
        self, redirect_uri: str, state: str, *, login_hint: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        # RFC 7636 wants 43 to 128 characters of verifier.
        verifier = generate_token(64)
        extra: dict[str, str] = {
            # offline: a refresh token, so syncs run without the user; consent: Google only
            # returns the refresh token on a consent screen, and a reconnect must get a new
            # one (https://developers.google.com/identity/protocols/oauth2/web-server#creatingclient).
            "access_type": "offline",
            "prompt": "consent",
        }
        if login_hint:
            extra["login_hint"] = login_hint
        url, _ = self._client(redirect_uri).create_authorization_url(
            self.authorization_endpoint, state=state, code_verifier=verifier, **extra
        )
        flow = {"state": state, "code_verifier": verifier, "redirect_uri": redirect_uri}
        return url, flow

    def finish_auth(
        self, flow: Mapping[str, Any], query_params: Mapping[str, str]
    ) -> tuple[dict[str, Any], str]:
        if query_params.get("error"):
            # access_denied when the user said no
            # (https://developers.google.com/identity/protocols/oauth2/web-server#handlingresponse).
            why = query_params.get("error_description") or query_params["error"]
            raise ProviderAuthError(f"Google did not grant access: {why}. Connect again.")
        state = str(query_params.get("state") or "")
        if not hmac.compare_digest(state.encode(), str(flow.get("state") or "").encode()):
            raise ProviderAuthError(
                "The Google sign-in did not match this connection attempt. Connect again."
            )
        code = query_params.get("code")
        if not code:
            raise ProviderAuthError("Google sent no authorization code. Connect again.")
        client = self._client(str(flow["redirect_uri"]))
        try:
            token = client.fetch_token(
                self.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=str(flow["code_verifier"]),
                timeout=self.timeout,
            )
        except OAuthError as exc:
            raise ProviderAuthError(
                f"Google did not grant access: {exc.description or exc.error}. Connect again."
            ) from exc
        except (requests.RequestException, ValueError) as exc:
            raise ProviderTransientError(
                f"Google sign-in could not be reached ({type(exc).__name__}). Try again in a "
                "moment."
            ) from exc
        if not token.get("refresh_token"):
            raise ProviderAuthError(
                "Google did not grant offline access (no refresh token). Connect again."
            )
        granted = str(token.get("scope") or "").split()
        if CALENDAR_EVENTS_SCOPE not in granted:
            # With granular consent the user may untick the calendar box and still sign in
            # (https://developers.google.com/identity/protocols/oauth2/resources/granular-permissions).
            raise ProviderPermissionError(
                "calsync was not allowed to see and edit your Google Calendar events. Connect "
                "again and tick the calendar permission."
            )
        claims = _id_token_claims(token.get("id_token"))
        email = str(claims.get("email") or "")
        if not email or (claims.get("aud") and claims["aud"] != self.client_id):
            raise ProviderAuthError(
                "Google did not tell calsync which account signed in. Connect again."
            )
        blob = {"version": CREDENTIALS_VERSION, "email": email, "token": _token_dict(token)}
        return blob, email


# -- push notifications ---------------------------------------------------------------------


class Channel(NamedTuple):
    """A watch channel (https://developers.google.com/calendar/api/v3/reference/channels)."""

    id: str
    resource_id: str
    expiration: datetime


@dataclass(frozen=True)
class GoogleNotification:
    """One push message, after the channel token check
    (https://developers.google.com/calendar/api/guides/push#understanding-the-notification-message-format).
    """

    channel_id: str
    resource_id: str
    resource_state: str  # "sync" (the handshake after watch), "exists" or "not_exists"
    message_number: int | None = None
    expiration: str | None = None

    @property
    def is_handshake(self) -> bool:
        """The "sync" message a new channel starts with: answer 200, nothing changed."""
        return self.resource_state == "sync"

    @property
    def needs_sync(self) -> bool:
        return self.resource_state in ("exists", "not_exists")


def parse_notification(
    headers: Mapping[str, str], expected_token: str
) -> GoogleNotification | None:
    """Validate a push POST by its headers; None when it is not from our channel.

    Google echoes the channel's `token` in X-Goog-Channel-Token on every message; it is
    compared in constant time, so a forged POST syncs nobody
    (https://developers.google.com/calendar/api/guides/push#making-watch-requests: "token
    ... You can use this to verify that each incoming message is for a channel that your
    application created"). The body is empty: the headers are the whole message.
    """
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    token = lower.get("x-goog-channel-token")
    channel_id = lower.get("x-goog-channel-id")
    state = lower.get("x-goog-resource-state")
    if token is None or not channel_id or not state:
        return None
    if not hmac.compare_digest(token.encode(), expected_token.encode()):
        return None
    number = lower.get("x-goog-message-number")
    return GoogleNotification(
        channel_id=channel_id,
        resource_id=lower.get("x-goog-resource-id", ""),
        resource_state=state,
        message_number=int(number) if number and number.isdigit() else None,
        expiration=lower.get("x-goog-channel-expiration"),
    )


class DiscoveredCalendar(NamedTuple):
    url: str
    name: str
    is_default: bool = False


# -- the adapter ------------------------------------------------------------------------------


class GoogleCalendar:
    """The user's primary Google calendar.

    `credentials` is the blob `GoogleOAuth.finish_auth` returned. `token_endpoint` and
    `api_base` default to Google's; the emulator passes its own URLs.
    """

    def __init__(
        self,
        credentials: Mapping[str, Any],
        *,
        client_id: str,
        client_secret: str,
        token_endpoint: str = DEFAULT_TOKEN_ENDPOINT,
        api_base: str = DEFAULT_API_BASE,
        calendar_id: str = "primary",
        session: requests.Session | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 32.0,
        page_size: int = 250,
        window_slack: timedelta = timedelta(days=1),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        token = dict((credentials or {}).get("token") or {})
        if not token.get("refresh_token"):
            raise ProviderAuthError(AUTH_LOST)
        self.email = str(credentials.get("email") or "")
        self.api_base = api_base.rstrip("/")
        self.calendar_id = calendar_id
        self.token_endpoint = token_endpoint
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.page_size = max(1, min(page_size, MAX_PAGE))
        self.window_slack = window_slack
        self._sleep = sleep
        self._changed = False
        self._token_lock = threading.Lock()
        if token.get("expires_at") is not None:
            # authlib only checks an int expires_at; a blob that went through another JSON
            # encoder may hold a float.
            token["expires_at"] = int(token["expires_at"])
        self._oauth = OAuth2Session(
            client_id,
            client_secret,
            token=token,
            token_endpoint_auth_method="client_secret_post",
            update_token=self._token_updated,
            # Refresh a minute early, so a token does not expire between check and use.
            leeway=60,
        )
        # Refreshes go through the injected session too (TLS trust, proxies, adapters).
        self._oauth.session = self.session
        self._window: Window | None = None
        self._round_masters: dict[str, Event | None] = {}

    # -- credentials --

    def _token_updated(self, token: Mapping[str, Any], **_: Any) -> None:
        # authlib's update hook: called after every refresh.
        self._changed = True

    @property
    def credentials_changed(self) -> bool:
        """True when the access token was refreshed: store `credentials()` again."""
        return self._changed

    def credentials(self) -> dict[str, Any]:
        return {
            "version": CREDENTIALS_VERSION,
            "email": self.email,
            "token": _token_dict(self._oauth.token or {}),
        }

    def _access_token(self, *, force: bool = False) -> str:
        with self._token_lock:
            token = self._oauth.token
            if force or not token.get("access_token") or token.is_expired(leeway=60):
                self._refresh()
            return str(self._oauth.token["access_token"])

    def _refresh(self) -> None:
        try:
            self._oauth.refresh_token(self.token_endpoint, timeout=self.timeout)
        except OAuthError as exc:
            # invalid_grant: the user revoked access, changed the password or the token
            # expired (https://developers.google.com/identity/protocols/oauth2#expiration);
            # only connecting again helps, so it is never retried.
            if exc.error in ("invalid_grant", "invalid_client", "unauthorized_client"):
                raise ProviderAuthError(AUTH_LOST) from exc
            raise ProviderTransientError(
                f"Google sign-in failed for now ({exc.description or exc.error}). Sync will retry."
            ) from exc
        except (requests.RequestException, ValueError) as exc:
            raise ProviderTransientError(
                f"Google sign-in could not be reached ({type(exc).__name__}). Sync will retry."
            ) from exc

    # -- HTTP --

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else self.api_base + path

    def _events_path(self, suffix: str = "") -> str:
        return f"/calendars/{_quote(self.calendar_id)}/events{suffix}"

    def _event_path(self, item_id: str) -> str:
        return self._events_path("/" + _quote(item_id))

    def _delay(self, attempt: int) -> float:
        # Exponential backoff with jitter, capped; Google sends no Retry-After
        # (https://developers.google.com/calendar/api/guides/errors#exponential-backoff,
        # https://cloud.google.com/storage/docs/retry-strategy#exponential-backoff).
        ceiling = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        return ceiling * (0.5 + random.random() / 2)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> requests.Response:
        """One API call: backoff on rate limits, one token refresh on 401, errors mapped.

        Returns the response for 2xx and for 404/409/410/412 (callers decide what those mean).
        """
        url = self._url(path)
        attempt = 0
        refreshed = False
        while True:
            all_headers = {"Authorization": f"Bearer {self._access_token()}"}
            all_headers.update(headers or {})
            try:
                resp = self.session.request(
                    method,
                    url,
                    params=params,
                    json=body,
                    headers=all_headers,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                attempt += 1
                if not idempotent or attempt > self.max_retries:
                    raise ProviderTransientError(
                        f"Google Calendar could not be reached ({type(exc).__name__}). "
                        "Sync will retry."
                    ) from exc
                self._sleep(self._delay(attempt))
                continue
            status = resp.status_code
            if status == 401 and not refreshed:
                # An access token authlib still thinks valid was refused (revoked, clock
                # skew): refresh once and try again
                # (https://developers.google.com/calendar/api/guides/errors#401_invalid_credentials).
                refreshed = True
                self._access_token(force=True)
                continue
            reasons, _ = _error_info(resp) if status == 403 else ([], "")
            if status in RETRYABLE_STATUS or RATE_LIMIT_REASONS.intersection(reasons):
                attempt += 1
                if attempt > self.max_retries:
                    what = "rate limiting calsync" if status in (403, 429) else "unavailable"
                    raise ProviderTransientError(
                        f"Google Calendar is {what} (HTTP {status}) after {attempt} attempts. "
                        "Sync will retry later."
                    )
                self._sleep(self._delay(attempt))
                continue
            if status < 300 or status in (404, 409, 410, 412):
                return resp
            raise self._error(resp)

    def _error(self, resp: requests.Response) -> ProviderError:
        status = resp.status_code
        reasons, message = _error_info(resp)
        if status == 401:
            return ProviderAuthError(AUTH_LOST)
        if status == 403 and QUOTA_REASONS.intersection(reasons):
            return ProviderTransientError(
                f"Google Calendar's usage limit was reached ({message}). Sync will retry later."
            )
        if status == 403:
            # forbidden, insufficientPermissions, forbiddenForNonOrganizer...
            # (https://developers.google.com/calendar/api/guides/errors#403_forbidden_for_non-organizer)
            return ProviderPermissionError(
                "Google refused access to the calendar. Connect again and allow calsync to "
                "see and edit your calendar events."
            )
        reason = reasons[0] if reasons else ""
        return ProviderError(
            f"Google Calendar refused the request (HTTP {status} {reason}): {message}"
        )

    def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any] | None:
        resp = self._request(method, path, **kw)
        if resp.status_code in (404, 410):
            return None
        if resp.status_code == 412:
            raise ProviderConflict(CHANGED_MEANWHILE)
        if resp.status_code == 409:
            raise self._error(resp)
        return resp.json() if resp.content else {}

    # -- reading --

    def capabilities(self) -> Capabilities:
        # sendUpdates=none writes attendees without mailing them, so the planner need not
        # withhold attendees to keep quiet.
        return Capabilities(two_way=True, suppress_invitations=True, recurrence=True, notify=True)

    def discover_calendars(self) -> list[DiscoveredCalendar]:
        """The user's calendars (https://developers.google.com/calendar/api/v3/reference/
        calendarList/list). The adapter syncs the primary one; the others are listed for the
        settings page."""
        out: list[DiscoveredCalendar] = []
        params: dict[str, Any] = {"maxResults": 250}
        while True:
            data = self._json("GET", "/users/me/calendarList", params=params) or {}
            for cal in data.get("items") or []:
                out.append(
                    DiscoveredCalendar(
                        url=f"{self.api_base}/calendars/{_quote(str(cal['id']))}",
                        name=str(cal.get("summaryOverride") or cal.get("summary") or ""),
                        is_default=bool(cal.get("primary")),
                    )
                )
            if not data.get("nextPageToken"):
                return out
            params["pageToken"] = data["nextPageToken"]

    def _to_event(self, item: Mapping[str, Any], recurrence: Recurrence | None = None) -> Event:
        start_raw = item.get("start") or {}
        zone = _iana(start_raw.get("timeZone"))
        start = _read_when(start_raw)
        end = _read_when(item.get("end") or {})
        invitees = tuple(
            Invitee(
                email=str(att["email"]),
                name=att.get("displayName") or None,
                response=_RESPONSES.get(str(att.get("responseStatus") or ""), "needs_action"),
            )
            for att in item.get("attendees") or []
            # The organizer may be echoed as an attendee; it is `organizer` already.
            if att.get("email") and not att.get("organizer") and not att.get("resource")
        )
        private = (item.get("extendedProperties") or {}).get("private") or {}
        return Event(
            title=str(item.get("summary") or ""),
            start=start,
            end=end,
            timezone=zone,
            location=item.get("location") or None,
            description=item.get("description") or None,
            organizer=(item.get("organizer") or {}).get("email"),
            invitees=invitees,
            recurrence=recurrence,
            status="cancelled" if item.get("status") == "cancelled" else "confirmed",
            private=item.get("visibility") in ("private", "confidential"),
            calendar_id=str(item["id"]),
            calendar_version=item.get("etag"),
            last_modified=_parse_instant(item.get("updated")),
            ical_uid=item.get("iCalUID"),
            link_id=private.get(LINK_PROPERTY) or None,
            extra={"html_link": item.get("htmlLink"), "event_type": item.get("eventType")},
        )

    def _series_window(self, first: datetime) -> tuple[datetime, datetime]:
        """Where moved and cancelled occurrences are looked for: from the series' start (at
        most a year before the sync window, to bound the reads) to the window's end."""
        if self._window is None:
            return first - timedelta(days=1), first + timedelta(days=730)
        lo = max(first - timedelta(days=1), self._window.start - timedelta(days=366))
        return lo, max(self._window.end, lo + timedelta(days=1))

    def _instances(self, master_id: str, lo: datetime, hi: datetime) -> list[dict[str, Any]]:
        """Every occurrence in [lo, hi), cancelled ones included (showDeleted), as Google
        expands them (https://developers.google.com/calendar/api/v3/reference/events/instances)."""
        params: dict[str, Any] = {
            "timeMin": _iso_z(lo),
            "timeMax": _iso_z(hi),
            "showDeleted": "true",
            "maxResults": MAX_PAGE,
        }
        items: list[dict[str, Any]] = []
        while True:
            data = self._json("GET", self._event_path(master_id) + "/instances", params=params)
            if data is None:
                return items
            items.extend(data.get("items") or [])
            if not data.get("nextPageToken"):
                return items
            params = {"pageToken": data["nextPageToken"]}

    def _series_event(self, master: Mapping[str, Any]) -> Event:
        """A series with its exceptions: EXDATEs in its rule, cancelled and moved instances."""
        lines = [str(x) for x in master.get("recurrence") or []]
        rule = next((ln[len("RRULE:") :] for ln in lines if ln.upper().startswith("RRULE:")), "")
        if not rule:
            raise ValueError("the series has no RRULE")
        base = self._to_event(master)
        zone = base.timezone
        assert base.start is not None and base.end is not None
        duration = to_utc_instant(base.end) - to_utc_instant(base.start)
        cancelled: dict[str, When] = {}
        for line in lines:
            if line.upper().startswith("EXDATE"):
                for when in _parse_exdate(line, base.start, zone):
                    cancelled[occurrence_key(when)] = when
        moved: dict[str, MovedOccurrence] = {}
        lo, hi = self._series_window(to_utc_instant(base.start))
        for inst in self._instances(str(master["id"]), lo, hi):
            original_raw = inst.get("originalStartTime")
            if not original_raw:
                continue
            original = _read_when(original_raw)
            key = occurrence_key(original)
            if inst.get("status") == "cancelled":
                cancelled[key] = original
                continue
            shown_start = _read_when(inst.get("start") or original_raw)
            shown_end = _read_when(inst.get("end") or {}) if inst.get("end") else None
            expected_end = (
                original + timedelta(days=duration.days)
                if isinstance(original, date) and not isinstance(original, datetime)
                else original + duration
            )
            if (shown_start, shown_end) != (original, expected_end) and shown_end is not None:
                moved[key] = MovedOccurrence(original, shown_start, shown_end)
        return replace(
            base,
            recurrence=Recurrence(
                rule,
                tuple(cancelled[k] for k in sorted(cancelled)),
                tuple(moved[k] for k in sorted(moved)),
            ),
        )

    def _event_from_item(self, item: Mapping[str, Any]) -> Event | None:
        if item.get("status") == "cancelled" and not item.get("recurringEventId"):
            # events.get still answers for a deleted event, with status "cancelled"
            # (https://developers.google.com/calendar/api/v3/reference/events#status).
            return None
        if item.get("recurringEventId"):
            return self.get(str(item["recurringEventId"]))
        if item.get("recurrence"):
            return self._series_event(item)
        return self._to_event(item)

    def get(self, item_id: str) -> Event | None:
        item = self._json("GET", self._event_path(item_id))
        if item is None:
            return None
        return self._event_from_item(item)

    def _masters(self, ids: Iterable[str], bad: list[BadItem]) -> dict[str, Event | None]:
        """The series of these ids, read once per listing round."""
        out: dict[str, Event | None] = {}
        for master_id in dict.fromkeys(ids):
            if master_id not in self._round_masters:
                try:
                    self._round_masters[master_id] = self.get(master_id)
                except (KeyError, ValueError, TypeError) as exc:
                    self._round_masters[master_id] = None
                    bad.append(BadItem(master_id, f"the Google series cannot be read ({exc})"))
            out[master_id] = self._round_masters[master_id]
        return out

    def list_changes(
        self, cursor: str | None, window: Window, page_token: str | None = None
    ) -> ChangePage:
        """One page of events.list: full over `window` (cursor None), else since the cursor.

        Cursor format: "google1 <window start> <window end> <nextSyncToken>". `page_token` is
        Google's nextPageToken; the other parameters of a page must equal the first page's
        (events/list, pageToken), and they are rebuilt from the same cursor and window.
        """
        self._window = window
        if page_token is None:
            self._round_masters = {}
        params: dict[str, Any] = {"singleEvents": "false", "maxResults": self.page_size}
        if cursor:
            lo, hi, sync_token = self._parse_cursor(cursor, window)
            params["syncToken"] = sync_token
        else:
            lo, hi = window.start, window.end
            params.update(timeMin=_iso_z(lo), timeMax=_iso_z(hi))
        if page_token:
            params["pageToken"] = page_token
        resp = self._request("GET", self._events_path(), params=params)
        if resp.status_code == 410:
            if cursor:
                # "Sync token is no longer valid, a full sync is required."
                # (https://developers.google.com/calendar/api/guides/sync#full_sync_required_by_server)
                raise CursorExpired("Google asked for a full sync (410 Gone).")
            raise ProviderTransientError(
                "Google ended the calendar listing early (410 Gone). Sync will retry."
            )
        if resp.status_code == 404:
            raise ProviderConfigError("The Google calendar was not found for this account.")
        if resp.status_code != 200:
            raise self._error(resp)
        data = resp.json()
        events: dict[str, Event] = {}
        deleted: list[str] = []
        bad: list[BadItem] = []
        series_ids: list[str] = []
        for item in data.get("items") or []:
            item_id = str(item.get("id") or "")
            try:
                if item.get("recurringEventId"):
                    # A moved or cancelled occurrence: its series changed.
                    series_ids.append(str(item["recurringEventId"]))
                elif item.get("status") == "cancelled":
                    # Only an incremental listing reports deletions; a full one (showDeleted
                    # off) has none to report.
                    if cursor:
                        deleted.append(item_id)
                elif item.get("recurrence"):
                    series = self._series_event(item)
                    self._round_masters[item_id] = series
                    events[item_id] = series
                else:
                    events[item_id] = self._to_event(item)
            except (KeyError, ValueError, TypeError, AssertionError) as exc:
                bad.append(BadItem(item_id, f"the Google event cannot be read ({exc})"))
            except ProviderError as exc:
                # Google refusing to expand one series (400 on its instances) is that
                # series' problem: skip it with the reason, keep listing the others.
                if isinstance(exc, _STOPS_A_LISTING):
                    raise
                bad.append(BadItem(item_id, f"the Google event cannot be read ({exc.message})"))
        for master_id, master in self._masters(
            [i for i in series_ids if i not in events and i not in deleted], bad
        ).items():
            if master is not None:
                events[master_id] = master
        next_page = data.get("nextPageToken")
        next_cursor = None
        if not next_page:
            sync_token = data.get("nextSyncToken")
            if not sync_token:
                raise ProviderError("Google ended a listing without a sync token.")
            next_cursor = f"{CURSOR_PREFIX} {_iso_z(lo)} {_iso_z(hi)} {sync_token}"
        return ChangePage(
            events=list(events.values()),
            deleted_ids=[i for i in deleted if i not in events],
            bad=bad,
            next_page_token=next_page,
            next_cursor=next_cursor,
        )

    def _parse_cursor(self, cursor: str, window: Window) -> tuple[datetime, datetime, str]:
        parts = cursor.split(" ", 3)
        if len(parts) != 4 or parts[0] != CURSOR_PREFIX:
            raise CursorExpired("The saved Google cursor is not one this version reads.")
        old_start, old_end = _parse_instant(parts[1]), _parse_instant(parts[2])
        if (
            old_start is None
            or old_end is None
            or not parts[3]
            or window.end > old_end + self.window_slack
            or window.start < old_start - self.window_slack
        ):
            raise CursorExpired("The sync window moved on; Google Calendar is listed afresh.")
        return old_start, old_end, parts[3]

    def find_by_link_id(self, link_id: str) -> Event | None:
        """Our create of `link_id`, found by the private extended property it carries
        (https://developers.google.com/calendar/api/v3/reference/events/list,
        privateExtendedProperty "propertyName=value")."""
        params: dict[str, Any] = {
            "privateExtendedProperty": f"{LINK_PROPERTY}={link_id}",
            "singleEvents": "false",
            "maxResults": 10,
        }
        data = self._json("GET", self._events_path(), params=params) or {}
        for item in data.get("items") or []:
            # Occurrences carry their series' properties; the series itself is the match.
            if item.get("recurringEventId") or item.get("status") == "cancelled":
                continue
            return self._event_from_item(item)
        return None

    # -- writing --

    @staticmethod
    def _send_updates(notify: bool) -> dict[str, str]:
        # "all": mail every guest; "none": nobody, the API's quiet write
        # (https://developers.google.com/calendar/api/v3/reference/events/insert#sendUpdates).
        return {"sendUpdates": "all" if notify else "none"}

    def _body(self, event: Event) -> dict[str, Any]:
        if event.start is None or event.end is None:
            raise ProviderError("The event has no start or end, so it cannot be written.")
        if event.timezone:
            try:
                ZoneInfo(event.timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ProviderError(
                    f"Google Calendar does not accept the time zone {event.timezone!r}."
                ) from exc
        body: dict[str, Any] = {
            "summary": event.title,
            "location": event.location or "",
            "description": event.description or "",
            "start": _write_when(event.start, event.timezone),
            "end": _write_when(event.end, event.timezone),
            "visibility": "private" if event.private else "default",
            # Attendees are always written: sendUpdates decides who is mailed.
            "attendees": [
                {
                    "email": i.email,
                    **({"displayName": i.name} if i.name else {}),
                    "responseStatus": _GOOGLE_RESPONSES.get(i.response, "needsAction"),
                }
                for i in event.invitees
            ],
        }
        if event.recurrence is not None:
            body["recurrence"] = _recurrence_lines(event)
        return body

    def create(self, event: Event, *, link_id: str, notify: bool) -> Event:
        body = self._body(event)
        event_id = event_id_for(link_id)
        body["id"] = event_id
        body["extendedProperties"] = {"private": {LINK_PROPERTY: link_id}}
        # Safe to repeat after a dropped connection: the id makes a second insert a 409.
        resp = self._request(
            "POST", self._events_path(), params=self._send_updates(notify), body=body
        )
        if resp.status_code == 404:
            raise ProviderConfigError("The Google calendar was not found for this account.")
        if resp.status_code == 409:
            item = self._existing_create(event_id, link_id, body, notify)
        elif resp.status_code >= 300:
            raise self._error(resp)
        else:
            item = resp.json()
        if event.recurrence is not None:
            self._apply_moves(event_id, event, None, notify)
            written = self.get(event_id)
            if written is None:
                raise ProviderError("The new Google series disappeared while being written.")
            return written
        return self._to_event(item)

    def _existing_create(
        self, event_id: str, link_id: str, body: dict[str, Any], notify: bool
    ) -> dict[str, Any]:
        """The event a first insert of this link id made (the 409 means it exists)."""
        item = self._json("GET", self._event_path(event_id))
        if item is None:
            raise ProviderError("Google refused the new event's id but has no event with it.")
        theirs = ((item.get("extendedProperties") or {}).get("private") or {}).get(LINK_PROPERTY)
        if theirs != link_id:
            raise ProviderError("Another Google event already uses the id calsync chose.")
        if item.get("status") == "cancelled":
            # Our first insert went through and was deleted since: Google keeps deleted ids
            # reserved, so the event is restored rather than recreated under another id.
            patch = {k: v for k, v in body.items() if k != "id"}
            patch["status"] = "confirmed"
            restored = self._json(
                "PATCH",
                self._event_path(event_id),
                params=self._send_updates(notify),
                body=patch,
            )
            if restored is None:
                raise ProviderError("The Google event could not be restored.")
            return restored
        return item

    def update(self, item_id: str, event: Event, *, notify: bool) -> Event:
        raw = self._json("GET", self._event_path(item_id))
        if raw is None or raw.get("status") == "cancelled":
            raise ProviderError("The Google event no longer exists.")
        current = (
            self._series_event(raw)
            if raw.get("recurrence") and event.recurrence is not None
            else None
        )
        body = self._body(event)
        if event.recurrence is None and raw.get("recurrence"):
            body["recurrence"] = []  # the series became a single meeting
        # The version the engine saw, else the one just read: a concurrent edit is a 412
        # (https://developers.google.com/calendar/api/v3/performance#etags).
        headers = {"If-Match": str(event.calendar_version or raw.get("etag") or "*")}
        item = self._json(
            "PATCH",
            self._event_path(item_id),
            params=self._send_updates(notify),
            body=body,
            headers=headers,
        )
        if item is None:
            raise ProviderError("The Google event no longer exists.")
        if event.recurrence is not None:
            self._apply_moves(item_id, event, current, notify)
            written = self.get(item_id)
            if written is None:
                raise ProviderError("The Google series disappeared while being written.")
            return written
        return self._to_event(item)

    def _apply_moves(
        self, master_id: str, event: Event, current: Event | None, notify: bool
    ) -> None:
        """Move single occurrences the way Google stores them: by patching the instance
        (https://developers.google.com/calendar/api/guides/recurringevents#modifying_instances);
        occurrences moved before but not any more are put back on their rule's time.
        Cancellations are EXDATEs in the rule, written with the series."""
        rec = event.recurrence
        assert rec is not None
        have = current.recurrence if current is not None and current.recurrence else None
        have_moved = {occurrence_key(m.original_start): m for m in (have.moved if have else ())}
        want_moved = {occurrence_key(m.original_start): m for m in rec.moved}
        cancelled = {occurrence_key(c) for c in rec.cancelled}
        move = [m for k, m in want_moved.items() if have_moved.get(k) != m]
        undo = [m for k, m in have_moved.items() if k not in want_moved and k not in cancelled]
        if not move and not undo:
            return
        # Where an occurrence shows now may be far from its original start; the range covers
        # both, whichever of them the server filters instances by.
        points = [to_utc_instant(m.original_start) for m in [*move, *undo]]
        points += [to_utc_instant(m.start) for m in undo]
        lo = min(points) - timedelta(days=2)
        hi = max(points) + timedelta(days=2)
        by_key: dict[str, dict[str, Any]] = {}
        for inst in self._instances(master_id, lo, hi):
            if inst.get("originalStartTime") and inst.get("status") != "cancelled":
                by_key[occurrence_key(_read_when(inst["originalStartTime"]))] = inst
        assert event.start is not None and event.end is not None
        duration = to_utc_instant(event.end) - to_utc_instant(event.start)
        changes: list[tuple[str, When, When]] = [
            (occurrence_key(m.original_start), m.start, m.end) for m in move
        ]
        for m in undo:
            back_end: When = (
                m.original_start + timedelta(days=duration.days)
                if not isinstance(m.original_start, datetime)
                else m.original_start + duration
            )
            changes.append((occurrence_key(m.original_start), m.original_start, back_end))
        for key, start, end in changes:
            inst = by_key.get(key)
            if inst is None:
                log.info("occurrence %s of %s not found; left as it is", key, master_id)
                continue
            self._json(
                "PATCH",
                self._event_path(str(inst["id"])),
                params=self._send_updates(notify),
                body={
                    "start": _write_when(start, event.timezone),
                    "end": _write_when(end, event.timezone),
                },
            )

    def delete(self, item_id: str, *, notify: bool) -> None:
        resp = self._request("DELETE", self._event_path(item_id), params=self._send_updates(notify))
        if resp.status_code == 412:
            raise ProviderConflict(CHANGED_MEANWHILE)
        # 404, and 410 "Resource has been deleted"
        # (https://developers.google.com/calendar/api/guides/errors#410_gone): already gone,
        # which is what was asked.

    # -- push --

    def watch(self, address: str, token: str, ttl_seconds: int = 604_800) -> Channel:
        """Push notifications for the calendar's events
        (https://developers.google.com/calendar/api/v3/reference/events/watch).

        `token` comes back in X-Goog-Channel-Token on every message (`parse_notification`
        checks it); `ttl_seconds` is a wish, Google may shorten it, so the returned
        expiration is what counts. Google requires an https address.
        """
        body = {
            "id": str(uuid.uuid4()),
            "type": "web_hook",
            "address": address,
            "token": token,
            "params": {"ttl": str(int(ttl_seconds))},
        }
        # Not retried after a dropped connection: the channel may exist and would then
        # send every message twice until it expires.
        data = self._json("POST", self._events_path("/watch"), body=body, idempotent=False)
        if data is None:
            raise ProviderConfigError("The Google calendar was not found for this account.")
        expiration_ms = int(data.get("expiration") or 0)
        return Channel(
            id=str(data["id"]),
            resource_id=str(data["resourceId"]),
            expiration=datetime.fromtimestamp(expiration_ms / 1000, UTC),
        )

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        """https://developers.google.com/calendar/api/v3/reference/channels/stop; a channel
        Google no longer knows (404) is stopped already."""
        self._request("POST", "/channels/stop", body={"id": channel_id, "resourceId": resource_id})

    def close(self) -> None:
        self.session.close()


# -- recurrence text ----------------------------------------------------------------------


def _recurrence_lines(event: Event) -> list[str]:
    """RRULE plus one EXDATE per cancelled occurrence, RFC 5545 lines as Google takes them
    (https://developers.google.com/calendar/api/v3/reference/events#recurrence)."""
    rec = event.recurrence
    assert rec is not None
    rule = rec.rrule.strip()
    if rule.upper().startswith("RRULE:"):
        rule = rule[len("RRULE:") :]
    lines = [f"RRULE:{rule}"]
    for when in sorted(rec.cancelled, key=occurrence_key):
        if not isinstance(when, datetime):
            lines.append(f"EXDATE;VALUE=DATE:{when:%Y%m%d}")
        elif event.timezone:
            local = when.astimezone(_zone(event.timezone))
            lines.append(f"EXDATE;TZID={event.timezone}:{local:%Y%m%dT%H%M%S}")
        else:
            lines.append(f"EXDATE:{when.astimezone(UTC):%Y%m%dT%H%M%SZ}")
    return lines


def _parse_exdate(line: str, series_start: When, zone: str | None) -> list[When]:
    """The occurrences an EXDATE line removes: UTC datetimes, or dates for all-day series."""
    head, _, values = line.partition(":")
    params = dict(p.split("=", 1) for p in head.split(";")[1:] if "=" in p)
    tz = _zone(params.get("TZID") or zone)
    out: list[When] = []
    for raw in filter(None, (v.strip() for v in values.split(","))):
        if "T" not in raw:
            day = datetime.strptime(raw, "%Y%m%d").date()
            if isinstance(series_start, datetime):
                local_time = series_start.astimezone(tz).timetz().replace(tzinfo=None)
                out.append(datetime.combine(day, local_time, tzinfo=tz).astimezone(UTC))
            else:
                out.append(day)
        elif raw.endswith("Z"):
            out.append(datetime.strptime(raw, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC))
        else:
            local = datetime.strptime(raw, "%Y%m%dT%H%M%S").replace(tzinfo=tz)
            out.append(local.astimezone(UTC))
    return out
