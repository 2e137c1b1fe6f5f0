"""Dynamics 365 (Dataverse Web API v9.2) emulator: appointments, their activity parties,
contacts, leads and system users, over real HTTPS, with Microsoft sign-in.

Sign-in is Microsoft's: the identity endpoints (instance discovery, OpenID configuration,
authorize, token) are the Graph emulator's, reused by subclassing `GraphEmulator` and
registering only its identity routes next to the Dataverse ones. So msal talks to this
server exactly as it talks to login.microsoftonline.com, TLS included (msal refuses an
http authority). A bearer token is accepted when its user is a system user of the
organization, and, when it was issued through the token endpoint, when its scope names this
organization (``{org}/user_impersonation``): Dataverse refuses tokens for another resource.

Only what the calsync connector uses is emulated, in the real service's shapes, erring on
the strict side (each "Trap:" is a real behaviour a kinder emulator would hide):

- OData v4 JSON: ``@odata.context``, ``value``, ``@odata.etag`` (``W/"<versionnumber>"``),
  ``@odata.nextLink`` paging chosen with ``Prefer: odata.maxpagesize``, ``@odata.deltaLink``;
  errors ``{"error": {"code": "0x8004...", "message": ...}}``.
- Change tracking (``Prefer: odata.track-changes``): the full listing's last page carries a
  delta link; a delta lists changed rows and ``$deletedEntity`` entries. When the table's
  change tracking is off (knob ``change_tracking``) the preference is ignored (no
  ``Preference-Applied``, no delta link), as OData lets a service ignore a preference.
  The emulator refuses ``$filter``, ``$orderby`` and ``$expand`` with change tracking (the
  documented examples use ``$select`` only; erring strict).
- Trap: PATCH of a missing id without ``If-Match`` *creates* the row (upsert); with
  ``If-Match: *`` it answers 404, with a stale etag 412.
- Trap: an unauthenticated request answers 401 with a ``WWW-Authenticate`` challenge naming
  the authority; that challenge is how a client tells Dataverse from another web server.
- Service protection limits: 429 with ``Retry-After`` and the documented error codes.
- Security roles per user: without the activity privilege a request answers 403 with
  Dataverse's real "missing prv...Activity privilege" error (0x80040220).
- Dataverse sends no e-mail when appointments are written through the Web API (only an
  appointment "sent" through Exchange server-side sync mails anyone): the invitation log
  stays empty.
- Sign-in for an organization this is not: the authorize endpoint sends the browser back
  with ``invalid_resource`` (AADSTS500011, "The resource principal named ... was not found
  in the tenant"), as Microsoft does for a ``{org}/user_impersonation`` scope of an
  organization the tenant does not have. With ``consent_prompt`` on, the browser first gets
  a "Permissions requested" page (Accept / Cancel); Cancel goes back with ``access_denied``
  (AADSTS65004, the user declined), and an accepted consent is remembered, as Microsoft
  remembers it, until ``prompt=consent`` asks again.

Sources (learn.microsoft.com, cited again next to each endpoint; D = the Dataverse
developer docs, https://learn.microsoft.com/en-us/power-apps/developer/data-platform):
- Query data using the Web API: D/webapi/query-data-web-api
- Create a table row: D/webapi/create-entity-web-api
- Update and delete table rows: D/webapi/update-delete-entities-using-web-api
- Use change tracking to synchronize data with external systems:
  D/use-change-tracking-synchronize-data-external-systems
- Service protection API limits: D/api-limits
- appointment EntityType: D/webapi/reference/appointment
- activityparty EntityType and participationtypemask values: D/activityparty-entity
- Associate and disassociate: D/webapi/associate-disassociate-entities-using-web-api
- WhoAmI: D/webapi/reference/whoami; RetrieveUserPrivileges:
  D/webapi/reference/retrieveuserprivileges
- Sign-in (authorize request, error response, consent): Microsoft identity platform and
  OAuth 2.0 authorization code flow,
  https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow ;
  error codes https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import Flask, Response, jsonify, redirect, request

from .graph import GraphEmulator

__all__ = ["API_PATH", "PRIVILEGES", "DynamicsEmulator"]

API_PATH = "/api/data/v9.2"
# Activity privileges (appointments are activities): prv{Create,Read,Write,Delete}Activity.
PRIVILEGES = ("read", "create", "write", "delete")
ISO = "%Y-%m-%dT%H:%M:%SZ"
DEFAULT_MAX_PAGE = 5000  # Dataverse's page size when no odata.maxpagesize is asked.

# appointment statecode -> allowed statuscode values (appointment EntityType: statecode
# 0 Open, 1 Completed, 2 Canceled, 3 Scheduled; statuscode 1 Free, 2 Tentative, 3 Completed,
# 4 Canceled, 5 Busy, 6 Out of Office).
STATES = {0: (1, 2), 1: (3,), 2: (4,), 3: (5, 6)}
# activityparty ParticipationTypeMask values allowed on an appointment.
MASK_REQUIRED, MASK_OPTIONAL, MASK_ORGANIZER = 5, 6, 7
PARTY_TABLES = {"contact": "contacts", "lead": "leads", "systemuser": "systemusers"}
EMAIL_FIELD = {
    "contact": "emailaddress1",
    "lead": "emailaddress1",
    "systemuser": "internalemailaddress",
}

APPOINTMENT_FIELDS = (
    "activityid",
    "subject",
    "scheduledstart",
    "scheduledend",
    "isalldayevent",
    "location",
    "description",
    "statecode",
    "statuscode",
    "globalobjectid",
    "outlookownerapptid",
    "_ownerid_value",
    "createdon",
    "modifiedon",
    "versionnumber",
)
WRITABLE = {
    "subject",
    "scheduledstart",
    "scheduledend",
    "isalldayevent",
    "location",
    "description",
    "statecode",
    "statuscode",
    "globalobjectid",
    "outlookownerapptid",
    "ownerid@odata.bind",
    "appointment_activity_parties",
}
PARTY_WRITABLE = {
    "participationtypemask",
    "addressused",
    "partyid_contact@odata.bind",
    "partyid_lead@odata.bind",
    "partyid_systemuser@odata.bind",
}

# Service protection error codes and messages (Service protection API limits page).
THROTTLE_MESSAGES = {
    "0x80072322": "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
    "0x80072321": (
        "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds "
        "over time window of 300 seconds. Decrease number of concurrent requests or reduce the "
        "duration of requests and try again later."
    ),
    "0x80072326": "Number of concurrent requests exceeded the limit of 52.",
}
ERR_NOT_FOUND = "0x80040217"
ERR_PRIVILEGE = "0x80040220"
ERR_SYNTAX = "0x80060888"
ERR_VERSION = "0x80060882"
ERR_NOT_MEMBER = "0x80072560"
# The change-tracking token refused: "ExpiredVersionStamp" in the Dataverse error list.
ERR_EXPIRED_TOKEN = "0x80044352"
ERR_BAD_STATE = "0x80040203"


class ODataError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime(ISO)


def _parse_dt(value: Any) -> str:
    """An Edm.DateTimeOffset as Dataverse stores it: UTC, whole seconds."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ODataError(
            400, ERR_SYNTAX, f"Cannot convert the literal '{value}' to Edm.DateTimeOffset."
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime(ISO)


