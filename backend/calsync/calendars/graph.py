"""Microsoft Graph calendars: Outlook.com (personal accounts) and Office 365 (work/school).

Everything Graph-specific lives here; the engine sees a `CalendarAdapter`.

Sign-in: the OAuth 2.0 authorization-code flow with PKCE, through msal's
`ConfidentialClientApplication` (`GraphOAuth.start_auth` / `finish_auth`). The credential
blob stored in `Connection.secret` holds msal's serialised token cache; msal refreshes the
access token from it, and `GraphCalendar.credentials()` hands back the (possibly rotated)
blob for the job to store again when `credentials_changed` is true.

Listing: the calendarView delta query over the sync window, page by page, to a deltaLink
which is the cursor. calendarView returns occurrences and exceptions, never series masters
(https://learn.microsoft.com/en-us/graph/delta-query-events), so occurrences are folded
into their series on the round's last page: the masters are read 20 to a $batch, and their
moved and cancelled occurrences come from /instances (batched the same way), or, in a full
round, from the occurrences the round's own pages listed (`_round_series_events`). Every
`@removed` entry is read back before it is reported as a deletion, because calendarView
delta also reports an event that merely left the window as removed, and the engine deletes
a linked item's twin on a deletion.

Writes: every create carries `transactionId` = "calsync-" + our link id. Graph uses it to
"avoid redundant POST operations in case of client retries"
(https://learn.microsoft.com/en-us/graph/api/resources/event), and, unlike extended
properties, it comes back in delta pages (which forbid $expand), so a lost link table is
rebuilt from it (`find_by_link_id`). Graph e-mails attendees whenever an organizer writes
them: with notify=False attendees are not written (they are listed in the body instead),
and an update leaves the attendees already on the event alone. Graph has no silent update
or delete of a meeting that already has attendees: those still e-mail them.

Batched writes (`write_many`, the engine's optional `BatchWriter`): creates, updates and
deletes of single events go up to 20 to a JSON `$batch`, each sub-request carrying exactly
what the single write sends; Graph answers each on its own, so a throttled sub-request is
sent again alone after its Retry-After and any other failure stays with its write. Series
keep the single-write path: their cancelled and moved occurrences are written one by one.

Limits: at most 4 requests in flight per mailbox in this process (Outlook's limit;
separate worker processes do not share it), 429/503 retried after Retry-After up to
`max_retries`, then ProviderTransientError carrying the server's Retry-After.
"""

from __future__ import annotations

import functools
import hmac
import html
import json
import logging
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, NamedTuple
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msal
import requests

from calsync.microsoft_token import AccountToken
from calsync.provider_errors import (
    ProviderAuthError,
    ProviderConfigError,
    ProviderConflict,
    ProviderError,
    ProviderPermissionError,
    ProviderTransientError,
)
from calsync.sync.adapters import BadItem, ChangePage, Window, Write
from calsync.sync.errors import CursorExpired
from calsync.sync.model import (
    WITHHELD_INVITEES,
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
from calsync.sync.recurrence import expand

log = logging.getLogger(__name__)


__all__ = [
    "AUTH_LOST",
    "DEFAULT_AUTHORITY_HOST",
    "DEFAULT_GRAPH_BASE",
    "MAX_EVENT_SUBSCRIPTION_MINUTES",
    "SCOPES",
    "GraphCalendar",
    "GraphOAuth",
    "GraphSubscription",
    "LifecycleEvent",
    "NotificationBatch",
    "iana_zone",
    "parse_notification",
    "validation_token",
    "windows_zone",
]

AccountType = Literal["outlook", "office365"]

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_BASE = "https://graph.microsoft.com/v1.0"
# Personal accounts sign in through the "consumers" tenant, work and school accounts
# through "organizations" (https://learn.microsoft.com/en-us/entra/identity-platform/
# msal-client-application-configuration#authority).
TENANTS: dict[str, str] = {"outlook": "consumers", "office365": "organizations"}
# msal adds openid, profile and offline_access (the refresh token) itself and refuses them
# in this list. Unqualified scopes are Microsoft Graph's
# (https://learn.microsoft.com/en-us/entra/identity-platform/scopes-oidc), and short names
# match the "scope" Entra returns, so msal's cache finds the access token again.
# Calendars.ReadWrite covers reading, writing and event subscriptions
# (https://learn.microsoft.com/en-us/graph/permissions-reference#calendarsreadwrite).
SCOPES = ["Calendars.ReadWrite", "User.Read"]
AUTH_LOST = "Your Microsoft access was revoked or expired. Connect again."
CREDENTIALS_VERSION = 1

LINK_PREFIX = "calsync-"
# https://learn.microsoft.com/en-us/graph/json-batching: "up to 20" requests per batch.
MAX_BATCH = 20
# https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits:
# 4 concurrent requests per app per mailbox (batch sub-requests count one by one).
OUTLOOK_CONCURRENCY = 4
# https://learn.microsoft.com/en-us/graph/api/resources/subscription#subscription-lifetime:
# Outlook events, 10,080 minutes (under 7 days).
MAX_EVENT_SUBSCRIPTION_MINUTES = 10_080
RETRYABLE = frozenset({429, 500, 502, 503, 504})
# Times in UTC (https://learn.microsoft.com/en-us/graph/api/event-get, "Prefer:
# outlook.timezone"); the event's own zone is kept from originalStartTimeZone. Bodies as
# text (same page, "Prefer: outlook.body-content-type").
PREFER_READ = 'outlook.timezone="UTC", outlook.body-content-type="text"'
# A named extended property on series masters keeping the RRULE text we wrote
# (https://learn.microsoft.com/en-us/graph/api/resources/extended-properties-overview).
# Not returned by delta (no $expand there), which is fine: masters are always read by GET.
RRULE_PROPERTY = "String {4f0c6a55-7a3e-4f39-9d0e-0b6c2c7e5a11} Name calsyncRRule"
CHANGED_MEANWHILE = (
    "The event changed in Outlook while it was being synced; the next sync picks up the change."
)
ATTENDEE_BLOCK = "--- Attendees (not invited from calsync) ---"

_RESPONSES: dict[str, Response] = {
    "accepted": "accepted",
    "declined": "declined",
    "tentativelyAccepted": "tentative",
    "organizer": "accepted",
}

# -- time zones --------------------------------------------------------------------------

try:
    # CLDR windowsZones.xml, as shipped (and regenerated) by icalendar, a dependency already.
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON as _WINDOWS_TO_IANA
except ImportError:  # pragma: no cover - icalendar moved it: keep the common ones
    _WINDOWS_TO_IANA = {
        "UTC": "Etc/UTC",
        "GMT Standard Time": "Europe/London",
        "W. Europe Standard Time": "Europe/Berlin",
        "Romance Standard Time": "Europe/Paris",
        "Central Europe Standard Time": "Europe/Budapest",
        "Central European Standard Time": "Europe/Warsaw",
        "E. Europe Standard Time": "Europe/Chisinau",
        "FLE Standard Time": "Europe/Kiev",
        "Eastern Standard Time": "America/New_York",
        "Central Standard Time": "America/Chicago",
        "Mountain Standard Time": "America/Denver",
        "Pacific Standard Time": "America/Los_Angeles",
        "India Standard Time": "Asia/Kolkata",
        "China Standard Time": "Asia/Shanghai",
        "Tokyo Standard Time": "Asia/Tokyo",
        "AUS Eastern Standard Time": "Australia/Sydney",
    }
_UTC_NAMES = {
    "UTC",
    "Etc/UTC",
    "Etc/GMT",
    "GMT",
    "Coordinated Universal Time",
    "tzone://Microsoft/Utc",
}
# Only a zone that is the CLDR's own answer for a Windows name is written as that name, so
# that reading it back gives the same IANA zone (Europe/Amsterdam is written as itself).
# CLDR still names some zones by their old spelling; IANA's current names are what other
# systems send, so both are accepted and the current one is reported.
_CURRENT_NAME = {
    "Asia/Calcutta": "Asia/Kolkata",
    "Asia/Katmandu": "Asia/Kathmandu",
    "Asia/Rangoon": "Asia/Yangon",
    "Asia/Saigon": "Asia/Ho_Chi_Minh",
}
_IANA_TO_WINDOWS = {iana: win for win, iana in _WINDOWS_TO_IANA.items() if iana not in _UTC_NAMES}
_IANA_TO_WINDOWS.update(
    {new: _IANA_TO_WINDOWS[old] for old, new in _CURRENT_NAME.items() if old in _IANA_TO_WINDOWS}
)


def iana_zone(name: str | None) -> str | None:
    """The IANA zone of a Graph time zone name (Windows or IANA); None for UTC or unknown."""
    if not name or name in _UTC_NAMES:
        return None
    iana = _WINDOWS_TO_IANA.get(name, name)
    iana = _CURRENT_NAME.get(iana, iana)
    if iana in _UTC_NAMES:
        return None
    try:
        ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return iana


def windows_zone(iana: str | None) -> str:
    """The name to write for an IANA zone.

    Graph takes Windows zone names plus a short list of IANA names
    (https://learn.microsoft.com/en-us/graph/api/resources/datetimetimezone), so a zone is
    written as its CLDR Windows name; a zone CLDR maps elsewhere (Europe/Amsterdam) as the
    Windows zone with the same offsets over two years (W. Europe Standard Time), and reads
    back as that zone's IANA name (Europe/Berlin): same wall clock, other label.
    """
    if not iana or iana in _UTC_NAMES:
        return "UTC"
    if iana in _IANA_TO_WINDOWS:
        return _IANA_TO_WINDOWS[iana]
    twin = _same_offsets_zone(iana)
    return _IANA_TO_WINDOWS[twin] if twin else iana


_PREFERRED = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Phoenix",
    "America/Halifax",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Budapest",
    "Europe/Kiev",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Asia/Singapore",
    "Australia/Sydney",
    "Australia/Brisbane",
    "Pacific/Auckland",
)


