"""Dynamics 365 (Dataverse Web API v9.2) connector: appointments as CRM meetings.

Address: the organization URL (``https://ORG.crm.dynamics.com``, regional ``crm2`` ...
``crm21`` and the sovereign clouds), checked by `validate_org_url` before anything connects
to it, then probed (`DynamicsAdapter.probe`): Dataverse answers an unauthenticated Web API
call with a 401 Bearer challenge naming its authority, which no other web server does.

Sign-in: the user's own Microsoft identity, the one the add-in already uses, through msal's
authorization-code flow (`DynamicsOAuth.start_auth` / `finish_auth`) for the delegated scope
``{org_url}/user_impersonation``. The credential blob holds msal's serialised token cache
(the caller encrypts it); msal refreshes the access token from it, and `credentials` hands
back the possibly rotated blob whenever `credentials_changed` is true. `connect` checks the
sign-in (WhoAmI) and that the user's security roles allow reading, creating and changing
activities (appointments are activities), so a missing right is said at connect time.

Listing: Dataverse change tracking (``Prefer: odata.track-changes``): the full listing ends
with an ``@odata.deltaLink``, the cursor; a delta lists changed rows and ``$deletedEntity``
entries (deletions). A delta link Dataverse refuses (expired, or the table's tracking was
reset) raises CursorExpired. Change tracking takes no ``$filter``, so the listing is
narrowed to the user's own appointments (owner = the user) and the window here.
Where change tracking is off for the appointment table, listings fall back to a
``modifiedon`` watermark at Dataverse's one-second grain with the technique of the SuiteCRM
connector: the cursor keeps the instant plus the id and version (etag) of every row seen at
that instant, so a row changed again within the same second is reported and none is
replayed. That fallback cannot see deletions: after `full_listing_every` the cursor is
declared expired and the engine's full listing (and its one-by-one `get`) finds them.

People: organizer (participationtypemask 7), required (5) and optional (6) attendees are
activity parties. Invitees are resolved by e-mail to system users, then contacts, then leads
(batched ``Microsoft.Dynamics.CRM.In`` look-ups, cached for the adapter's life: make one
adapter per run); an address matching nobody is kept as an unresolved party (``addressused``).

Our link id: the appointment's ``globalobjectid`` (Edm.String), prefixed "calsync-", so
`find_by_link_id` rebuilds a lost link table and a retried create finds its appointment.
``outlookownerapptid`` was the other candidate but it is an integer (it mirrors MAPI's
PidTagOwnerAppointmentId, PT_LONG) and cannot hold our UUID. Caveat: server-side sync with
Exchange also writes ``globalobjectid`` for appointments it tracks; such an appointment's
link id can be overwritten, which only costs the rebuild of that one link.

Writes: 429 (service protection limits) and 5xx are retried after ``Retry-After``, bounded
by `max_retries` and `max_retry_after`, then ProviderTransientError; a 401 refreshes the token
once; updates send ``If-Match`` with the etag just read (412 -> ProviderConflict, a row
deleted meanwhile -> AppointmentDeleted).

Capabilities: Dataverse keeps a recurring series as a master plus instances that the Web
API cannot create from an RRULE: ``recurrence=False``, the engine links occurrences one by
one. Writing appointments through the Web API e-mails nobody (only an appointment "sent"
through Exchange server-side sync reaches attendees): ``notify=False``.
"""

from __future__ import annotations

import json
import random
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

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
from calsync.sync.adapters import BadItem, ChangePage, Window
from calsync.sync.errors import CursorExpired
from calsync.sync.model import Capabilities, Event, Invitee

__all__ = [
    "AUTH_LOST",
    "DEFAULT_AUTHORITY_HOST",
    "AppointmentDeleted",
    "Connection",
    "DynamicsAdapter",
    "DynamicsOAuth",
    "validate_org_url",
]

PROVIDER = "dynamics"
API_PATH = "/api/data/v9.2"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
# Dynamics 365 is for work and school accounts only.
TENANT = "organizations"
CREDENTIALS_VERSION = 1
LINK_PREFIX = "calsync-"
CURSOR_PREFIX = "dynamics1:"
AUTH_LOST = "Your Microsoft access to Dynamics 365 was revoked or expired. Connect again."
RETRYABLE = frozenset({429, 500, 502, 503, 504})
ISO = "%Y-%m-%dT%H:%M:%SZ"
SELECT = (
    "activityid,subject,scheduledstart,scheduledend,isalldayevent,location,description,"
    "statecode,statuscode,globalobjectid,_ownerid_value,modifiedon"
)
PARTY_SELECT = "activitypartyid,participationtypemask,addressused,_partyid_value"
EXPAND = f"appointment_activity_parties($select={PARTY_SELECT})"
# Lookups carry the target table's name only as an annotation (Query data using the Web
# API, "Lookup property data"); "*" also brings the formatted (display) name.
ANNOTATIONS = 'odata.include-annotations="*"'
MASK_REQUIRED, MASK_OPTIONAL, MASK_ORGANIZER = 5, 6, 7
# statecode 0 Open, 1 Completed, 2 Canceled, 3 Scheduled (appointment EntityType).
STATE_CANCELED, STATE_SCHEDULED = 2, 3
STATUS_CANCELED, STATUS_BUSY = 4, 5
# Invitee resolution order: a colleague's address names exactly one user; a customer who is
# both a contact and a lead is the contact (a qualified lead becomes one).
PEOPLE = (
    ("systemuser", "systemusers", "systemuserid", "internalemailaddress", "isdisabled eq false"),
    ("contact", "contacts", "contactid", "emailaddress1", "statecode eq 0"),
    ("lead", "leads", "leadid", "emailaddress1", "statecode eq 0"),
)
EMAIL_BATCH = 50
PARTY_BATCH = 50
# Dataverse's "The user is not a member of the organization."
NOT_A_MEMBER = "0x80072560"

