"""Google Calendar API v3 emulator (plus the Google OAuth 2.0 endpoints).

Every endpoint cites the reference page it follows
(https://developers.google.com/calendar/api/v3/reference/...). Where the reference is
silent the choice is stated in a comment, erring on the strict side.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import hashlib
import json
import queue
import random
import re
import secrets
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

import requests
from flask import Flask, Response, jsonify, redirect, request

from .recurrence import UTC, BadTimeZone, Pattern, expand, pattern_from_rrule, rfc3339
from .recurrence import zone as tz_zone
from .server import EmulatorServer, Invitation

__all__ = ["GoogleEmulator", "GoogleError"]

API = "/calendar/v3"
# https://developers.google.com/calendar/api/v3/reference/events/list : maxResults
# "By default the value is 250 events. The page size can never be larger than 2500".
DEFAULT_MAX_RESULTS = 250
MAX_RESULTS = 2500
# Expanding an open-ended series needs a horizon; Google's own is undocumented.
EXPANSION_HORIZON = dt.timedelta(days=730)
_ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")
_B32HEX = "0123456789abcdefghijklmnopqrstuv"
_EVENT_FIELDS = {
    "id",
    "summary",
    "description",
    "location",
    "start",
    "end",
    "recurrence",
    "attendees",
    "extendedProperties",
    "status",
    "transparency",
    "visibility",
    "colorId",
    "reminders",
    "guestsCanInviteOthers",
    "guestsCanModify",
    "guestsCanSeeOtherGuests",
    "anyoneCanAddSelf",
    "iCalUID",
    "sequence",
    "source",
    "attendeesOmitted",
    "endTimeUnspecified",
    "eventType",
    "organizer",
    "conferenceData",
    "attachments",
    "locked",
    "privateCopy",
    # Read-only fields clients commonly echo back from a GET; Google ignores them on write.
    "kind",
    "etag",
    "htmlLink",
    "created",
    "updated",
    "creator",
    "recurringEventId",
    "originalStartTime",
    "hangoutLink",
}
_IGNORED_ON_WRITE = {"kind", "etag", "htmlLink", "created", "updated", "creator", "hangoutLink"}


class GoogleError(Exception):
    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        domain: str = "global",
        location: str | None = None,
        location_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.domain, self.location, self.location_type = domain, location, location_type


@dataclasses.dataclass
class _Calendar:
    id: str
    summary: str
    time_zone: str
    owner: str
    events: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    seq: int = 0


@dataclasses.dataclass
class _Channel:
    id: str
    resource_id: str
    calendar: str
    address: str
    token: str | None
    expiration_ms: int
    messages: int = 0


def _err_item(e: GoogleError) -> dict[str, Any]:
    item = {"domain": e.domain, "reason": e.reason, "message": e.message}
    if e.location:
        item["locationType"] = e.location_type or "parameter"
        item["location"] = e.location
    return item


def _parse_rfc3339(value: str, what: str) -> dt.datetime:
    """Google requires an explicit offset on timeMin/timeMax/updatedMin."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise GoogleError(400, "badRequest", f"Bad Request: invalid {what}", location=what) from exc
    if parsed.tzinfo is None:
        raise GoogleError(400, "badRequest", "Bad Request", location=what)
    return parsed.astimezone(UTC)