@functools.lru_cache(maxsize=256)
def _same_offsets_zone(iana: str) -> str | None:
    try:
        zone = ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    year = datetime.now(UTC).year
    samples = [
        datetime(y, m, d, 12, tzinfo=UTC)
        for y in (year, year + 1)
        for m in range(1, 13)
        for d in (1, 8, 15, 22)
    ]
    wanted = [s.astimezone(zone).utcoffset() for s in samples]
    # The zones most people mean come first, so Toronto becomes Eastern Standard Time rather
    # than Turks And Caicos, which happens to share its offsets.
    for candidate in [*(z for z in _PREFERRED if z in _IANA_TO_WINDOWS), *sorted(_IANA_TO_WINDOWS)]:
        other = ZoneInfo(candidate)
        if [s.astimezone(other).utcoffset() for s in samples] == wanted:
            return candidate
    return None


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


# -- small parsers -----------------------------------------------------------------------


def _parse_naive(value: str) -> datetime:
    """Graph's "2024-01-01T10:00:00.0000000" (seven fractional digits) as a naive datetime."""
    value = value.strip().removesuffix("Z")
    head, _, frac = value.partition(".")
    parsed = datetime.fromisoformat(head)
    digits = "".join(ch for ch in frac if ch.isdigit())[:6]
    return parsed.replace(microsecond=int(digits.ljust(6, "0"))) if digits else parsed


def _parse_instant(value: str | None) -> datetime | None:
    if not value:
        return None
    text = value.strip()
    if re.search(r"[+-]\d\d:\d\d$", text):
        return datetime.fromisoformat(text).astimezone(UTC)
    return _parse_naive(text).replace(tzinfo=UTC)


def _graph_time(value: Mapping[str, Any]) -> datetime:
    """A dateTimeTimeZone as an aware UTC datetime (any zone Graph names is honoured)."""
    naive = _parse_naive(str(value["dateTime"]))
    zone = iana_zone(value.get("timeZone"))
    return naive.replace(tzinfo=_zone(zone)).astimezone(UTC)


def _retry_after(resp: requests.Response) -> float | None:
    return _seconds(resp.headers.get("Retry-After"))


def _seconds(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def _error_code(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("error", {}).get("code", ""))
    except (ValueError, AttributeError):
        return ""


def _etag_change_key(etag: Any) -> str | None:
    """The changeKey inside an @odata.etag (W/"<changeKey>"), for answers that lack it."""
    if not isinstance(etag, str):
        return None
    value = etag.strip().removeprefix("W/").strip('"')
    return value or None


def _provider_error(status: int, code: str, message: str) -> ProviderError:
    if status == 401:
        return ProviderAuthError(AUTH_LOST)
    if status == 403:
        return ProviderPermissionError(
            "Microsoft refused access to the calendar. Connect again and allow calsync "
            "to read and write your calendar."
        )
    if status == 400 and code in ("TimeZoneNotSupportedException",):
        return ProviderError("Outlook does not accept this event's time zone.")
    return ProviderError(f"Microsoft Graph refused the request (HTTP {status} {code}): {message}")


def _quote(item_id: str) -> str:
    return quote(item_id, safe="")


def _event_path(item_id: str) -> str:
    # Extended properties only come back when expanded by id
    # (https://learn.microsoft.com/en-us/graph/api/singlevaluelegacyextendedproperty-get).
    expand = f"singleValueExtendedProperties($filter=id eq '{RRULE_PROPERTY}')"
    return f"/me/events/{_quote(item_id)}?" + urlencode({"$expand": expand})


def _iso_z(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- recurrence: RRULE <-> Graph's pattern + range ----------------------------------------
# https://learn.microsoft.com/en-us/graph/api/resources/patternedrecurrence

_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_RFC_DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
_INDEX = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}
_INDEX_NUM = {v: k for k, v in _INDEX.items()}


def _rrule_parts(rrule: str) -> dict[str, str]:
    text = rrule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    parts: dict[str, str] = {}
    for chunk in text.split(";"):
        if "=" in chunk:
            key, _, value = chunk.partition("=")
            parts[key.strip().upper()] = value.strip().upper()
    return parts


def graph_recurrence(rrule: str, local_start: date, zone_name: str) -> dict[str, Any]:
    """Graph's patternedRecurrence for an RRULE starting on `local_start` (the series' date).

    Raises ValueError for rules Outlook cannot store (hourly, several month days...).
    """
    parts = _rrule_parts(rrule)
    freq = parts.get("FREQ")
    known = {
        "FREQ",
        "INTERVAL",
        "BYDAY",
        "BYMONTHDAY",
        "BYMONTH",
        "BYSETPOS",
        "COUNT",
        "UNTIL",
        "WKST",
    }
    if freq not in ("DAILY", "WEEKLY", "MONTHLY", "YEARLY") or set(parts) - known:
        raise ValueError(f"Outlook cannot store the repeat rule {rrule!r}")
    interval = int(parts.get("INTERVAL", "1") or 1)
    pattern: dict[str, Any] = {"interval": interval}
    byday = [d for d in parts.get("BYDAY", "").split(",") if d]
    setpos = parts.get("BYSETPOS")

    def day_name(code: str) -> str:
        return _DAYS[_RFC_DAYS.index(code[-2:])]

    def relative(days: list[str]) -> None:
        # "2TU" / "-1FR", or plain days with BYSETPOS (several days: "first weekday").
        prefixes = {d[:-2] for d in days}
        if setpos:
            num = int(setpos)
        elif len(prefixes) == 1 and next(iter(prefixes)) not in ("", "+"):
            num = int(next(iter(prefixes)))
        else:
            num = 0
        if num not in _INDEX:
            raise ValueError(f"Outlook cannot store the repeat rule {rrule!r}")
        pattern["index"] = _INDEX[num]
        pattern["daysOfWeek"] = [day_name(d) for d in days]

    if freq == "DAILY":
        if byday:
            raise ValueError(f"Outlook cannot store the repeat rule {rrule!r}")
        pattern["type"] = "daily"
    elif freq == "WEEKLY":
        pattern["type"] = "weekly"
        pattern["daysOfWeek"] = [day_name(d) for d in byday] or [_DAYS[local_start.weekday()]]
        wkst = parts.get("WKST", "MO")
        pattern["firstDayOfWeek"] = _DAYS[_RFC_DAYS.index(wkst)] if wkst in _RFC_DAYS else "monday"
    else:
        yearly = freq == "YEARLY"
        if yearly:
            pattern["month"] = int(parts.get("BYMONTH") or local_start.month)
        if byday:
            pattern["type"] = "relativeYearly" if yearly else "relativeMonthly"
            relative(byday)
        else:
            monthday = parts.get("BYMONTHDAY") or str(local_start.day)
            if "," in monthday or int(monthday) < 1:
                raise ValueError(f"Outlook cannot store the repeat rule {rrule!r}")
            pattern["type"] = "absoluteYearly" if yearly else "absoluteMonthly"
            pattern["dayOfMonth"] = int(monthday)
    rng: dict[str, Any] = {"startDate": local_start.isoformat(), "recurrenceTimeZone": zone_name}
    if parts.get("COUNT"):
        rng.update(type="numbered", numberOfOccurrences=int(parts["COUNT"]))
    elif parts.get("UNTIL"):
        until = parts["UNTIL"]
        rng.update(
            type="endDate",
            endDate=date(int(until[:4]), int(until[4:6]), int(until[6:8])).isoformat(),
        )
    else:
        rng["type"] = "noEnd"
    return {"pattern": pattern, "range": rng}


def rrule_from_graph(recurrence: Mapping[str, Any]) -> str:
    """The RRULE (no "RRULE:" prefix) of Graph's patternedRecurrence."""
    pattern, rng = recurrence.get("pattern") or {}, recurrence.get("range") or {}
    kind = pattern.get("type")
    freq = {
        "daily": "DAILY",
        "weekly": "WEEKLY",
        "absoluteMonthly": "MONTHLY",
        "relativeMonthly": "MONTHLY",
        "absoluteYearly": "YEARLY",
        "relativeYearly": "YEARLY",
    }.get(kind or "")
    if freq is None:
        raise ValueError(f"unknown recurrence pattern {kind!r}")
    parts = [f"FREQ={freq}"]
    interval = int(pattern.get("interval") or 1)
    if interval != 1:
        parts.append(f"INTERVAL={interval}")
    days = [_RFC_DAYS[_DAYS.index(d)] for d in pattern.get("daysOfWeek") or [] if d in _DAYS]
    if kind == "weekly":
        parts.append("BYDAY=" + ",".join(days))
        first = pattern.get("firstDayOfWeek") or "sunday"
        if interval != 1 and first in _DAYS:
            # Only matters when weeks are skipped; Graph defaults to Sunday, RFC 5545 to Monday.
            parts.append(f"WKST={_RFC_DAYS[_DAYS.index(first)]}")
    elif kind in ("relativeMonthly", "relativeYearly"):
        if kind == "relativeYearly":
            parts.append(f"BYMONTH={int(pattern.get('month') or 1)}")
        num = _INDEX_NUM.get(pattern.get("index") or "first", 1)
        if len(days) == 1:
            parts.append(f"BYDAY={num}{days[0]}")
        else:
            parts.append("BYDAY=" + ",".join(days))
            parts.append(f"BYSETPOS={num}")
    elif kind in ("absoluteMonthly", "absoluteYearly"):
        if kind == "absoluteYearly":
            parts.append(f"BYMONTH={int(pattern.get('month') or 1)}")
        parts.append(f"BYMONTHDAY={int(pattern.get('dayOfMonth') or 1)}")
    if rng.get("type") == "numbered":
        parts.append(f"COUNT={int(rng.get('numberOfOccurrences') or 1)}")
    elif rng.get("type") == "endDate" and rng.get("endDate"):
        parts.append("UNTIL=" + str(rng["endDate"]).replace("-", ""))
    return ";".join(parts)


# -- OAuth -------------------------------------------------------------------------------


def _guarded(build: Callable[[], Any]) -> Any:
    """Run an msal call, turning its network and discovery failures into provider errors."""
    try:
        return build()
    except requests.RequestException as exc:
        raise ProviderTransientError(
            f"Microsoft sign-in could not be reached ({type(exc).__name__}). Try again later."
        ) from exc
    except ValueError as exc:  # msal: the authority's OpenID configuration is unusable
        raise ProviderConfigError(f"Microsoft sign-in is misconfigured: {exc}") from exc


def _msal_app(
    client_id: str,
    client_secret: str,
    account_type: AccountType,
    authority_host: str,
    *,
    session: requests.Session,
    cache: msal.SerializableTokenCache | None = None,
) -> msal.ConfidentialClientApplication:
    if account_type not in TENANTS:
        raise ValueError(f"account_type must be one of {sorted(TENANTS)}, not {account_type!r}")
    host = authority_host.rstrip("/")
    microsoft = host == DEFAULT_AUTHORITY_HOST
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=client_secret,
        authority=f"{host}/{TENANTS[account_type]}",
        token_cache=cache,
        http_client=session,
        # A stand-in host (the emulator) is not in Microsoft's instance discovery list.
        instance_discovery=microsoft,
        validate_authority=microsoft,
    )