def _guid(n: int) -> str:
    """A version-4-shaped GUID string from 128 random bits, without uuid.UUID's overhead."""
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:]}"


def _b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode()


def _unb64(text: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(text.encode()))
    except (ValueError, TypeError) as exc:
        raise ODataError(400, ERR_SYNTAX, "The $skiptoken is not valid.") from exc


class DynamicsEmulator(GraphEmulator):
    """A Dataverse organization in memory, signed in to through Microsoft identity.

    Knobs beyond the base's faults, counters and clock:
    - ``change_tracking``: whether the appointment table has change tracking on;
    - ``throttle(times, code, retry_after)``: the next `times` API requests answer 429 with a
      service protection error (0x80072322 requests, 0x80072321 execution time, 0x80072326
      concurrency);
    - ``freeze_clock(ts)`` / ``unfreeze_clock()``: pin time, e.g. two changes in one second;
    - ``expire_delta_tokens()``: every delta link given so far is refused;
    - ``expire_tokens()``, ``revoke_refresh_tokens()`` (from the Graph emulator).
    Seeding: ``add_user`` (a system user with a sign-in and activity privileges),
    ``add_contact``, ``add_lead``, ``add_appointment``, ``seed_appointments`` (10,000 in well
    under a second, straight into memory). A CRM user's own actions: ``edit_appointment``,
    ``delete_appointment``. Over HTTP for the demo: POST ``/_sandbox/dynamics/users`` and
    ``/_sandbox/dynamics/appointments``.
    """

    name = "dynamics"
    api_prefixes = ("/api/",)
    limit_exempt_paths = ()

    def __init__(
        self,
        *,
        seed: int = 0,
        port: int = 0,
        tls: bool = True,
        change_tracking: bool = True,
        token_lifetime: int = 3600,
        consent_prompt: bool = False,
    ) -> None:
        self.change_tracking = change_tracking
        # False: the user consents at once (msal-level tests); True: a browser walks the
        # "Permissions requested" page first.
        self.consent_prompt = consent_prompt
        self._consents: set[tuple[str, str, str]] = set()  # (user, client id, resource)
        self.organization_id = str(uuid.UUID(int=seed + 0x0D365, version=4))
        self.business_unit_id = str(uuid.UUID(int=seed + 0xB0, version=4))
        self._dv_lock = threading.RLock()
        self.tables: dict[str, dict[str, dict[str, Any]]] = {
            "systemusers": {},
            "contacts": {},
            "leads": {},
            "appointments": {},
        }
        self.parties: dict[str, list[dict[str, Any]]] = {}  # appointment id -> parties
        self.privileges: dict[str, set[str]] = {}  # systemuserid -> PRIVILEGES held
        self._seq = 1000  # the change-tracking row version counter
        self._tombstones: dict[str, int] = {}  # deleted appointment id -> version
        self._min_token = 0
        self._token_scopes: dict[str, str] = {}
        self._throttle: list[tuple[str, int]] = []
        super().__init__(seed=seed, port=port, tls=tls, token_lifetime=token_lifetime)

    # -- clock -------------------------------------------------------------------------

    def stamp(self) -> str:
        """Emulator time as Dataverse stores modifiedon: UTC, whole seconds."""
        return _stamp(self.now())

    def start(self) -> DynamicsEmulator:
        super().start()
        assert self._server is not None
        emu = self
        handler = self._server.RequestHandlerClass

        class _ClockHandler(handler):  # type: ignore[misc, valid-type]
            # Keep-alive, as the real service: without it every request pays a new TLS
            # handshake, which dominates a test's time.
            protocol_version = "HTTP/1.1"

            # The Date header is the server clock a client may read (the connector's
            # modifiedon watermark does); it must follow the adjustable clock.
            def date_time_string(self, timestamp: float | None = None) -> str:
                return formatdate(emu.now() if timestamp is None else timestamp, usegmt=True)

        self._server.RequestHandlerClass = _ClockHandler
        return self

    def stop(self) -> None:
        super().stop()
        # Dataverse has no Graph change notifications: end the inherited notifier thread,
        # so a test run starting many emulators leaves no idle threads behind.
        self._notify_q.put(None)

    # -- knobs -------------------------------------------------------------------------

    def throttle(self, times: int = 1, code: str = "0x80072322", retry_after: int = 1) -> None:
        """The next `times` API requests answer 429 with this service protection error."""
        if code not in THROTTLE_MESSAGES:
            raise ValueError(f"unknown service protection code {code!r}")
        with self._dv_lock:
            self._throttle = [(code, retry_after)] * times

    def expire_delta_tokens(self) -> None:
        with self._dv_lock:
            self._min_token = self._seq + 1
        super().expire_delta_tokens()

    # -- seeding -----------------------------------------------------------------------

    def add_user(
        self,
        email: str,
        full_name: str = "",
        *,
        privileges: Iterable[str] = PRIVILEGES,
    ) -> str:
        """A licensed system user who can sign in; `privileges` on activities (appointments)."""
        held = set(privileges)
        if held - set(PRIVILEGES):
            raise ValueError(f"unknown privileges {sorted(held - set(PRIVILEGES))}")
        mailbox = self.add_mailbox(email, full_name or None)
        user_id = str(uuid.uuid4())
        with self._dv_lock:
            self.tables["systemusers"][user_id] = {
                "systemuserid": user_id,
                "fullname": full_name or email.split("@")[0],
                "internalemailaddress": email,
                "domainname": email,
                "azureactivedirectoryobjectid": mailbox.user_id,
                "isdisabled": False,
            }
            self.privileges[user_id] = held
        return user_id

    def set_privileges(self, user_id: str, privileges: Iterable[str]) -> None:
        with self._dv_lock:
            self.privileges[user_id] = set(privileges)

    def add_contact(self, email: str, first_name: str = "", last_name: str = "") -> str:
        return self._add_person("contacts", "contactid", email, first_name, last_name)

    def add_lead(self, email: str, first_name: str = "", last_name: str = "") -> str:
        return self._add_person("leads", "leadid", email, first_name, last_name)

    def _add_person(self, table: str, key: str, email: str, first: str, last: str) -> str:
        row_id = str(uuid.uuid4())
        with self._dv_lock:
            self.tables[table][row_id] = {
                key: row_id,
                "firstname": first,
                "lastname": last,
                "fullname": f"{first} {last}".strip() or email,
                "emailaddress1": email,
                "statecode": 0,
            }
        return row_id

    def user_id_for(self, email: str) -> str:
        for row in self.tables["systemusers"].values():
            if row["internalemailaddress"].lower() == email.lower():
                return str(row["systemuserid"])
        raise KeyError(email)

    def add_appointment(
        self,
        owner_id: str,
        subject: str = "Appointment",
        start: datetime | None = None,
        end: datetime | None = None,
        **fields: Any,
    ) -> str:
        """An appointment as a CRM user saves it in the app; the owner is its organizer."""
        begin = start or datetime.fromtimestamp(self.now() + 86400, UTC)
        finish = end or begin + timedelta(hours=1)
        with self._dv_lock:
            row = self._new_row(owner_id)
            row.update(
                subject=subject,
                scheduledstart=_parse_dt(begin.isoformat()),
                scheduledend=_parse_dt(finish.isoformat()),
            )
            row.update(fields)
            self.tables["appointments"][row["activityid"]] = row
            self.parties[row["activityid"]] = [
                self._party(row["activityid"], MASK_ORGANIZER, "systemuser", owner_id, None)
            ]
        return str(row["activityid"])

    def seed_appointments(
        self, n: int, owner_id: str, *, start: datetime | None = None
    ) -> list[str]:
        """`n` appointments an hour apart, written straight into memory (no HTTP).

        Built without the per-row helpers (one stamp, ids from the seeded RNG) so that
        10,000 take a fraction of a second even on a busy machine.
        """
        base = start or datetime.fromtimestamp(self.now(), UTC).replace(
            minute=0, second=0, microsecond=0
        )
        stamp = self.stamp()
        owner = self.tables["systemusers"][owner_id]
        template = {**dict.fromkeys(APPOINTMENT_FIELDS), "isalldayevent": False}
        template.update(statecode=3, statuscode=5, _ownerid_value=owner_id)
        template.update(createdon=stamp, modifiedon=stamp)
        ids = []
        with self._dv_lock:
            table = self.tables["appointments"]
            bits = self._id_rng.getrandbits
            for i in range(n):
                s = base + timedelta(hours=i)
                item_id = _guid(bits(128))
                table[item_id] = {
                    **template,
                    "activityid": item_id,
                    "subject": f"Seeded appointment {i + 1}",
                    "scheduledstart": s.isoformat()[:19] + "Z",
                    "scheduledend": (s + timedelta(minutes=30)).isoformat()[:19] + "Z",
                    "versionnumber": self._next_version(),
                }
                self.parties[item_id] = [
                    {
                        "activitypartyid": _guid(bits(128)),
                        "_activityid_value": item_id,
                        "participationtypemask": MASK_ORGANIZER,
                        "_partyid_value": owner_id,
                        "partyobjecttypecode": "systemuser",
                        "partyname": owner["fullname"],
                        "addressused": owner["internalemailaddress"],
                    }
                ]
                ids.append(item_id)
        return ids

    # -- what a user does in the Dynamics 365 app ----------------------------------------

    def edit_appointment(self, appointment_id: str, **fields: Any) -> None:
        with self._dv_lock:
            row = self.tables["appointments"][appointment_id]
            for key, value in fields.items():
                row[key] = _parse_dt(value) if key.startswith("scheduled") else value
            self._touch(row)

    def delete_appointment(self, appointment_id: str) -> None:
        with self._dv_lock:
            self._delete(appointment_id)

    def appointment(self, appointment_id: str) -> dict[str, Any]:
        with self._dv_lock:
            return dict(self.tables["appointments"][appointment_id])

    def appointment_parties(self, appointment_id: str) -> list[dict[str, Any]]:
        with self._dv_lock:
            return [dict(p) for p in self.parties.get(appointment_id, [])]

    # -- storage -----------------------------------------------------------------------

    def _next_version(self) -> int:
        self._seq += 1
        return self._seq

    def _new_row(self, owner_id: str) -> dict[str, Any]:
        stamp = self.stamp()
        return {
            **dict.fromkeys(APPOINTMENT_FIELDS),
            "activityid": str(uuid.uuid4()),
            "subject": "",
            "isalldayevent": False,
            "statecode": 3,  # Scheduled/Busy: what saving an appointment in the app gives
            "statuscode": 5,
            "_ownerid_value": owner_id,
            "createdon": stamp,
            "modifiedon": stamp,
            "versionnumber": self._next_version(),
        }

    def _touch(self, row: dict[str, Any]) -> None:
        row["modifiedon"] = self.stamp()
        row["versionnumber"] = self._next_version()

    def _delete(self, appointment_id: str) -> None:
        self.tables["appointments"].pop(appointment_id)
        self.parties.pop(appointment_id, None)
        self._tombstones[appointment_id] = self._next_version()

    def _party(
        self,
        activity_id: str,
        mask: int,
        kind: str | None,
        party_id: str | None,
        address: str | None,
    ) -> dict[str, Any]:
        name = None
        if kind is not None and party_id is not None:
            record = self.tables[PARTY_TABLES[kind]][party_id]
            # Dataverse fills addressused from the record's e-mail when the party resolves.
            address = address or record.get(EMAIL_FIELD[kind])
            name = record.get("fullname")
        return {
            "activitypartyid": str(uuid.uuid4()),
            "_activityid_value": activity_id,
            "participationtypemask": mask,
            "_partyid_value": party_id,
            "partyobjecttypecode": kind,
            "partyname": name,
            "addressused": address,
        }

    # -- server hooks --------------------------------------------------------------------

    def error_body(
        self, status: int, code: str, message: str, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        # Dataverse Web API errors: {"error": {"code": "0x...", "message": "..."}}.
        return {"error": {"code": code, "message": message}}

    def throttle_response(self, reason: str, retry_after: int) -> Response:
        # Service protection API limits: 429 + Retry-After (seconds) + the limit's code.
        code = "0x80072322"
        return self.error(
            429, code, THROTTLE_MESSAGES[code], headers={"Retry-After": str(retry_after)}
        )

    def server_error_response(self, status: int) -> Response:
        return self.error(status, "0x80040216", "An unexpected error occurred.")

    def mailbox_for_request(self) -> str | None:
        auth = request.headers.get("Authorization", "")
        entry = self._tokens.get(auth[7:].strip()) if auth.startswith("Bearer ") else None
        return entry[0] if entry else None

    def _token_response(
        self, address: str, client_id: str, scope: str, nonce: str | None = None
    ) -> Response:
        resp = super()._token_response(address, client_id, scope, nonce)
        # Remember what each token is for: Dataverse refuses a token for another resource.
        token = json.loads(resp.get_data())["access_token"]
        with self._dv_lock:
            self._token_scopes[token] = scope
        return resp

    # -- Flask ---------------------------------------------------------------------------

    def register_routes(self, app: Flask) -> None:
        # Microsoft identity (authorize, token, discovery) exactly as the Graph emulator has it,
        # with the organization check and the consent page in front of its authorize endpoint.
        self._register_identity(app)

        @app.before_request
        def _authorize_gate() -> Response | None:
            if request.endpoint != "authorize" or request.method != "GET":
                return None
            return self._authorize_gate()

        @app.post("/<tenant>/oauth2/v2.0/consent")
        def _consent(tenant: str) -> Response:
            return self._consent_decision(tenant)

        @app.post("/_sandbox/dynamics/users")
        def _sandbox_user() -> Response:
            body = request.get_json(force=True) or {}
            user_id = self.add_user(
                str(body["email"]),
                str(body.get("full_name", "")),
                privileges=body.get("privileges", PRIVILEGES),
            )
            return jsonify(id=user_id)

        @app.post("/_sandbox/dynamics/appointments")
        def _sandbox_appointments() -> Response:
            body = request.get_json(force=True) or {}
            ids = self.seed_appointments(int(body.get("count", 1)), str(body["owner_id"]))
            return jsonify(count=len(ids))

        @app.get("/")
        def _home() -> Response:
            return Response("<html><title>Dynamics 365</title></html>", mimetype="text/html")

        for method in ("GET", "POST", "PATCH", "DELETE"):
            app.add_url_rule(
                f"{API_PATH}/<path:rest>",
                f"dataverse_{method.lower()}",
                self._dispatch,
                methods=[method],
            )

    # -- sign-in: the organization check and the consent page ----------------------------

    def _resource(self, scope: str) -> str | None:
        """The Dynamics organization a scope names (``{org}/user_impersonation``), if any."""
        for item in scope.split():
            if item.endswith("/user_impersonation"):
                return item[: -len("/user_impersonation")].rstrip("/")
        return None

    def _signing_in(self, args: Any) -> str | None:
        # The emulator signs in the login_hint's account (the real page would ask for it).
        hint = args.get("login_hint")
        if hint:
            return str(hint).lower()
        first = next(iter(self._mailboxes.values()), None)
        return first.address.lower() if first is not None else None

    def _back_with_error(
        self, redirect_uri: str, state: str | None, error: str, code: int, description: str
    ) -> Response:
        # Authorization endpoint errors go back to the redirect URI ("Error response" of the
        # authorize request): error, error_description (AADSTS code first) and state.
        query = {"error": error, "error_description": f"AADSTS{code}: {description}"}
        if state is not None:
            query["state"] = state
        sep = "&" if "?" in redirect_uri else "?"
        return redirect(f"{redirect_uri}{sep}{urlencode(query)}", code=302)

    def _authorize_gate(self) -> Response | None:
        """None lets the inherited authorize endpoint issue the code."""
        args = request.args
        redirect_uri = args.get("redirect_uri")
        if not args.get("client_id") or not redirect_uri or args.get("response_type") != "code":
            return None  # the inherited endpoint refuses these
        resource = self._resource(args.get("scope", ""))
        if resource is not None and resource.lower() != self.url.lower():
            # AADSTS500011 invalid_resource: the tenant has no such Dynamics organization.
            return self._back_with_error(
                redirect_uri,
                args.get("state"),
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{self.tenant_id}. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant. "
                "You might have sent your authentication request to the wrong tenant.",
            )
        user = self._signing_in(args)
        if not self.consent_prompt or user is None:
            return None
        key = (user, str(args["client_id"]), (resource or "").lower())
        if key in self._consents and args.get("prompt") != "consent":
            return None  # consent given before is remembered
        return self._consent_page(user, resource)

    def _consent_page(self, user: str, resource: str | None) -> Response:
        tenant = request.view_args.get("tenant", "organizations") if request.view_args else ""
        what = [
            f"Access Dynamics 365 as you ({resource})" if resource else "Access your data",
            "Maintain access to data you have given it access to",
            "View your basic profile",
        ]
        items = "".join(f"<li>{html.escape(w)}</li>" for w in what)
        app_name = html.escape(str(request.args.get("client_id")))
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            "<title>Permissions requested</title></head><body><main>"
            f"<p>{html.escape(user)}</p><h1>Permissions requested</h1>"
            f"<p>{app_name}</p><p>This application is not published by Microsoft.</p>"
            f"<p>This app would like to:</p><ul>{items}</ul>"
            f'<form method="post" action="/{html.escape(tenant)}/oauth2/v2.0/consent">'
            '<input type="hidden" name="request" '
            f'value="{html.escape(request.query_string.decode())}">'
            '<button type="submit" name="decision" value="accept">Accept</button> '
            '<button type="submit" name="decision" value="cancel">Cancel</button>'
            "</form></main></body></html>"
        )
        return Response(page, status=200, content_type="text/html; charset=utf-8")

    def _consent_decision(self, tenant: str) -> Response:
        original = request.form.get("request", "")
        args = dict(parse_qsl(original))
        redirect_uri = args.get("redirect_uri")
        user = self._signing_in(args)
        if not redirect_uri or not args.get("client_id") or user is None:
            return self._oauth_error(
                "invalid_request", "The consent request is incomplete.", 900144
            )
        if request.form.get("decision") != "accept":
            # AADSTS65004: the user declined to consent (Cancel on the consent page).
            return self._back_with_error(
                redirect_uri,
                args.get("state"),
                "access_denied",
                65004,
                "User declined to consent to access the app.",
            )
        resource = (self._resource(args.get("scope", "")) or "").lower()
        with self._dv_lock:
            self._consents.add((user, args["client_id"], resource))
        args.pop("prompt", None)
        return redirect(f"/{tenant}/oauth2/v2.0/authorize?{urlencode(args)}", code=302)

    _ROUTES: tuple[tuple[str, str, str], ...] = (
        ("GET", r"WhoAmI(?:\(\))?", "_whoami"),
        (
            "GET",
            r"systemusers\((?P<id>[0-9a-fA-F-]{36})\)/Microsoft\.Dynamics\.CRM\."
            r"RetrieveUserPrivileges(?:\(\))?",
            "_user_privileges",
        ),
        (
            "GET",
            r"(?P<table>systemusers|contacts|leads)\((?P<id>[0-9a-fA-F-]{36})\)",
            "_get_person",
        ),
        ("GET", r"(?P<table>systemusers|contacts|leads)", "_list_people"),
        ("GET", r"activityparties", "_list_parties"),
        ("GET", r"appointments", "_list_appointments"),
        ("POST", r"appointments", "_create_appointment"),
        ("GET", r"appointments\((?P<id>[0-9a-fA-F-]{36})\)", "_get_appointment"),
        ("PATCH", r"appointments\((?P<id>[0-9a-fA-F-]{36})\)", "_update_appointment"),
        ("DELETE", r"appointments\((?P<id>[0-9a-fA-F-]{36})\)", "_delete_appointment"),
    )

    def _dispatch(self, rest: str) -> Response:
        try:
            for method, pattern, handler in self._ROUTES:
                m = re.fullmatch(pattern, rest)
                if method == request.method and m:
                    self.counter.hit(f"dataverse {method} {handler[1:]}")
                    self._check_throttle()
                    user_id = self._caller()
                    with self._dv_lock:
                        return getattr(self, handler)(user_id, **m.groupdict())
            raise ODataError(
                404, "0x8006088a", f"Resource not found for the segment '{rest.split('(')[0]}'."
            )
        except ODataError as exc:
            return self.error(exc.status, exc.code, exc.message, headers=exc.headers)

    def _check_throttle(self) -> None:
        with self._dv_lock:
            if not self._throttle:
                return
            code, retry_after = self._throttle.pop(0)
        raise ODataError(429, code, THROTTLE_MESSAGES[code], {"Retry-After": str(retry_after)})

    def _caller(self) -> str:
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else ""
        entry = self._tokens.get(token)
        # Trap: the 401 challenge names the authority and this resource (what a probe reads).
        challenge = {
            "WWW-Authenticate": (
                f"Bearer authorization_uri={request.host_url.rstrip('/')}/{self.tenant_id}"
                f"/oauth2/authorize, resource_id={request.host_url.rstrip('/')}/"
            )
        }
        if entry is None or entry[1] <= self.now():
            raise ODataError(401, "0x80072243", "Bearer token is missing or expired.", challenge)
        scope = self._token_scopes.get(token)
        org = request.host_url.rstrip("/")
        if scope is not None and not any(
            s in (f"{org}/user_impersonation", f"{org}/.default") for s in scope.split()
        ):
            raise ODataError(
                401, "0x80072243", "The token audience is not this organization.", challenge
            )
        for row in self.tables["systemusers"].values():
            if row["internalemailaddress"].lower() == entry[0] and not row["isdisabled"]:
                return str(row["systemuserid"])
        raise ODataError(403, ERR_NOT_MEMBER, "The user is not a member of the organization.")

    def _require(self, user_id: str, privilege: str) -> None:
        if privilege in self.privileges.get(user_id, set()):
            return
        name = {"read": "Read", "create": "Create", "write": "Write", "delete": "Delete"}[privilege]
        privilege_id = str(uuid.uuid5(uuid.NAMESPACE_OID, f"prv{name}Activity"))
        raise ODataError(
            403,
            ERR_PRIVILEGE,
            f"Principal user (Id={user_id}, type=8, roleCount=1, privilegeCount=0, "
            f"accessMode=0), is missing prv{name}Activity privilege (Id={privilege_id}) on "
            f"OTC=4201 for entity 'appointment'. context.Caller={user_id}",
        )

    def _base(self) -> str:
        return request.host_url.rstrip("/") + API_PATH

    def _prefer(self) -> dict[str, str]:
        prefs: dict[str, str] = {}
        for part in request.headers.get("Prefer", "").split(","):
            key, _, value = part.strip().partition("=")
            if key:
                prefs[key.strip()] = value.strip().strip('"')
        return prefs

    def _page_size(self) -> int:
        try:
            return max(1, int(self._prefer().get("odata.maxpagesize", DEFAULT_MAX_PAGE)))
        except ValueError:
            return DEFAULT_MAX_PAGE

    def _annotations(self) -> bool:
        wanted = self._prefer().get("odata.include-annotations", "")
        return wanted in ("*", "Microsoft.Dynamics.CRM.*") or (
            "Microsoft.Dynamics.CRM.lookuplogicalname" in wanted
        )

    def _select(self) -> list[str] | None:
        raw = request.args.get("$select")
        return [s.strip() for s in raw.split(",")] if raw else None

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        resp = jsonify(body)
        resp.status_code = status
        resp.headers["OData-Version"] = "4.0"
        for key, value in (headers or {}).items():
            resp.headers[key] = value
        return resp

    # -- WhoAmI and users ------------------------------------------------------------------

    def _whoami(self, user_id: str) -> Response:
        # WhoAmI function: https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/reference/whoami
        return self._json(
            200,
            {
                "@odata.context": f"{self._base()}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": self.business_unit_id,
                "UserId": user_id,
                "OrganizationId": self.organization_id,
            },
        )

    def _user_privileges(self, user_id: str, id: str) -> Response:
        # RetrieveUserPrivileges function (Web API function reference): the caller's roles'
        # privileges, each {Depth, PrivilegeId, BusinessUnitId, PrivilegeName}.
        held = self.privileges.get(id.lower())
        if held is None:
            raise ODataError(404, ERR_NOT_FOUND, f"systemuser With Id = {id} Does Not Exist")
        names = {"read": "Read", "create": "Create", "write": "Write", "delete": "Delete"}
        return self._json(
            200,
            {
                "@odata.context": (
                    f"{self._base()}/$metadata#Microsoft.Dynamics.CRM."
                    "RetrieveUserPrivilegesResponse"
                ),
                "RolePrivileges": [
                    {
                        "Depth": "Global",
                        "PrivilegeId": str(
                            uuid.uuid5(uuid.NAMESPACE_OID, f"prv{names[p]}Activity")
                        ),
                        "BusinessUnitId": self.business_unit_id,
                        "PrivilegeName": f"prv{names[p]}Activity",
                    }
                    for p in PRIVILEGES
                    if p in held
                ],
            },
        )

    def _get_person(self, user_id: str, table: str, id: str) -> Response:
        # Retrieve a row: Query data using the Web API ("Retrieve a table row").
        row = self.tables[table].get(id.lower())
        if row is None:
            raise ODataError(404, ERR_NOT_FOUND, f"{table[:-1]} With Id = {id} Does Not Exist")
        return self._json(200, self._project(table, row, self._select()))

    def _list_people(self, user_id: str, table: str) -> Response:
        # Query data using the Web API: $select, $filter (incl. Microsoft.Dynamics.CRM.In).
        rows = [r for r in self.tables[table].values() if _filter(request.args.get("$filter"))(r)]
        return self._page(table, rows, lambda r: self._project(table, r, self._select()))

    def _project(self, table: str, row: dict[str, Any], select: list[str] | None) -> dict:
        key = {"systemusers": "systemuserid", "contacts": "contactid", "leads": "leadid"}.get(
            table, "activityid"
        )
        unknown = [f for f in select or [] if f not in row]
        if unknown:
            raise ODataError(
                400,
                ERR_SYNTAX,
                f"Could not find a property named '{unknown[0]}' on type "
                f"'Microsoft.Dynamics.CRM.{table[:-1]}'.",
            )
        out = {k: v for k, v in row.items() if select is None or k in select or k == key}
        return out

    # -- activity parties ----------------------------------------------------------------

    def _render_party(self, party: dict[str, Any]) -> dict[str, Any]:
        out = {
            "activitypartyid": party["activitypartyid"],
            "_activityid_value": party["_activityid_value"],
            "participationtypemask": party["participationtypemask"],
            "addressused": party["addressused"],
            "_partyid_value": party["_partyid_value"],
        }
        if self._annotations() and party["_partyid_value"] is not None:
            out["_partyid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] = party[
                "partyobjecttypecode"
            ]
            out["_partyid_value@OData.Community.Display.V1.FormattedValue"] = party["partyname"]
        return out

    def _list_parties(self, user_id: str) -> Response:
        # activityparty EntityType: GET activityparties (RetrieveMultiple only).
        self._require(user_id, "read")
        pred = _filter(request.args.get("$filter"))
        rows = [
            self._render_party(p)
            for parties in self.parties.values()
            for p in parties
            if pred(self._render_party(p) | {"activityid": p["_activityid_value"]})
        ]
        return self._page("activityparties", rows, lambda r: r, key="activitypartyid")

    def _bind(self, value: Any, kind: str) -> str:
        # Associate and disassociate: "@odata.bind" takes "/contacts(id)" or an absolute URL.
        m = re.search(rf"{PARTY_TABLES[kind]}\(([0-9a-fA-F-]{{36}})\)$", str(value))
        if not m:
            raise ODataError(400, ERR_SYNTAX, f"Invalid @odata.bind value '{value}'.")
        row_id = m.group(1).lower()
        if row_id not in self.tables[PARTY_TABLES[kind]]:
            raise ODataError(404, ERR_NOT_FOUND, f"{kind} With Id = {row_id} Does Not Exist")
        return row_id

    def _parties_from(self, activity_id: str, items: Any) -> list[dict[str, Any]]:
        if not isinstance(items, list):
            raise ODataError(400, ERR_SYNTAX, "appointment_activity_parties must be a collection.")
        out = []
        for item in items:
            unknown = set(item) - PARTY_WRITABLE
            if unknown:
                raise ODataError(
                    400,
                    ERR_SYNTAX,
                    f"Could not find a property named '{sorted(unknown)[0]}' on type "
                    "'Microsoft.Dynamics.CRM.activityparty'.",
                )
            mask = item.get("participationtypemask")
            if mask not in (MASK_REQUIRED, MASK_OPTIONAL, MASK_ORGANIZER):
                raise ODataError(
                    400, ERR_SYNTAX, f"participationtypemask {mask!r} is not valid on appointment."
                )
            binds = [
                k for k in ("contact", "lead", "systemuser") if f"partyid_{k}@odata.bind" in item
            ]
            if len(binds) > 1:
                raise ODataError(400, ERR_SYNTAX, "An activity party has one party only.")
            if binds:
                kind = binds[0]
                party_id = self._bind(item[f"partyid_{kind}@odata.bind"], kind)
                out.append(self._party(activity_id, mask, kind, party_id, item.get("addressused")))
            elif item.get("addressused"):
                # Unresolved: kept by the address only (the app shows it in red).
                out.append(self._party(activity_id, mask, None, None, item["addressused"]))
            else:
                raise ODataError(400, ERR_SYNTAX, "An activity party needs a party or an address.")
        if sum(p["participationtypemask"] == MASK_ORGANIZER for p in out) > 1:
            raise ODataError(400, ERR_SYNTAX, "An appointment has one organizer.")
        return out

    # -- appointments --------------------------------------------------------------------

    def _render(self, row: dict[str, Any], select: list[str] | None, expand: bool) -> dict:
        out: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
        out.update(self._project("appointments", row, select))
        if expand:
            out["appointment_activity_parties"] = [
                self._render_party(p) for p in self.parties.get(row["activityid"], [])
            ]
        return out

    def _expand(self) -> bool:
        raw = request.args.get("$expand", "")
        if raw and not raw.startswith("appointment_activity_parties"):
            raise ODataError(400, ERR_SYNTAX, f"Could not find a property named '{raw}'.")
        return bool(raw)

    def _list_appointments(self, user_id: str) -> Response:
        # Query data using the Web API ($select/$filter/$orderby/$expand, odata.maxpagesize,
        # @odata.nextLink) and Use change tracking to synchronize data with external systems
        # (Prefer: odata.track-changes, @odata.deltaLink, $deletedEntity).
        self._require(user_id, "read")
        select, prefs = self._select(), self._prefer()
        token = request.args.get("$deltatoken")
        skip = request.args.get("$skiptoken")
        # The next link of a tracked listing stays tracked without the Prefer header again.
        tracked_page = bool(skip) and isinstance(_unb64(skip or ""), dict)
        tracking = token is not None or "odata.track-changes" in prefs or tracked_page
        if tracking and self.change_tracking:
            if any(request.args.get(k) for k in ("$filter", "$orderby", "$expand", "$top")):
                raise ODataError(
                    400,
                    ERR_SYNTAX,
                    "$filter, $orderby, $expand and $top are not supported with change tracking.",
                )
            return self._tracked(select, token)
        if token is not None:
            raise ODataError(
                400, ERR_SYNTAX, "Change tracking is not enabled for the entity 'appointment'."
            )
        expand = self._expand()
        pred = _filter(request.args.get("$filter"))
        rows = [r for r in self.tables["appointments"].values() if pred(r)]
        order = _orderby(request.args.get("$orderby"))
        return self._page(
            "appointments", rows, lambda r: self._render(r, select, expand), order=order
        )

    def _page(
        self,
        entity_set: str,
        rows: list[dict[str, Any]],
        render: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        order: list[tuple[str, bool]] | None = None,
        key: str | None = None,
    ) -> Response:
        key = (
            key
            or {
                "appointments": "activityid",
                "systemusers": "systemuserid",
                "contacts": "contactid",
                "leads": "leadid",
            }[entity_set]
        )
        order = (order or []) + [(key, False)]

        def sort_key(r: dict[str, Any]) -> list[Any]:
            return [_sortable(r.get(f)) for f, _ in order]

        rows.sort(key=sort_key)
        if any(desc for _, desc in order):
            raise ODataError(400, ERR_SYNTAX, "The emulator sorts ascending only.")
        skip = request.args.get("$skiptoken")
        if skip:
            after = _unb64(skip)
            rows = [r for r in rows if sort_key(r) > after]
        size = self._page_size()
        top = request.args.get("$top")
        if top is not None:
            # $top caps the whole result: no next link (Query data using the Web API).
            if not top.isdigit():
                raise ODataError(400, ERR_SYNTAX, f"Invalid $top value '{top}'.")
            rows, size = rows[: int(top)], min(size, int(top))
        chunk = rows[:size]
        body: dict[str, Any] = {
            "@odata.context": f"{self._base()}/$metadata#{entity_set}",
            "value": [render(r) for r in chunk],
        }
        if len(rows) > size:
            args = {k: v for k, v in request.args.items() if k != "$skiptoken"}
            args["$skiptoken"] = _b64(sort_key(chunk[-1]))
            body["@odata.nextLink"] = f"{request.base_url}?{urlencode(args, safe='$')}"
        return self._json(200, body)

    def _tracked(self, select: list[str] | None, token: str | None) -> Response:
        base = self._base()
        context = f"{base}/$metadata#appointments"
        skip = request.args.get("$skiptoken")
        state = _unb64(skip) if skip else None
        size = self._page_size()
        if token is None:
            # Initial: every row, by id; the last page's delta link covers what follows.
            snap = state["s"] if state else self._seq
            after = state["a"] if state else ""
            rows = sorted(
                (r for r in self.tables["appointments"].values() if r["activityid"] > after),
                key=lambda r: r["activityid"],
            )
            chunk = rows[:size]
            value = [self._render(r, select, False) for r in chunk]
            next_state = {"s": snap, "a": chunk[-1]["activityid"]} if chunk else None
        else:
            try:
                since = int(token.split("!")[0])
            except ValueError:
                since = -1
            if since < self._min_token or since > self._seq:
                raise ODataError(
                    400,
                    ERR_EXPIRED_TOKEN,
                    "The version stamp associated with the client has expired. "
                    "Perform a full sync.",
                )
            snap = state["s"] if state else self._seq
            after = state["a"] if state else since
            changes: list[tuple[int, dict[str, Any] | str]] = [
                (r["versionnumber"], r)
                for r in self.tables["appointments"].values()
                if after < r["versionnumber"] <= snap
            ]
            changes += [(v, i) for i, v in self._tombstones.items() if after < v <= snap]
            changes.sort(key=lambda c: c[0])
            chunk_c = changes[:size]
            value = []
            for _, item in chunk_c:
                if isinstance(item, str):
                    value.append(
                        {
                            "@odata.context": f"{context}/$deletedEntity",
                            "id": item,
                            "reason": "deleted",
                        }
                    )
                else:
                    value.append(self._render(item, select, False))
            rows = changes  # type: ignore[assignment]
            chunk = chunk_c  # type: ignore[assignment]
            next_state = {"s": snap, "a": chunk_c[-1][0]} if chunk_c else None
        body: dict[str, Any] = {"@odata.context": f"{context}/$delta", "value": value}
        if len(rows) > size and next_state is not None:
            args = {k: v for k, v in request.args.items() if k != "$skiptoken"}
            args["$skiptoken"] = _b64(next_state)
            body["@odata.nextLink"] = f"{request.base_url}?{urlencode(args, safe='$')}"
        else:
            args = {k: v for k, v in request.args.items() if k not in ("$skiptoken", "$deltatoken")}
            args["$deltatoken"] = (
                f"{snap}!{datetime.fromtimestamp(self.now(), UTC):%m/%d/%Y %H:%M:%S}"
            )
            body["@odata.deltaLink"] = f"{request.base_url}?{urlencode(args, safe='$')}"
        return self._json(200, body, {"Preference-Applied": "odata.track-changes"})

    def _get_appointment(self, user_id: str, id: str) -> Response:
        # Retrieve a table row (Query data using the Web API), with $expand of the parties.
        self._require(user_id, "read")
        row = self.tables["appointments"].get(id.lower())
        if row is None:
            raise ODataError(404, ERR_NOT_FOUND, f"appointment With Id = {id} Does Not Exist")
        return self._json(200, self._render(row, self._select(), self._expand()))

    def _values(self, body: Any, row: dict[str, Any]) -> list[dict[str, Any]] | None:
        if not isinstance(body, dict):
            raise ODataError(400, ERR_SYNTAX, "The request body is not a JSON object.")
        unknown = set(body) - WRITABLE
        if unknown:
            raise ODataError(
                400,
                ERR_SYNTAX,
                f"Could not find a property named '{sorted(unknown)[0]}' on type "
                "'Microsoft.Dynamics.CRM.appointment'.",
            )
        for key, value in body.items():
            if key in ("scheduledstart", "scheduledend"):
                row[key] = _parse_dt(value) if value is not None else None
            elif key == "ownerid@odata.bind":
                row["_ownerid_value"] = self._bind(value, "systemuser")
            elif key != "appointment_activity_parties":
                row[key] = value
        state, status = row.get("statecode"), row.get("statuscode")
        if "statecode" in body and "statuscode" not in body:
            status = STATES.get(state, (None,))[0]
            row["statuscode"] = status
        if state not in STATES or status not in STATES[state]:
            raise ODataError(
                400,
                ERR_BAD_STATE,
                f"{status} is not a valid status code for state code AppointmentState {state}.",
            )
        if "appointment_activity_parties" in body:
            return self._parties_from(row["activityid"], body["appointment_activity_parties"])
        return None

    def _created(self, row: dict[str, Any]) -> Response:
        location = f"{self._base()}/appointments({row['activityid']})"
        if self._prefer().get("return") == "representation":
            return self._json(
                201, self._render(row, self._select(), self._expand()), {"OData-EntityId": location}
            )
        return Response(status=204, headers={"OData-EntityId": location, "OData-Version": "4.0"})

    def _create_appointment(self, user_id: str) -> Response:
        # Create a table row (POST, deep insert of appointment_activity_parties;
        # Prefer: return=representation answers 201 with the row, otherwise 204 +
        # OData-EntityId).
        self._require(user_id, "create")
        row = self._new_row(user_id)
        parties = self._values(request.get_json(silent=True), row)
        parties = parties or []
        if not any(p["participationtypemask"] == MASK_ORGANIZER for p in parties):
            parties.insert(
                0, self._party(row["activityid"], MASK_ORGANIZER, "systemuser", user_id, None)
            )
        self.tables["appointments"][row["activityid"]] = row
        self.parties[row["activityid"]] = parties
        return self._created(row)

    def _update_appointment(self, user_id: str, id: str) -> Response:
        # Update and delete table rows: PATCH; If-Match: * prevents an upsert, an etag
        # gives optimistic concurrency (412 when the row changed).
        item_id = id.lower()
        row = self.tables["appointments"].get(item_id)
        if_match = request.headers.get("If-Match")
        if row is None:
            if if_match is not None:
                raise ODataError(404, ERR_NOT_FOUND, f"appointment With Id = {id} Does Not Exist")
            # Trap: PATCH of an unknown id without If-Match creates the row (upsert).
            self._require(user_id, "create")
            row = self._new_row(user_id)
            row["activityid"] = item_id
            parties = self._values(request.get_json(silent=True), row) or []
            self.tables["appointments"][item_id] = row
            self.parties[item_id] = parties
            return self._created(row)
        self._require(user_id, "write")
        if if_match not in (None, "*") and if_match != f'W/"{row["versionnumber"]}"':
            raise ODataError(
                412,
                ERR_VERSION,
                "The version of the existing record doesn't match the RowVersion property "
                "provided.",
            )
        draft = dict(row)
        parties = self._values(request.get_json(silent=True), draft)
        row.update(draft)
        if parties is not None:
            # Setting the collection replaces the appointment's parties.
            self.parties[item_id] = parties
        self._touch(row)
        if self._prefer().get("return") == "representation":
            return self._json(200, self._render(row, self._select(), self._expand()))
        return Response(status=204, headers={"OData-Version": "4.0"})

    def _delete_appointment(self, user_id: str, id: str) -> Response:
        # Update and delete table rows: DELETE answers 204, 404 for a missing row.
        self._require(user_id, "delete")
        if id.lower() not in self.tables["appointments"]:
            raise ODataError(404, ERR_NOT_FOUND, f"appointment With Id = {id} Does Not Exist")
        self._delete(id.lower())
        return Response(status=204, headers={"OData-Version": "4.0"})