class GoogleEmulator(EmulatorServer):
    """Google Calendar v3 + OAuth 2.0 emulator.

    Args:
        seed: RNG seed for faults and generated ids.
        token_lifetime: access token lifetime in seconds (Google issues 3599).
        throttle_status: 403 (usageLimits/rateLimitExceeded, Google's classic answer) or 429;
            Google documents both.
        require_https_webhooks: Google only accepts https channel addresses; off by default
            because local receivers are http.
    """

    name = "google"
    api_prefixes = (API,)

    def __init__(
        self,
        *,
        seed: int = 0,
        token_lifetime: int = 3599,
        throttle_status: int = 403,
        require_https_webhooks: bool = False,
        port: int = 0,
        tls: bool = False,
    ) -> None:
        self.token_lifetime = token_lifetime
        self.throttle_status = throttle_status
        self.require_https_webhooks = require_https_webhooks
        self.sync_token_ttl: float | None = None
        self._lock = threading.RLock()
        self._calendars: dict[str, _Calendar] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._refresh: dict[str, tuple[str, str]] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self._sync: dict[str, tuple[str, int, float]] = {}
        self._pages: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, _Channel] = {}
        self._id_rng = random.Random(seed + 2)
        self._push_q: queue.Queue[Any] = queue.Queue()
        self.notification_log: list[dict[str, Any]] = []
        super().__init__(seed=seed, port=port, tls=tls)
        threading.Thread(target=self._push_loop, name="google-push", daemon=True).start()

    # ------------------------------------------------------------------------------------
    # Python-side API
    # ------------------------------------------------------------------------------------

    def add_account(self, address: str, time_zone: str = "UTC") -> str:
        """Create the account and its primary calendar (id == address)."""
        key = address.lower()
        with self._lock:
            if key not in self._calendars:
                self._calendars[key] = _Calendar(
                    id=address, summary=address, time_zone=time_zone, owner=address
                )
        return address

    def issue_token(self, address: str, lifetime: int | None = None) -> str:
        """Mint an access token for ``address`` directly (no OAuth dance)."""
        self.add_account(address)
        token = "ya29.a0" + secrets.token_urlsafe(60)
        with self._lock:
            self._tokens[token] = (address.lower(), self.now() + (lifetime or self.token_lifetime))
        return token

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens = {t: (u, 0.0) for t, (u, _) in self._tokens.items()}

    def expire_sync_tokens(self) -> None:
        """Invalidate all sync and page tokens: next use answers 410 fullSyncRequired."""
        with self._lock:
            self._sync.clear()
            self._pages.clear()

    def events(self, address: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        cal = self._calendars[address.lower()]
        with self._lock:
            return [
                copy.deepcopy(self._render(cal, ev))
                for ev in cal.events.values()
                if include_deleted or ev["status"] != "cancelled"
            ]

    def bulk_insert(self, address: str, events: list[dict[str, Any]]) -> list[str]:
        """Insert events straight into the store (seeding: validated, no invitations)."""
        self.add_account(address)
        cal = self._calendars[address.lower()]
        with self._lock:
            return [self._insert(cal, copy.deepcopy(ev), "none")["id"] for ev in events]

    def change_event(self, address: str, event_id: str, changes: dict[str, Any]) -> None:
        """Patch an event as another client (e.g. the Google Calendar UI) would."""
        cal = self._calendars[address.lower()]
        with self._lock:
            self._patch(cal, event_id, copy.deepcopy(changes), replace=False, send="none")
        self._push(cal)

    def remove_event(self, address: str, event_id: str) -> None:
        cal = self._calendars[address.lower()]
        with self._lock:
            self._delete(cal, event_id, "none")
        self._push(cal)

    def wait_for_notifications(self, timeout: float = 5.0) -> None:
        done = threading.Event()
        self._push_q.put(done)
        done.wait(timeout)

    # ------------------------------------------------------------------------------------
    # server hooks
    # ------------------------------------------------------------------------------------

    def error_body(
        self, status: int, code: str, message: str, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        # https://developers.google.com/calendar/api/guides/errors
        item = extra or {"domain": "global", "reason": code, "message": message}
        return {"error": {"errors": [item], "code": status, "message": message}}

    def gerror(self, exc: GoogleError) -> Response:
        return self.error(exc.status, exc.reason, exc.message, extra=_err_item(exc))

    def throttle_response(self, reason: str, retry_after: int) -> Response:
        # https://developers.google.com/calendar/api/guides/errors#403_rate_limit_exceeded
        # and #429_too_many_requests. Google sends no Retry-After: clients must back off
        # exponentially on their own, so the emulator does not help them either.
        status = self.throttle_status
        msg = "Rate Limit Exceeded"
        return self.error(
            status,
            "rateLimitExceeded",
            msg,
            extra={"domain": "usageLimits", "reason": "rateLimitExceeded", "message": msg},
        )

    def server_error_response(self, status: int) -> Response:
        # https://developers.google.com/calendar/api/guides/errors#500_backend_error
        return self.error(
            status,
            "backendError",
            "Backend Error",
            extra={"domain": "global", "reason": "backendError", "message": "Backend Error"},
        )

    def mailbox_for_request(self) -> str | None:
        auth = request.headers.get("Authorization", "")
        entry = self._tokens.get(auth[7:].strip()) if auth.startswith("Bearer ") else None
        return entry[0] if entry else None

    # ------------------------------------------------------------------------------------
    # OAuth (https://developers.google.com/identity/protocols/oauth2/web-server)
    # ------------------------------------------------------------------------------------

    def _auth(self) -> str:
        auth = request.headers.get("Authorization", "")
        entry = self._tokens.get(auth[7:].strip()) if auth.startswith("Bearer ") else None
        if entry is None or entry[1] <= self.now():
            # https://developers.google.com/calendar/api/guides/errors#401_invalid_credentials
            raise GoogleError(
                401,
                "authError",
                "Invalid Credentials",
                location="Authorization",
                location_type="header",
            )
        return entry[0]

    @staticmethod
    def _oauth_error(error: str, description: str, status: int = 400) -> Response:
        resp = jsonify({"error": error, "error_description": description})
        resp.status_code = status
        return resp

    def _register_oauth(self, app: Flask) -> None:
        @app.get("/.well-known/openid-configuration")
        def google_oidc() -> Response:
            # https://developers.google.com/identity/openid-connect/openid-connect#discovery
            base = request.host_url.rstrip("/")
            return jsonify(
                {
                    "issuer": base,
                    "authorization_endpoint": f"{base}/o/oauth2/v2/auth",
                    "token_endpoint": f"{base}/token",
                    "revocation_endpoint": f"{base}/revoke",
                    "userinfo_endpoint": f"{base}/v1/userinfo",
                    "jwks_uri": f"{base}/oauth2/v3/certs",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": ["openid", "email", "profile"],
                    "code_challenge_methods_supported": ["plain", "S256"],
                    "grant_types_supported": ["authorization_code", "refresh_token"],
                }
            )

        @app.get("/o/oauth2/v2/auth")
        def google_authorize() -> Response:
            # https://developers.google.com/identity/protocols/oauth2/web-server#creatingclient
            # Sandbox: consent is automatic; the account is login_hint or the first one.
            args = request.args
            redirect_uri = args.get("redirect_uri")
            if not args.get("client_id") or not redirect_uri:
                return self._oauth_error("invalid_request", "Missing required parameter")
            if args.get("response_type") != "code":
                return self._oauth_error("unsupported_response_type", "Only code is emulated")
            if not args.get("scope"):
                return self._oauth_error("invalid_request", "Missing required parameter: scope")
            user = args.get("login_hint") or next((c.owner for c in self._calendars.values()), None)
            if user is None:
                return self._oauth_error("invalid_request", "No account in the sandbox")
            self.add_account(user)
            code = "4/0A" + secrets.token_urlsafe(40)
            with self._lock:
                self._codes[code] = {
                    "user": user.lower(),
                    "client_id": args["client_id"],
                    "redirect_uri": redirect_uri,
                    "scope": args["scope"],
                    "offline": args.get("access_type") == "offline",
                    "challenge": args.get("code_challenge"),
                    "method": args.get("code_challenge_method", "plain"),
                    "exp": self.now() + 600,
                }
            query = {"code": code, "scope": args["scope"]}
            if "state" in args:
                query["state"] = args["state"]
            sep = "&" if "?" in redirect_uri else "?"
            return redirect(f"{redirect_uri}{sep}{urllib.parse.urlencode(query)}", code=302)

        @app.post("/token")
        def google_token() -> Response:
            # https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code
            # and #offline (refresh); refresh answers carry no new refresh_token.
            form = request.form
            grant = form.get("grant_type")
            if not form.get("client_id"):
                return self._oauth_error("invalid_request", "Could not determine client ID", 400)
            if grant == "authorization_code":
                with self._lock:
                    entry = self._codes.pop(form.get("code", ""), None)
                if (
                    entry is None
                    or entry["exp"] < self.now()
                    or entry["redirect_uri"] != form.get("redirect_uri")
                    or entry["client_id"] != form.get("client_id")
                ):
                    return self._oauth_error("invalid_grant", "Bad Request")
                if entry["challenge"]:
                    verifier = form.get("code_verifier", "")
                    calc = (
                        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                        .decode()
                        .rstrip("=")
                        if entry["method"] == "S256"
                        else verifier
                    )
                    if calc != entry["challenge"]:
                        return self._oauth_error("invalid_grant", "Invalid code verifier.")
                body = self._token_body(entry["user"], entry["scope"], form["client_id"])
                if entry["offline"]:
                    # Refresh tokens only come with access_type=offline.
                    refresh = "1//0g" + secrets.token_urlsafe(60)
                    with self._lock:
                        self._refresh[refresh] = (entry["user"], entry["scope"])
                    body["refresh_token"] = refresh
                    body["refresh_token_expires_in"] = 604799
                return jsonify(body)
            if grant == "refresh_token":
                entry = self._refresh.get(form.get("refresh_token", ""))
                if entry is None:
                    return self._oauth_error("invalid_grant", "Token has been expired or revoked.")
                return jsonify(self._token_body(entry[0], entry[1], form["client_id"]))
            return self._oauth_error("unsupported_grant_type", "Invalid grant_type")

        @app.post("/_sandbox/token")
        def google_sandbox_token() -> Response:
            body = request.get_json(force=True) or {}
            address = body.get("user")
            if not address:
                return self.error(400, "required", "user is required")
            return jsonify(
                access_token=self.issue_token(address, body.get("expires_in")),
                token_type="Bearer",
                expires_in=body.get("expires_in") or self.token_lifetime,
            )

        @app.post("/_sandbox/expire-sync-tokens")
        def google_expire_sync() -> Response:
            self.expire_sync_tokens()
            return Response(status=204)

        @app.post("/_sandbox/expire-access-tokens")
        def google_expire_access() -> Response:
            self.expire_tokens()
            return Response(status=204)

    def _token_body(self, user: str, scope: str, client_id: str) -> dict[str, Any]:
        now = int(self.now())
        claims = {
            "iss": request.host_url.rstrip("/"),
            "aud": client_id,
            "azp": client_id,
            "sub": str(int(hashlib.sha256(user.encode()).hexdigest()[:15], 16)),
            "email": user,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
        }
        enc = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).decode().rstrip("=")  # noqa: E731
        body = {
            "access_token": self.issue_token(user),
            "expires_in": self.token_lifetime,
            "scope": scope,
            "token_type": "Bearer",
        }
        if "openid" in scope.split():
            body["id_token"] = f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(claims)}."
        return body

    # ------------------------------------------------------------------------------------
    # model
    # ------------------------------------------------------------------------------------

    def _calendar(self, user: str, calendar_id: str) -> _Calendar:
        key = user if calendar_id == "primary" else calendar_id.lower()
        cal = self._calendars.get(key)
        if cal is None or cal.owner.lower() != user:
            # https://developers.google.com/calendar/api/guides/errors#404_not_found
            raise GoogleError(404, "notFound", "Not Found")
        return cal

    def _new_id(self) -> str:
        return "".join(self._id_rng.choice(_B32HEX) for _ in range(26))

    def _stamp(self, cal: _Calendar, ev: dict[str, Any]) -> None:
        cal.seq += 1
        now = self.now()
        ev["_seq"] = cal.seq
        ev["updated"] = rfc3339(dt.datetime.fromtimestamp(now, UTC))
        # Google etags are quoted decimal strings that change on every write.
        ev["etag"] = f'"{int(now * 1000) * 1000 + cal.seq % 1000}"'

    @staticmethod
    def _when(value: Any, field: str, recurring: bool) -> tuple[dt.datetime, bool, str | None]:
        """Validate an EventDateTime; return (UTC instant, all-day?, zone)."""
        if not isinstance(value, dict) or not (value.get("date") or value.get("dateTime")):
            raise GoogleError(400, "required", f"Missing {field} time.")
        if value.get("date") and value.get("dateTime"):
            raise GoogleError(400, "invalid", f"Invalid {field} time.")
        tz_name = value.get("timeZone")
        if tz_name:
            try:
                tz_zone(tz_name)
            except BadTimeZone as exc:
                raise GoogleError(
                    400, "timeZoneInvalid", f"Invalid time zone definition for {field} time."
                ) from exc
            if "/" not in tz_name and tz_name != "UTC":
                # Google only knows IANA names, not Windows ones.
                raise GoogleError(
                    400, "timeZoneInvalid", f"Invalid time zone definition for {field} time."
                )
        if value.get("date"):
            try:
                day = dt.date.fromisoformat(value["date"])
            except ValueError as exc:
                raise GoogleError(400, "invalid", f"Invalid {field} time.") from exc
            return dt.datetime.combine(day, dt.time(), tzinfo=UTC), True, tz_name
        try:
            parsed = dt.datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))
        except ValueError as exc:
            raise GoogleError(400, "invalid", f"Invalid {field} time.") from exc
        if recurring and not tz_name:
            raise GoogleError(400, "required", f"Missing time zone definition for {field} time.")
        if parsed.tzinfo is None:
            if not tz_name:
                raise GoogleError(
                    400, "required", f"Missing time zone definition for {field} time."
                )
            parsed = parsed.replace(tzinfo=tz_zone(tz_name))
        return parsed.astimezone(UTC), False, tz_name

    def _validate(self, ev: dict[str, Any]) -> None:
        recurring = bool(ev.get("recurrence"))
        start, s_all, s_tz = self._when(ev.get("start"), "start", recurring)
        end, e_all, _ = self._when(ev.get("end"), "end", recurring)
        if s_all != e_all:
            raise GoogleError(
                400, "invalid", "Start and end times must either both be date or both be dateTime."
            )
        if end < start or (s_all and end == start):
            raise GoogleError(
                400,
                "timeRangeEmpty",
                "The specified time range is empty.",
                location="end.dateTime",
                location_type="parameter",
            )
        ev["_start"], ev["_end"], ev["_allday"] = start, end, s_all
        ev["_tz"] = s_tz
        ev["_pattern"], ev["_exdates"] = None, set()
        if recurring:
            self._parse_recurrence(ev)
        for att in ev.get("attendees") or []:
            if not isinstance(att, dict) or not att.get("email"):
                raise GoogleError(400, "required", "Missing attendee email.")
            att.setdefault("responseStatus", "needsAction")
            if att["responseStatus"] not in ("needsAction", "declined", "tentative", "accepted"):
                raise GoogleError(400, "invalid", "Invalid attendee responseStatus.")
        props = ev.get("extendedProperties")
        if props is not None:
            if not isinstance(props, dict) or set(props) - {"private", "shared"}:
                raise GoogleError(400, "invalid", "Invalid extendedProperties.")
            for scope in props.values():
                if not isinstance(scope, dict) or not all(
                    isinstance(v, str) for v in scope.values()
                ):
                    raise GoogleError(400, "invalid", "extendedProperties values must be strings.")
        if ev.get("status", "confirmed") not in ("confirmed", "tentative", "cancelled"):
            raise GoogleError(400, "invalid", "Invalid status.")
        if ev.get("visibility", "default") not in ("default", "public", "private", "confidential"):
            raise GoogleError(400, "invalid", "Invalid visibility.")
        if ev.get("transparency", "opaque") not in ("opaque", "transparent"):
            raise GoogleError(400, "invalid", "Invalid transparency.")

    def _parse_recurrence(self, ev: dict[str, Any]) -> None:
        rules = ev["recurrence"]
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            raise GoogleError(400, "invalid", "Invalid recurrence rule.")
        tz = tz_zone(ev["_tz"] or "UTC")
        local_start = ev["_start"].astimezone(tz)
        rrules = [r for r in rules if r.startswith("RRULE:")]
        if len(rrules) != 1:
            raise GoogleError(400, "invalid", "Invalid recurrence rule.")
        try:
            ev["_pattern"] = pattern_from_rrule(rrules[0], local_start.date())
        except (ValueError, KeyError, IndexError) as exc:
            raise GoogleError(400, "invalid", f"Invalid recurrence rule: {exc}") from exc
        for line in rules:
            if line.startswith("RRULE:"):
                continue
            if not line.startswith("EXDATE"):
                # RDATE/EXRULE are valid for Google but not emulated: fail loudly.
                raise GoogleError(400, "invalid", f"Sandbox does not emulate {line[:6]}.")
            head, _, values = line.partition(":")
            params = dict(p.split("=", 1) for p in head.split(";")[1:] if "=" in p)
            for raw in values.split(","):
                if "T" not in raw:
                    day = dt.datetime.strptime(raw, "%Y%m%d")
                    when = dt.datetime.combine(day.date(), local_start.time(), tzinfo=tz)
                elif raw.endswith("Z"):
                    when = dt.datetime.strptime(raw, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                else:
                    when = dt.datetime.strptime(raw, "%Y%m%dT%H%M%S").replace(
                        tzinfo=tz_zone(params.get("TZID", ev["_tz"] or "UTC"))
                    )
                ev["_exdates"].add(when.astimezone(UTC))

    def _instance_key(self, master: dict[str, Any], start: dt.datetime) -> str:
        if master["_allday"]:
            return start.strftime("%Y%m%d")
        return start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    def _occurrences(
        self, master: dict[str, Any], start: dt.datetime, end: dt.datetime
    ) -> list[tuple[dt.datetime, dt.datetime]]:
        p: Pattern = master["_pattern"]
        tz = UTC if master["_allday"] else tz_zone(master["_tz"] or "UTC")
        local = master["_start"].astimezone(tz)
        dur = master["_end"] - master["_start"]
        return [
            (s, e)
            for s, e in expand(p, local, dur, tz, start - dur, end + dur)
            if s not in master["_exdates"]
        ]

    def _invite(
        self,
        cal: _Calendar,
        ev: dict[str, Any],
        send: str,
        reason: str,
        recipients: list[str] | None = None,
    ) -> None:
        # https://developers.google.com/calendar/api/v3/reference/events/insert : sendUpdates
        # all: every guest; externalOnly: only non-Google-Calendar guests (emulated as
        # guests outside the organizer's domain); none: nobody.
        if send == "none":
            return
        domain = cal.owner.split("@")[-1].lower()
        emails = (
            recipients
            if recipients is not None
            else [a["email"] for a in ev.get("attendees") or [] if not a.get("organizer")]
        )
        for email in emails:
            if email.lower() == cal.owner.lower():
                continue
            if send == "externalOnly" and email.split("@")[-1].lower() == domain:
                continue
            self.invitations.add(
                Invitation(
                    mailbox=cal.owner,
                    recipient=email,
                    event_id=ev["id"],
                    reason=reason,
                    subject=ev.get("summary", ""),
                    at=self.now(),
                )
            )

    def _clean_input(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = set(body) - _EVENT_FIELDS
        if unknown:
            # The API rejects unknown fields in the request body.
            raise GoogleError(
                400,
                "invalid",
                f"Invalid JSON payload received. Unknown name "
                f"\"{sorted(unknown)[0]}\" at 'resource': Cannot find field.",
            )
        return {k: v for k, v in body.items() if k not in _IGNORED_ON_WRITE}

    def _insert(self, cal: _Calendar, body: dict[str, Any], send: str) -> dict[str, Any]:
        body = self._clean_input(body)
        event_id = body.get("id")
        if event_id is not None:
            # https://developers.google.com/calendar/api/v3/reference/events (id): base32hex
            # characters a-v0-9, 5 to 1024 long, unique per calendar.
            if not isinstance(event_id, str) or not _ID_RE.match(event_id):
                raise GoogleError(400, "invalid", "Invalid resource id value.")
            if event_id in cal.events:
                raise GoogleError(409, "duplicate", "The requested identifier already exists.")
        else:
            event_id = self._new_id()
        if body.get("recurringEventId") or body.get("originalStartTime"):
            raise GoogleError(400, "invalid", "Instances cannot be inserted; patch them.")
        now = rfc3339(dt.datetime.fromtimestamp(self.now(), UTC))
        ev: dict[str, Any] = {
            "kind": "calendar#event",
            "id": event_id,
            "status": body.get("status", "confirmed"),
            "htmlLink": "https://www.google.com/calendar/event?eid="
            + base64.urlsafe_b64encode(f"{event_id} {cal.id}".encode()).decode().rstrip("="),
            "created": now,
            "creator": {"email": cal.owner, "self": True},
            "organizer": {"email": cal.owner, "self": True},
            "iCalUID": body.get("iCalUID") or f"{event_id}@google.com",
            "sequence": int(body.get("sequence", 0)),
            "reminders": {"useDefault": True},
            "eventType": "default",
        }
        ev.update({k: copy.deepcopy(v) for k, v in body.items() if k not in ("organizer",)})
        ev["id"] = event_id
        self._validate(ev)
        if ev["status"] == "cancelled":
            raise GoogleError(400, "invalid", "Cannot insert a cancelled event.")
        self._stamp(cal, ev)
        cal.events[event_id] = ev
        self._invite(cal, ev, send, "created")
        return ev

    def _find(self, cal: _Calendar, event_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """Return (stored event or None, instance key if an unmodified instance id)."""
        if event_id in cal.events:
            return cal.events[event_id], None
        master_id, _, key = event_id.rpartition("_")
        master = cal.events.get(master_id)
        if master is None or not master.get("_pattern") or master["status"] == "cancelled":
            raise GoogleError(404, "notFound", "Not Found")
        start = self._key_start(master, key)
        if start is None or not any(
            s == start for s, _ in self._occurrences(master, start, start + dt.timedelta(seconds=1))
        ):
            raise GoogleError(404, "notFound", "Not Found")
        return None, key

    def _key_start(self, master: dict[str, Any], key: str) -> dt.datetime | None:
        try:
            if master["_allday"]:
                return dt.datetime.strptime(key, "%Y%m%d").replace(tzinfo=UTC)
            return dt.datetime.strptime(key, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None

    def _materialise(self, cal: _Calendar, event_id: str) -> dict[str, Any]:
        """Turn an unmodified instance into a stored exception so it can be changed."""
        ev, key = self._find(cal, event_id)
        if ev is not None:
            return ev
        master_id = event_id.rpartition("_")[0]
        master = cal.events[master_id]
        assert key is not None
        start = self._key_start(master, key)
        assert start is not None
        inst = self._instance(cal, master, start, start + (master["_end"] - master["_start"]))
        inst = copy.deepcopy(inst)
        inst["_start"], inst["_end"], inst["_allday"] = (
            start,
            start + (master["_end"] - master["_start"]),
            master["_allday"],
        )
        inst["_tz"], inst["_pattern"], inst["_exdates"] = master["_tz"], None, set()
        cal.events[event_id] = inst
        return inst

    def _check_etag(self, ev: dict[str, Any]) -> None:
        if_match = request.headers.get("If-Match")
        if if_match and if_match != "*" and if_match != ev["etag"]:
            raise GoogleError(
                412,
                "conditionNotMet",
                "Precondition Failed",
                location="If-Match",
                location_type="header",
            )

    def _patch(
        self,
        cal: _Calendar,
        event_id: str,
        body: dict[str, Any],
        *,
        replace: bool,
        send: str,
        check_etag: bool = False,
    ) -> dict[str, Any]:
        body = self._clean_input(body)
        ev = self._materialise(cal, event_id)
        if check_etag:
            self._check_etag(ev)
        if "id" in body and body["id"] != ev["id"]:
            raise GoogleError(400, "invalid", "The event id cannot be changed.")
        old_guests = {a["email"].lower(): a["email"] for a in ev.get("attendees") or []}
        old_view = (ev["_start"], ev["_end"], ev.get("summary"), ev.get("location"))
        if replace:
            # events.update replaces the whole resource: omitted fields are cleared.
            keep = {
                k: v
                for k, v in ev.items()
                if k
                in (
                    "kind",
                    "id",
                    "htmlLink",
                    "created",
                    "creator",
                    "organizer",
                    "iCalUID",
                    "recurringEventId",
                    "originalStartTime",
                    "eventType",
                    "sequence",
                    "etag",
                    "updated",
                )
                or k.startswith("_")
            }
            trial = {
                **keep,
                "status": "confirmed",
                "reminders": {"useDefault": True},
                **copy.deepcopy(body),
            }
        else:
            trial = copy.deepcopy(ev)
            _merge(trial, copy.deepcopy(body))
        if ev.get("recurringEventId") and trial.get("recurrence"):
            raise GoogleError(400, "invalid", "Instances cannot have a recurrence.")
        self._validate(trial)
        if ev.get("recurringEventId"):
            trial["_pattern"] = None
        new_view = (trial["_start"], trial["_end"], trial.get("summary"), trial.get("location"))
        if new_view[:2] != old_view[:2] or trial.get("recurrence") != ev.get("recurrence"):
            trial["sequence"] = int(ev.get("sequence", 0)) + 1
        ev.clear()
        ev.update(trial)
        self._stamp(cal, ev)
        if ev["status"] == "cancelled":
            self._invite(cal, ev, send, "cancelled", list(old_guests.values()))
            return ev
        new_guests = {a["email"].lower(): a["email"] for a in ev.get("attendees") or []}
        added = [e for k, e in new_guests.items() if k not in old_guests]
        kept = [e for k, e in new_guests.items() if k in old_guests]
        removed = [e for k, e in old_guests.items() if k not in new_guests]
        self._invite(cal, ev, send, "created", added)
        if new_view != old_view:
            self._invite(cal, ev, send, "updated", kept)
        self._invite(cal, ev, send, "cancelled", removed)
        return ev

    def _delete(self, cal: _Calendar, event_id: str, send: str, check_etag: bool = False) -> None:
        ev = self._materialise(cal, event_id)
        if ev["status"] == "cancelled":
            # https://developers.google.com/calendar/api/guides/errors#410_gone
            raise GoogleError(410, "deleted", "Resource has been deleted")
        if check_etag:
            self._check_etag(ev)
        guests = [a["email"] for a in ev.get("attendees") or []]
        ev["status"] = "cancelled"
        self._stamp(cal, ev)
        self._invite(cal, ev, send, "cancelled", guests)
        if ev.get("_pattern"):
            for other in cal.events.values():
                if other.get("recurringEventId") == ev["id"] and other["status"] != "cancelled":
                    other["status"] = "cancelled"
                    self._stamp(cal, other)

    # -- rendering --------------------------------------------------------------------------

    def _fmt_when(
        self, when: dt.datetime, allday: bool, tz_name: str | None, out_tz: str | None
    ) -> dict[str, Any]:
        if allday:
            return {"date": when.date().isoformat()}
        zone_name = out_tz or tz_name or "UTC"
        local = when.astimezone(tz_zone(zone_name))
        text = local.isoformat(timespec="seconds")
        if text.endswith("+00:00"):
            text = text[:-6] + "Z"
        result = {"dateTime": text}
        if tz_name:
            result["timeZone"] = tz_name
        return result

    def _render(
        self,
        cal: _Calendar,
        ev: dict[str, Any],
        out_tz: str | None = None,
        full_cancelled: bool = False,
    ) -> dict[str, Any]:
        if ev["status"] == "cancelled" and not full_cancelled:
            # Deleted events come back reduced to their identity (and instance keys).
            out = {
                "kind": "calendar#event",
                "etag": ev["etag"],
                "id": ev["id"],
                "status": "cancelled",
                "updated": ev["updated"],
            }
            for key in ("recurringEventId", "originalStartTime"):
                if key in ev:
                    out[key] = ev[key]
            return out
        out = {k: v for k, v in ev.items() if not k.startswith("_")}
        tz_name = ev["_tz"]
        # Without an event zone, times are shown in the calendar's zone.
        shown = out_tz or (None if tz_name else cal.time_zone)
        out["start"] = self._fmt_when(ev["_start"], ev["_allday"], tz_name, shown)
        out["end"] = self._fmt_when(ev["_end"], ev["_allday"], tz_name, shown)
        for att in out.get("attendees") or []:
            if att["email"].lower() == cal.owner.lower():
                att["self"] = True
        return out

    def _instance(
        self,
        cal: _Calendar,
        master: dict[str, Any],
        start: dt.datetime,
        end: dt.datetime,
        out_tz: str | None = None,
    ) -> dict[str, Any]:
        key = self._instance_key(master, start)
        inst_id = f"{master['id']}_{key}"
        stored = cal.events.get(inst_id)
        if stored is not None:
            return self._render(cal, stored, out_tz)
        out = self._render(cal, master, out_tz)
        out.pop("recurrence", None)
        out["id"] = inst_id
        out["recurringEventId"] = master["id"]
        out["originalStartTime"] = self._fmt_when(start, master["_allday"], master["_tz"], None)
        out["start"] = self._fmt_when(start, master["_allday"], master["_tz"], out_tz)
        out["end"] = self._fmt_when(end, master["_allday"], master["_tz"], out_tz)
        return out

    # -- listing ------------------------------------------------------------------------------

    def _overlaps(
        self, ev: dict[str, Any], tmin: dt.datetime | None, tmax: dt.datetime | None
    ) -> bool:
        if ev.get("_pattern"):
            lo = tmin or ev["_start"]
            hi = tmax or (dt.datetime.fromtimestamp(self.now(), UTC) + EXPANSION_HORIZON)
            return bool(self._occurrences(ev, lo, hi))
        return (tmin is None or ev["_end"] > tmin) and (tmax is None or ev["_start"] < tmax)

    def _matches_props(self, ev: dict[str, Any], private: list[str], shared: list[str]) -> bool:
        props = ev.get("extendedProperties") or {}
        for scope, wanted in (("private", private), ("shared", shared)):
            for item in wanted:
                name, _, value = item.partition("=")
                if (props.get(scope) or {}).get(name) != value:
                    return False
        return True

    def _collect(self, cal: _Calendar, args: Any, since_seq: int | None) -> list[dict[str, Any]]:
        single = args.get("singleEvents", "false") == "true"
        show_deleted = args.get("showDeleted", "false") == "true" or since_seq is not None
        tmin = _parse_rfc3339(args["timeMin"], "timeMin") if "timeMin" in args else None
        tmax = _parse_rfc3339(args["timeMax"], "timeMax") if "timeMax" in args else None
        updated_min = (
            _parse_rfc3339(args["updatedMin"], "updatedMin") if "updatedMin" in args else None
        )
        if tmin and tmax and tmax <= tmin:
            raise GoogleError(
                400, "timeRangeEmpty", "The specified time range is empty.", location="timeMax"
            )
        private = args.getlist("privateExtendedProperty")
        shared = args.getlist("sharedExtendedProperty")
        ical = args.get("iCalUID")
        out_tz = args.get("timeZone")
        if out_tz:
            try:
                tz_zone(out_tz)
            except BadTimeZone as exc:
                raise GoogleError(400, "timeZoneInvalid", "Invalid time zone.") from exc
        items: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        horizon = dt.datetime.fromtimestamp(self.now(), UTC) + EXPANSION_HORIZON
        for ev in cal.events.values():
            if since_seq is not None and ev["_seq"] <= since_seq:
                continue
            if updated_min and ev["updated"] < rfc3339(updated_min):
                continue
            if ev["status"] == "cancelled" and not (show_deleted or updated_min):
                # showDeleted=false still lists "cancelled instances of recurring events
                # (but not the underlying recurring event)" when singleEvents is false;
                # updatedMin always includes entries deleted since then.
                master = cal.events.get(ev.get("recurringEventId") or "")
                if single or master is None or master["status"] == "cancelled":
                    continue
            if single and ev["status"] == "cancelled" and ev.get("_pattern"):
                # With singleEvents=true only instances come back, so a deleted series is
                # reported as its cancelled instances, never as the series itself.
                lo, hi = tmin or ev["_start"], tmax or horizon
                for s, _ in self._occurrences(ev, lo, hi):
                    inst_id = f"{ev['id']}_{self._instance_key(ev, s)}"
                    if inst_id in cal.events:
                        continue
                    items.append(
                        (
                            (s, inst_id),
                            {
                                "kind": "calendar#event",
                                "etag": ev["etag"],
                                "id": inst_id,
                                "status": "cancelled",
                                "updated": ev["updated"],
                                "recurringEventId": ev["id"],
                                "originalStartTime": self._fmt_when(
                                    s, ev["_allday"], ev["_tz"], None
                                ),
                            },
                        )
                    )
                continue
            if ical and ev.get("iCalUID") != ical:
                continue
            if not self._matches_props(ev, private, shared):
                continue
            if (
                since_seq is None
                and ev["status"] != "cancelled"
                and not self._overlaps(ev, tmin, tmax)
            ):
                continue
            if single and ev.get("_pattern") and ev["status"] != "cancelled":
                lo, hi = tmin or ev["_start"], tmax or horizon
                for s, e in self._occurrences(ev, lo, hi):
                    inst_id = f"{ev['id']}_{self._instance_key(ev, s)}"
                    if inst_id in cal.events:
                        continue  # the stored exception is listed on its own
                    items.append(((s, inst_id), self._instance(cal, ev, s, e, out_tz)))
                continue
            items.append(((ev["_start"], ev["id"]), self._render(cal, ev, out_tz)))
        order = args.get("orderBy")
        if order == "updated":
            items.sort(key=lambda it: (it[1].get("updated", ""), it[1]["id"]))
        else:
            items.sort(key=lambda it: it[0])
        return [it[1] for it in items]

    def _list_response(
        self,
        cal: _Calendar,
        items: list[dict[str, Any]],
        page_size: int,
        sync_seq: int,
        extra: dict[str, Any] | None = None,
    ) -> Response:
        page, rest = items[:page_size], items[page_size:]
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"p{sync_seq}"',
            "summary": cal.summary,
            "description": "",
            "updated": rfc3339(dt.datetime.fromtimestamp(self.now(), UTC)),
            "timeZone": cal.time_zone,
            "accessRole": "owner",
            "defaultReminders": [{"method": "popup", "minutes": 10}],
            "items": page,
        }
        if rest:
            token = secrets.token_urlsafe(24)
            self._pages[token] = {
                "items": rest,
                "page_size": page_size,
                "seq": sync_seq,
                "cal": cal.id.lower(),
                "extra": extra or {},
                "created": self.now(),
            }
            body["nextPageToken"] = token
        elif extra is None or extra.get("sync", True):
            token = secrets.token_urlsafe(24)
            self._sync[token] = (cal.id.lower(), sync_seq, self.now())
            body["nextSyncToken"] = token
        return jsonify(body)

    # ------------------------------------------------------------------------------------
    # push channels (https://developers.google.com/calendar/api/guides/push)
    # ------------------------------------------------------------------------------------

    def _push(self, cal: _Calendar, state: str = "exists") -> None:
        now_ms = int(self.now() * 1000)
        for ch in list(self._channels.values()):
            if ch.calendar != cal.id.lower() or ch.expiration_ms <= now_ms:
                continue
            ch.messages += 1
            headers = {
                "X-Goog-Channel-ID": ch.id,
                "X-Goog-Channel-Expiration": dt.datetime.fromtimestamp(
                    ch.expiration_ms / 1000, UTC
                ).strftime("%a, %d %b %Y %H:%M:%S GMT"),
                "X-Goog-Message-Number": str(ch.messages),
                "X-Goog-Resource-ID": ch.resource_id,
                "X-Goog-Resource-State": state,
                "X-Goog-Resource-URI": f"https://www.googleapis.com/calendar/v3/calendars/"
                f"{urllib.parse.quote(cal.id)}/events?alt=json",
            }
            if ch.token is not None:
                headers["X-Goog-Channel-Token"] = ch.token
            self._push_q.put((ch.address, headers))

    def _push_loop(self) -> None:
        while True:
            item = self._push_q.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            url, headers = item
            try:
                status = requests.post(url, headers=headers, data=b"", timeout=5).status_code
            except requests.RequestException:
                status = 0
            with self._lock:
                self.notification_log.append({"url": url, "headers": headers, "status": status})

    # ------------------------------------------------------------------------------------
    # routes
    # ------------------------------------------------------------------------------------

    def register_routes(self, app: Flask) -> None:
        self._register_oauth(app)

        def route(rule: str, methods: list[str]) -> Callable[[Callable[..., Any]], Any]:
            def deco(fn: Callable[..., Any]) -> Any:
                def view(**kwargs: Any) -> Response:
                    try:
                        return fn(**kwargs)
                    except GoogleError as exc:
                        return self.gerror(exc)

                endpoint = f"{fn.__name__}:{rule}"
                view.__name__ = endpoint
                app.add_url_rule(API + rule, endpoint=endpoint, view_func=view, methods=methods)
                return fn

            return deco

        def json_body() -> dict[str, Any]:
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                raise GoogleError(400, "parseError", "Parse Error")
            return body

        def send_updates() -> str:
            value = request.args.get("sendUpdates")
            if value is None:
                # Deprecated sendNotifications=true means "all"; the default is no mail.
                return "all" if request.args.get("sendNotifications") == "true" else "none"
            if value not in ("all", "externalOnly", "none"):
                raise GoogleError(
                    400,
                    "invalidParameter",
                    f"Invalid value for sendUpdates: {value}",
                    location="sendUpdates",
                )
            return value

        def page_size() -> int:
            try:
                size = int(request.args.get("maxResults", DEFAULT_MAX_RESULTS))
            except ValueError as exc:
                raise GoogleError(
                    400, "invalidParameter", "Invalid maxResults", location="maxResults"
                ) from exc
            if size < 1:
                raise GoogleError(
                    400, "invalidParameter", "Invalid maxResults", location="maxResults"
                )
            return min(size, MAX_RESULTS)

        def one(ev: dict[str, Any], cal: _Calendar, status: int = 200) -> Response:
            resp = jsonify(self._render(cal, ev, request.args.get("timeZone"), full_cancelled=True))
            resp.status_code = status
            resp.headers["ETag"] = ev["etag"]
            return resp

        @route("/users/me/calendarList", ["GET"])
        def calendar_list() -> Response:
            # https://developers.google.com/calendar/api/v3/reference/calendarList/list
            user = self._auth()
            items = []
            for cal in self._calendars.values():
                if cal.owner.lower() != user:
                    continue
                items.append(
                    {
                        "kind": "calendar#calendarListEntry",
                        "etag": '"1700000000000000"',
                        "id": cal.id,
                        "summary": cal.summary,
                        "timeZone": cal.time_zone,
                        "colorId": "14",
                        "backgroundColor": "#9fe1e7",
                        "foregroundColor": "#000000",
                        "selected": True,
                        "accessRole": "owner",
                        "defaultReminders": [{"method": "popup", "minutes": 10}],
                        "notificationSettings": {
                            "notifications": [
                                {"type": "eventCreation", "method": "email"},
                                {"type": "eventChange", "method": "email"},
                                {"type": "eventCancellation", "method": "email"},
                                {"type": "eventResponse", "method": "email"},
                            ]
                        },
                        "primary": cal.id.lower() == user,
                        "conferenceProperties": {
                            "allowedConferenceSolutionTypes": ["hangoutsMeet"]
                        },
                    }
                )
            return jsonify(
                {
                    "kind": "calendar#calendarList",
                    "etag": '"p1"',
                    "nextSyncToken": "sandbox-calendarlist",
                    "items": items,
                }
            )

        @route("/calendars/<calendar_id>/events", ["GET"])
        def list_events(calendar_id: str) -> Response:
            # https://developers.google.com/calendar/api/v3/reference/events/list
            # https://developers.google.com/calendar/api/guides/sync
            user = self._auth()
            args = request.args
            with self._lock:
                cal = self._calendar(user, calendar_id)
                if args.get("orderBy") not in (None, "startTime", "updated"):
                    raise GoogleError(
                        400, "invalidParameter", "Invalid orderBy", location="orderBy"
                    )
                if args.get("orderBy") == "startTime" and args.get("singleEvents") != "true":
                    raise GoogleError(
                        400,
                        "badRequest",
                        "The requested ordering is not available for the particular query.",
                    )
                if "q" in args:
                    raise GoogleError(400, "badRequest", "Sandbox does not emulate q.")
                token = args.get("pageToken")
                if token:
                    state = self._pages.pop(token, None)
                    if state is None or state["cal"] != cal.id.lower():
                        if args.get("syncToken"):
                            raise self._full_sync_required()
                        raise GoogleError(
                            400, "invalid", "Invalid page token value.", location="pageToken"
                        )
                    return self._list_response(
                        cal, state["items"], state["page_size"], state["seq"], state["extra"]
                    )
                sync = args.get("syncToken")
                if sync:
                    bad = [
                        p
                        for p in (
                            "iCalUID",
                            "orderBy",
                            "privateExtendedProperty",
                            "q",
                            "sharedExtendedProperty",
                            "timeMin",
                            "timeMax",
                            "updatedMin",
                        )
                        if p in args
                    ]
                    if bad:
                        raise GoogleError(
                            400,
                            "invalid",
                            f"Sync token cannot be used with {bad[0]}.",
                            location=bad[0],
                        )
                    if args.get("showDeleted") == "false":
                        # "it is not allowed to set showDeleted to False" with a syncToken.
                        raise GoogleError(
                            400,
                            "invalid",
                            "showDeleted cannot be false with syncToken.",
                            location="showDeleted",
                        )
                    entry = self._sync.get(sync)
                    if (
                        entry is None
                        or entry[0] != cal.id.lower()
                        or (
                            self.sync_token_ttl is not None
                            and self.now() - entry[2] > self.sync_token_ttl
                        )
                    ):
                        raise self._full_sync_required()
                    items = self._collect(cal, args, entry[1])
                else:
                    items = self._collect(cal, args, None)
                return self._list_response(cal, items, page_size(), cal.seq)

        @route("/calendars/<calendar_id>/events", ["POST"])
        def insert_event(calendar_id: str) -> Response:
            # https://developers.google.com/calendar/api/v3/reference/events/insert
            user = self._auth()
            send = send_updates()
            body = json_body()
            with self._lock:
                cal = self._calendar(user, calendar_id)
                ev = self._insert(cal, body, send)
                resp = one(ev, cal)
            self._push(cal)
            return resp

        @route("/calendars/<calendar_id>/events/<event_id>", ["GET"])
        def get_event(calendar_id: str, event_id: str) -> Response:
            # https://developers.google.com/calendar/api/v3/reference/events/get
            # A deleted event is still returned, with status "cancelled".
            user = self._auth()
            with self._lock:
                cal = self._calendar(user, calendar_id)
                ev, key = self._find(cal, event_id)
                if ev is None:
                    master = cal.events[event_id.rpartition("_")[0]]
                    start = self._key_start(master, key or "")
                    assert start is not None
                    data = self._instance(
                        cal,
                        master,
                        start,
                        start + (master["_end"] - master["_start"]),
                        request.args.get("timeZone"),
                    )
                    etag = master["etag"]
                else:
                    data = self._render(cal, ev, request.args.get("timeZone"), full_cancelled=True)
                    etag = ev["etag"]
            if request.headers.get("If-None-Match") == etag:
                return Response(status=304)
            resp = jsonify(data)
            resp.headers["ETag"] = etag
            return resp

        @route("/calendars/<calendar_id>/events/<event_id>", ["PATCH", "PUT"])
        def patch_event(calendar_id: str, event_id: str) -> Response:
            # https://developers.google.com/calendar/api/v3/reference/events/patch
            # https://developers.google.com/calendar/api/v3/reference/events/update
            user = self._auth()
            send = send_updates()
            body = json_body()
            with self._lock:
                cal = self._calendar(user, calendar_id)
                ev = self._patch(
                    cal, event_id, body, replace=request.method == "PUT", send=send, check_etag=True
                )
                resp = one(ev, cal)
            self._push(cal)
            return resp

        @route("/calendars/<calendar_id>/events/<event_id>", ["DELETE"])
        def delete_event(calendar_id: str, event_id: str) -> Response:
            # https://developers.google.com/calendar/api/v3/reference/events/delete
            user = self._auth()
            send = send_updates()
            with self._lock:
                cal = self._calendar(user, calendar_id)
                self._delete(cal, event_id, send, check_etag=True)
            self._push(cal)
            return Response(status=204)

        @route("/calendars/<calendar_id>/events/<event_id>/instances", ["GET"])
        def list_instances(calendar_id: str, event_id: str) -> Response:
            # https://developers.google.com/calendar/api/v3/reference/events/instances
            user = self._auth()
            args = request.args
            with self._lock:
                cal = self._calendar(user, calendar_id)
                token = args.get("pageToken")
                if token:
                    state = self._pages.pop(token, None)
                    if state is None:
                        raise GoogleError(
                            400, "invalid", "Invalid page token value.", location="pageToken"
                        )
                    return self._list_response(
                        cal, state["items"], state["page_size"], state["seq"], state["extra"]
                    )
                master = cal.events.get(event_id)
                if master is None or master["status"] == "cancelled":
                    raise GoogleError(404, "notFound", "Not Found")
                if not master.get("_pattern"):
                    raise GoogleError(400, "badRequest", "The event is not recurring.")
                tmin = (
                    _parse_rfc3339(args["timeMin"], "timeMin")
                    if "timeMin" in args
                    else master["_start"]
                )
                tmax = (
                    _parse_rfc3339(args["timeMax"], "timeMax")
                    if "timeMax" in args
                    else dt.datetime.fromtimestamp(self.now(), UTC) + EXPANSION_HORIZON
                )
                show_deleted = args.get("showDeleted") == "true"
                items = []
                for s, e in self._occurrences(master, tmin, tmax):
                    inst_id = f"{master['id']}_{self._instance_key(master, s)}"
                    stored = cal.events.get(inst_id)
                    if stored is not None and stored["status"] == "cancelled" and not show_deleted:
                        continue
                    items.append(self._instance(cal, master, s, e, args.get("timeZone")))
                return self._list_response(cal, items, page_size(), cal.seq, {"sync": False})

        @route("/calendars/<calendar_id>/events/watch", ["POST"])
        def watch(calendar_id: str) -> Response:
            # https://developers.google.com/calendar/api/v3/reference/events/watch
            user = self._auth()
            body = json_body()
            with self._lock:
                cal = self._calendar(user, calendar_id)
                if body.get("type") not in ("web_hook", "webhook"):
                    raise GoogleError(400, "invalid", "Invalid channel type.")
                if not body.get("id") or not body.get("address"):
                    raise GoogleError(400, "required", "Required channel id and address.")
                if body["id"] in self._channels:
                    raise GoogleError(400, "channelIdNotUnique", "Channel id not unique")
                if self.require_https_webhooks and not body["address"].startswith("https://"):
                    raise GoogleError(
                        400,
                        "push.webhookUrlNotHttps",
                        "WebHook callback must be HTTPS: " + body["address"],
                    )
                ttl = int((body.get("params") or {}).get("ttl", 604800))
                default_exp = int(self.now() * 1000) + min(ttl, 2592000) * 1000
                exp = int(body.get("expiration") or default_exp)
                ch = _Channel(
                    id=body["id"],
                    resource_id=secrets.token_urlsafe(20),
                    calendar=cal.id.lower(),
                    address=body["address"],
                    token=body.get("token"),
                    expiration_ms=exp,
                )
                self._channels[ch.id] = ch
            out = {
                "kind": "api#channel",
                "id": ch.id,
                "resourceId": ch.resource_id,
                "resourceUri": f"https://www.googleapis.com/calendar/v3/calendars/"
                f"{urllib.parse.quote(cal.id)}/events?alt=json",
                "expiration": str(ch.expiration_ms),
            }
            if ch.token is not None:
                out["token"] = ch.token
            # The first message on a new channel is always "sync".
            ch.messages = 0
            headers = {
                "X-Goog-Channel-ID": ch.id,
                "X-Goog-Message-Number": "1",
                "X-Goog-Resource-ID": ch.resource_id,
                "X-Goog-Resource-State": "sync",
                "X-Goog-Resource-URI": out["resourceUri"],
                "X-Goog-Channel-Expiration": dt.datetime.fromtimestamp(exp / 1000, UTC).strftime(
                    "%a, %d %b %Y %H:%M:%S GMT"
                ),
            }
            if ch.token is not None:
                headers["X-Goog-Channel-Token"] = ch.token
            ch.messages = 1
            self._push_q.put((ch.address, headers))
            return jsonify(out)

        @route("/channels/stop", ["POST"])
        def stop_channel() -> Response:
            # https://developers.google.com/calendar/api/v3/reference/channels/stop
            self._auth()
            body = json_body()
            with self._lock:
                ch = self._channels.get(body.get("id", ""))
                if ch is None or ch.resource_id != body.get("resourceId"):
                    raise GoogleError(
                        404, "notFound", f"Channel '{body.get('id')}' not found for project"
                    )
                del self._channels[ch.id]
            return Response(status=204)

    @staticmethod
    def _full_sync_required() -> GoogleError:
        # https://developers.google.com/calendar/api/guides/sync ("Full sync required by
        # server"): 410 Gone; the client must wipe its store and sync from scratch.
        return GoogleError(
            410,
            "fullSyncRequired",
            "Sync token is no longer valid, a full sync is required.",
            domain="calendar",
        )


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Patch semantics: objects merge field by field, arrays and scalars replace."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