class GraphOAuth:
    """The connect flow. `start_auth` gives the URL to send the user to and a `flow` dict
    (JSON-serialisable: the API layer keeps it in the session); `finish_auth` redeems the
    redirect's query parameters for the credential blob and the account's e-mail."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        account_type: AccountType = "office365",
        *,
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        session: requests.Session | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.account_type = account_type
        self.authority_host = authority_host
        self.session = session or requests.Session()

    def _app(self, cache: msal.SerializableTokenCache | None = None) -> Any:
        return _guarded(
            lambda: _msal_app(
                self.client_id,
                self.client_secret,
                self.account_type,
                self.authority_host,
                session=self.session,
                cache=cache,
            )
        )

    def start_auth(
        self, redirect_uri: str, state: str, *, login_hint: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        try:
            with warnings.catch_warnings():
                # msal suggests form_post; our callback is a plain GET with query parameters.
                warnings.simplefilter("ignore", UserWarning)
                flow = self._app().initiate_auth_code_flow(
                    SCOPES,
                    redirect_uri=redirect_uri,
                    state=state,
                    login_hint=login_hint,
                    response_mode="query",
                )
        except requests.RequestException as exc:
            raise ProviderTransientError(
                f"Microsoft sign-in could not be reached ({exc}). Try again in a moment."
            ) from exc
        return flow["auth_uri"], flow

    def finish_auth(
        self, flow: Mapping[str, Any], query_params: Mapping[str, str]
    ) -> tuple[dict[str, Any], str]:
        cache = msal.SerializableTokenCache()
        app = self._app(cache)
        try:
            result = app.acquire_token_by_auth_code_flow(dict(flow), dict(query_params))
        except ValueError as exc:  # state mismatch, or a replayed/foreign redirect
            raise ProviderAuthError(
                "The Microsoft sign-in did not match this connection attempt. Connect again."
            ) from exc
        except requests.RequestException as exc:
            raise ProviderTransientError(
                f"Microsoft sign-in could not be reached ({exc}). Try again in a moment."
            ) from exc
        if "error" in result:
            raise ProviderAuthError(
                "Microsoft did not grant access: "
                f"{result.get('error_description') or result['error']}. Connect again."
            )
        claims = result.get("id_token_claims") or {}
        email = str(claims.get("preferred_username") or claims.get("email") or "")
        accounts = app.get_accounts()
        home = accounts[0]["home_account_id"] if accounts else None
        blob = {
            "version": CREDENTIALS_VERSION,
            "account_type": self.account_type,
            "home_account_id": home,
            "username": email,
            "msal_cache": cache.serialize(),
        }
        return blob, email


# -- concurrency slots -----------------------------------------------------------------------


class _Slots:
    """At most `size` requests in flight; a $batch takes several slots at once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, n: int = 1) -> Iterator[None]:
        n = min(n, self.size)
        with self._cond:
            self._cond.wait_for(lambda: self._free >= n)
            self._free -= n
        try:
            yield
        finally:
            with self._cond:
                self._free += n
                self._cond.notify_all()


_MAILBOX_SLOTS: dict[tuple[str, str], _Slots] = {}
_MAILBOX_LOCK = threading.Lock()


def _slots_for(graph_base: str, mailbox: str, size: int) -> _Slots:
    # Shared by every adapter of one mailbox in this process (the limit is per mailbox).
    key = (graph_base, mailbox.lower())
    with _MAILBOX_LOCK:
        if key not in _MAILBOX_SLOTS or _MAILBOX_SLOTS[key].size != size:
            _MAILBOX_SLOTS[key] = _Slots(size)
        return _MAILBOX_SLOTS[key]


# -- subscriptions and notifications ---------------------------------------------------------


@dataclass(frozen=True)
class GraphSubscription:
    id: str
    resource: str
    expires_at: datetime
    client_state: str | None = None


@dataclass(frozen=True)
class LifecycleEvent:
    subscription_id: str
    event: str  # "reauthorizationRequired" | "subscriptionRemoved" | "missed"


@dataclass(frozen=True)
class NotificationBatch:
    """What one webhook POST said, after the clientState check."""

    subscription_ids: tuple[str, ...] = ()  # subscriptions with changes: sync their users
    event_ids: tuple[str, ...] = ()  # the changed events, for logging only
    lifecycle: tuple[LifecycleEvent, ...] = ()
    rejected: int = 0  # entries whose clientState did not match (not from Graph)

    @property
    def to_sync(self) -> tuple[str, ...]:
        """Subscriptions whose users need a sync: changes, or notifications Graph missed."""
        missed = [e.subscription_id for e in self.lifecycle if e.event == "missed"]
        return tuple(dict.fromkeys([*self.subscription_ids, *missed]))

    @property
    def to_renew(self) -> tuple[str, ...]:
        """Subscriptions to renew now (PATCH expiry, which also reauthorizes them)."""
        return tuple(
            dict.fromkeys(
                e.subscription_id for e in self.lifecycle if e.event == "reauthorizationRequired"
            )
        )

    @property
    def to_recreate(self) -> tuple[str, ...]:
        """Subscriptions Graph removed: subscribe again (and sync, changes may be lost)."""
        return tuple(
            dict.fromkeys(
                e.subscription_id for e in self.lifecycle if e.event == "subscriptionRemoved"
            )
        )


def validation_token(query_params: Mapping[str, str]) -> str | None:
    """The token to echo as text/plain 200 when Graph validates a notification URL
    (https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks)."""
    token = query_params.get("validationToken")
    return token if token is not None else None


def parse_notification(
    body: bytes | str | Mapping[str, Any], expected_client_state: str
) -> NotificationBatch:
    """Validate and summarise a change or lifecycle notification POST.

    Each entry's clientState must equal ours (compared in constant time); entries that do
    not are counted in `rejected` and otherwise ignored, so a forged POST syncs nobody
    (https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks,
    https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events).
    """
    if isinstance(body, bytes | str):
        try:
            data = json.loads(body or "{}")
        except ValueError:
            return NotificationBatch(rejected=1)
    else:
        data = body
    items = data.get("value") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        return NotificationBatch(rejected=1)
    subs: list[str] = []
    events: list[str] = []
    lifecycle: list[LifecycleEvent] = []
    rejected = 0
    for item in items:
        if not isinstance(item, Mapping):
            rejected += 1
            continue
        state = item.get("clientState")
        sub_id = item.get("subscriptionId")
        if (
            not isinstance(state, str)
            or not isinstance(sub_id, str)
            or not hmac.compare_digest(state.encode(), expected_client_state.encode())
        ):
            rejected += 1
            continue
        if item.get("lifecycleEvent"):
            lifecycle.append(LifecycleEvent(sub_id, str(item["lifecycleEvent"])))
            continue
        if sub_id not in subs:
            subs.append(sub_id)
        event_id = (item.get("resourceData") or {}).get("id")
        if isinstance(event_id, str) and event_id not in events:
            events.append(event_id)
    return NotificationBatch(tuple(subs), tuple(events), tuple(lifecycle), rejected)


class DiscoveredCalendar(NamedTuple):
    url: str
    name: str
    is_default: bool = False


# -- batched writes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BatchedWrite:
    index: int  # its place in the writes handed to write_many, and its sub-request id
    write: Write
    request: dict[str, Any]  # method, url, headers and body of the $batch entry

    @property
    def key(self) -> str:
        return str(self.index)