_HOST_RE = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\."
    r"(?:crm(?:[2-9]|1\d|2\d)?\.dynamics\.com"  # commercial: crm (NAM), crm2 ... crm21
    r"|crm\.microsoftdynamics\.us|crm\.appsplatform\.us"  # US government clouds
    r"|crm\.dynamics\.cn)$"  # operated by 21Vianet
)
_LOCAL_HOSTS = ("127.0.0.1", "localhost")
_EXAMPLE = "https://contoso.crm.dynamics.com"


class AppointmentDeleted(ProviderConflict):
    """The appointment was deleted in Dynamics 365 while calsync was writing to it."""


@dataclass(frozen=True)
class Connection:
    """The result of "Connect": the credential blob to store encrypted, and who signed in."""

    credentials: dict[str, Any]
    user_id: str
    user_name: str
    message: str


# -- the address --------------------------------------------------------------------------


def validate_org_url(url: str, *, allow_local: bool = False) -> str:
    """The organization URL as ``https://host``, or ProviderConfigError saying what is wrong.

    Accepts what people paste: no scheme, a path (``/main.aspx?appid=...``), the Web API
    host (``ORG.api.crm4.dynamics.com``). The emulator's ``https://127.0.0.1:PORT`` only
    passes with `allow_local` (tests, development): a real deployment must never be pointed
    at a local address.
    """
    text = (url or "").strip()
    if not text:
        raise ProviderConfigError(f"Enter your Dynamics 365 organization URL, like {_EXAMPLE}.")
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port
    except ValueError as exc:
        raise ProviderConfigError(
            f"{url!r} is not a web address. Enter your Dynamics 365 organization URL, like "
            f"{_EXAMPLE}."
        ) from exc
    if allow_local and host in _LOCAL_HOSTS and parts.scheme == "https":
        return f"https://{host}:{port}" if port else f"https://{host}"
    if parts.scheme != "https":
        raise ProviderConfigError(
            f"Dynamics 365 is only reached over https. Enter the address as {_EXAMPLE}."
        )
    if parts.username or parts.password or port not in (None, 443):
        raise ProviderConfigError(
            f"{url!r} is not a Dynamics 365 organization URL. Enter it without a user name or "
            f"port, like {_EXAMPLE}."
        )
    host = host.replace(".api.crm", ".crm", 1)  # the Web API's own host name
    if not _HOST_RE.match(host):
        raise ProviderConfigError(
            f"{host or url!r} is not a Dynamics 365 organization URL. Enter the address you "
            f"open Dynamics 365 with, like {_EXAMPLE} (regional names such as "
            "crm4.dynamics.com work too)."
        )
    return f"https://{host}"


# -- sign-in ------------------------------------------------------------------------------


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
    authority_host: str,
    *,
    session: requests.Session,
    cache: msal.SerializableTokenCache | None = None,
) -> msal.ConfidentialClientApplication:
    host = authority_host.rstrip("/")
    microsoft = host == DEFAULT_AUTHORITY_HOST
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=client_secret,
        authority=f"{host}/{TENANT}",
        token_cache=cache,
        http_client=session,
        # A stand-in host (the emulator) is not in Microsoft's instance discovery list.
        instance_discovery=microsoft,
        validate_authority=microsoft,
    )


def _scopes(org_url: str) -> list[str]:
    # Delegated access to the organization as the signed-in user; msal adds openid,
    # profile and offline_access (the refresh token) itself.
    return [f"{org_url}/user_impersonation"]


class DynamicsOAuth:
    """The connect flow, shaped like `GraphOAuth`: `start_auth` gives the URL to send the
    user to and a JSON-serialisable `flow` (kept in the session by the API layer);
    `finish_auth` redeems the redirect's query parameters for the credential blob and the
    account's e-mail. Then call `DynamicsAdapter.connect` with the blob."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        org_url: str,
        *,
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        session: requests.Session | None = None,
        allow_local: bool = False,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.org_url = validate_org_url(org_url, allow_local=allow_local)
        self.authority_host = authority_host
        self.session = session or requests.Session()

    def _app(self, cache: msal.SerializableTokenCache | None = None) -> Any:
        return _guarded(
            lambda: _msal_app(
                self.client_id,
                self.client_secret,
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
                    _scopes(self.org_url),
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
        """The credential blob (store it encrypted) and the signed-in e-mail.

        Blob: version (1), provider "dynamics", org_url, home_account_id, username (e-mail),
        msal_cache (msal's serialised token cache: refresh and access tokens). `connect`
        adds user_id (the Dataverse systemuserid).
        """
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
                "Microsoft did not grant access to Dynamics 365: "
                f"{result.get('error_description') or result['error']}. Connect again."
            )
        claims = result.get("id_token_claims") or {}
        email = str(claims.get("preferred_username") or claims.get("email") or "")
        accounts = app.get_accounts()
        blob = {
            "version": CREDENTIALS_VERSION,
            "provider": PROVIDER,
            "org_url": self.org_url,
            "home_account_id": accounts[0]["home_account_id"] if accounts else None,
            "username": email,
            "msal_cache": cache.serialize(),
        }
        return blob, email


# -- helpers ------------------------------------------------------------------------------


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _error_parts(resp: requests.Response) -> tuple[str, str]:
    try:
        err = resp.json().get("error") or {}
        return str(err.get("code") or ""), str(err.get("message") or "")
    except (ValueError, AttributeError):
        return "", resp.text[:200]


def _server_time(resp: requests.Response) -> datetime:
    """The server's clock from its Date header (one-second grain); our clock without one."""
    try:
        return parsedate_to_datetime(resp.headers["Date"]).astimezone(UTC)
    except (KeyError, TypeError, ValueError):
        return datetime.now(UTC).replace(microsecond=0)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime(ISO)


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _literal(value: str) -> str:
    """An OData string literal: quotes doubled (Query data using the Web API)."""
    return "'" + value.replace("'", "''") + "'"


def _utc(value: datetime | date | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _deleted(title: str) -> AppointmentDeleted:
    return AppointmentDeleted(
        f'The appointment "{title}" was deleted in Dynamics 365 while calsync was updating it. '
        "Nothing was changed; the next sync handles the deletion."
    )


Row = dict[str, Any]
Party = dict[str, Any]  # {mask, kind, id, address, name}


@dataclass
class _Cursor:
    mode: str  # "ct": change tracking delta link; "wm": modifiedon watermark
    delta: str = ""
    t: str = ""  # watermark, ISO UTC seconds
    seen: dict[str, str] | None = None  # id -> etag of rows changed at the watermark
    full_at: str = ""  # when the last full listing started (deletions are found there)

    def dump(self) -> str:
        if self.mode == "ct":
            payload: dict[str, Any] = {"m": "ct", "d": self.delta}
        else:
            payload = {"m": "wm", "t": self.t, "seen": self.seen or {}, "f": self.full_at}
        return CURSOR_PREFIX + json.dumps(payload, separators=(",", ":"), sort_keys=True)

    @classmethod
    def load(cls, text: str) -> _Cursor:
        try:
            if not text.startswith(CURSOR_PREFIX):
                raise ValueError("not ours")
            d = json.loads(text[len(CURSOR_PREFIX) :])
            if d["m"] == "ct":
                return cls("ct", delta=str(d["d"]))
            if d["m"] == "wm":
                return cls("wm", t=str(d["t"]), seen=dict(d["seen"]), full_at=str(d["f"]))
            raise ValueError("unknown mode")
        except (ValueError, KeyError, TypeError) as exc:
            raise CursorExpired("the Dynamics 365 cursor is not understood") from exc


# -- the adapter --------------------------------------------------------------------------


class DynamicsAdapter:
    """`calsync.sync.CrmAdapter` for Dynamics 365 appointments of the signed-in user.

    `credentials` is the blob `DynamicsOAuth.finish_auth` returned, completed by `connect`.
    `authority_host` defaults to Microsoft's; the emulator passes its own URL. `session` is
    injectable so the app can pass its SSRF-guarded session. `sleep` is injectable so tests
    see the Retry-After waits without waiting.
    """

    provider = PROVIDER

    def __init__(
        self,
        credentials: Mapping[str, Any],
        *,
        client_id: str,
        client_secret: str,
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        session: requests.Session | None = None,
        page_size: int = 100,
        timeout: float = 30.0,
        max_retries: int = 5,
        max_retry_after: float = 120.0,
        backoff: float = 1.0,
        full_listing_every: timedelta = timedelta(hours=6),
        sleep: Callable[[float], None] = time.sleep,
        allow_local: bool = False,
    ) -> None:
        if not credentials or not credentials.get("msal_cache"):
            raise ProviderAuthError(AUTH_LOST)
        self._blob = dict(credentials)
        self.org_url = validate_org_url(
            str(credentials.get("org_url") or ""), allow_local=allow_local
        )
        self.api = self.org_url + API_PATH
        self.username = str(credentials.get("username") or "")
        self.user_id = str(credentials.get("user_id") or "")
        self.session = session or requests.Session()
        self.page_size = page_size
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.backoff = backoff
        self.full_listing_every = full_listing_every
        self._sleep = sleep
        self._cache = msal.SerializableTokenCache()
        self._cache.deserialize(str(credentials["msal_cache"]))
        # Built on first use: msal reads the authority's OpenID configuration when it is
        # created, and a constructor must not fail on the network.
        self._app_args = (client_id, client_secret, authority_host)
        self._msal: Any = None
        self._tokens = AccountToken(
            lambda: self._app,
            _scopes(self.org_url),
            self._blob.get("home_account_id"),
            AUTH_LOST,
        )
        self._tracking: bool | None = None  # unknown until the first full listing
        self._people: dict[str, tuple[str, str] | None] = {}  # email -> (kind, id) | None
        self._emails: dict[tuple[str, str], str] = {}  # (kind, id) -> email
        self.last_response: requests.Response | None = None

    # -- credentials ---------------------------------------------------------------------

    @property
    def credentials_changed(self) -> bool:
        """True when msal refreshed tokens: store `credentials` again (rotated token)."""
        return bool(self._cache.has_state_changed)

    @property
    def credentials(self) -> dict[str, Any]:
        return {**self._blob, "user_id": self.user_id, "msal_cache": self._cache.serialize()}

    @property
    def lists_deletions(self) -> bool:
        """Whether incremental listings report deletions (change tracking is on)."""
        return self._tracking is not False

    def reset_caches(self) -> None:
        """Forget the invitee look-ups; call between runs if an adapter is reused."""
        self._people.clear()
        self._emails.clear()

    @property
    def _app(self) -> Any:
        if self._msal is None:
            self._msal = _guarded(
                lambda: _msal_app(*self._app_args, session=self.session, cache=self._cache)
            )
        return self._msal

    def _token(self, *, force: bool = False) -> str:
        return self._tokens.get(force=force)

    # -- HTTP ----------------------------------------------------------------------------

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # Service protection API limits: wait the whole Retry-After; sending earlier
            # only extends the penalty.
            return retry_after
        return self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random() / 2)

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        prefer: Iterable[str] = (),
        idempotent: bool = True,
        accept: Iterable[int] = (404, 412),
    ) -> requests.Response:
        """One Web API call: throttling retries, one token refresh on 401, errors mapped.

        Returns the response for 2xx and for the `accept` statuses (callers decide what
        those mean); raises a provider error for the others.
        """
        url = path_or_url if path_or_url.startswith("http") else self.api + path_or_url
        attempt = 0
        refreshed = False
        while True:
            all_headers = {
                "Authorization": f"Bearer {self._token()}",
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
            }
            preferences = list(prefer)
            if preferences:
                all_headers["Prefer"] = ", ".join(preferences)
            all_headers.update(headers or {})
            try:
                resp = self.session.request(
                    method, url, params=params, json=body, headers=all_headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                attempt += 1
                # A write whose answer was lost may have happened: never resent blindly
                # (a create is found again by its link id on the engine's retry).
                if not idempotent or attempt > self.max_retries:
                    raise ProviderTransientError(
                        f"Dynamics 365 at {urlsplit(url).netloc} could not be reached "
                        f"({type(exc).__name__}). Sync will retry."
                    ) from exc
                self._sleep(self._delay(attempt, None))
                continue
            self.last_response = resp
            status = resp.status_code
            if status == 401 and not refreshed:
                # An access token msal still thinks valid was refused (revoked, clock skew,
                # expired early): refresh once through msal and try again.
                refreshed = True
                self._token(force=True)
                continue
            if status in RETRYABLE:
                retry_after = _retry_after(resp)
                attempt += 1
                # A 429 was refused before it ran, so even a create is resent; a create
                # answered 5xx may have happened (a gateway timing out): not resent, the
                # engine's retry finds it by its link id.
                gave_up = attempt > self.max_retries or (status != 429 and not idempotent)
                if gave_up or (retry_after is not None and retry_after > self.max_retry_after):
                    code, _ = _error_parts(resp)
                    what = (
                        f"throttling calsync (service protection limits, {code or 'HTTP 429'})"
                        if status == 429
                        else f"unavailable (HTTP {status})"
                    )
                    raise ProviderTransientError(
                        f"Dynamics 365 is {what} after {attempt} attempts. Sync will retry later.",
                        retry_after,
                    )
                self._sleep(self._delay(attempt, retry_after))
                continue
            if status < 300 or status in accept:
                return resp
            raise self._error(resp)

    def _error(self, resp: requests.Response) -> ProviderError:
        status = resp.status_code
        code, message = _error_parts(resp)
        if status == 401:
            return ProviderAuthError(AUTH_LOST)
        if status == 403 and code == NOT_A_MEMBER:
            return ProviderPermissionError(
                f"{self.username or 'Your account'} is not a user of the Dynamics 365 "
                f"organization at {self.org_url}. Ask your Dynamics 365 administrator to add "
                "you, or connect the organization you work in."
            )
        if status == 403:
            missing = re.search(r"missing (prv\w+) privilege", message)
            what = f" (missing {missing.group(1)})" if missing else ""
            return ProviderPermissionError(
                f"Your Dynamics 365 user is not allowed to read or change appointments{what}. "
                "Ask your Dynamics 365 administrator to give your security role the Activity "
                "privileges (Create, Read, Write, Delete)."
            )
        return ProviderError(
            f"Dynamics 365 refused the request (HTTP {status} {code}): {message or 'no detail'}"
        )

    def _json(self, resp: requests.Response) -> Any:
        try:
            return resp.json()
        except ValueError as exc:
            raise ProviderConfigError(
                f"{self.org_url} answers, but not like Dynamics 365. Check the organization URL."
            ) from exc

    def _ok_json(self, resp: requests.Response) -> Any:
        if resp.status_code >= 400:
            raise self._error(resp)
        return self._json(resp)

    # -- connecting ----------------------------------------------------------------------

    @classmethod
    def probe(
        cls,
        org_url: str,
        *,
        session: requests.Session | None = None,
        timeout: float = 15.0,
        allow_local: bool = False,
    ) -> str:
        """Check that `org_url` is a Dataverse organization (no credentials needed); returns
        the normalised URL. Dataverse answers an anonymous Web API call with 401 and a
        ``WWW-Authenticate: Bearer authorization_uri=...`` challenge."""
        base = validate_org_url(org_url, allow_local=allow_local)
        http = session or requests.Session()
        host = urlsplit(base).netloc
        try:
            resp = http.get(base + API_PATH + "/WhoAmI", timeout=timeout, allow_redirects=False)
        except requests.Timeout as exc:
            raise ProviderTransientError(f"{host} did not answer in time. Try again.") from exc
        except requests.RequestException as exc:
            raise ProviderConfigError(
                f"calsync could not reach {host}. Check the organization URL (the address you "
                f"open Dynamics 365 with, like {_EXAMPLE})."
            ) from exc
        challenge = resp.headers.get("WWW-Authenticate", "")
        if resp.status_code == 401 and "authorization_uri" in challenge.lower():
            return base
        raise ProviderConfigError(
            f"{host} answers, but not like Dynamics 365 (no Dataverse Web API there). Check the "
            f"organization URL (the address you open Dynamics 365 with, like {_EXAMPLE})."
        )

    @classmethod
    def connect(
        cls,
        credentials: Mapping[str, Any],
        *,
        client_id: str,
        client_secret: str,
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        session: requests.Session | None = None,
        allow_local: bool = False,
    ) -> Connection:
        """Verify the sign-in (WhoAmI) and the user's rights on appointments; returns the
        credential blob completed with ``user_id`` (the systemuserid). Raises
        ProviderConfigError (not Dataverse), ProviderAuthError (sign-in refused) or
        ProviderPermissionError (not a user of the organization, or missing privileges)."""
        org = cls.probe(
            str(credentials.get("org_url") or ""), session=session, allow_local=allow_local
        )
        adapter = cls(
            {**credentials, "org_url": org},
            client_id=client_id,
            client_secret=client_secret,
            authority_host=authority_host,
            session=session,
            allow_local=allow_local,
        )
        try:
            who = adapter._ok_json(adapter._request("GET", "/WhoAmI"))
        except ProviderPermissionError as exc:
            answer = adapter.last_response
            if answer is not None and _error_parts(answer)[0] == NOT_A_MEMBER:
                # The sign-in worked but Dataverse has no such user: most often no Dynamics
                # 365 licence, or not in the environment's security group.
                raise ProviderPermissionError(
                    f"{adapter.username or 'Your Microsoft account'} signed in, but is not a "
                    f"user of the Dynamics 365 organization at {urlsplit(org).netloc}: it has no "
                    "Dynamics 365 licence or no access to this organization. Ask your Dynamics "
                    "365 administrator to give you a licence and a security role there, then "
                    "connect again."
                ) from exc
            raise
        if not isinstance(who, dict) or not who.get("UserId"):
            raise ProviderConfigError(
                f"{org} answers, but not like Dynamics 365 (WhoAmI is not understood)."
            )
        adapter.user_id = str(who["UserId"]).lower()
        privileges = adapter._ok_json(
            adapter._request(
                "GET",
                f"/systemusers({adapter.user_id})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()",
            )
        )
        held = {str(p.get("PrivilegeName")) for p in privileges.get("RolePrivileges") or []}
        verbs = {"prvReadActivity": "read", "prvCreateActivity": "create"}
        verbs["prvWriteActivity"] = "change"
        missing = [p for p in verbs if p not in held]
        if missing:
            raise ProviderPermissionError(
                f"Your Dynamics 365 user may not {' or '.join(verbs[p] for p in missing)} "
                f"appointments (missing {', '.join(missing)}). Ask your Dynamics 365 "
                "administrator to give your security role the Activity privileges."
            )
        # The privilege list says what the roles grant; one real read proves it.
        adapter._ok_json(
            adapter._request("GET", "/appointments", params={"$select": "activityid", "$top": "1"})
        )
        note = ""
        if "prvDeleteActivity" not in held:
            note = (
                " Your security role cannot delete appointments: deletions will not reach "
                "Dynamics 365."
            )
        return Connection(
            credentials=adapter.credentials,
            user_id=adapter.user_id,
            user_name=adapter.username,
            message=f"Connected to Dynamics 365 at {org} as {adapter.username}.{note}",
        )

    def _me(self) -> str:
        if not self.user_id:
            who = self._ok_json(self._request("GET", "/WhoAmI"))
            self.user_id = str(who["UserId"]).lower()
        return self.user_id

    # -- CrmAdapter ----------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        # No native series through the Web API and no e-mail from Web API writes; writes
        # are silent, so "suppress" holds trivially. Without change tracking the modifiedon
        # watermark cannot see deletions: the engine confirms them on full listings only.
        return Capabilities(
            two_way=True,
            suppress_invitations=True,
            recurrence=False,
            notify=False,
            lists_deletions=self.lists_deletions,
        )

    def list_changes(
        self, cursor: str | None, window: Window, page_token: str | None = None
    ) -> ChangePage:
        if page_token is not None:
            state = json.loads(page_token)
        elif cursor is None:
            state = {"mode": "full"}
        else:
            c = _Cursor.load(cursor)
            if c.mode == "ct":
                state = {"mode": "delta", "url": c.delta}
            else:
                state = {"mode": "inc", "t": c.t, "seen": c.seen, "f": c.full_at, "first": True}
        mode = state["mode"]
        if mode == "full":
            return self._full_first(window)
        if mode == "delta":
            return self._tracked_page(state)
        if mode == "full-read":
            return self._window_page(state, window)
        return self._wm_changes_page(state)

    def _prefer(self, *extra: str) -> list[str]:
        return [f"odata.maxpagesize={self.page_size}", ANNOTATIONS, *extra]

    def _full_first(self, window: Window) -> ChangePage:
        if self._tracking is not False:
            delta = self._delta_link()
            if delta is not None:
                # Taken before the rows are read: a change made during the listing comes
                # again in the next delta rather than being lost.
                return self._window_page({"mode": "full-read", "delta": delta, "url": ""}, window)
        # The watermark, likewise, is taken before reading.
        self._ok_json(self._request("GET", "/WhoAmI"))
        assert self.last_response is not None
        t = _iso(_server_time(self.last_response))
        return self._window_page({"mode": "full-read", "t": t, "seen": {}, "url": ""}, window)

    def _delta_link(self) -> str | None:
        """A fresh delta link for the appointment table, or None when its change tracking
        is off. Change tracking takes no $filter or $expand, so the rows themselves are read
        by a filtered query afterwards; here they only go by, in Dataverse's largest pages.
        The $select is the deltas' too (the delta link keeps the query's options)."""
        url: str | None = "/appointments"
        params: dict[str, str] | None = {"$select": SELECT}
        prefer = ["odata.maxpagesize=5000", "odata.track-changes"]
        while url:
            resp = self._request("GET", url, params=params, prefer=prefer, accept=(400,))
            if params is not None:
                applied = "odata.track-changes" in resp.headers.get("Preference-Applied", "")
                if resp.status_code == 400 or not applied:
                    # The preference was ignored or refused: tracking is off for the table.
                    self._tracking = False
                    return None
                self._tracking = True
            body = self._ok_json(resp)
            if body.get("@odata.deltaLink"):
                return str(body["@odata.deltaLink"])
            url, params = body.get("@odata.nextLink"), None
        raise ProviderError("Dynamics 365 ended a change-tracking listing without a delta link.")

    # change tracking

    def _tracked_page(self, state: dict[str, Any]) -> ChangePage:
        """One page of a delta: changed rows (the user's own) and deletions."""
        resp = self._request("GET", state["url"], prefer=self._prefer(), accept=(400, 404, 410))
        if resp.status_code in (400, 404, 410):
            code, message = _error_parts(resp)
            raise CursorExpired(f"Dynamics 365 refused the delta link ({code}: {message})")
        body = self._ok_json(resp)
        me = self._me()
        rows: list[Row] = []
        deleted: list[str] = []
        for item in body.get("value") or []:
            if "$deletedEntity" in str(item.get("@odata.context", "")) or "reason" in item:
                deleted.append(str(item["id"]).lower())
            elif str(item.get("_ownerid_value") or "").lower() == me:
                # Change tracking takes no $filter: other users' rows are dropped here.
                rows.append(item)
        # ...nor $expand: the parties of the page's rows come in batched look-ups.
        events, bad = self._convert(rows, self._parties_for([r["activityid"] for r in rows]))
        next_link = body.get("@odata.nextLink")
        if next_link:
            token = json.dumps({"mode": "delta", "url": next_link})
            return ChangePage(events=events, deleted_ids=deleted, bad=bad, next_page_token=token)
        delta = body.get("@odata.deltaLink")
        if not delta:
            raise CursorExpired("Dynamics 365 ended a delta without a new delta link")
        return ChangePage(
            events=events,
            deleted_ids=deleted,
            bad=bad,
            next_cursor=_Cursor("ct", delta=str(delta)).dump(),
        )

    def _parties_for(self, ids: list[str]) -> dict[str, list[Party]]:
        """The activity parties of many appointments, in batched look-ups."""
        out: dict[str, list[Party]] = {i.lower(): [] for i in ids}
        for i in range(0, len(ids), PARTY_BATCH):
            chunk = ids[i : i + PARTY_BATCH]
            values = ",".join(_literal(x) for x in chunk)
            url: str | None = "/activityparties"
            params: dict[str, str] | None = {
                "$select": PARTY_SELECT + ",_activityid_value",
                "$filter": (
                    f"Microsoft.Dynamics.CRM.In(PropertyName='activityid',PropertyValues=[{values}])"
                ),
            }
            while url:
                body = self._ok_json(self._request("GET", url, params=params, prefer=[ANNOTATIONS]))
                for raw in body.get("value") or []:
                    key = str(raw.get("_activityid_value") or "").lower()
                    out.setdefault(key, []).append(self._party(raw))
                url, params = body.get("@odata.nextLink"), None
        return out

    # modifiedon watermark (change tracking off)

    def _window_page(self, state: dict[str, Any], window: Window) -> ChangePage:
        """One page of a full listing: the user's appointments in the window, with their
        parties (one filtered query, followed page by page)."""
        if state["url"]:
            body = self._ok_json(self._request("GET", state["url"], prefer=self._prefer()))
        else:
            me = self._me()
            body = self._ok_json(
                self._request(
                    "GET",
                    "/appointments",
                    params={
                        "$select": SELECT,
                        "$expand": EXPAND,
                        "$filter": (
                            f"_ownerid_value eq {me} and scheduledend gt {_iso(window.start)} "
                            f"and scheduledstart lt {_iso(window.end)}"
                        ),
                        "$orderby": "activityid asc",
                    },
                    prefer=self._prefer(),
                )
            )
        rows = list(body.get("value") or [])
        events, bad = self._convert(rows, None)
        if "t" in state:
            # Rows already changed at the watermark instant are reported now: remember
            # them, or the next listing (which starts at that instant) reports them again.
            state["seen"].update(
                {
                    r["activityid"]: r["@odata.etag"]
                    for r in rows
                    if r.get("modifiedon") == state["t"]
                }
            )
        if body.get("@odata.nextLink"):
            state["url"] = body["@odata.nextLink"]
            return ChangePage(events=events, bad=bad, next_page_token=json.dumps(state))
        if "delta" in state:
            cursor = _Cursor("ct", delta=state["delta"])
        else:
            cursor = _Cursor("wm", t=state["t"], seen=state["seen"], full_at=state["t"])
        return ChangePage(events=events, bad=bad, next_cursor=cursor.dump())

    def _wm_changes_page(self, state: dict[str, Any]) -> ChangePage:
        self._tracking = False
        if state.get("url"):
            body = self._ok_json(self._request("GET", state["url"], prefer=self._prefer()))
        else:
            body = self._ok_json(
                self._request(
                    "GET",
                    "/appointments",
                    params={
                        "$select": SELECT,
                        "$expand": EXPAND,
                        "$filter": f"_ownerid_value eq {self._me()} and modifiedon ge {state['t']}",
                        "$orderby": "modifiedon asc,activityid asc",
                    },
                    prefer=self._prefer(),
                )
            )
            state.setdefault("newest", state["t"])
            state.setdefault("at_newest", dict(state["seen"]))
        if state.pop("first", False) and self.last_response is not None:
            # The modifiedon listing cannot see deletions: after a while, ask the engine for
            # a full listing, which confirms each missing linked appointment one by one.
            now = _server_time(self.last_response)
            full_at = _parse(state["f"])
            if full_at is None or now - full_at >= self.full_listing_every:
                raise CursorExpired("time for a full Dynamics 365 listing to find deletions")
        seen: dict[str, str] = state["seen"]
        fresh: list[Row] = []
        newest, at_newest = state["newest"], state["at_newest"]
        for row in body.get("value") or []:
            stamp, version = str(row.get("modifiedon") or ""), str(row.get("@odata.etag"))
            if stamp > newest:
                newest, at_newest = stamp, {}
            if stamp == newest:
                at_newest[row["activityid"]] = version
            if seen.get(row["activityid"]) == version:
                continue  # reported before, unchanged: never replayed
            seen[row["activityid"]] = version
            fresh.append(row)
        events, bad = self._convert(fresh, None)
        state.update(newest=newest, at_newest=at_newest)
        if body.get("@odata.nextLink"):
            state["url"] = body["@odata.nextLink"]
            return ChangePage(events=events, bad=bad, next_page_token=json.dumps(state))
        cursor = _Cursor("wm", t=newest, seen=at_newest, full_at=state["f"])
        return ChangePage(events=events, bad=bad, next_cursor=cursor.dump())

    # single rows

    def _read(self, item_id: str) -> Row | None:
        resp = self._request(
            "GET",
            f"/appointments({item_id})",
            params={"$select": SELECT, "$expand": EXPAND},
            prefer=[ANNOTATIONS],
        )
        if resp.status_code == 404:
            return None
        return self._ok_json(resp)  # type: ignore[no-any-return]

    def get(self, item_id: str) -> Event | None:
        if not _is_guid(item_id):
            return None
        row = self._read(item_id)
        return self._event(row, None) if row is not None else None

    def find_by_link_id(self, link_id: str) -> Event | None:
        body = self._ok_json(
            self._request(
                "GET",
                "/appointments",
                params={
                    "$select": SELECT,
                    "$expand": EXPAND,
                    "$filter": f"globalobjectid eq {_literal(LINK_PREFIX + link_id)}",
                    "$orderby": "createdon asc",
                },
                prefer=["odata.maxpagesize=1", ANNOTATIONS],
            )
        )
        rows = body.get("value") or []
        return self._event(rows[0], None) if rows else None

    def create(self, event: Event, *, link_id: str, notify: bool) -> Event:
        # A create retried after a lost answer finds its appointment instead of doubling it.
        existing = self.find_by_link_id(link_id)
        if existing is not None and existing.crm_id:
            return self.update(existing.crm_id, event, notify=notify)
        body = self._values(event, None)
        body["globalobjectid"] = LINK_PREFIX + link_id
        body["appointment_activity_parties"] = self._party_payload(event, [])
        # One request creates the appointment with its parties (deep insert), so no
        # appointment ever exists without its attendees.
        resp = self._request("POST", "/appointments", body=body, idempotent=False)
        if resp.status_code >= 300:
            raise self._error(resp)
        entity = resp.headers.get("OData-EntityId", "")
        m = re.search(r"appointments\(([0-9a-fA-F-]{36})\)", entity)
        if not m:
            raise ProviderError("Dynamics 365 did not say which appointment it created.")
        # Read back: the listing's shape and version, so our own write is recognised.
        created = self.get(m.group(1))
        if created is None:
            raise ProviderError("Dynamics 365 did not keep the new appointment.")
        return created

    def update(self, item_id: str, event: Event, *, notify: bool) -> Event:
        current = self._read(item_id) if _is_guid(item_id) else None
        if current is None:
            raise _deleted(event.title)
        # Only what changes is sent ("Update and delete table rows": every property sent is
        # an update, with its business logic and audit entries, even at the same value).
        body = {k: v for k, v in self._values(event, current).items() if current.get(k) != v}
        have = [self._party(p) for p in current.get("appointment_activity_parties") or []]
        parties = self._party_payload(event, have)
        if _party_keys(parties) != _party_keys([_payload_of(p) for p in have]):
            # Setting the collection replaces every party: sent only when they changed.
            body["appointment_activity_parties"] = parties
        if not body:
            return self._event(current, None)  # nothing to change: no write, same version
        resp = self._request(
            "PATCH",
            f"/appointments({item_id})",
            body=body,
            # The etag just read: a change between our read and this write is not lost.
            # (Without If-Match a PATCH of a deleted id would create it again: upsert.)
            headers={"If-Match": str(current.get("@odata.etag") or "*")},
        )
        if resp.status_code == 404:
            raise _deleted(event.title)
        if resp.status_code == 412:
            raise ProviderConflict(
                f'The appointment "{event.title}" changed in Dynamics 365 while calsync was '
                "updating it. Nothing was changed; the next sync picks up the change."
            )
        updated = self.get(item_id)
        if updated is None:
            raise _deleted(event.title)
        return updated

    def delete(self, item_id: str, *, notify: bool) -> None:
        if not _is_guid(item_id):
            return
        # 404: already gone, which is what was asked.
        self._request("DELETE", f"/appointments({item_id})")

    # -- mapping -------------------------------------------------------------------------

    def _values(self, event: Event, current: Row | None) -> dict[str, Any]:
        start, end = _utc(event.start), _utc(event.end)
        if start is None:
            raise ProviderError(
                f'The meeting "{event.title}" has no start; Dynamics 365 needs one.'
            )
        end = end if end is not None and end >= start else start
        values: dict[str, Any] = {
            "subject": event.title or "(no title)",
            "scheduledstart": _iso(start),
            "scheduledend": _iso(end),
            # All-day appointments are kept as UTC midnights (the user's own zone is not
            # known to calsync); Dynamics shows them as all-day.
            "isalldayevent": event.all_day,
            "location": event.location or None,
            "description": event.description or None,
        }
        state = (current or {}).get("statecode")
        if event.status == "cancelled":
            if state != STATE_CANCELED:
                values.update(statecode=STATE_CANCELED, statuscode=STATUS_CANCELED)
        elif state == STATE_CANCELED:
            values.update(statecode=STATE_SCHEDULED, statuscode=STATUS_BUSY)
        # Otherwise Completed stays Completed: the calendar has no such notion to overwrite.
        return values

    def _party(self, raw: Mapping[str, Any]) -> Party:
        kind = raw.get("_partyid_value@Microsoft.Dynamics.CRM.lookuplogicalname")
        party_id = str(raw.get("_partyid_value") or "").lower() or None
        address = raw.get("addressused") or None
        if party_id and kind and address:
            self._emails[(str(kind), party_id)] = str(address)
        return {
            "mask": int(raw.get("participationtypemask") or 0),
            "kind": str(kind) if kind and party_id else None,
            "id": party_id,
            "address": str(address) if address else None,
            "name": raw.get("_partyid_value@OData.Community.Display.V1.FormattedValue"),
        }

    def _resolve(self, emails: list[str]) -> None:
        """Look up every address not seen yet: users, then contacts, then leads."""
        pending = [e for e in emails if e not in self._people]
        for kind, table, key, field, active in PEOPLE:
            if not pending:
                break
            found: dict[str, tuple[str, str]] = {}
            for i in range(0, len(pending), EMAIL_BATCH):
                chunk = pending[i : i + EMAIL_BATCH]
                values = ",".join(_literal(e) for e in chunk)
                body = self._ok_json(
                    self._request(
                        "GET",
                        f"/{table}",
                        params={
                            "$select": f"{key},{field}",
                            "$filter": (
                                f"Microsoft.Dynamics.CRM.In(PropertyName='{field}',"
                                f"PropertyValues=[{values}]) and {active}"
                            ),
                        },
                    )
                )
                for row in body.get("value") or []:
                    email = str(row.get(field) or "").lower()
                    found.setdefault(email, (kind, str(row[key]).lower()))
            for email, ref in found.items():
                self._people[email] = ref
                self._emails[ref] = email
            pending = [e for e in pending if e not in found]
        for email in pending:
            self._people[email] = None

    def _party_payload(self, event: Event, have: list[Party]) -> list[dict[str, Any]]:
        """The appointment's parties as the Web API takes them (organizer kept, attendees
        from the invitees; an optional attendee stays optional)."""
        me = self._me()
        organizer = next((p for p in have if p["mask"] == MASK_ORGANIZER), None)
        out = [
            _payload_of(organizer)
            if organizer is not None
            else {
                "participationtypemask": MASK_ORGANIZER,
                "partyid_systemuser@odata.bind": f"/systemusers({me})",
            }
        ]
        emails = list(dict.fromkeys(i.email.strip().lower() for i in event.invitees if i.email))
        self._resolve(emails)
        optional = {
            (p["address"] or self._emails.get((p["kind"], p["id"]), "")).lower()
            for p in have
            if p["mask"] == MASK_OPTIONAL
        }
        for email in emails:
            ref = self._people.get(email)
            if ref == ("systemuser", me):
                continue  # the user is the organizer, not an attendee
            mask = MASK_OPTIONAL if email in optional else MASK_REQUIRED
            if ref is None:
                out.append({"participationtypemask": mask, "addressused": email})
            else:
                kind, ref_id = ref
                table = next(t for k, t, *_ in PEOPLE if k == kind)
                out.append(
                    {
                        "participationtypemask": mask,
                        f"partyid_{kind}@odata.bind": f"/{table}({ref_id})",
                    }
                )
        # Attendees without an address (resolved to a record that has none) cannot be
        # matched to an invitee: they stay.
        for p in have:
            if p["mask"] in (MASK_REQUIRED, MASK_OPTIONAL) and not p["address"] and p["id"]:
                out.append(_payload_of(p))
        return out

    def _convert(
        self, rows: list[Row], parties: Mapping[str, list[Party]] | None
    ) -> tuple[list[Event], list[BadItem]]:
        events, bad = [], []
        for row in rows:
            if _parse(row.get("scheduledstart")) is None:
                bad.append(
                    BadItem(str(row["activityid"]), "the appointment has no start in Dynamics 365")
                )
                continue
            found = parties.get(str(row["activityid"]).lower()) if parties is not None else None
            events.append(self._event(row, found))
        return events, bad

    def _event(self, row: Row, parties: list[Party] | None) -> Event:
        if parties is None:
            parties = [self._party(p) for p in row.get("appointment_activity_parties") or []]
        start, end = _parse(row.get("scheduledstart")), _parse(row.get("scheduledend"))
        when_start: datetime | date | None = start
        when_end: datetime | date | None = end
        if row.get("isalldayevent") and start is not None:
            # Dataverse keeps an all-day appointment as the midnights of its creator's time
            # zone, in UTC (22:00Z the day before for UTC+2). The nearest midnight gives the
            # day for any zone from UTC-12 to UTC+11:59 without knowing which one it was.
            when_start = (start + timedelta(hours=12)).date()
            when_end = (
                (end + timedelta(hours=12)).date()
                if end is not None
                else when_start + timedelta(days=1)
            )
        me = self.user_id
        organizer = None
        invitees: dict[str, Invitee] = {}
        for p in parties:
            email = p["address"] or (self._emails.get((p["kind"], p["id"])) if p["id"] else None)
            if p["mask"] == MASK_ORGANIZER:
                organizer = email
            elif p["mask"] in (MASK_REQUIRED, MASK_OPTIONAL) and email:
                if p["kind"] == "systemuser" and p["id"] == me:
                    continue  # the user's own calendar has them as organizer
                invitees.setdefault(email.lower(), Invitee(email=email, name=p["name"] or None))
        link = str(row.get("globalobjectid") or "")
        return Event(
            title=str(row.get("subject") or ""),
            start=when_start,
            end=when_end,
            timezone=None,  # Dataverse keeps UTC; the user's zone is a display setting
            location=row.get("location") or None,
            description=row.get("description") or None,
            organizer=organizer,
            invitees=tuple(invitees.values()),
            status="cancelled" if row.get("statecode") == STATE_CANCELED else "confirmed",
            crm_id=str(row["activityid"]).lower(),
            crm_version=str(row.get("@odata.etag") or ""),
            last_modified=_parse(row.get("modifiedon")),
            link_id=link[len(LINK_PREFIX) :] if link.startswith(LINK_PREFIX) else None,
            extra={
                "statecode": row.get("statecode"),
                "statuscode": row.get("statuscode"),
                "ownerid": row.get("_ownerid_value"),
            },
        )


def _payload_of(p: Party) -> dict[str, Any]:
    """A party read back, as the Web API takes it again."""
    out: dict[str, Any] = {"participationtypemask": p["mask"]}
    if p["id"] and p["kind"]:
        table = next(t for k, t, *_ in PEOPLE if k == p["kind"])
        out[f"partyid_{p['kind']}@odata.bind"] = f"/{table}({p['id']})"
    else:
        out["addressused"] = p["address"]
    return out


def _party_keys(parties: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(p, sort_keys=True) for p in parties)


_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def _is_guid(value: str) -> bool:
    # Ids are GUIDs; anything else would be refused as a syntax error, not "not found".
    return bool(_GUID_RE.match(value or ""))
