"""Microsoft Graph v1.0 calendar emulator (plus the Microsoft identity platform endpoints
that msal needs).

Each endpoint cites the page it follows. Where the documentation is silent the choice made
is stated in a comment, erring on the strict side: an emulator that accepts what the real
service rejects hides bugs.
"""

from __future__ import annotations

import base64
import concurrent.futures
import copy
import dataclasses
import datetime as dt
import hashlib
import html
import json
import queue
import random
import re
import secrets
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

import requests
from flask import Flask, Response, jsonify, redirect, request

from .recurrence import UTC, BadTimeZone, Pattern, expand, parse_instant, parse_naive, rfc3339
from .recurrence import zone as tz_zone
from .server import EmulatorServer, Invitation

__all__ = ["GraphEmulator", "GraphMailbox"]

GRAPH_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata"
# https://learn.microsoft.com/en-us/graph/api/subscription-post-subscriptions
# ("Subscription lifetime": Outlook event resources, 10,080 minutes = under 7 days).
MAX_EVENT_SUBSCRIPTION_MINUTES = 10_080
# https://learn.microsoft.com/en-us/graph/json-batching ("up to 20" requests).
MAX_BATCH_REQUESTS = 20
# https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits-for-json-batching
# ("executes up to 4 requests in parallel at any point").
BATCH_PARALLELISM = 4
# https://learn.microsoft.com/en-us/graph/delta-query-events: page size is chosen with
# `Prefer: odata.maxpagesize`; without it the emulator pages by 10 so that clients that
# forget to follow @odata.nextLink fail fast on any realistic mailbox.
DEFAULT_DELTA_PAGE = 10
DEFAULT_LIST_PAGE = 10  # /me/events and /me/calendarView default $top is 10.
MAX_TOP = 1000

_PATTERN_FIELDS = (
    "type",
    "interval",
    "month",
    "dayOfMonth",
    "daysOfWeek",
    "firstDayOfWeek",
    "index",
)
_WRITABLE = {
    "subject",
    "body",
    "start",
    "end",
    "isAllDay",
    "location",
    "locations",
    "attendees",
    "categories",
    "importance",
    "sensitivity",
    "showAs",
    "isReminderOn",
    "reminderMinutesBeforeStart",
    "responseRequested",
    "recurrence",
    "transactionId",
    "isOnlineMeeting",
    "onlineMeetingProvider",
    "allowNewTimeProposals",
    "hideAttendees",
    "singleValueExtendedProperties",
    "multiValueExtendedProperties",
    "extensions",
    "originalStartTimeZone",
    "originalEndTimeZone",
    "organizer",
}
_READ_ONLY = {
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "iCalUId",
    "type",
    "seriesMasterId",
    "isOrganizer",
    "webLink",
    "bodyPreview",
    "hasAttachments",
    "isCancelled",
    "responseStatus",
    "onlineMeeting",
    "onlineMeetingUrl",
    "isDraft",
    "originalStart",
    "@odata.etag",
    "@odata.context",
    "@odata.type",
}


class GraphError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


@dataclasses.dataclass
class GraphMailbox:
    """One user's mailbox: identity plus events, keyed by Graph id."""

    address: str
    display_name: str
    user_id: str
    tenant_id: str
    calendar_id: str
    events: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    transactions: dict[str, str] = dataclasses.field(default_factory=dict)
    seq: int = 0


@dataclasses.dataclass
class _DeltaRound:
    mailbox: str
    start: dt.datetime
    end: dt.datetime
    pending: list[tuple[str, bool]]  # (instance id, removed?)
    base_seq: int
    ids_at_start: set[str]
    select: list[str] | None
    created: float


@dataclasses.dataclass
class _DeltaState:
    mailbox: str
    start: dt.datetime
    end: dt.datetime
    seq: int
    ids: set[str]
    select: list[str] | None
    created: float


@dataclasses.dataclass
class Subscription:
    id: str
    mailbox: str
    resource: str
    change_types: list[str]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: dt.datetime
    application_id: str

    def as_json(self, creator_id: str) -> dict[str, Any]:
        return {
            "@odata.context": f"{GRAPH_CONTEXT}#subscriptions/$entity",
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": ",".join(self.change_types),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": rfc3339(self.expiration),
            "creatorId": creator_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
            "notificationQueryOptions": None,
        }


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _graph_dt(value: dt.datetime) -> str:
    """Graph's dateTimeTimeZone.dateTime: local wall clock with 7 fractional digits."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}0"


def _iso_z(value: dt.datetime) -> str:
    """Graph's DateTimeOffset rendering, e.g. 2024-01-01T10:00:00.1234567Z."""
    return _graph_dt(value.astimezone(UTC)) + "Z"