# -- $filter and $orderby: the subset the connector sends; anything else is refused --------

_IN_RE = re.compile(
    r"^Microsoft\.Dynamics\.CRM\.In\(PropertyName='(\w+)',PropertyValues=\[(.*)\]\)$"
)
_CMP_RE = re.compile(r"^(\w+) (eq|ne|gt|ge|lt|le) (.+)$")
_STR_RE = re.compile(r"'((?:[^']|'')*)'")
_DT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$")
_GUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def _split_and(expr: str) -> list[str]:
    parts, depth, quote, start, i = [], 0, False, 0, 0
    while i < len(expr):
        ch = expr[i]
        if ch == "'":
            quote = not quote
        elif not quote and ch in "([":
            depth += 1
        elif not quote and ch in ")]":
            depth -= 1
        elif not quote and depth == 0 and expr[i : i + 5] == " and ":
            parts.append(expr[start:i])
            start = i + 5
            i += 4
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts if p.strip()]


def _literal(text: str) -> Any:
    m = _STR_RE.fullmatch(text)
    if m:
        return m.group(1).replace("''", "'")
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    if _DT_RE.match(text):
        return _parse_dt(text)
    if _GUID_RE.match(text):
        return text.lower()
    try:
        return int(text)
    except ValueError as exc:
        raise ODataError(400, ERR_SYNTAX, f"Syntax error at '{text}'.") from exc


def _sortable(value: Any) -> list[Any]:
    # Lists, not tuples: a sort key goes through JSON in the $skiptoken and must compare
    # equal to itself when it comes back.
    if value is None:
        return [0, ""]
    if isinstance(value, bool | int):
        return [1, int(value)]
    return [2, str(value).lower()]


def _compare(a: Any, b: Any) -> int:
    x, y = _sortable(a), _sortable(b)
    return (x > y) - (x < y)


_OPS: dict[str, Callable[[int], bool]] = {
    "eq": lambda c: c == 0,
    "ne": lambda c: c != 0,
    "gt": lambda c: c > 0,
    "ge": lambda c: c >= 0,
    "lt": lambda c: c < 0,
    "le": lambda c: c <= 0,
}


def _filter(expr: str | None) -> Callable[[dict[str, Any]], bool]:
    """A predicate for the $filter subset: `field op literal` joined by `and`, and
    Microsoft.Dynamics.CRM.In (Query data using the Web API, "Filter results")."""
    if not expr:
        return lambda _row: True
    preds: list[Callable[[dict[str, Any]], bool]] = []
    for clause in _split_and(expr.strip()):
        m = _IN_RE.match(clause)
        if m:
            field = m.group(1)
            wanted = {v.replace("''", "'").lower() for v in _STR_RE.findall(m.group(2))}
            preds.append(lambda r, f=field, w=wanted: str(r.get(f) or "").lower() in w)
            continue
        m = _CMP_RE.match(clause)
        if not m:
            raise ODataError(400, ERR_SYNTAX, f"The $filter clause '{clause}' is not supported.")
        field, op, value = m.group(1), _OPS[m.group(2)], _literal(m.group(3))
        if value is None:
            # "eq null" / "ne null": only those two make sense against null.
            preds.append(lambda r, f=field, o=op: o(0) == (r.get(f) is None))
        else:
            preds.append(
                lambda r, f=field, o=op, v=value: r.get(f) is not None and o(_compare(r[f], v))
            )

    def check(row: dict[str, Any]) -> bool:
        return all(p(row) for p in preds)

    return check


def _orderby(expr: str | None) -> list[tuple[str, bool]]:
    out = []
    for part in filter(None, (p.strip() for p in (expr or "").split(","))):
        m = re.fullmatch(r"(\w+)(?: (asc|desc))?", part)
        if not m:
            raise ODataError(400, ERR_SYNTAX, f"The $orderby clause '{part}' is not supported.")
        out.append((m.group(1), m.group(2) == "desc"))
    return out