@dataclass(frozen=True)
class _BatchedRead:
    key: str  # its sub-request id in the $batch it goes in
    request: dict[str, Any]  # a GET: method, url and headers of the $batch entry


# What a batched read found for one URL: the body, None for 404, or the error it met.
_ReadOutcome = dict[str, Any] | ProviderError | None


def _write_chunks(writes: Sequence[_BatchedWrite]) -> Iterator[list[_BatchedWrite]]:
    """Up to MAX_BATCH writes a chunk, never two on one event: Graph runs a batch's
    sub-requests in parallel, so their order would be anyone's guess."""
    chunk: list[_BatchedWrite] = []
    targets: set[str] = set()
    for write in writes:
        target = write.write.item_id
        if len(chunk) == MAX_BATCH or (target is not None and target in targets):
            yield chunk
            chunk, targets = [], set()
        chunk.append(write)
        if target is not None:
            targets.add(target)
    if chunk:
        yield chunk


# -- the adapter ---------------------------------------------------------------------------------


class GraphCalendar:
    """The user's default Outlook calendar through Microsoft Graph.

    `credentials` is the blob `GraphOAuth.finish_auth` returned. `authority_host` and
    `graph_base` default to Microsoft's; the emulator passes its own URL for both.
    """

    # The engine hands `write_many` this many writes at most: one $batch.
    max_batch: int = MAX_BATCH

    def __init__(
        self,
        credentials: Mapping[str, Any],
        *,
        client_id: str,
        client_secret: str,
        account_type: AccountType | None = None,
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        graph_base: str = DEFAULT_GRAPH_BASE,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        max_retry_after: float = 120.0,
        backoff: float = 1.0,
        max_concurrency: int = OUTLOOK_CONCURRENCY,
        page_size: int = 100,
        window_slack: timedelta = timedelta(days=1),
        max_subscription_minutes: int = MAX_EVENT_SUBSCRIPTION_MINUTES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not credentials or not credentials.get("msal_cache"):
            raise ProviderAuthError(AUTH_LOST)
        self.account_type: AccountType = account_type or credentials.get(
            "account_type", "office365"
        )
        self.username = str(credentials.get("username") or "")
        self._home_account_id = credentials.get("home_account_id")
        self.graph_base = graph_base.rstrip("/")
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.backoff = backoff
        self.page_size = page_size
        self.window_slack = window_slack
        self.max_subscription_minutes = max_subscription_minutes
        self._sleep = sleep
        self._cache = msal.SerializableTokenCache()
        self._cache.deserialize(str(credentials["msal_cache"]))
        # Built on first use: msal reads the authority's OpenID configuration when it is
        # created, and a constructor must not fail on the network.
        self._app_args = (client_id, client_secret, self.account_type, authority_host)
        self._msal: Any = None
        self._tokens = AccountToken(lambda: self._app, SCOPES, self._home_account_id, AUTH_LOST)
        self._slots = _slots_for(self.graph_base, self.username or "?", max_concurrency)
        self._window: Window | None = None
        # The listing round in progress: whether it started without a cursor, each series
        # met so far (its master, when a page carried it), and the occurrences and
        # exceptions a full round's pages listed, by series.
        self._round_full = False
        self._round_series: dict[str, dict[str, Any] | None] = {}
        self._round_occurrences: dict[str, dict[str, dict[str, Any]]] = {}
        self._link_index: dict[str, str] | None = None

    # -- credentials --

    @property
    def credentials_changed(self) -> bool:
        """True when msal refreshed tokens: store `credentials()` again (rotated token)."""
        return bool(self._cache.has_state_changed)

    def credentials(self) -> dict[str, Any]:
        return {
            "version": CREDENTIALS_VERSION,
            "account_type": self.account_type,
            "home_account_id": self._home_account_id,
            "username": self.username,
            "msal_cache": self._cache.serialize(),
        }

    @property
    def _app(self) -> Any:
        if self._msal is None:
            self._msal = _guarded(
                lambda: _msal_app(*self._app_args, session=self.session, cache=self._cache)
            )
        return self._msal

    def _token(self, *, force: bool = False) -> str:
        return self._tokens.get(force=force)

    # -- HTTP --

    def _url(self, path_or_url: str) -> str:
        return path_or_url if path_or_url.startswith("http") else self.graph_base + path_or_url

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        # Exponential backoff with jitter when Graph gives no Retry-After
        # (https://learn.microsoft.com/en-us/graph/throttling#best-practices-to-handle-throttling).
        return self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random() / 2)

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        slots: int = 1,
    ) -> requests.Response:
        """One Graph call: throttling retries, one token refresh on 401, errors mapped.

        Returns the response for 2xx and for 404/410/412 (callers decide what those mean).
        """
        url = self._url(path_or_url)
        attempt = 0
        refreshed = False
        while True:
            token = self._token()
            all_headers = {"Authorization": f"Bearer {token}", "Prefer": PREFER_READ}
            all_headers.update(headers or {})
            try:
                with self._slots.hold(slots):
                    resp = self.session.request(
                        method, url, json=body, headers=all_headers, timeout=self.timeout
                    )
            except requests.RequestException as exc:
                attempt += 1
                if not idempotent or attempt > self.max_retries:
                    raise ProviderTransientError(
                        f"Microsoft Graph could not be reached ({type(exc).__name__}). "
                        "Sync will retry."
                    ) from exc
                self._sleep(self._delay(attempt, None))
                continue
            status = resp.status_code
            if status == 401 and not refreshed:
                # An access token msal still thinks valid was refused (revoked, clock
                # skew, expired early): refresh once through msal and try again.
                refreshed = True
                self._token(force=True)
                continue
            if status in RETRYABLE:
                retry_after = _retry_after(resp)
                attempt += 1
                if attempt > self.max_retries or (
                    retry_after is not None and retry_after > self.max_retry_after
                ):
                    raise ProviderTransientError(
                        f"Microsoft Graph is throttling or unavailable (HTTP {status}) after "
                        f"{attempt} attempts. Sync will retry later.",
                        retry_after,
                    )
                self._sleep(self._delay(attempt, retry_after))
                continue
            if status < 300 or status in (404, 410, 412):
                return resp
            raise self._error(resp)

    def _error(self, resp: requests.Response) -> ProviderError:
        try:
            message = str(resp.json().get("error", {}).get("message", ""))
        except (ValueError, AttributeError):
            message = resp.text[:200]
        return _provider_error(resp.status_code, _error_code(resp), message)

    def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any] | None:
        resp = self._request(method, path, **kw)
        if resp.status_code == 404:
            return None
        if resp.status_code == 412:
            raise ProviderConflict(CHANGED_MEANWHILE)
        if resp.status_code == 410:
            raise ProviderError("Microsoft Graph answered 410 Gone.")
        return resp.json() if resp.content else {}

    def _batch_get(self, paths: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """GET many paths through JSON $batch (20 per call); None for 404."""
        out: dict[str, dict[str, Any] | None] = {}
        unique = list(dict.fromkeys(paths))
        for start in range(0, len(unique), MAX_BATCH):
            chunk = unique[start : start + MAX_BATCH]
            if len(chunk) == 1:
                out[chunk[0]] = self._json("GET", chunk[0])
                continue
            payload = {
                "requests": [
                    {"id": str(i), "method": "GET", "url": path, "headers": {"Prefer": PREFER_READ}}
                    for i, path in enumerate(chunk)
                ]
            }
            # Graph runs up to 4 sub-requests of a batch at once against the mailbox, so a
            # batch holds every slot (https://learn.microsoft.com/en-us/graph/throttling-limits
            # #outlook-service-limits).
            data = self._json("POST", "/$batch", body=payload, slots=OUTLOOK_CONCURRENCY) or {}
            answered: set[str] = set()
            for sub in data.get("responses") or []:
                idx = int(sub.get("id", -1))
                if not 0 <= idx < len(chunk):
                    continue
                path, status = chunk[idx], int(sub.get("status", 0))
                if 200 <= status < 300 and isinstance(sub.get("body"), dict):
                    out[path] = sub["body"]
                    answered.add(path)
                elif status == 404:
                    out[path] = None
                    answered.add(path)
            # Throttled, failed or refused sub-requests are retried one by one, with all of
            # _request's handling (Retry-After, token refresh).
            for path in chunk:
                if path not in answered:
                    out[path] = self._json("GET", path)
        return out

    def _relative(self, url: str) -> str:
        """A URL as a $batch sub-request names it: relative to the version root.

        @odata.nextLink is absolute (https://learn.microsoft.com/en-us/graph/paging), while
        a sub-request's url is "the relative resource URL"
        (https://learn.microsoft.com/en-us/graph/json-batching).
        """
        if not url.startswith("http"):
            return url
        parts = urlsplit(url)
        root = urlsplit(self.graph_base).path.rstrip("/")
        path = parts.path[len(root) :] if root and parts.path.startswith(root + "/") else parts.path
        return path + (f"?{parts.query}" if parts.query else "")

    def _read_many(self, urls: Mapping[str, str]) -> dict[str, _ReadOutcome]:
        """GET each URL (by key) through $batch, 20 a call; one answer per key.

        Each sub-request is answered on its own: 404 is None, and a refusal is that key's
        ProviderError, so one unreadable item never sinks the others. Throttled and
        passing server faults are sent again with `_request`'s bounds, and a refused
        token is refreshed once
        (https://learn.microsoft.com/en-us/graph/throttling#throttling-and-batching); past
        those bounds, or with the sign-in lost, the listing as a whole fails, as a single
        GET would.
        """
        out: dict[str, _ReadOutcome] = {}
        pending = list(urls)
        if len(pending) == 1:
            # A batch of one costs a request more than the GET itself.
            key = pending[0]
            try:
                out[key] = self._json("GET", urls[key])
            except (ProviderAuthError, ProviderTransientError):
                raise
            except ProviderError as exc:
                out[key] = exc
            return out
        attempt = 0
        refreshed = False
        while pending:
            again: list[str] = []
            waits: list[float | None] = []
            unauthorised: list[str] = []
            for start in range(0, len(pending), MAX_BATCH):
                keys = pending[start : start + MAX_BATCH]
                # The batch's own headers do not reach its sub-requests: each carries Prefer.
                chunk = [
                    _BatchedRead(
                        str(i),
                        {
                            "method": "GET",
                            "url": self._relative(urls[k]),
                            "headers": {"Prefer": PREFER_READ},
                        },
                    )
                    for i, k in enumerate(keys)
                ]
                answers = self._post_batch(chunk)
                for read, key in zip(chunk, keys, strict=True):
                    answer = answers.get(read.key)
                    if answer is None:  # left unanswered: sent again
                        again.append(key)
                        waits.append(None)
                        continue
                    status, headers, body = answer
                    if 200 <= status < 300:
                        out[key] = body if isinstance(body, dict) else {}
                    elif status == 404:
                        out[key] = None
                    elif status == 401:
                        if refreshed:
                            raise ProviderAuthError(AUTH_LOST)
                        unauthorised.append(key)
                    elif status in RETRYABLE:
                        again.append(key)
                        named = {str(k).lower(): str(v) for k, v in headers.items()}
                        waits.append(_seconds(named.get("retry-after")))
                    else:
                        error = body.get("error") if isinstance(body, Mapping) else None
                        error = error if isinstance(error, Mapping) else {}
                        out[key] = _provider_error(
                            status, str(error.get("code") or ""), str(error.get("message") or "")
                        )
            if unauthorised:
                # As in _request: a token msal still thought valid was refused; refresh once.
                refreshed = True
                self._token(force=True)
            if again:
                attempt += 1
                asked = [w for w in waits if w is not None]
                retry_after = max(asked) if asked else None
                if attempt > self.max_retries or (
                    retry_after is not None and retry_after > self.max_retry_after
                ):
                    raise ProviderTransientError(
                        "Microsoft Graph is throttling or unavailable after "
                        f"{attempt} attempts. Sync will retry later.",
                        retry_after,
                    )
                self._sleep(self._delay(attempt, retry_after))
            pending = again + unauthorised
        return out

    def _read_pages(
        self, urls: Mapping[str, str]
    ) -> dict[str, list[dict[str, Any]] | ProviderError | None]:
        """Every page of each collection URL, the pages of all of them read side by side
        in $batch calls: each answer's @odata.nextLink goes into the next call."""
        items: dict[str, list[dict[str, Any]]] = {key: [] for key in urls}
        out: dict[str, list[dict[str, Any]] | ProviderError | None] = {}
        pending = dict(urls)
        while pending:
            following: dict[str, str] = {}
            for key, answer in self._read_many(pending).items():
                if answer is None or isinstance(answer, ProviderError):
                    out[key] = answer
                    continue
                items[key].extend(answer.get("value") or [])
                link = answer.get("@odata.nextLink")
                if link:
                    following[key] = str(link)
                else:
                    out[key] = items[key]
            pending = following
        return out

    # -- reading --

    def discover_calendars(self) -> list[DiscoveredCalendar]:
        """The user's calendars (https://learn.microsoft.com/en-us/graph/api/user-list-calendars).
        The adapter syncs the default one; the others are listed for the settings page."""
        out: list[DiscoveredCalendar] = []
        url: str | None = "/me/calendars"
        while url:
            data = self._json("GET", url) or {}
            for cal in data.get("value") or []:
                out.append(
                    DiscoveredCalendar(
                        url=f"{self.graph_base}/me/calendars/{_quote(str(cal['id']))}",
                        name=str(cal.get("name") or ""),
                        is_default=bool(cal.get("isDefaultCalendar")),
                    )
                )
            url = data.get("@odata.nextLink")
        return out

    def capabilities(self) -> Capabilities:
        # Graph has no switch to write attendees silently (unlike Google's sendUpdates), so
        # the planner withholds attendees when it must not notify.
        return Capabilities(two_way=True, suppress_invitations=False, recurrence=True, notify=True)

    def _series_window(self, master: Mapping[str, Any]) -> tuple[datetime, datetime]:
        """Where moved and cancelled occurrences are looked for: from the series' start (at
        most a year before the sync window, to bound the reads) to the window's end."""
        first = _graph_time(master["start"]) if master.get("start") else datetime.now(UTC)
        if self._window is None:
            return first - timedelta(days=1), first + timedelta(days=730)
        lo = max(first - timedelta(days=1), self._window.start - timedelta(days=366))
        return lo, max(self._window.end, lo + timedelta(days=1))

    @staticmethod
    def _instances_url(master_id: str, lo: datetime, hi: datetime) -> str:
        query = urlencode({"startDateTime": _iso_z(lo), "endDateTime": _iso_z(hi), "$top": 500})
        return f"/me/events/{_quote(master_id)}/instances?{query}"

    def _instances(self, master_id: str, lo: datetime, hi: datetime) -> list[dict[str, Any]]:
        url: str | None = self._instances_url(master_id, lo, hi)
        items: list[dict[str, Any]] = []
        while url:
            data = self._json("GET", url) or {}
            items.extend(data.get("value") or [])
            url = data.get("@odata.nextLink")
        return items

    def _to_event(self, item: Mapping[str, Any], recurrence: Recurrence | None = None) -> Event:
        notes: dict[str, Any] = {}
        zone_name = item.get("originalStartTimeZone")
        zone = iana_zone(zone_name)
        if zone_name and zone is None and zone_name not in _UTC_NAMES:
            notes["timezone_note"] = f"unknown time zone {zone_name!r} read as UTC"
        start: When
        end: When
        if item.get("isAllDay"):
            start = _parse_naive(item["start"]["dateTime"]).date()
            end = _parse_naive(item["end"]["dateTime"]).date()
        else:
            start = _graph_time(item["start"])
            end = _graph_time(item["end"])
        body = item.get("body") or {}
        text = str(body.get("content") or "")
        if body.get("contentType") == "html":
            text = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"(?i)<br\s*/?>|</p>", "\n", text)))
        description, withheld = _split_attendee_block(text)
        if withheld:
            notes["attendees_in_body"] = withheld
        invitees = tuple(
            Invitee(
                email=str(att["emailAddress"]["address"]),
                name=att["emailAddress"].get("name") or None,
                response=_RESPONSES.get(
                    (att.get("status") or {}).get("response", ""), "needs_action"
                ),
            )
            for att in item.get("attendees") or []
            if (att.get("emailAddress") or {}).get("address")
        )
        organizer = ((item.get("organizer") or {}).get("emailAddress") or {}).get("address")
        tx = str(item.get("transactionId") or "")
        link_id = tx[len(LINK_PREFIX) :] if tx.startswith(LINK_PREFIX) else None
        location = (item.get("location") or {}).get("displayName") or None
        notes["graph_type"] = item.get("type")
        notes["is_organizer"] = item.get("isOrganizer")
        return Event(
            title=str(item.get("subject") or ""),
            start=start,
            end=end,
            timezone=zone,
            location=location,
            description=description or None,
            organizer=organizer,
            invitees=invitees,
            recurrence=recurrence,
            status="cancelled" if item.get("isCancelled") else "confirmed",
            private=item.get("sensitivity") in ("private", "confidential"),
            calendar_id=str(item["id"]),
            calendar_version=item.get("changeKey") or _etag_change_key(item.get("@odata.etag")),
            last_modified=_parse_instant(item.get("lastModifiedDateTime")),
            ical_uid=item.get("iCalUId"),
            link_id=link_id,
            extra=notes,
        )

    def _series_event(
        self, master: Mapping[str, Any], instances: Sequence[Mapping[str, Any]] | None = None
    ) -> Event:
        """A series master with its moved and cancelled occurrences (within the window).

        `instances` are the series' occurrences and exceptions over `_series_window` when
        already read; otherwise they are read here.
        """
        base = self._to_event(master)
        rule = rrule_from_graph(master["recurrence"])
        # The rule text we wrote, if Outlook still holds that rule: RRULE parts can be
        # written in any order and some are implied, and the engine compares the text.
        ours = next(
            (
                str(p.get("value") or "")
                for p in master.get("singleValueExtendedProperties") or []
                if str(p.get("id", "")).lower() == RRULE_PROPERTY.lower()
            ),
            "",
        )
        if ours and base.start is not None:
            local = (
                base.start.astimezone(_zone(base.timezone)).date()
                if isinstance(base.start, datetime)
                else base.start
            )
            try:
                if rrule_from_graph(graph_recurrence(ours, local, "UTC")) == rule:
                    rule = ours
            except ValueError:
                pass
        plain = replace(base, recurrence=Recurrence(rule))
        lo, hi = self._series_window(master)
        zone = _zone(base.timezone)
        expected = {occ.key for occ in expand(plain, lo, hi)}
        present: set[str] = set()
        moved: list[MovedOccurrence] = []
        if instances is None:
            instances = self._instances(str(master["id"]), lo, hi)
        for inst in instances:
            original = _parse_instant(inst.get("originalStart"))
            if original is None:
                continue
            orig_when: When = original.astimezone(zone).date() if base.all_day else original
            key = occurrence_key(orig_when)
            present.add(key)
            if inst.get("type") != "exception":
                continue
            shown = self._to_event(inst)
            duration = base.end - base.start  # type: ignore[operator]
            if (shown.start, shown.end) != (orig_when, orig_when + duration):  # type: ignore[operator]
                moved.append(MovedOccurrence(orig_when, shown.start, shown.end))  # type: ignore[arg-type]
        cancelled = sorted(
            (date.fromisoformat(k) if base.all_day else datetime.fromisoformat(k))
            for k in expected - present
        )
        return replace(
            base,
            recurrence=Recurrence(
                rule,
                tuple(cancelled),  # type: ignore[arg-type]
                tuple(sorted(moved, key=lambda m: occurrence_key(m.original_start))),
            ),
        )

    def _event_from_item(self, item: Mapping[str, Any]) -> Event | None:
        kind = item.get("type")
        if kind in ("occurrence", "exception"):
            return self.get(str(item["seriesMasterId"]))
        if kind == "seriesMaster":
            return self._series_event(item)
        return self._to_event(item)

    def get(self, item_id: str) -> Event | None:
        item = self._json("GET", _event_path(item_id))
        if item is None:
            return None
        return self._event_from_item(item)

    def _round_series_events(self, bad: list[BadItem]) -> dict[str, Event]:
        """The series met in this round, each with its moved and cancelled occurrences.

        Masters no page carried are read 20 to a $batch, then the instances of every series
        (https://learn.microsoft.com/en-us/graph/api/event-list-instances) the same way,
        each one's pages followed to its last. A series that cannot be read is a BadItem;
        one deleted meanwhile is left out (its removal comes in the next round).

        A full round needs no /instances read for a series whose instance range
        (`_series_window`) lies inside the sync window: "the initial call is a full
        synchronization" that returns every occurrence and exception of the calendarView
        range (https://learn.microsoft.com/en-us/graph/api/event-delta,
        https://learn.microsoft.com/en-us/graph/delta-query-events), so this round's pages
        already hold exactly what /instances would return there. An incremental round only
        carries the occurrences that changed, which cannot tell which others were cancelled
        or moved before, and a series reaching back before the window has occurrences no
        page carries: those are read.
        """
        wanted = {i: _event_path(i) for i, body in self._round_series.items() if body is None}
        read = self._read_many(wanted) if wanted else {}
        masters: dict[str, Mapping[str, Any]] = {}
        for master_id, body in self._round_series.items():
            answer = body if body is not None else read.get(master_id)
            if isinstance(answer, ProviderError):
                bad.append(BadItem(master_id, f"the Outlook series cannot be read ({answer})"))
            elif answer and answer.get("recurrence"):
                masters[master_id] = answer
        listed: dict[str, list[dict[str, Any]]] = {}
        to_read: dict[str, str] = {}
        window = self._window
        for master_id, master in masters.items():
            try:
                lo, hi = self._series_window(master)
            except (KeyError, ValueError, TypeError) as exc:
                bad.append(BadItem(master_id, f"the Outlook series cannot be read ({exc})"))
                continue
            if self._round_full and window is not None and window.start <= lo and hi <= window.end:
                # hi is then the window's end, as for the delta; an exception moved to before
                # lo is in the window but not in the range /instances would have been asked.
                listed[master_id] = [
                    occ
                    for occ in self._round_occurrences.get(master_id, {}).values()
                    if _graph_time(occ["end"]) > lo
                ]
            else:
                to_read[master_id] = self._instances_url(master_id, lo, hi)
        pages = self._read_pages(to_read) if to_read else {}
        out: dict[str, Event] = {}
        for master_id, master in masters.items():
            instances = listed[master_id] if master_id in listed else pages.get(master_id)
            if isinstance(instances, ProviderError):
                bad.append(
                    BadItem(
                        master_id, f"the Outlook series' occurrences cannot be read ({instances})"
                    )
                )
                continue
            if instances is None:
                continue
            try:
                out[master_id] = self._series_event(master, instances)
            except (KeyError, ValueError, TypeError) as exc:
                bad.append(BadItem(master_id, f"the Outlook series cannot be read ({exc})"))
        return out

    def _delta_start(self, window: Window) -> str:
        query = urlencode(
            {"startDateTime": _iso_z(window.start), "endDateTime": _iso_z(window.end)}
        )
        return f"{self.graph_base}/me/calendarView/delta?{query}"

    def list_changes(
        self, cursor: str | None, window: Window, page_token: str | None = None
    ) -> ChangePage:
        """One page of the calendarView delta round over `window`.

        Cursor format: "graph1 <window start> <window end> <deltaLink URL>". The deltaLink
        tracks the window it was started with; once the engine's window has moved on by
        more than `window_slack`, CursorExpired starts a full round over the new window.
        """
        self._window = window
        if page_token is not None:
            url = page_token
        else:
            url = self._cursor_url(cursor, window) if cursor else self._delta_start(window)
            self._round_full = not cursor
            self._round_series = {}
            self._round_occurrences = {}
        headers = {"Prefer": f"{PREFER_READ}, odata.maxpagesize={self.page_size}"}
        resp = self._request("GET", url, headers=headers)
        if resp.status_code == 410 or (
            resp.status_code == 404 and url != self._delta_start(window)
        ):
            # https://learn.microsoft.com/en-us/graph/delta-query-overview: 410 Gone
            # (SyncStateNotFound) means the token is no longer valid; start a full sync.
            raise CursorExpired(f"Microsoft Graph refused the delta token ({_error_code(resp)}).")
        if resp.status_code == 404:
            raise ProviderConfigError("The Outlook calendar was not found for this account.")
        data = resp.json()
        events: dict[str, Event] = {}
        deleted: list[str] = []
        bad: list[BadItem] = []
        removed: list[str] = []

        def take(item: Mapping[str, Any], listed: bool) -> None:
            # Series are reported on the round's last page, once all its pages are seen.
            item_id = str(item.get("id") or "")
            try:
                if item.get("type") in ("occurrence", "exception"):
                    master_id = str(item["seriesMasterId"])
                    self._round_series.setdefault(master_id, None)
                    if listed and self._round_full:
                        self._round_occurrences.setdefault(master_id, {})[item_id] = _slim(item)
                elif item.get("type") == "seriesMaster":
                    self._round_series[item_id] = dict(item)
                else:
                    events[item_id] = self._to_event(item)
            except (KeyError, ValueError, TypeError) as exc:
                bad.append(BadItem(item_id, f"the Outlook event cannot be read ({exc})"))

        for item in data.get("value") or []:
            if "@removed" in item:
                removed.append(str(item.get("id") or ""))
            else:
                take(item, listed=True)
        # A removal can be a deletion or an event that left the window (moved, or a series
        # shortened): read each back, and report what still exists as a change.
        if removed:
            found = self._batch_get([_event_path(i) for i in removed])
            for item_id in removed:
                item = found.get(_event_path(item_id))
                if item is None:
                    deleted.append(item_id)
                else:
                    take(item, listed=False)
        next_link = data.get("@odata.nextLink")
        delta_link = data.get("@odata.deltaLink")
        next_cursor = None
        if not next_link:
            if not delta_link:
                raise ProviderError("Microsoft Graph ended a delta page without a link.")
            events.update(self._round_series_events(bad))
            next_cursor = (
                f"graph1 {_iso_z(self._cursor_window(cursor, window)[0])} "
                f"{_iso_z(self._cursor_window(cursor, window)[1])} {delta_link}"
            )
        return ChangePage(
            events=list(events.values()),
            deleted_ids=[i for i in deleted if i not in events],
            bad=bad,
            next_page_token=next_link,
            next_cursor=next_cursor,
        )

    @staticmethod
    def _cursor_window(cursor: str | None, window: Window) -> tuple[datetime, datetime]:
        if cursor and cursor.startswith("graph1 "):
            _, start, end, _ = cursor.split(" ", 3)
            return _parse_instant(start) or window.start, _parse_instant(end) or window.end
        return window.start, window.end

    def _cursor_url(self, cursor: str, window: Window) -> str:
        if not cursor.startswith("graph1 "):
            if cursor.startswith("http"):
                return cursor
            raise CursorExpired("The saved Outlook cursor is not one this version reads.")
        _, start, end, url = cursor.split(" ", 3)
        old_start, old_end = _parse_instant(start), _parse_instant(end)
        if (
            old_start is None
            or old_end is None
            or window.end > old_end + self.window_slack
            or window.start < old_start - self.window_slack
        ):
            raise CursorExpired("The sync window moved on; Outlook is listed afresh.")
        return url

    def find_by_link_id(self, link_id: str) -> Event | None:
        """Our create, found by the transactionId it carries ("calsync-<link id>").

        Graph cannot $filter events on transactionId, so /me/events (series masters and
        single events, all dates) is indexed once per adapter and kept current by creates.
        """
        if self._link_index is None:
            index: dict[str, str] = {}
            url: str | None = "/me/events?" + urlencode(
                {"$select": "id,transactionId", "$top": 500}
            )
            while url:
                data = self._json("GET", url) or {}
                for item in data.get("value") or []:
                    tx = str(item.get("transactionId") or "")
                    if tx.startswith(LINK_PREFIX):
                        index[tx[len(LINK_PREFIX) :]] = str(item["id"])
                url = data.get("@odata.nextLink")
            self._link_index = index
        item_id = self._link_index.get(link_id)
        return self.get(item_id) if item_id else None

    # -- writing --

    def _times(self, value: When, zone: str | None) -> dict[str, str]:
        if isinstance(value, datetime):
            local = value.astimezone(_zone(zone))
            return {"dateTime": local.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": windows_zone(zone)}
        return {"dateTime": f"{value.isoformat()}T00:00:00", "timeZone": windows_zone(zone)}

    def _body(self, event: Event, *, notify: bool, with_times: bool = True) -> dict[str, Any]:
        if event.start is None or event.end is None:
            raise ProviderError("The event has no start or end, so it cannot be written.")
        description = event.description or ""
        body: dict[str, Any] = {
            "subject": event.title,
            "location": {"displayName": event.location or ""},
            "sensitivity": "private" if event.private else "normal",
        }
        # The engine withholds attendees that would be e-mailed (capabilities: no silent
        # invitations) and hands them over in extra[WITHHELD_INVITEES], to be listed here.
        listed = event.invitees or tuple(event.extra.get(WITHHELD_INVITEES) or ())
        if notify:
            body["attendees"] = [
                {
                    "emailAddress": {"address": i.email, "name": i.name or i.email},
                    "type": "required",
                }
                for i in event.invitees
            ]
        elif listed:
            # Writing attendees makes Graph send them meeting requests; with notify off they
            # are kept as text instead so the meeting still says who takes part.
            lines = [f"{i.name} <{i.email}>" if i.name else i.email for i in listed]
            description = "\n\n".join(
                p for p in (description, ATTENDEE_BLOCK + "\n" + "\n".join(lines)) if p
            )
        body["body"] = {"contentType": "text", "content": description}
        if with_times:
            body["isAllDay"] = event.all_day
            body["start"] = self._times(event.start, event.timezone)
            body["end"] = self._times(event.end, event.timezone)
            if event.recurrence is not None:
                local = (
                    event.start
                    if not isinstance(event.start, datetime)
                    else event.start.astimezone(_zone(event.timezone)).date()
                )
                try:
                    body["recurrence"] = graph_recurrence(
                        event.recurrence.rrule, local, windows_zone(event.timezone)
                    )
                    body["singleValueExtendedProperties"] = [
                        {"id": RRULE_PROPERTY, "value": event.recurrence.rrule}
                    ]
                except ValueError as exc:
                    raise ProviderError(str(exc)) from exc
            else:
                body["recurrence"] = None
        return body

    def _apply_exceptions(self, master_id: str, event: Event, current: Event | None) -> None:
        """Cancel and move single occurrences the way Outlook stores them: by deleting or
        patching the occurrence (https://learn.microsoft.com/en-us/graph/api/event-list-instances)."""
        rec = event.recurrence
        if rec is None or (not rec.cancelled and not rec.moved):
            return
        have = current.recurrence if current is not None and current.recurrence else None
        have_cancelled = {occurrence_key(c) for c in (have.cancelled if have else ())}
        have_moved = {occurrence_key(m.original_start): m for m in (have.moved if have else ())}
        cancel = [c for c in rec.cancelled if occurrence_key(c) not in have_cancelled]
        move = [m for m in rec.moved if have_moved.get(occurrence_key(m.original_start)) != m]
        if not cancel and not move:
            return
        points = [to_utc_instant(c) for c in cancel]
        for m in move:
            points += [to_utc_instant(m.original_start), to_utc_instant(m.start)]
        prior = have_moved.values()
        points += [to_utc_instant(m.start) for m in prior]
        duration = to_utc_instant(event.end) - to_utc_instant(event.start)  # type: ignore[arg-type]
        lo = min(points) - timedelta(days=2)
        hi = max(points) + duration + timedelta(days=2)
        zone = _zone(event.timezone)
        by_key: dict[str, dict[str, Any]] = {}
        for inst in self._instances(master_id, lo, hi):
            original = _parse_instant(inst.get("originalStart"))
            if original is None:
                continue
            when: When = original.astimezone(zone).date() if event.all_day else original
            by_key[occurrence_key(when)] = inst
        for c in cancel:
            inst = by_key.get(occurrence_key(c))
            if inst is not None:
                resp = self._request("DELETE", f"/me/events/{_quote(str(inst['id']))}")
                if resp.status_code not in (204, 200, 404):
                    raise self._error(resp)
        for m in move:
            inst = by_key.get(occurrence_key(m.original_start))
            if inst is None:
                continue
            self._json(
                "PATCH",
                f"/me/events/{_quote(str(inst['id']))}",
                body={
                    "start": self._times(m.start, event.timezone),
                    "end": self._times(m.end, event.timezone),
                },
            )

    def create(self, event: Event, *, link_id: str, notify: bool) -> Event:
        body = self._body(event, notify=notify)
        body["transactionId"] = LINK_PREFIX + link_id
        # Safe to retry on a dropped connection: the transactionId makes a repeat POST
        # return the first one's event instead of a second event.
        resp = self._request("POST", "/me/events", body=body, idempotent=True)
        if resp.status_code == 404:
            raise ProviderConfigError("The Outlook calendar was not found.")
        item = resp.json()
        item_id = str(item["id"])
        if self._link_index is not None:
            self._link_index[link_id] = item_id
        if event.recurrence is not None:
            self._apply_exceptions(item_id, event, self.get(item_id))
            written = self.get(item_id)
            if written is None:
                raise ProviderError("The new Outlook series disappeared while being written.")
            return written
        return self._finish(self._to_event(item), event, notify)

    def _finish(self, written: Event, wanted: Event, notify: bool) -> Event:
        if not notify and wanted.invitees:
            return replace(written, extra={**written.extra, "attendees_withheld": True})
        return written

    def update(self, item_id: str, event: Event, *, notify: bool) -> Event:
        raw = self._json("GET", _event_path(item_id))
        if raw is None:
            raise ProviderError("The Outlook event no longer exists.")
        current = self._event_from_item(raw) if raw.get("type") == "seriesMaster" else None
        with_times = True
        if current is not None and event.recurrence is not None:
            same_series = (
                current.recurrence is not None
                and current.recurrence.rrule == event.recurrence.rrule
                and (current.start, current.end, current.timezone)
                == (event.start, event.end, event.timezone)
            )
            have = current.recurrence
            keeps_exceptions = (
                have is not None
                and (
                    {occurrence_key(c) for c in have.cancelled}
                    <= {occurrence_key(c) for c in event.recurrence.cancelled}
                )
                and all(
                    m in event.recurrence.moved
                    or any(
                        occurrence_key(n.original_start) == occurrence_key(m.original_start)
                        for n in event.recurrence.moved
                    )
                    for m in have.moved
                )
            )
            # Outlook drops every exception when a series' pattern or times are written, so
            # they are written only when they change (or an exception must be undone).
            with_times = not (same_series and keeps_exceptions)
            if with_times:
                current = None
        body = self._body(event, notify=notify, with_times=with_times)
        headers = {}
        version = event.calendar_version or raw.get("changeKey")
        if version:
            headers["If-Match"] = f'W/"{version}"'
        item = self._json("PATCH", f"/me/events/{_quote(item_id)}", body=body, headers=headers)
        if item is None:
            raise ProviderError("The Outlook event no longer exists.")
        if event.recurrence is not None:
            self._apply_exceptions(item_id, event, current)
            written = self.get(item_id)
            if written is None:
                raise ProviderError("The Outlook series disappeared while being written.")
            return self._finish(written, event, notify)
        return self._finish(self._to_event(item), event, notify)

    def delete(self, item_id: str, *, notify: bool) -> None:
        # Graph has no silent delete: deleting a meeting the user organises e-mails a
        # cancellation to its attendees (https://learn.microsoft.com/en-us/graph/api/event-delete).
        resp = self._request("DELETE", f"/me/events/{_quote(item_id)}")
        if resp.status_code == 412:
            raise ProviderConflict(CHANGED_MEANWHILE)
        # 404: already gone, which is what was asked.

    # -- batched writes --

    def write_many(self, writes: Sequence[Write]) -> list[Event | BaseException | None]:
        """Several writes at once: one entry per write, in order (the engine's `BatchWriter`).

        Single events go through JSON $batch, 20 sub-requests a call
        (https://learn.microsoft.com/en-us/graph/json-batching); each answer is read on its
        own. Series take the single-write path, whose exceptions need one request each.
        """
        results: list[Event | BaseException | None] = [None] * len(writes)
        batched: list[_BatchedWrite] = []
        for index, write in enumerate(writes):
            try:
                series = write.event is not None and write.event.recurrence is not None
                if write.kind != "delete" and series:
                    results[index] = self._write_one(write)
                else:
                    batched.append(self._batched_write(index, write))
            except Exception as exc:  # recorded against this write alone
                results[index] = exc
        self._send_batched(batched, results)
        return results

    def _write_one(self, write: Write) -> Event | None:
        if write.kind == "create" and write.event is not None and write.link_id:
            return self.create(write.event, link_id=write.link_id, notify=write.notify)
        if write.kind == "update" and write.event is not None and write.item_id:
            return self.update(write.item_id, write.event, notify=write.notify)
        if write.kind == "delete" and write.item_id:
            self.delete(write.item_id, notify=write.notify)
            return None
        raise ValueError(f"A {write.kind} write is missing what it needs: {write!r}")

    def _batched_write(self, index: int, write: Write) -> _BatchedWrite:
        """The sub-request the single write would have sent, as a $batch entry."""
        headers = {"Prefer": PREFER_READ}
        if write.kind == "delete" and write.item_id:
            url = f"/me/events/{_quote(write.item_id)}"
            return _BatchedWrite(index, write, {"method": "DELETE", "url": url, "headers": headers})
        if write.event is None:
            raise ValueError(f"A {write.kind} write is missing what it needs: {write!r}")
        body = self._body(write.event, notify=write.notify)
        headers["Content-Type"] = "application/json"
        if write.kind == "create" and write.link_id:
            # The transactionId makes a create sent twice (a batch retried after a dropped
            # connection) land once, and is what find_by_link_id looks for.
            body["transactionId"] = LINK_PREFIX + write.link_id
            request = {"method": "POST", "url": "/me/events", "headers": headers, "body": body}
            return _BatchedWrite(index, write, request)
        if write.kind == "update" and write.item_id:
            # The single update reads the event first for its changeKey when the engine
            # has none; a batch cannot, and a check against a version read a moment
            # earlier guards nothing the engine relies on, so none is sent then.
            if write.event.calendar_version:
                headers["If-Match"] = f'W/"{write.event.calendar_version}"'
            url = f"/me/events/{_quote(write.item_id)}"
            return _BatchedWrite(
                index, write, {"method": "PATCH", "url": url, "headers": headers, "body": body}
            )
        raise ValueError(f"A {write.kind} write is missing what it needs: {write!r}")

    def _send_batched(
        self, writes: Sequence[_BatchedWrite], results: list[Event | BaseException | None]
    ) -> None:
        """Send the writes 20 to a $batch until each has its answer.

        Graph evaluates every sub-request against the throttling limits on its own and
        answers a throttled one 429, with its Retry-After, inside a 200 batch
        (https://learn.microsoft.com/en-us/graph/throttling#throttling-and-batching): only
        those, and sub-requests that met a passing server fault, are sent again, after the
        longest wait asked, with `_request`'s bounds. Other answers are final.
        """
        pending = list(writes)
        attempt = 0
        refreshed = False
        while pending:
            again: list[_BatchedWrite] = []
            waits: list[float | None] = []
            unauthorised: list[_BatchedWrite] = []
            for chunk in _write_chunks(pending):
                answers = self._post_batch(chunk)
                for write in chunk:
                    answer = answers.get(write.key)
                    if answer is None:  # left unanswered: sent again
                        again.append(write)
                        waits.append(None)
                        continue
                    status, headers, body = answer
                    if status == 401 and not refreshed:
                        unauthorised.append(write)
                    elif status in RETRYABLE:
                        again.append(write)
                        # A sub-response's header names keep whatever case Graph gave them.
                        named = {str(k).lower(): str(v) for k, v in headers.items()}
                        waits.append(_seconds(named.get("retry-after")))
                    else:
                        try:
                            results[write.index] = self._batched_outcome(write, status, body)
                        except Exception as exc:  # recorded against this write alone
                            results[write.index] = exc
            if unauthorised:
                # As in _request: a token msal still thought valid was refused; refresh once.
                refreshed = True
                self._token(force=True)
            if again:
                attempt += 1
                asked = [w for w in waits if w is not None]
                retry_after = max(asked) if asked else None
                if attempt > self.max_retries or (
                    retry_after is not None and retry_after > self.max_retry_after
                ):
                    for write in again:
                        results[write.index] = ProviderTransientError(
                            "Microsoft Graph is throttling or unavailable for this write after "
                            f"{attempt} attempts. Sync will retry later.",
                            retry_after,
                        )
                    again = []
                else:
                    self._sleep(self._delay(attempt, retry_after))
            pending = again + unauthorised

    def _post_batch(
        self, chunk: Sequence[_BatchedWrite] | Sequence[_BatchedRead]
    ) -> dict[str, tuple[int, Mapping[str, Any], Any]]:
        """One $batch call: each sub-request's (status, headers, body), by id."""
        payload = {"requests": [{"id": w.key, **w.request} for w in chunk]}
        # Graph runs up to 4 sub-requests of a batch at once against the mailbox, so a
        # batch holds every slot (https://learn.microsoft.com/en-us/graph/throttling-limits
        # #outlook-service-limits-for-json-batching). Resending the whole batch after a
        # dropped connection is safe: creates carry their transactionId, and PATCH and
        # DELETE are idempotent.
        resp = self._request("POST", "/$batch", body=payload, slots=OUTLOOK_CONCURRENCY)
        if resp.status_code >= 300:
            raise self._error(resp)
        answers: dict[str, tuple[int, Mapping[str, Any], Any]] = {}
        # Answers come in any order; the id ties each to its request.
        for sub in resp.json().get("responses") or []:
            if isinstance(sub, Mapping) and sub.get("id") is not None:
                headers = sub.get("headers")
                answers[str(sub["id"]).lower()] = (
                    int(sub.get("status") or 0),
                    headers if isinstance(headers, Mapping) else {},
                    sub.get("body"),
                )
        return answers

    def _batched_outcome(self, write: _BatchedWrite, status: int, body: Any) -> Event | None:
        """What the single write returns or raises for the same answer."""
        kind = write.write.kind
        if 200 <= status < 300:
            if kind == "delete":
                return None
            if not isinstance(body, Mapping):
                raise ProviderError(f"Microsoft Graph answered the {kind} without the event.")
            event = write.write.event
            assert event is not None  # _batched_write refused writes without one
            if kind == "create" and self._link_index is not None and write.write.link_id:
                self._link_index[write.write.link_id] = str(body["id"])
            return self._finish(self._to_event(body), event, write.write.notify)
        if status == 404:
            if kind == "delete":
                return None  # already gone, which is what was asked
            if kind == "create":
                raise ProviderConfigError("The Outlook calendar was not found.")
            raise ProviderError("The Outlook event no longer exists.")
        if status == 412:
            raise ProviderConflict(CHANGED_MEANWHILE)
        if status == 410:
            raise ProviderError("Microsoft Graph answered 410 Gone.")
        error = body.get("error") if isinstance(body, Mapping) else None
        error = error if isinstance(error, Mapping) else {}
        raise _provider_error(status, str(error.get("code") or ""), str(error.get("message") or ""))

    # -- subscriptions --

    def _expiry(self, minutes: int | None) -> datetime:
        wanted = self.max_subscription_minutes if minutes is None else minutes
        wanted = max(1, min(wanted, self.max_subscription_minutes))
        return datetime.now(UTC) + timedelta(minutes=wanted)

    @staticmethod
    def _subscription(data: Mapping[str, Any]) -> GraphSubscription:
        return GraphSubscription(
            id=str(data["id"]),
            resource=str(data.get("resource") or ""),
            expires_at=_parse_instant(data.get("expirationDateTime")) or datetime.now(UTC),
            client_state=data.get("clientState"),
        )

    def subscribe(
        self,
        notification_url: str,
        client_state: str,
        expiration_minutes: int | None = None,
        *,
        lifecycle_url: str | None = None,
        change_types: str = "created,updated,deleted",
    ) -> GraphSubscription:
        """Change notifications for the user's events
        (https://learn.microsoft.com/en-us/graph/api/subscription-post-subscriptions).

        Graph validates `notification_url` (and `lifecycle_url`) before answering, so the
        webhook route must already echo `validationToken`. The lifetime is capped by
        `max_subscription_minutes` (10,080 for Outlook events).
        """
        body: dict[str, Any] = {
            "changeType": change_types,
            "notificationUrl": notification_url,
            "resource": "/me/events",
            "expirationDateTime": _iso_z(self._expiry(expiration_minutes)),
            "clientState": client_state,
        }
        if lifecycle_url:
            body["lifecycleNotificationUrl"] = lifecycle_url
        # Not retried after a dropped connection: a second POST would be a second
        # subscription, each sending every notification.
        data = self._json("POST", "/subscriptions", body=body, idempotent=False)
        if data is None:
            raise ProviderConfigError("Microsoft Graph does not offer subscriptions here.")
        return self._subscription(data)

    def renew(
        self, subscription_id: str, expiration_minutes: int | None = None
    ) -> GraphSubscription | None:
        """Push the expiry out (https://learn.microsoft.com/en-us/graph/api/subscription-update).
        None when Graph no longer knows the subscription: subscribe again."""
        data = self._json(
            "PATCH",
            f"/subscriptions/{_quote(subscription_id)}",
            body={"expirationDateTime": _iso_z(self._expiry(expiration_minutes))},
        )
        return None if data is None else self._subscription(data)

    def unsubscribe(self, subscription_id: str) -> None:
        """https://learn.microsoft.com/en-us/graph/api/subscription-delete; gone is fine."""
        self._request("DELETE", f"/subscriptions/{_quote(subscription_id)}")

    def close(self) -> None:
        self.session.close()


def _slim(item: Mapping[str, Any]) -> dict[str, Any]:
    """What `_series_event` reads of a listed instance: an exception whole (it becomes a
    moved occurrence), an occurrence only its original and shown times."""
    if item.get("type") == "exception":
        return dict(item)
    return {k: item[k] for k in ("type", "originalStart", "start", "end") if k in item}


def _split_attendee_block(text: str) -> tuple[str, tuple[str, ...]]:
    """The description without the attendee block we append, and the block's lines."""
    head, sep, tail = text.partition(ATTENDEE_BLOCK)
    if not sep:
        return text.strip(), ()
    lines = tuple(line.strip() for line in tail.splitlines() if line.strip())
    return head.strip(), lines