class GraphEmulator(EmulatorServer):
    """Microsoft Graph v1.0 calendar + identity platform emulator.

    Args:
        seed: seed of the RNG that drives fault injection and ids (reproducible runs).
        token_lifetime: access token lifetime in seconds (real default 3600, 60-90 min).
        tenant_id: the single tenant this emulator hosts.
        require_https_notifications: real Graph only accepts https notification URLs;
            off by default because local receivers in tests are plain http.
    """

    name = "graph"
    api_prefixes = ("/v1.0", "/beta")
    limit_exempt_paths = ("/v1.0/$batch",)

    def __init__(
        self,
        *,
        seed: int = 0,
        token_lifetime: int = 3600,
        tenant_id: str = "72f988bf-86f1-41af-91ab-2d7cd011db47",
        require_https_notifications: bool = False,
        port: int = 0,
        tls: bool = False,
    ) -> None:
        self.token_lifetime = token_lifetime
        self.tenant_id = tenant_id
        self.require_https_notifications = require_https_notifications
        self.delta_token_ttl: float | None = None
        self.notification_timeout = 3.0  # Graph expects the receiver to answer within 3 s.
        self.validation_timeout = 10.0  # ...and the validation handshake within 10 s.
        self._lock = threading.RLock()
        self._mailboxes: dict[str, GraphMailbox] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._refresh: dict[str, tuple[str, str, str]] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self._rounds: dict[str, _DeltaRound] = {}
        self._delta: dict[str, _DeltaState] = {}
        self._subs: dict[str, Subscription] = {}
        self._notify_q: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self.notification_log: list[dict[str, Any]] = []
        self._id_rng = random.Random(seed + 1)
        # Its own RNG, so that shuffling batch responses leaves fault rolls and ids alone.
        self._batch_rng = random.Random(seed + 2)
        super().__init__(seed=seed, port=port, tls=tls)
        self._notifier = threading.Thread(
            target=self._deliver_loop, name="graph-notifier", daemon=True
        )
        self._notifier.start()

    # ------------------------------------------------------------------------------
    # Python-side API for tests, benchmarks and the demo
    # ------------------------------------------------------------------------------

    def add_mailbox(self, address: str, display_name: str | None = None) -> GraphMailbox:
        """Create (or return) the mailbox of ``address``."""
        key = address.lower()
        with self._lock:
            if key not in self._mailboxes:
                self._mailboxes[key] = GraphMailbox(
                    address=address,
                    display_name=display_name or address.split("@")[0].title(),
                    user_id=str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4)),
                    tenant_id=self.tenant_id,
                    calendar_id=self._new_id(),
                )
            return self._mailboxes[key]

    def mailbox(self, address: str) -> GraphMailbox:
        return self._mailboxes[address.lower()]

    def issue_token(self, address: str, lifetime: int | None = None) -> str:
        """Mint an access token for ``address`` directly (no OAuth dance)."""
        self.add_mailbox(address)
        token = "eyJ0eXAiOiJKV1QiLCJub25jZSI6" + secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = (address.lower(), self.now() + (lifetime or self.token_lifetime))
        return token

    def expire_tokens(self) -> None:
        """Make every access token issued so far expired (401 on next use)."""
        with self._lock:
            self._tokens = {t: (u, 0.0) for t, (u, _) in self._tokens.items()}

    def expire_delta_tokens(self) -> None:
        """Forget all delta/skip tokens: the next use answers 410 SyncStateNotFound."""
        with self._lock:
            self._rounds.clear()
            self._delta.clear()

    def events(self, address: str) -> list[dict[str, Any]]:
        """Stored events (series masters and single instances), rendered in UTC."""
        mb = self.mailbox(address)
        with self._lock:
            return [_jcopy(self._render(mb, ev, "UTC")) for ev in mb.events.values()]

    def put_event(self, address: str, event: dict[str, Any], *, notify: bool = False) -> str:
        """Insert an event directly into the store (seeding); returns its id.

        Goes through the same validation as POST /me/events but sends no invitations,
        since seeded data models mail that was sent long ago.
        """
        mb = self.add_mailbox(address)
        with self._lock:
            ev = self._create(mb, copy.deepcopy(event), invite=False)
        if notify:
            self._notify(mb, ev["id"], "created")
        return ev["id"]

    def change_event(self, address: str, event_id: str, changes: dict[str, Any]) -> None:
        """Apply a change as if another client (e.g. the Outlook UI) made it."""
        mb = self.mailbox(address)
        with self._lock:
            self._patch(mb, event_id, copy.deepcopy(changes), if_match=None)
        self._notify(mb, event_id, "updated")

    def remove_event(self, address: str, event_id: str) -> None:
        """Delete an event as if another client did it."""
        mb = self.mailbox(address)
        with self._lock:
            self._delete(mb, event_id)
        self._notify(mb, event_id, "deleted")

    def fire_change(self, address: str, event_id: str, change_type: str = "updated") -> None:
        """Queue a change notification for ``event_id`` to every matching subscription
        without changing data (e.g. to test duplicate or spurious notifications)."""
        self._notify(self.mailbox(address), event_id, change_type)

    def revoke_refresh_tokens(self) -> None:
        """Invalidate every refresh token (next refresh answers invalid_grant)."""
        with self._lock:
            self._refresh.clear()

    def wait_for_notifications(self, timeout: float = 5.0) -> None:
        """Block until queued change notifications have been delivered."""
        done = threading.Event()
        self._notify_q.put(("__flush__", {"event": done}))
        done.wait(timeout)

    def fire_lifecycle(self, subscription_id: str, lifecycle_event: str) -> int:
        """POST a lifecycle notification (reauthorizationRequired, subscriptionRemoved,
        missed) to the subscription's lifecycleNotificationUrl; returns the HTTP status.

        https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events
        """
        sub = self._subs[subscription_id]
        if not sub.lifecycle_url:
            raise ValueError("subscription has no lifecycleNotificationUrl")
        payload = {
            "value": [
                {
                    "subscriptionId": sub.id,
                    "subscriptionExpirationDateTime": rfc3339(sub.expiration),
                    "tenantId": self.tenant_id,
                    "clientState": sub.client_state,
                    "lifecycleEvent": lifecycle_event,
                }
            ]
        }
        if lifecycle_event == "subscriptionRemoved":
            with self._lock:
                self._subs.pop(sub.id, None)
        return self._post_notification(sub.lifecycle_url, payload)

    # ------------------------------------------------------------------------------
    # server hooks
    # ------------------------------------------------------------------------------

    def error_body(
        self, status: int, code: str, message: str, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        # https://learn.microsoft.com/en-us/graph/errors (error resource type)
        return {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": dt.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": str(uuid.uuid4()),
                    "client-request-id": request.headers.get(
                        "client-request-id", str(uuid.uuid4())
                    ),
                },
            }
        }

    def throttle_response(self, reason: str, retry_after: int) -> Response:
        # https://learn.microsoft.com/en-us/graph/throttling : 429 + Retry-After (seconds).
        code = "ApplicationThrottled" if "Mailbox" in reason else "TooManyRequests"
        return self.error(429, code, reason, headers={"Retry-After": str(retry_after)})

    def server_error_response(self, status: int) -> Response:
        code = {
            500: "generalException",
            502: "BadGateway",
            503: "serviceNotAvailable",
            504: "GatewayTimeout",
        }.get(status, "generalException")
        return self.error(
            status,
            code,
            "The service is temporarily unavailable.",
            headers={"Retry-After": "1"} if status == 503 else None,
        )

    def mailbox_for_request(self) -> str | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        entry = self._tokens.get(auth[7:].strip())
        if entry is None:
            return None
        user = (request.view_args or {}).get("user")
        if entry[0].startswith("app:"):
            # App-only calls are limited per target mailbox, like delegated ones.
            return urllib.parse.unquote(user).lower() if user else None
        return entry[0]

    # ------------------------------------------------------------------------------
    # identity
    # ------------------------------------------------------------------------------

    def _auth(self, user: str | None = None, app_ok: bool = False) -> GraphMailbox:
        # https://learn.microsoft.com/en-us/graph/errors -> 401 InvalidAuthenticationToken
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty.",
                {"WWW-Authenticate": 'Bearer realm=""'},
            )
        entry = self._tokens.get(auth[7:].strip())
        if entry is None:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed.",
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if entry[1] <= self.now():
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
                {
                    "WWW-Authenticate": 'Bearer error="invalid_token", '
                    'error_description="The access token has expired"'
                },
            )
        principal = entry[0]
        if user is None:
            user = request.environ.get("calsync.graph.user")
        if user is None:
            if principal.startswith("app:"):
                if app_ok:
                    return None  # type: ignore[return-value]
                # App-only tokens have no "me".
                raise GraphError(
                    400,
                    "BadRequest",
                    "/me request is only valid with delegated authentication flow.",
                )
            return self._mailboxes[principal]
        target = self._find_mailbox(user)
        if principal.startswith("app:"):
            return target
        if target.address.lower() != principal:
            # Delegated access to someone else's calendar needs sharing, not emulated.
            raise GraphError(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        return target

    def _find_mailbox(self, user: str) -> GraphMailbox:
        key = urllib.parse.unquote(user).lower()
        mb = self._mailboxes.get(key) or next(
            (m for m in self._mailboxes.values() if m.user_id == key), None
        )
        if mb is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
        return mb

    def issue_app_token(self, client_id: str = "sandbox-app", lifetime: int | None = None) -> str:
        """Mint an application (client credentials) token: /users/{id}/... only, no /me."""
        token = "eyJ0eXAiOiJKV1QiLCJhcHAiOi" + secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = (f"app:{client_id}", self.now() + (lifetime or 3599))
        return token

    def _id_token(self, mb: GraphMailbox, client_id: str, nonce: str | None) -> str:
        # https://learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference
        # Unsigned ("alg": "none"): msal only decodes the payload, it does not verify it.
        now = int(self.now())
        claims = {
            "aud": client_id,
            "iss": f"{self._authority_host()}/{self.tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": mb.display_name,
            "oid": mb.user_id,
            "preferred_username": mb.address,
            "sub": _b64(hashlib.sha256(mb.user_id.encode()).digest()),
            "tid": self.tenant_id,
            "ver": "2.0",
        }
        if nonce:
            claims["nonce"] = nonce
        header = {"typ": "JWT", "alg": "none"}
        enc = lambda obj: _b64(json.dumps(obj).encode())  # noqa: E731
        return f"{enc(header)}.{enc(claims)}."

    def _authority_host(self) -> str:
        return request.host_url.rstrip("/")

    def _token_response(
        self, address: str, client_id: str, scope: str, nonce: str | None = None
    ) -> Response:
        mb = self.add_mailbox(address)
        refresh = "0.A" + secrets.token_urlsafe(64)
        with self._lock:
            self._refresh[refresh] = (mb.address.lower(), client_id, scope)
        client_info = _b64(json.dumps({"uid": mb.user_id, "utid": self.tenant_id}).encode())
        body = {
            "token_type": "Bearer",
            "scope": " ".join(scope.split()),
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": self.issue_token(mb.address),
            "refresh_token": refresh,
            "id_token": self._id_token(mb, client_id, nonce),
            "client_info": client_info,
        }
        resp = jsonify(body)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @staticmethod
    def _oauth_error(error: str, description: str, code: int, status: int = 400) -> Response:
        # https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow
        # ("Error response" of the token request).
        resp = jsonify(
            {
                "error": error,
                "error_description": f"AADSTS{code}: {description}",
                "error_codes": [code],
                "timestamp": dt.datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
                "trace_id": str(uuid.uuid4()),
                "correlation_id": str(uuid.uuid4()),
            }
        )
        resp.status_code = status
        return resp

    def _register_identity(self, app: Flask) -> None:
        @app.get("/common/discovery/instance")
        def instance_discovery() -> Response:
            # msal's authority validation call ("instance discovery"); its shape follows
            # https://learn.microsoft.com/en-us/entra/identity-platform/msal-python-migration
            # and msal's own authority.py.
            # msal's authority validation ("instance discovery") call.
            host = urllib.parse.urlparse(request.host_url).netloc
            tenant = urllib.parse.urlparse(request.args.get("authorization_endpoint", ""))
            tenant_name = (tenant.path.strip("/").split("/") or ["common"])[0] or "common"
            return jsonify(
                {
                    "tenant_discovery_endpoint": (
                        f"{self._authority_host()}/{tenant_name}"
                        "/v2.0/.well-known/openid-configuration"
                    ),
                    "api-version": "1.1",
                    "metadata": [
                        {"preferred_network": host, "preferred_cache": host, "aliases": [host]}
                    ],
                }
            )

        @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
        def openid_configuration(tenant: str) -> Response:
            # https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc
            base = f"{self._authority_host()}/{tenant}"
            return jsonify(
                {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "private_key_jwt",
                        "client_secret_basic",
                    ],
                    "jwks_uri": f"{self._authority_host()}/{tenant}/discovery/v2.0/keys",
                    "response_modes_supported": ["query", "fragment", "form_post"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "response_types_supported": [
                        "code",
                        "id_token",
                        "code id_token",
                        "id_token token",
                    ],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "issuer": f"{self._authority_host()}/{self.tenant_id}/v2.0",
                    "request_uri_parameter_supported": False,
                    "userinfo_endpoint": f"{self._authority_host()}/oidc/userinfo",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "http_logout_supported": True,
                    "frontchannel_logout_supported": True,
                    "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                    "claims_supported": [
                        "sub",
                        "iss",
                        "aud",
                        "exp",
                        "iat",
                        "nonce",
                        "preferred_username",
                        "name",
                        "tid",
                        "ver",
                        "oid",
                    ],
                    "tenant_region_scope": "EU",
                    "cloud_instance_name": "microsoftonline.com",
                    "cloud_graph_host_name": "graph.windows.net",
                    "msgraph_host": "graph.microsoft.com",
                }
            )

        @app.get("/<tenant>/discovery/v2.0/keys")
        def jwks(tenant: str) -> Response:
            return jsonify({"keys": []})

        @app.get("/<tenant>/oauth2/v2.0/authorize")
        def authorize(tenant: str) -> Response:
            # https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow
            # Sandbox: the user "consents" at once; the account is login_hint (or the
            # first mailbox). Errors go back to redirect_uri as the real endpoint does.
            args = request.args
            redirect_uri = args.get("redirect_uri")
            if not args.get("client_id") or not redirect_uri:
                return self._oauth_error(
                    "invalid_request", "client_id and redirect_uri are required.", 900144
                )
            if args.get("response_type") != "code":
                return self._oauth_error(
                    "unsupported_response_type", "Only response_type=code is emulated.", 70005
                )
            user = args.get("login_hint") or next(iter(self._mailboxes.values()), None)
            if user is None:
                return self._oauth_error("invalid_request", "No mailbox in the sandbox.", 50034)
            address = user if isinstance(user, str) else user.address
            code = "0.AX" + secrets.token_urlsafe(48)
            with self._lock:
                self._codes[code] = {
                    "user": address.lower(),
                    "client_id": args["client_id"],
                    "redirect_uri": redirect_uri,
                    "scope": args.get("scope", ""),
                    "challenge": args.get("code_challenge"),
                    "method": args.get("code_challenge_method", "plain"),
                    "nonce": args.get("nonce"),
                    "exp": self.now() + 600,
                }
            self.add_mailbox(address)
            query = {"code": code, "session_state": str(uuid.uuid4())}
            if args.get("state") is not None:
                query["state"] = args["state"]
            client_info = _b64(
                json.dumps({"uid": self.mailbox(address).user_id, "utid": self.tenant_id}).encode()
            )
            query["client_info"] = client_info
            mode = args.get("response_mode", "query")
            if mode == "form_post":
                # The real endpoint answers with a self-submitting HTML form.
                fields = "".join(
                    f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
                    for k, v in query.items()
                )
                page = (
                    f'<html><body onload="document.forms[0].submit()"><form method="POST" '
                    f'action="{html.escape(redirect_uri)}">{fields}</form></body></html>'
                )
                return Response(page, status=200, content_type="text/html; charset=utf-8")
            if mode not in ("query", "fragment"):
                return self._oauth_error("invalid_request", "Invalid response_mode.", 900144)
            sep = "#" if mode == "fragment" else ("&" if "?" in redirect_uri else "?")
            return redirect(f"{redirect_uri}{sep}{urllib.parse.urlencode(query)}", code=302)

        @app.post("/<tenant>/oauth2/v2.0/token")
        def token(tenant: str) -> Response:
            # https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow
            # (redeem a code, refresh) and .../v2-oauth2-client-creds-grant-flow.
            form = request.form
            grant = form.get("grant_type")
            client_id = form.get("client_id", "")
            scope = form.get("scope", "https://graph.microsoft.com/.default")
            if grant == "authorization_code":
                with self._lock:
                    entry = self._codes.pop(form.get("code", ""), None)
                if entry is None or entry["exp"] < self.now():
                    return self._oauth_error(
                        "invalid_grant",
                        "The provided authorization code is invalid or has expired.",
                        70008,
                    )
                if entry["redirect_uri"] != form.get("redirect_uri"):
                    return self._oauth_error(
                        "invalid_grant", "The reply URL does not match.", 50011
                    )
                if entry["client_id"] != client_id:
                    return self._oauth_error("invalid_grant", "Client id mismatch.", 700005)
                if entry["challenge"]:
                    verifier = form.get("code_verifier", "")
                    calc = (
                        _b64(hashlib.sha256(verifier.encode()).digest())
                        if entry["method"] == "S256"
                        else verifier
                    )
                    if calc != entry["challenge"]:
                        return self._oauth_error(
                            "invalid_grant",
                            "The code_verifier does not match the code_challenge.",
                            501481,
                        )
                return self._token_response(
                    entry["user"], client_id, entry["scope"] or scope, entry["nonce"]
                )
            if grant == "client_credentials":
                # https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow
                if not form.get("client_secret") and not form.get("client_assertion"):
                    return self._oauth_error(
                        "invalid_client", "The request body must contain client_secret.", 7000218
                    )
                if not scope.endswith("/.default"):
                    return self._oauth_error(
                        "invalid_scope", "The scope must end with /.default.", 1002012
                    )
                resp = jsonify(
                    {
                        "token_type": "Bearer",
                        "expires_in": 3599,
                        "ext_expires_in": 3599,
                        "access_token": self.issue_app_token(client_id),
                    }
                )
                resp.headers["Cache-Control"] = "no-store"
                return resp
            if grant == "refresh_token":
                # Entra refresh tokens stay valid until they expire or are revoked (a new one
                # is issued each time too), so a retried refresh must still work.
                entry = self._refresh.get(form.get("refresh_token", ""))
                if entry is None:
                    return self._oauth_error(
                        "invalid_grant", "The refresh token is invalid or expired.", 70000
                    )
                return self._token_response(entry[0], client_id, entry[2])
            return self._oauth_error(
                "unsupported_grant_type", f"grant_type {grant!r} is not emulated.", 70003
            )

        @app.post("/_sandbox/token")
        def sandbox_token() -> Response:
            body = request.get_json(force=True) or {}
            address = body.get("user") or body.get("address")
            if not address:
                return self.error(400, "BadRequest", "user is required")
            lifetime = body.get("expires_in")
            return jsonify(
                access_token=self.issue_token(address, lifetime),
                token_type="Bearer",
                expires_in=lifetime or self.token_lifetime,
            )

        @app.post("/_sandbox/expire-delta-tokens")
        def sandbox_expire_delta() -> Response:
            self.expire_delta_tokens()
            return Response(status=204)

        @app.post("/_sandbox/expire-access-tokens")
        def sandbox_expire_access() -> Response:
            self.expire_tokens()
            return Response(status=204)

    # ------------------------------------------------------------------------------
    # event model
    # ------------------------------------------------------------------------------

    def _new_id(self) -> str:
        # Graph ids are long opaque base64 strings; the emulator's are too, so clients
        # never get away with assuming short ids or a format.
        raw = bytes(self._id_rng.getrandbits(8) for _ in range(46))
        return "AAMkA" + _b64(raw)

    def _change_key(self) -> str:
        return base64.b64encode(bytes(self._id_rng.getrandbits(8) for _ in range(16))).decode()

    @staticmethod
    def _local(value: dict[str, Any], field: str) -> tuple[dt.datetime, str]:
        """Validate a dateTimeTimeZone; return (aware local datetime, zone name)."""
        if not isinstance(value, dict) or "dateTime" not in value:
            raise GraphError(400, "ErrorInvalidRequest", f"{field} must be a dateTimeTimeZone.")
        tz_name = value.get("timeZone") or "UTC"
        try:
            tz = tz_zone(tz_name)
        except BadTimeZone as exc:
            raise GraphError(
                400,
                "TimeZoneNotSupportedException",
                f"A valid TimeZone value must be specified. The following TimeZone value is "
                f"not supported: '{tz_name}'.",
            ) from exc
        try:
            naive = parse_naive(str(value["dateTime"]))
        except ValueError as exc:
            raise GraphError(
                400,
                "ErrorInvalidRequest",
                f"Cannot convert the literal '{value['dateTime']}' to the "
                "expected type 'Edm.DateTime'.",
            ) from exc
        if naive.tzinfo is not None:
            naive = naive.astimezone(tz).replace(tzinfo=None)
        return naive.replace(tzinfo=tz), tz_name

    def _validate_times(self, ev: dict[str, Any]) -> None:
        start, start_tz = self._local(ev["start"], "start")
        end, end_tz = self._local(ev["end"], "end")
        if end < start:
            raise GraphError(
                400,
                "ErrorInvalidRequest",
                "The end time of the event must be after its start time.",
            )
        # Outlook requires midnight boundaries for all-day events.
        midnight = start.time() == dt.time(0) == end.time()
        if ev.get("isAllDay") and (not midnight or end <= start):
            raise GraphError(
                400,
                "ErrorInvalidRequest",
                "The start and end of an all-day event must be at midnight and at "
                "least one day apart.",
            )
        ev["_start"], ev["_end"] = start.astimezone(UTC), end.astimezone(UTC)
        ev["_local_start"], ev["_local_end"] = start, end
        ev["originalStartTimeZone"], ev["originalEndTimeZone"] = start_tz, end_tz

    @staticmethod
    def _pattern(ev: dict[str, Any]) -> Pattern:
        rec = ev["recurrence"]
        pat, rng = rec.get("pattern") or {}, rec.get("range") or {}
        try:
            p = Pattern(
                type=pat["type"],
                interval=int(pat.get("interval") or 1),
                days_of_week=tuple(pat.get("daysOfWeek") or ()),
                day_of_month=int(pat.get("dayOfMonth") or 0),
                month=int(pat.get("month") or 0),
                index=pat.get("index") or "first",
                first_day_of_week=pat.get("firstDayOfWeek") or "sunday",
                range_type=rng["type"],
                start_date=dt.date.fromisoformat(rng["startDate"]),
                end_date=(
                    dt.date.fromisoformat(rng["endDate"]) if rng.get("type") == "endDate" else None
                ),
                count=int(rng.get("numberOfOccurrences") or 0),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise GraphError(400, "ErrorInvalidRequest", f"Invalid recurrence: {exc}") from exc
        if p.type not in (
            "daily",
            "weekly",
            "absoluteMonthly",
            "relativeMonthly",
            "absoluteYearly",
            "relativeYearly",
        ):
            raise GraphError(400, "ErrorInvalidRequest", f"Invalid pattern type {p.type!r}.")
        if p.type == "weekly" and not p.days_of_week:
            raise GraphError(400, "ErrorInvalidRequest", "daysOfWeek is required for weekly.")
        if p.range_type == "endDate" and p.end_date is None:
            raise GraphError(400, "ErrorInvalidRequest", "range.endDate is required.")
        if p.range_type == "numbered" and p.count <= 0:
            raise GraphError(400, "ErrorInvalidRequest", "numberOfOccurrences must be > 0.")
        return p

    def _normalise_recurrence(self, ev: dict[str, Any]) -> None:
        if not ev.get("recurrence"):
            ev["recurrence"] = None
            return
        p = self._pattern(ev)
        rec = ev["recurrence"]
        pattern = {
            "type": p.type,
            "interval": p.interval,
            "month": p.month,
            "dayOfMonth": p.day_of_month,
            "firstDayOfWeek": p.first_day_of_week,
            "index": p.index,
        }
        if p.days_of_week:
            pattern["daysOfWeek"] = list(p.days_of_week)
        rng = rec["range"]
        ev["recurrence"] = {
            "pattern": pattern,
            "range": {
                "type": p.range_type,
                "startDate": p.start_date.isoformat(),
                "endDate": p.end_date.isoformat() if p.end_date else "0001-01-01",
                "recurrenceTimeZone": rng.get("recurrenceTimeZone")
                or ev.get("originalStartTimeZone")
                or "UTC",
                "numberOfOccurrences": p.count,
            },
        }

    def _check_writable(self, body: dict[str, Any]) -> None:
        for key in body:
            if key in _READ_ONLY:
                # Graph ignores some read-only properties silently and rejects others;
                # rejecting all of them keeps clients honest.
                raise GraphError(
                    400,
                    "ErrorInvalidPropertyInput",
                    f"The property '{key}' is read-only and cannot be set.",
                )
            if key not in _WRITABLE:
                raise GraphError(
                    400,
                    "RequestBodyRead",
                    f"The property '{key}' does not exist on type 'microsoft.graph.event'. "
                    "Make sure to only use property names that are defined by the type.",
                )

    def _normalise_attendees(self, attendees: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for att in attendees or []:
            email = att.get("emailAddress") or {}
            if not email.get("address"):
                raise GraphError(
                    400, "ErrorInvalidRecipients", "At least one recipient is not valid."
                )
            kind = att.get("type", "required")
            if kind not in ("required", "optional", "resource"):
                raise GraphError(400, "ErrorInvalidRequest", f"Invalid attendee type {kind!r}.")
            out.append(
                {
                    "type": kind,
                    "status": att.get("status")
                    or {"response": "none", "time": "0001-01-01T00:00:00Z"},
                    "emailAddress": {
                        "name": email.get("name") or email["address"],
                        "address": email["address"],
                    },
                }
            )
        return out

    def _create(self, mb: GraphMailbox, body: dict[str, Any], *, invite: bool) -> dict[str, Any]:
        self._check_writable(body)
        for key in ("start", "end"):
            if key not in body:
                # Graph defaults missing times oddly; requiring them is safer for a client.
                raise GraphError(400, "ErrorInvalidRequest", f"The '{key}' property is required.")
        tx = body.get("transactionId")
        if tx and tx in mb.transactions and mb.transactions[tx] in mb.events:
            # https://learn.microsoft.com/en-us/graph/api/resources/event : transactionId lets
            # the server "avoid redundant POST operations in case of client retries". The
            # docs do not spell out the reply; the emulator answers the retry with the
            # event the first POST created (same id), so no duplicate exists.
            return mb.events[mb.transactions[tx]]
        now = dt.datetime.fromtimestamp(self.now(), UTC)
        mb.seq += 1
        event_id = self._new_id()
        ev: dict[str, Any] = {
            "id": event_id,
            "createdDateTime": _iso_z(now),
            "lastModifiedDateTime": _iso_z(now),
            "changeKey": self._change_key(),
            "categories": list(body.get("categories") or []),
            "transactionId": tx,
            "originalStartTimeZone": "UTC",
            "originalEndTimeZone": "UTC",
            "iCalUId": "040000008200E00074C5B7101A82E00800000000"
            + hashlib.sha1(event_id.encode()).hexdigest().upper()[:32],
            "reminderMinutesBeforeStart": body.get("reminderMinutesBeforeStart", 15),
            "isReminderOn": body.get("isReminderOn", True),
            "hasAttachments": False,
            "subject": body.get("subject", ""),
            "bodyPreview": "",
            "importance": body.get("importance", "normal"),
            "sensitivity": body.get("sensitivity", "normal"),
            "isAllDay": bool(body.get("isAllDay", False)),
            "isCancelled": False,
            "isOrganizer": True,
            "responseRequested": body.get("responseRequested", True),
            "seriesMasterId": None,
            "showAs": body.get("showAs", "busy"),
            "type": "singleInstance",
            "webLink": "https://outlook.office365.com/owa/?itemid="
            + urllib.parse.quote(event_id)
            + "&exvsurl=1&path=/calendar/item",
            "onlineMeetingUrl": None,
            "isOnlineMeeting": bool(body.get("isOnlineMeeting", False)),
            "onlineMeetingProvider": body.get("onlineMeetingProvider", "unknown"),
            "allowNewTimeProposals": body.get("allowNewTimeProposals", True),
            "isDraft": False,
            "hideAttendees": bool(body.get("hideAttendees", False)),
            "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "body": {"contentType": "html", "content": ""},
            "start": body["start"],
            "end": body["end"],
            "location": {
                "displayName": "",
                "locationType": "default",
                "uniqueIdType": "unknown",
                "address": {},
                "coordinates": {},
            },
            "locations": [],
            "recurrence": body.get("recurrence"),
            "attendees": [],
            "organizer": body.get("organizer")
            or {"emailAddress": {"name": mb.display_name, "address": mb.address}},
            "onlineMeeting": None,
            "_seq": mb.seq,
            "_exceptions": {},
            "_cancelled": set(),
            "_extensions": [],
            "_svep": [],
        }
        org = ev["organizer"]["emailAddress"].get("address", "").lower()
        ev["isOrganizer"] = org == mb.address.lower()
        if not ev["isOrganizer"]:
            ev["responseStatus"] = {"response": "notResponded", "time": "0001-01-01T00:00:00Z"}
        self._apply_fields(ev, body)
        self._validate_times(ev)
        self._normalise_recurrence(ev)
        if ev["recurrence"]:
            ev["type"] = "seriesMaster"
        for ext in body.get("extensions") or []:
            self._add_extension(ev, ext)
        for prop in body.get("singleValueExtendedProperties") or []:
            if "id" not in prop or "value" not in prop:
                raise GraphError(
                    400,
                    "ErrorInvalidExtendedProperty",
                    "singleValueExtendedProperty needs id and value.",
                )
            ev["_svep"].append({"id": prop["id"], "value": str(prop["value"])})
        mb.events[event_id] = ev
        if tx:
            mb.transactions[tx] = event_id
        if invite and ev["isOrganizer"]:
            for att in ev["attendees"]:
                self._invite(mb, ev, att["emailAddress"]["address"], "created")
        return ev

    @staticmethod
    def _add_extension(ev: dict[str, Any], ext: dict[str, Any]) -> None:
        # https://learn.microsoft.com/en-us/graph/api/opentypeextension-post-opentypeextension
        name = ext.get("extensionName")
        kind = ext.get("@odata.type", "").lstrip("#")
        if kind != "microsoft.graph.openTypeExtension" or not name:
            raise GraphError(
                400,
                "ErrorInvalidRequest",
                "Extensions need @odata.type microsoft.graph.openTypeExtension "
                "and an extensionName.",
            )
        data = {k: v for k, v in ext.items() if k not in ("@odata.type", "extensionName", "id")}
        ev["_extensions"] = [e for e in ev["_extensions"] if e["extensionName"] != name]
        ev["_extensions"].append({"extensionName": name, "data": data})

    def _apply_fields(self, ev: dict[str, Any], body: dict[str, Any]) -> None:
        for key, value in body.items():
            if key in (
                "extensions",
                "singleValueExtendedProperties",
                "multiValueExtendedProperties",
                "transactionId",
            ):
                continue
            if key == "body":
                if not isinstance(value, dict) or value.get("contentType") not in ("text", "html"):
                    raise GraphError(
                        400, "ErrorInvalidRequest", "body.contentType must be 'text' or 'html'."
                    )
                ev["body"] = {
                    "contentType": value["contentType"],
                    "content": value.get("content", ""),
                }
                text = re.sub(r"<[^>]+>", "", ev["body"]["content"])
                ev["bodyPreview"] = " ".join(text.split())[:255]
            elif key == "location":
                ev["location"] = {
                    "displayName": (value or {}).get("displayName", ""),
                    "locationType": (value or {}).get("locationType", "default"),
                    "uniqueIdType": "unknown",
                    "address": {},
                    "coordinates": {},
                }
                if ev["location"]["displayName"]:
                    ev["location"]["uniqueId"] = ev["location"]["displayName"]
                    ev["location"]["uniqueIdType"] = "private"
                ev["locations"] = [dict(ev["location"])] if ev["location"]["displayName"] else []
            elif key == "attendees":
                ev["attendees"] = self._normalise_attendees(value)
            elif key == "sensitivity" and value not in (
                "normal",
                "personal",
                "private",
                "confidential",
            ):
                raise GraphError(400, "ErrorInvalidRequest", f"Invalid sensitivity {value!r}.")
            elif key == "showAs" and value not in (
                "free",
                "tentative",
                "busy",
                "oof",
                "workingElsewhere",
                "unknown",
            ):
                raise GraphError(400, "ErrorInvalidRequest", f"Invalid showAs {value!r}.")
            elif key == "categories":
                if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                    raise GraphError(400, "ErrorInvalidRequest", "categories must be strings.")
                ev["categories"] = list(value)
            else:
                ev[key] = value

    def _invite(self, mb: GraphMailbox, ev: dict[str, Any], who: str, reason: str) -> None:
        # Graph sends meeting requests/updates/cancellations itself whenever an organizer
        # writes attendees; there is no switch to suppress them (unlike Google's sendUpdates).
        self.invitations.add(
            Invitation(
                mailbox=mb.address,
                recipient=who,
                event_id=ev["id"],
                reason=reason,
                subject=ev.get("subject", ""),
                at=self.now(),
            )
        )

    def _touch(self, mb: GraphMailbox, target: dict[str, Any]) -> None:
        mb.seq += 1
        target["_seq"] = mb.seq
        target["changeKey"] = self._change_key()
        target["lastModifiedDateTime"] = _iso_z(dt.datetime.fromtimestamp(self.now(), UTC))

    def _occ_id(self, master_id: str, original_start: dt.datetime) -> str:
        return master_id + "_" + original_start.strftime("%Y%m%dT%H%M%SZ")

    def _resolve(self, mb: GraphMailbox, event_id: str) -> tuple[dict[str, Any], str | None]:
        """Return (master-or-single event, occurrence key or None)."""
        if event_id in mb.events:
            return mb.events[event_id], None
        master_id, _, key = event_id.rpartition("_")
        master = mb.events.get(master_id)
        if master is not None and master["type"] == "seriesMaster":
            start = (
                dt.datetime.strptime(key, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                if re.match(r"^\d{8}T\d{6}Z$", key)
                else None
            )
            if (
                start is not None
                and key not in master["_cancelled"]
                and any(
                    s == start
                    for s, _ in self._master_occurrences(
                        master, start - dt.timedelta(seconds=1), start + dt.timedelta(seconds=1)
                    )
                )
            ):
                return master, key
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )

    def _master_occurrences(
        self, master: dict[str, Any], start: dt.datetime, end: dt.datetime
    ) -> list[tuple[dt.datetime, dt.datetime]]:
        duration = master["_end"] - master["_start"]
        local = master["_local_start"]
        # The window is widened by the duration so long occurrences that began earlier count.
        return list(
            expand(
                self._pattern(master),
                local,
                duration,
                local.tzinfo,
                start - duration,
                end + duration,
            )
        )

    def _instances(
        self,
        mb: GraphMailbox,
        start: dt.datetime,
        end: dt.datetime,
        master: dict[str, Any] | None = None,
    ) -> list[tuple[str, int, dict[str, Any]]]:
        """(id, version, rendering input) of single instances, occurrences and exceptions
        overlapping [start, end); series masters themselves are never instances."""
        out: list[tuple[str, int, dict[str, Any]]] = []
        events = [master] if master is not None else list(mb.events.values())
        for ev in events:
            if ev["type"] == "singleInstance":
                overlaps = ev["_end"] > start and ev["_start"] < end
                if overlaps or ev["_start"] == ev["_end"] == start:
                    out.append((ev["id"], ev["_seq"], ev))
                continue
            for s, e in self._master_occurrences(ev, start, end):
                key = s.strftime("%Y%m%dT%H%M%SZ")
                if key in ev["_cancelled"]:
                    continue
                exc = ev["_exceptions"].get(key)
                inst = self._make_instance(ev, key, s, e, exc)
                if inst["_end"] > start and inst["_start"] < end:
                    out.append((inst["id"], max(ev["_seq"], exc["_seq"] if exc else 0), inst))
        out.sort(key=lambda item: (item[2]["_start"], item[0]))
        return out

    def _make_instance(
        self,
        master: dict[str, Any],
        key: str,
        s: dt.datetime,
        e: dt.datetime,
        exc: dict[str, Any] | None,
    ) -> dict[str, Any]:
        inst = {k: v for k, v in master.items() if k not in ("_exceptions", "_cancelled")}
        inst.update(
            {
                "id": self._occ_id(master["id"], s),
                "type": "occurrence",
                "seriesMasterId": master["id"],
                "recurrence": None,
                "_start": s,
                "_end": e,
                "originalStart": _iso_z(s),
                "iCalUId": master["iCalUId"][:-8]
                + hashlib.sha1(key.encode()).hexdigest()[:8].upper(),
            }
        )
        tz = master["_local_start"].tzinfo
        inst["_local_start"], inst["_local_end"] = s.astimezone(tz), e.astimezone(tz)
        if exc:
            inst.update({k: v for k, v in exc.items() if k != "_seq"})
            inst["type"] = "exception"
        return inst

    def _render(
        self,
        mb: GraphMailbox,
        ev: dict[str, Any],
        tz_name: str,
        expand_q: str | None = None,
        select: list[str] | None = None,
    ) -> dict[str, Any]:
        try:
            tz = tz_zone(tz_name)
        except BadTimeZone:
            tz, tz_name = UTC, "UTC"
        out: dict[str, Any] = {"@odata.etag": f'W/"{ev["changeKey"]}"'}
        for key, value in ev.items():
            if key.startswith("_"):
                continue
            # Shallow on purpose: renderings are serialised at once (Python callers get a
            # deep copy from events()), and copying 10k-event pages dominated delta time.
            out[key] = value
        if out.get("transactionId") is None:
            # "This property is only returned in a response payload if an app has set it."
            out.pop("transactionId", None)
        if ev["type"] in ("occurrence", "exception"):
            out["originalStart"] = _iso_z(
                ev["_start"]
                if ev["type"] == "occurrence"
                else dt.datetime.strptime(ev["id"].rpartition("_")[2], "%Y%m%dT%H%M%SZ").replace(
                    tzinfo=UTC
                )
            )
        else:
            out.pop("originalStart", None)
        if ev["isAllDay"]:
            # All-day events are floating midnights; Outlook reports the stored dates with
            # the requested zone's label rather than shifting them off midnight.
            out["start"] = {
                "dateTime": _graph_dt(ev["_local_start"].replace(tzinfo=None)),
                "timeZone": tz_name,
            }
            out["end"] = {
                "dateTime": _graph_dt(ev["_local_end"].replace(tzinfo=None)),
                "timeZone": tz_name,
            }
        else:
            out["start"] = {"dateTime": _graph_dt(ev["_start"].astimezone(tz)), "timeZone": tz_name}
            out["end"] = {"dateTime": _graph_dt(ev["_end"].astimezone(tz)), "timeZone": tz_name}
        if expand_q:
            self._expand(ev, out, expand_q)
        if select:
            keep = set(select) | {"id", "@odata.etag"}
            out = {k: v for k, v in out.items() if k in keep}
        return out

    def _expand(self, ev: dict[str, Any], out: dict[str, Any], expand_q: str) -> None:
        # https://learn.microsoft.com/en-us/graph/api/opentypeextension-get
        # https://learn.microsoft.com/en-us/graph/api/singlevaluelegacyextendedproperty-get
        for item in _split_top(expand_q):
            name, _, rest = item.partition("(")
            flt = re.search(r"\$filter=id eq '([^']*)'", rest)
            if name == "extensions":
                chosen = [
                    e
                    for e in ev.get("_extensions", [])
                    if flt is None
                    or flt.group(1)
                    in (
                        e["extensionName"],
                        "Microsoft.OutlookServices.OpenTypeExtension." + e["extensionName"],
                    )
                ]
                out["extensions@odata.context"] = f"{GRAPH_CONTEXT}#users/events/extensions"
                out["extensions"] = [
                    {
                        "@odata.type": "#microsoft.graph.openTypeExtension",
                        "id": "Microsoft.OutlookServices.OpenTypeExtension." + e["extensionName"],
                        "extensionName": e["extensionName"],
                        **e["data"],
                    }
                    for e in chosen
                ]
            elif name in ("singleValueExtendedProperties", "multiValueExtendedProperties"):
                if flt is None:
                    raise GraphError(
                        400, "ErrorInvalidRequest", f"$expand={name} requires a $filter on id."
                    )
                wanted = flt.group(1).lower()
                props = ev.get("_svep", []) if name.startswith("single") else []
                out[name] = [dict(p) for p in props if p["id"].lower() == wanted]
            else:
                raise GraphError(
                    400,
                    "BadRequest",
                    f"Parsing OData Select and Expand failed: Could not find a "
                    f"property named '{name}' on type 'microsoft.graph.event'.",
                )

    # -- mutations ---------------------------------------------------------------------

    def _check_if_match(self, target: dict[str, Any], if_match: str | None) -> None:
        if (
            if_match
            and if_match != "*"
            and if_match.strip()
            not in (f'W/"{target["changeKey"]}"', f'"{target["changeKey"]}"', target["changeKey"])
        ):
            # Exchange's answer to a stale change key.
            raise GraphError(
                412,
                "ErrorIrresolvableConflict",
                "The send or update operation could not be performed because the "
                "change key passed in the request does not match the current "
                "change key for the item.",
            )

    def _patch(
        self,
        mb: GraphMailbox,
        event_id: str,
        body: dict[str, Any],
        if_match: str | None,
        invite: bool = False,
    ) -> dict[str, Any]:
        ev, occ = self._resolve(mb, event_id)
        self._check_writable(body)
        if "transactionId" in body:
            raise GraphError(
                400,
                "ErrorInvalidPropertyInput",
                "transactionId cannot be changed after the event is created.",
            )
        for key in ("extensions", "singleValueExtendedProperties"):
            if key in body and occ is not None:
                raise GraphError(
                    400, "ErrorInvalidRequest", f"{key} cannot be set on an occurrence."
                )
        if occ is None:
            self._check_if_match(ev, if_match)
            old_att = {a["emailAddress"]["address"].lower() for a in ev["attendees"]}
            old_view = (ev["_start"], ev["_end"], ev["subject"], ev["location"]["displayName"])
            if "recurrence" in body and ev["type"] == "singleInstance" and body["recurrence"]:
                ev["type"] = "seriesMaster"
            trial = copy.deepcopy(
                {k: v for k, v in ev.items() if k not in ("_exceptions", "_cancelled")}
            )
            self._apply_fields(trial, body)
            if "start" in body or "end" in body or "isAllDay" in body:
                self._validate_times(trial)
            if "recurrence" in body:
                self._normalise_recurrence(trial)
                if not trial["recurrence"] and ev["type"] == "seriesMaster":
                    trial["type"] = "singleInstance"
            for ext in body.get("extensions") or []:
                self._add_extension(trial, ext)
            for prop in body.get("singleValueExtendedProperties") or []:
                trial["_svep"] = [p for p in trial["_svep"] if p["id"] != prop["id"]]
                trial["_svep"].append({"id": prop["id"], "value": str(prop["value"])})
            series_changed = ev["type"] == "seriesMaster" and (
                "recurrence" in body or "start" in body or "end" in body
            )
            ev.update(trial)
            if series_changed:
                # Outlook drops exceptions when the series pattern or times change.
                ev["_exceptions"], ev["_cancelled"] = {}, set()
            self._touch(mb, ev)
            target = ev
        else:
            if "recurrence" in body:
                raise GraphError(
                    400, "ErrorInvalidRequest", "recurrence cannot be set on an occurrence."
                )
            exc = ev["_exceptions"].get(occ)
            current = self._make_instance(ev, occ, *self._occ_bounds(ev, occ), exc)
            self._check_if_match(current, if_match)
            old_att = {a["emailAddress"]["address"].lower() for a in current["attendees"]}
            old_view = (
                current["_start"],
                current["_end"],
                current["subject"],
                current["location"]["displayName"],
            )
            trial = copy.deepcopy(current)
            self._apply_fields(trial, body)
            if "start" in body or "end" in body:
                self._validate_times(trial)
            override = {
                k: trial[k] for k in [*list(body), "bodyPreview", "locations"] if k in trial
            }
            if "start" in body or "end" in body:
                override.update(
                    {k: trial[k] for k in ("_start", "_end", "_local_start", "_local_end")}
                )
            new_exc = {**(exc or {}), **override}
            self._touch(mb, new_exc)
            ev["_exceptions"][occ] = new_exc
            target = self._make_instance(ev, occ, *self._occ_bounds(ev, occ), new_exc)
        if invite and ev["isOrganizer"]:
            new_att = {
                a["emailAddress"]["address"].lower(): a["emailAddress"]["address"]
                for a in target["attendees"]
            }
            new_view = (
                target["_start"],
                target["_end"],
                target["subject"],
                target["location"]["displayName"],
            )
            for low, addr in new_att.items():
                if low not in old_att:
                    self._invite(mb, target, addr, "created")
                elif new_view != old_view:
                    self._invite(mb, target, addr, "updated")
            for low in old_att - set(new_att):
                self._invite(mb, target, low, "cancelled")
        return target

    def _occ_bounds(self, master: dict[str, Any], key: str) -> tuple[dt.datetime, dt.datetime]:
        s = dt.datetime.strptime(key, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return s, s + (master["_end"] - master["_start"])

    def _delete(
        self, mb: GraphMailbox, event_id: str, invite: bool = False, if_match: str | None = None
    ) -> None:
        ev, occ = self._resolve(mb, event_id)
        if occ is None:
            self._check_if_match(ev, if_match)
            del mb.events[event_id]
            mb.seq += 1
            target = ev
        else:
            exc = ev["_exceptions"].pop(occ, None)
            target = self._make_instance(ev, occ, *self._occ_bounds(ev, occ), exc)
            self._check_if_match(target, if_match)
            ev["_cancelled"].add(occ)
            self._touch(mb, ev)
        if invite and ev["isOrganizer"]:
            # "deleting the event on the organizer's calendar sends a cancellation message
            # to the meeting attendees" (https://learn.microsoft.com/en-us/graph/api/event-delete)
            for att in target["attendees"]:
                self._invite(mb, target, att["emailAddress"]["address"], "cancelled")

    # -- notifications -------------------------------------------------------------------

    def _notify(self, mb: GraphMailbox, event_id: str, change: str) -> None:
        now = dt.datetime.fromtimestamp(self.now(), UTC)
        for sub in list(self._subs.values()):
            if sub.mailbox != mb.address.lower() or change not in sub.change_types:
                continue
            if sub.expiration <= now:
                continue
            resource = f"Users/{mb.user_id}/Events/{event_id}"
            # https://learn.microsoft.com/en-us/graph/api/resources/changenotification
            payload = {
                "value": [
                    {
                        "subscriptionId": sub.id,
                        "subscriptionExpirationDateTime": rfc3339(sub.expiration),
                        "changeType": change,
                        "resource": resource,
                        "resourceData": {
                            "@odata.type": "#Microsoft.Graph.Event",
                            "@odata.id": resource,
                            "id": event_id,
                        },
                        "clientState": sub.client_state,
                        "tenantId": self.tenant_id,
                    }
                ]
            }
            self._notify_q.put((sub.notification_url, payload))

    def _post_notification(self, url: str, payload: dict[str, Any]) -> int:
        try:
            resp = requests.post(url, json=payload, timeout=self.notification_timeout)
            status = resp.status_code
        except requests.RequestException as exc:
            status = 0
            payload = {**payload, "_error": str(exc)}
        with self._lock:
            self.notification_log.append({"url": url, "payload": payload, "status": status})
        return status

    def _deliver_loop(self) -> None:
        while True:
            item = self._notify_q.get()
            if item is None:
                return
            url, payload = item
            if url == "__flush__":
                payload["event"].set()
                continue
            self._post_notification(url, payload)

    def _validate_endpoint(self, url: str) -> bool:
        # https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks
        # ("Notification endpoint validation"): POST url?validationToken=..., the endpoint
        # must answer 200 with the token as text/plain within 10 seconds.
        token = (
            f"Validation: Testing client application reachability for subscription "
            f"Request-Id: {uuid.uuid4()}"
        )
        sep = "&" if "?" in url else "?"
        try:
            resp = requests.post(
                f"{url}{sep}validationToken={urllib.parse.quote(token)}",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                data=b"",
                timeout=self.validation_timeout,
            )
        except requests.RequestException:
            return False
        ctype = resp.headers.get("Content-Type", "")
        return resp.status_code == 200 and ctype.startswith("text/plain") and resp.text == token

    # ------------------------------------------------------------------------------
    # routes
    # ------------------------------------------------------------------------------

    def register_routes(self, app: Flask) -> None:
        self._register_identity(app)

        def route(rule: str, methods: list[str]) -> Callable[[Callable[..., Any]], Any]:
            def deco(fn: Callable[..., Any]) -> Any:
                def view(**kwargs: Any) -> Response:
                    request.environ["calsync.graph.user"] = kwargs.pop("user", None)
                    try:
                        resp = fn(**kwargs)
                    except GraphError as exc:
                        resp = self.error(exc.status, exc.code, exc.message, headers=exc.headers)
                    resp.headers.setdefault("request-id", str(uuid.uuid4()))
                    if "client-request-id" in request.headers:
                        resp.headers["client-request-id"] = request.headers["client-request-id"]
                    return resp

                endpoint = f"{fn.__name__}:{rule}"
                view.__name__ = endpoint
                app.add_url_rule(rule, endpoint=endpoint, view_func=view, methods=methods)
                if rule.startswith("/v1.0/me/") or rule == "/v1.0/me":
                    # /users/{id | userPrincipalName}/... is the same resource; it is the
                    # only form app-only (client credentials) tokens may use.
                    alias = "/v1.0/users/<user>" + rule[len("/v1.0/me") :]
                    app.add_url_rule(
                        alias, endpoint=f"{endpoint}:users", view_func=view, methods=methods
                    )
                return fn

            return deco

        def prefer_tz() -> str:
            # https://learn.microsoft.com/en-us/graph/api/event-get ("Prefer:
            # outlook.timezone"); UTC when absent.
            match = re.search(
                r'outlook\.timezone\s*=\s*"([^"]+)"', request.headers.get("Prefer", "")
            )
            if not match:
                return "UTC"
            try:
                tz_zone(match.group(1))
            except BadTimeZone as exc:
                raise GraphError(
                    400,
                    "TimeZoneNotSupportedException",
                    f"The following TimeZone value is not supported: '{match.group(1)}'.",
                ) from exc
            return match.group(1)

        def with_prefs(resp: Response, tz: str) -> Response:
            if "outlook.timezone" in request.headers.get("Prefer", ""):
                resp.headers["Preference-Applied"] = f'outlook.timezone="{tz}"'
            return resp

        def json_body() -> dict[str, Any]:
            if not request.is_json:
                raise GraphError(
                    415,
                    "UnsupportedMediaType",
                    "A supported MIME type could not be found that matches the "
                    "content type of the response.",
                )
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
            return body

        def select_param() -> list[str] | None:
            raw = request.args.get("$select")
            return [s.strip() for s in raw.split(",") if s.strip()] if raw else None

        def window() -> tuple[dt.datetime, dt.datetime]:
            start, end = request.args.get("startDateTime"), request.args.get("endDateTime")
            if not start or not end:
                raise GraphError(
                    400,
                    "ErrorInvalidParameter",
                    "This request requires a time window specified by the query "
                    "string parameters StartDateTime and EndDateTime.",
                )
            try:
                return parse_instant(start), parse_instant(end)
            except ValueError as exc:
                raise GraphError(
                    400, "ErrorInvalidParameter", f"Invalid startDateTime/endDateTime: {exc}"
                ) from exc

        def paged(
            items: list[Any], render: Callable[[Any], dict[str, Any]], context: str
        ) -> Response:
            try:
                top = int(request.args.get("$top", DEFAULT_LIST_PAGE))
                skip = int(request.args.get("$skip", 0))
            except ValueError as exc:
                raise GraphError(400, "BadRequest", "Invalid $top or $skip.") from exc
            if top < 1 or top > MAX_TOP or skip < 0:
                raise GraphError(400, "BadRequest", f"$top must be between 1 and {MAX_TOP}.")
            for opt in ("$orderby", "$search", "$count"):
                if opt in request.args:
                    # Not emulated: failing loudly beats silently returning everything.
                    raise GraphError(
                        400, "BadRequest", f"The sandbox does not emulate {opt} on this endpoint."
                    )
            if "$filter" in request.args:
                keep = _event_filter(request.args["$filter"])
                items = [i for i in items if keep(i)]
            page = items[skip : skip + top]
            body: dict[str, Any] = {"@odata.context": context, "value": [render(i) for i in page]}
            if skip + top < len(items):
                args = request.args.to_dict()
                args["$skip"] = str(skip + top)
                args["$top"] = str(top)
                body["@odata.nextLink"] = (
                    f"{request.host_url.rstrip('/')}{request.path}?"
                    + urllib.parse.urlencode(args, safe="$,'")
                )
            return jsonify(body)

        # -- /me ------------------------------------------------------------------------

        @route("/v1.0/me", ["GET"])
        def get_me() -> Response:
            # https://learn.microsoft.com/en-us/graph/api/user-get
            mb = self._auth()
            return jsonify(
                {
                    "@odata.context": f"{GRAPH_CONTEXT}#users/$entity",
                    "id": mb.user_id,
                    "displayName": mb.display_name,
                    "mail": mb.address,
                    "userPrincipalName": mb.address,
                    "businessPhones": [],
                    "givenName": None,
                    "surname": None,
                    "jobTitle": None,
                    "mobilePhone": None,
                    "officeLocation": None,
                    "preferredLanguage": "en-US",
                }
            )

        def calendar_json(mb: GraphMailbox) -> dict[str, Any]:
            # https://learn.microsoft.com/en-us/graph/api/resources/calendar
            return {
                "id": mb.calendar_id,
                "name": "Calendar",
                "color": "auto",
                "hexColor": "",
                "isDefaultCalendar": True,
                "changeKey": "fJKVxg4u2UO0VXMrqVNQVwAAAAAADg==",
                "canShare": True,
                "canViewPrivateItems": True,
                "canEdit": True,
                "allowedOnlineMeetingProviders": ["teamsForBusiness"],
                "defaultOnlineMeetingProvider": "teamsForBusiness",
                "isTallyingResponses": True,
                "isRemovable": False,
                "owner": {"name": mb.display_name, "address": mb.address},
            }

        @route("/v1.0/me/calendars", ["GET"])
        def list_calendars() -> Response:
            # https://learn.microsoft.com/en-us/graph/api/user-list-calendars
            mb = self._auth()
            return jsonify(
                {
                    "@odata.context": f"{GRAPH_CONTEXT}#users('{mb.user_id}')/calendars",
                    "value": [calendar_json(mb)],
                }
            )

        @route("/v1.0/me/calendar", ["GET"])
        def get_calendar() -> Response:
            # https://learn.microsoft.com/en-us/graph/api/calendar-get
            mb = self._auth()
            return jsonify(
                {
                    "@odata.context": f"{GRAPH_CONTEXT}#users('{mb.user_id}')/calendar/$entity",
                    **calendar_json(mb),
                }
            )

        # -- events ---------------------------------------------------------------------

        @route("/v1.0/me/events", ["GET"])
        def list_events() -> Response:
            # https://learn.microsoft.com/en-us/graph/api/user-list-events
            # Series masters and single instances only (occurrences come from calendarView
            # or /instances), default page size 10, @odata.nextLink paging.
            mb = self._auth()
            tz = prefer_tz()
            sel = select_param()
            with self._lock:
                items = sorted(mb.events.values(), key=lambda e: (e["createdDateTime"], e["id"]))
                resp = paged(
                    items,
                    lambda ev: self._render(mb, ev, tz, None, sel),
                    f"{GRAPH_CONTEXT}#users('{mb.user_id}')/events",
                )
            return with_prefs(resp, tz)

        @route("/v1.0/me/events", ["POST"])
        @route("/v1.0/me/calendar/events", ["POST"])
        def create_event() -> Response:
            # https://learn.microsoft.com/en-us/graph/api/user-post-events
            mb = self._auth()
            tz = prefer_tz()
            body = json_body()
            with self._lock:
                before = len(mb.events)
                ev = self._create(mb, body, invite=True)
                created = len(mb.events) > before
                out = self._render(mb, ev, tz)
            if created:
                self._notify(mb, ev["id"], "created")
            out["@odata.context"] = f"{GRAPH_CONTEXT}#users('{mb.user_id}')/events/$entity"
            resp = jsonify(out)
            resp.status_code = 201
            resp.headers["Location"] = (
                f"{request.host_url.rstrip('/')}/v1.0/Users('{mb.user_id}')/Events('{ev['id']}')"
            )
            resp.headers["ETag"] = out["@odata.etag"]
            return with_prefs(resp, tz)

        @route("/v1.0/me/events/<event_id>", ["GET"])
        def get_event(event_id: str) -> Response:
            # https://learn.microsoft.com/en-us/graph/api/event-get
            mb = self._auth()
            tz = prefer_tz()
            with self._lock:
                ev, occ = self._resolve(mb, event_id)
                if occ is not None:
                    ev = self._make_instance(
                        ev, occ, *self._occ_bounds(ev, occ), ev["_exceptions"].get(occ)
                    )
                out = self._render(mb, ev, tz, request.args.get("$expand"), select_param())
            out = {"@odata.context": f"{GRAPH_CONTEXT}#users('{mb.user_id}')/events/$entity", **out}
            resp = jsonify(out)
            resp.headers["ETag"] = out["@odata.etag"]
            return with_prefs(resp, tz)

        @route("/v1.0/me/events/<event_id>", ["PATCH"])
        def patch_event(event_id: str) -> Response:
            # https://learn.microsoft.com/en-us/graph/api/event-update
            mb = self._auth()
            tz = prefer_tz()
            body = json_body()
            with self._lock:
                target = self._patch(
                    mb, event_id, body, request.headers.get("If-Match"), invite=True
                )
                out = self._render(mb, target, tz)
            self._notify(mb, event_id, "updated")
            resp = jsonify(
                {"@odata.context": f"{GRAPH_CONTEXT}#users('{mb.user_id}')/events/$entity", **out}
            )
            resp.headers["ETag"] = out["@odata.etag"]
            return with_prefs(resp, tz)

        @route("/v1.0/me/events/<event_id>", ["DELETE"])
        def delete_event(event_id: str) -> Response:
            # https://learn.microsoft.com/en-us/graph/api/event-delete -> 204 No Content
            mb = self._auth()
            with self._lock:
                self._delete(mb, event_id, invite=True, if_match=request.headers.get("If-Match"))
            self._notify(mb, event_id, "deleted")
            return Response(status=204)

        @route("/v1.0/me/events/<event_id>/instances", ["GET"])
        def list_instances(event_id: str) -> Response:
            # https://learn.microsoft.com/en-us/graph/api/event-list-instances
            mb = self._auth()
            tz = prefer_tz()
            start, end = window()
            sel = select_param()
            with self._lock:
                ev, occ = self._resolve(mb, event_id)
                if occ is not None or ev["type"] != "seriesMaster":
                    # Only a series master has instances.
                    items = []
                else:
                    items = [inst for _, _, inst in self._instances(mb, start, end, ev)]
                resp = paged(
                    items,
                    lambda i: self._render(mb, i, tz, None, sel),
                    f"{GRAPH_CONTEXT}#users('{mb.user_id}')/events('{event_id}')/instances",
                )
            return with_prefs(resp, tz)

        @route("/v1.0/me/calendarView", ["GET"])
        @route("/v1.0/me/calendar/calendarView", ["GET"])
        def calendar_view() -> Response:
            # https://learn.microsoft.com/en-us/graph/api/user-list-calendarview
            mb = self._auth()
            tz = prefer_tz()
            start, end = window()
            sel = select_param()
            with self._lock:
                items = [inst for _, _, inst in self._instances(mb, start, end)]
                resp = paged(
                    items,
                    lambda i: self._render(mb, i, tz, None, sel),
                    f"{GRAPH_CONTEXT}#users('{mb.user_id}')/calendarView",
                )
            return with_prefs(resp, tz)

        # https://learn.microsoft.com/en-us/graph/api/event-delta
        @route("/v1.0/me/calendarView/delta", ["GET"])
        @route("/v1.0/me/calendar/calendarView/delta", ["GET"])
        def calendar_view_delta() -> Response:
            return self._delta_view(prefer_tz, with_prefs)

        # -- $batch -----------------------------------------------------------------------

        @route("/v1.0/$batch", ["POST"])
        def batch() -> Response:
            # https://learn.microsoft.com/en-us/graph/json-batching
            return self._batch(json_body())

        # -- subscriptions ----------------------------------------------------------------

        @route("/v1.0/subscriptions", ["POST"])
        def create_subscription() -> Response:
            # https://learn.microsoft.com/en-us/graph/api/subscription-post-subscriptions
            body = json_body()
            owner = re.match(r"(?i)/?users/([^/]+)/", str(body.get("resource", "")))
            mb = self._auth(user=owner.group(1) if owner else None)
            for key in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
                if not body.get(key):
                    raise GraphError(400, "InvalidRequest", f"{key} is required.")
            types = [t.strip() for t in body["changeType"].split(",")]
            if any(t not in ("created", "updated", "deleted") for t in types):
                raise GraphError(
                    400, "InvalidRequest", "changeType must be created, updated and/or deleted."
                )
            resource = body["resource"].strip("/")
            ok = re.fullmatch(r"(?i)(me|users/[^/]+)(/calendars?(/[^/]+)?)?/events", resource)
            if not ok:
                raise GraphError(
                    400,
                    "InvalidRequest",
                    f"The resource '{body['resource']}' is not supported by the "
                    "sandbox (only event collections).",
                )
            exp = self._expiration(body["expirationDateTime"])
            client_state = body.get("clientState")
            if client_state is not None and len(client_state) > 128:
                raise GraphError(400, "InvalidRequest", "clientState is limited to 128 chars.")
            for url in filter(
                None, [body["notificationUrl"], body.get("lifecycleNotificationUrl")]
            ):
                if self.require_https_notifications and not url.startswith("https://"):
                    raise GraphError(400, "InvalidRequest", "The notificationUrl must be https.")
                if not self._validate_endpoint(url):
                    raise GraphError(
                        400,
                        "InvalidRequest",
                        "Subscription validation request failed. Notification endpoint must "
                        "respond with 200 OK to validation request.",
                    )
            sub = Subscription(
                id=str(uuid.uuid4()),
                mailbox=mb.address.lower(),
                resource=body["resource"],
                change_types=types,
                notification_url=body["notificationUrl"],
                lifecycle_url=body.get("lifecycleNotificationUrl"),
                client_state=client_state,
                expiration=exp,
                application_id=request.headers.get(
                    "X-Sandbox-App-Id", "24a3a5e7-b1c4-4bc0-8ea9-3a0fcb9a1e5b"
                ),
            )
            with self._lock:
                self._subs[sub.id] = sub
            resp = jsonify(sub.as_json(mb.user_id))
            resp.status_code = 201
            return resp

        @route("/v1.0/subscriptions/<sub_id>", ["GET", "PATCH", "DELETE"])
        def subscription(sub_id: str) -> Response:
            # https://learn.microsoft.com/en-us/graph/api/subscription-update
            # https://learn.microsoft.com/en-us/graph/api/subscription-delete
            mb = self._auth(app_ok=True)
            sub = self._subs.get(sub_id)
            if sub is not None and mb is None:
                mb = self._mailboxes[sub.mailbox]  # app tokens manage any subscription
            if sub is None or sub.mailbox != mb.address.lower():
                raise GraphError(
                    404, "ResourceNotFound", f"The object was not found. Subscription '{sub_id}'"
                )
            if request.method == "DELETE":
                with self._lock:
                    self._subs.pop(sub_id, None)
                return Response(status=204)
            if request.method == "PATCH":
                body = json_body()
                extra = set(body) - {"expirationDateTime", "notificationUrl"}
                if extra:
                    raise GraphError(
                        400,
                        "InvalidRequest",
                        f"Only expirationDateTime and notificationUrl can be "
                        f"updated, not {sorted(extra)}.",
                    )
                if "expirationDateTime" in body:
                    sub.expiration = self._expiration(body["expirationDateTime"])
                if "notificationUrl" in body:
                    if not self._validate_endpoint(body["notificationUrl"]):
                        raise GraphError(
                            400, "InvalidRequest", "Subscription validation request failed."
                        )
                    sub.notification_url = body["notificationUrl"]
            return jsonify(sub.as_json(mb.user_id))

        @route("/v1.0/subscriptions", ["GET"])
        def list_subscriptions() -> Response:
            # https://learn.microsoft.com/en-us/graph/api/subscription-list
            mb = self._auth(app_ok=True)
            subs = [
                s.as_json(self._mailboxes[s.mailbox].user_id)
                for s in self._subs.values()
                if mb is None or s.mailbox == mb.address.lower()
            ]
            for s in subs:
                s.pop("@odata.context", None)
            return jsonify({"@odata.context": f"{GRAPH_CONTEXT}#subscriptions", "value": subs})

    def _expiration(self, value: str) -> dt.datetime:
        try:
            exp = parse_instant(value)
        except ValueError as exc:
            raise GraphError(400, "InvalidRequest", "expirationDateTime is invalid.") from exc
        now = dt.datetime.fromtimestamp(self.now(), UTC)
        if exp <= now:
            raise GraphError(
                400, "InvalidRequest", "Subscription expiration can only be in the future."
            )
        if exp > now + dt.timedelta(minutes=MAX_EVENT_SUBSCRIPTION_MINUTES):
            raise GraphError(
                400,
                "InvalidRequest",
                f"Subscription expiration can only be "
                f"{MAX_EVENT_SUBSCRIPTION_MINUTES} minutes in the future.",
            )
        # https://learn.microsoft.com/en-us/graph/api/resources/subscription
        # (expirationDateTime): "Any value under 45 minutes after the time of the request is
        # automatically set to 45 minutes after the request time."
        return max(exp, now + dt.timedelta(minutes=45))

    # -- delta -----------------------------------------------------------------------------

    def _delta_view(
        self, prefer_tz: Callable[[], str], with_prefs: Callable[[Response, str], Response]
    ) -> Response:
        # https://learn.microsoft.com/en-us/graph/api/event-delta
        # https://learn.microsoft.com/en-us/graph/delta-query-events
        mb = self._auth()
        tz = prefer_tz()
        args = request.args
        for opt in ("$expand", "$filter", "$orderby", "$search", "$top", "$skip"):
            if opt in args:
                raise GraphError(
                    400,
                    "ErrorInvalidUrlQuery",
                    f"The query parameter '{opt}' is not supported with change "
                    "tracking over the 'CalendarView' resource.",
                )
        match = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", request.headers.get("Prefer", ""))
        page_size = int(match.group(1)) if match else DEFAULT_DELTA_PAGE
        page_size = max(1, min(page_size, MAX_TOP))
        skip_token, delta_token = args.get("$skiptoken"), args.get("$deltatoken")
        now = self.now()
        with self._lock:
            if (skip_token or delta_token) and ("startDateTime" in args or "endDateTime" in args):
                # Only the first request of a round carries query parameters.
                raise GraphError(
                    400,
                    "ErrorInvalidUrlQuery",
                    "startDateTime/endDateTime must only be sent with the initial delta request.",
                )
            if skip_token:
                rnd = self._rounds.get(skip_token)
                if (
                    rnd is None
                    or rnd.mailbox != mb.address.lower()
                    or self._stale(rnd.created, now)
                ):
                    raise self._sync_state_gone()
                del self._rounds[skip_token]
            elif delta_token:
                state = self._delta.get(delta_token)
                if (
                    state is None
                    or state.mailbox != mb.address.lower()
                    or self._stale(state.created, now)
                ):
                    raise self._sync_state_gone()
                current = self._instances(mb, state.start, state.end)
                ids = {i for i, _, _ in current}
                pending = [
                    (i, False) for i, ver, _ in current if ver > state.seq or i not in state.ids
                ]
                pending += [(i, True) for i in sorted(state.ids - ids)]
                rnd = _DeltaRound(
                    mb.address.lower(),
                    state.start,
                    state.end,
                    pending,
                    mb.seq,
                    ids,
                    state.select,
                    now,
                )
            else:
                start, end = self._window_from(args)
                sel = args.get("$select")
                current = self._instances(mb, start, end)
                rnd = _DeltaRound(
                    mb.address.lower(),
                    start,
                    end,
                    [(i, False) for i, _, _ in current],
                    mb.seq,
                    {i for i, _, _ in current},
                    [s for s in sel.split(",") if s] if sel else None,
                    now,
                )
            page, rnd.pending = rnd.pending[:page_size], rnd.pending[page_size:]
            values = []
            for inst_id, removed in page:
                if not removed:
                    try:
                        master, occ = self._resolve(mb, inst_id)
                    except GraphError:
                        removed = True
                    else:
                        inst = (
                            master
                            if occ is None
                            else self._make_instance(
                                master,
                                occ,
                                *self._occ_bounds(master, occ),
                                master["_exceptions"].get(occ),
                            )
                        )
                        values.append(self._render(mb, inst, tz, None, rnd.select))
                        continue
                values.append(
                    {
                        "@odata.type": "#microsoft.graph.event",
                        "id": inst_id,
                        "@removed": {"reason": "deleted"},
                    }
                )
            base = f"{request.host_url.rstrip('/')}{request.path}"
            body: dict[str, Any] = {
                "@odata.context": f"{GRAPH_CONTEXT}#Collection(event)",
                "value": values,
            }
            if rnd.pending:
                token = secrets.token_urlsafe(24)
                self._rounds[token] = rnd
                body["@odata.nextLink"] = f"{base}?$skiptoken={token}"
            else:
                token = secrets.token_urlsafe(24)
                self._delta[token] = _DeltaState(
                    rnd.mailbox, rnd.start, rnd.end, rnd.base_seq, rnd.ids_at_start, rnd.select, now
                )
                body["@odata.deltaLink"] = f"{base}?$deltatoken={token}"
        resp = jsonify(body)
        resp.headers["Preference-Applied"] = f"odata.maxpagesize={page_size}"
        return with_prefs(resp, tz)

    def _stale(self, created: float, now: float) -> bool:
        return self.delta_token_ttl is not None and now - created > self.delta_token_ttl

    @staticmethod
    def _sync_state_gone() -> GraphError:
        # The sync state behind the token is gone: the client must start a new full round.
        return GraphError(
            410,
            "SyncStateNotFound",
            "The sync state generation is not found. Restart the sync from "
            "scratch with a new initial delta request.",
        )

    @staticmethod
    def _window_from(args: Any) -> tuple[dt.datetime, dt.datetime]:
        start, end = args.get("startDateTime"), args.get("endDateTime")
        if not start or not end:
            raise GraphError(
                400,
                "ErrorInvalidParameter",
                "This request requires a time window specified by the query "
                "string parameters StartDateTime and EndDateTime.",
            )
        try:
            return parse_instant(start), parse_instant(end)
        except ValueError as exc:
            raise GraphError(400, "ErrorInvalidParameter", str(exc)) from exc

    # -- $batch ----------------------------------------------------------------------------
    # https://learn.microsoft.com/en-us/graph/json-batching, point by point:
    # - the body has one required property, "requests"; "JSON batch requests are currently
    #   limited to 20 individual requests" (more: 400, as for any malformed batch);
    # - id: "Required. String. ... Not case-sensitive. Must be unique in the batch, otherwise,
    #   the batch request fails with a 400 error code";
    # - method and url required; url is "the relative resource URL" ("/users"; the page's
    #   own example also writes "users?$select=...");
    # - headers: "required when the body is specified", and then must hold Content-Type;
    #   body: "a JSON object or a base64 URL-encoded value";
    # - responses "might appear in a different order than the requests" (correlate by id),
    #   each with id, status, headers and body; the batch is 200 once parseable;
    # - dependsOn orders requests, and "any request that depends on [a failed] request
    #   fails with status code 424".
    # https://learn.microsoft.com/en-us/graph/throttling#throttling-and-batching: "Requests
    # in a batch are evaluated individually against throttling limits", a throttled one
    # answers 429 (with its own Retry-After) inside the batch.
    # https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits-for-json-batching:
    # Outlook "executes up to 4 requests in parallel at any point"; with dependsOn, in order.

    def _batch(self, body: dict[str, Any]) -> Response:
        reqs = body.get("requests")
        if not isinstance(reqs, list) or not reqs:
            raise GraphError(400, "BadRequest", "Invalid batch payload format.")
        if len(reqs) > MAX_BATCH_REQUESTS:
            # Exact wording undocumented; the status (400) and the limit (20) are.
            raise GraphError(
                400,
                "BadRequest",
                f"The number of batch requests exceeds the maximum of {MAX_BATCH_REQUESTS}.",
            )
        seen: set[str] = set()
        for sub in reqs:
            self._check_batch_item(sub, seen)
            seen.add(sub["id"].lower())
        outer_auth = request.headers.get("Authorization")
        entries: list[dict[str, Any]]
        if any(sub.get("dependsOn") for sub in reqs):
            # Every dependency names an earlier request (checked above), so the listed
            # order is an order that honours them all.
            entries = []
            statuses: dict[str, int] = {}
            for sub in reqs:
                key = sub["id"].lower()
                if any(statuses[d.lower()] >= 400 for d in sub.get("dependsOn") or []):
                    entry = self._failed_dependency(sub["id"])
                else:
                    entry = self._run_batch_item(sub, outer_auth)
                statuses[key] = entry["status"]
                entries.append(entry)
        else:
            with concurrent.futures.ThreadPoolExecutor(
                max_workers=BATCH_PARALLELISM, thread_name_prefix="graph-batch"
            ) as pool:
                entries = list(pool.map(lambda sub: self._run_batch_item(sub, outer_auth), reqs))
        with self._lock:
            self._batch_rng.shuffle(entries)
        return jsonify({"responses": entries})

    @staticmethod
    def _check_batch_item(sub: Any, seen: set[str]) -> None:
        if not isinstance(sub, dict) or not all(
            isinstance(sub.get(k), str) and sub[k] for k in ("id", "method", "url")
        ):
            raise GraphError(
                400, "BadRequest", "Each batch request needs string id, method and url."
            )
        if sub["id"].lower() in seen:
            raise GraphError(400, "BadRequest", f"Duplicate request id '{sub['id']}'.")
        deps = sub.get("dependsOn")
        if deps is not None and (
            not isinstance(deps, list) or not all(isinstance(d, str) for d in deps)
        ):
            raise GraphError(400, "BadRequest", "dependsOn must be an array of request ids.")
        for dep in deps or []:
            if dep.lower() not in seen:
                # dependsOn may only reference a request listed before it.
                raise GraphError(
                    400,
                    "BadRequest",
                    f"Request '{sub['id']}' depends on unknown request '{dep}'.",
                )
        url = sub["url"]
        if re.match(r"^[a-z][a-z0-9+.-]*://", url, re.IGNORECASE):
            raise GraphError(400, "BadRequest", "Batch request urls must be relative.")
        if url.lstrip("/").split("?", 1)[0].lower() == "$batch":
            # Undocumented either way; a batch inside a batch is refused here.
            raise GraphError(400, "BadRequest", "A batch request cannot contain a batch.")
        headers = sub.get("headers")
        if headers is not None and not isinstance(headers, dict):
            raise GraphError(400, "BadRequest", "Batch request headers must be an object.")
        if sub.get("body") is not None:
            ctype = next(
                (str(v) for k, v in (headers or {}).items() if k.lower() == "content-type"),
                None,
            )
            if ctype is None:
                raise GraphError(
                    400, "BadRequest", "Content-Type header is required when a body is present."
                )
            if isinstance(sub["body"], str) and "json" not in ctype.lower():
                try:
                    base64.b64decode(sub["body"], altchars=b"-_", validate=True)
                except ValueError as exc:
                    raise GraphError(
                        400, "BadRequest", f"Request '{sub['id']}' has a body that is not base64."
                    ) from exc

    def _run_batch_item(self, sub: dict[str, Any], outer_auth: str | None) -> dict[str, Any]:
        """One sub-request, through the whole app (auth, faults, limits, counters)."""
        headers = {str(k): str(v) for k, v in (sub.get("headers") or {}).items()}
        if outer_auth:
            headers["Authorization"] = outer_auth
        raw = sub.get("body")
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        data: bytes | None = None
        if isinstance(raw, str) and "json" not in ctype.lower():
            data = base64.b64decode(raw, altchars=b"-_")
        elif raw is not None:
            data = json.dumps(raw).encode()
        # A client per sub-request: sub-requests run on several threads at once.
        sub_resp = self.app.test_client().open(
            "/v1.0/" + sub["url"].lstrip("/"),
            method=sub["method"].upper(),
            headers=headers,
            data=data,
        )
        entry: dict[str, Any] = {
            "id": sub["id"],
            "status": sub_resp.status_code,
            "headers": {
                k: v
                for k, v in sub_resp.headers.items()
                if k.lower() not in ("content-length", "date", "server")
            },
        }
        if sub_resp.data:
            entry["body"] = (
                sub_resp.get_json()
                if sub_resp.is_json
                else base64.b64encode(sub_resp.data).decode()
            )
        return entry

    @staticmethod
    def _failed_dependency(sub_id: str) -> dict[str, Any]:
        return {
            "id": sub_id,
            "status": 424,
            "headers": {"Content-Type": "application/json"},
            "body": {
                "error": {
                    "code": "FailedDependency",
                    "message": "The request could not be completed because of a failed dependency.",
                }
            },
        }

    # -- seeding -----------------------------------------------------------------------------

    def bulk_insert(self, address: str, events: list[dict[str, Any]]) -> list[str]:
        """Insert many events straight into the store (no HTTP, no invitations)."""
        mb = self.add_mailbox(address)
        with self._lock:
            return [self._create(mb, ev, invite=False)["id"] for ev in events]


def _jcopy(value: Any) -> Any:
    """Copy JSON-shaped data (much faster than copy.deepcopy on 10k-event pages)."""
    if isinstance(value, dict):
        return {k: _jcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jcopy(v) for v in value]
    return value


_SVEP_FILTER = re.compile(
    r"^singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id eq '((?:[^']|'')*)'"
    r"(?:\s+and\s+\1/value eq '((?:[^']|'')*)')?\s*\)$",
    re.IGNORECASE,
)
_EQ_FILTER = re.compile(r"^(transactionId|iCalUId|subject|type) eq '((?:[^']|'')*)'$")


def _event_filter(expr: str) -> Callable[[dict[str, Any]], bool]:
    """The $filter forms sync clients use to find their own events; anything else is 400.

    https://learn.microsoft.com/en-us/graph/api/singlevaluelegacyextendedproperty-get
    ("Get resource instances filtered by the value of a string-typed extended property").
    """
    expr = expr.strip()
    svep = _SVEP_FILTER.match(expr)
    if svep:
        prop_id = svep.group(2).replace("''", "'").lower()
        value = svep.group(3).replace("''", "'") if svep.group(3) is not None else None
        return lambda ev: any(
            p["id"].lower() == prop_id and (value is None or p["value"] == value)
            for p in ev.get("_svep", [])
        )
    eq = _EQ_FILTER.match(expr)
    if eq:
        field, value = eq.group(1), eq.group(2).replace("''", "'")
        return lambda ev: ev.get(field) == value
    raise GraphError(
        400, "BadRequest", f"The sandbox does not emulate the $filter expression {expr!r}."
    )


def _split_top(expr: str) -> list[str]:
    """Split an $expand list on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in expr:
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts
