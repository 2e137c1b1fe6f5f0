"""SuiteCRM 7.14.6 emulator: the V8 JSON:API and the legacy REST v4_1 API, over real HTTP.

Only what the calsync connector uses is emulated, but in the real server's shapes,
including its traps (each is marked "Trap:" below), because an emulator that is kinder
than the real server hides bugs:

- v4_1 answers every error with HTTP 200 and ``{"name","number","description"}``;
  arguments are positional (the server passes the decoded ``rest_data`` array to the
  method in order, so the keys' names are ignored); every value is a string.
- A v4_1 delete is ``set_entry`` with ``deleted=1``: soft, bumps ``date_modified``, also
  soft-deletes the meeting's relations. ``set_entry`` with an unknown id creates a record
  with that id; ``set_entry`` on a deleted record answers success and changes nothing.
- v4_1 ``query`` is raw SQL. This emulator parses the safe subset the connector sends and
  refuses anything else, so a connector change that sends new SQL fails loudly here.
- V8 output dates are ISO 8601 UTC cut to the minute; input dates must be
  ``Y-m-d H:i:s`` UTC, anything else is accepted (201) and the date saved empty.
- V8 never shows deleted records.

Sources (cited again next to each endpoint):
- V8: https://docs.suitecrm.com/developer/api/developer-setup-guide/json-api/
  (fields, page, filter, sort; module and relationship endpoints),
  https://docs.suitecrm.com/developer/api/developer-setup-guide/configure-authentication/
  (POST /Api/access_token, grants, expires_in 3600), the routes in salesagility/SuiteCRM
  ``Api/V8/Config/routes.php``, filters in ``Api/V8/JsonApi/Repository/Filter.php``
  (eq, neq, gt, gte, lt, lte; AND/OR), error bodies ``{"errors":{"status","title",
  "detail"}}`` from ``Api/V8/JsonApi/Response/ErrorResponse.php``; filtering people by
  ``email1``: salesagility/SuiteCRM PR #9410 (fixed in 7.12.x) and issue #9606.
- v4_1: https://docs.suitecrm.com/developer/appendix-b---api-methods/
  (login with the MD5 of the password, get_entry_list, get_entry, set_entry,
  set_relationship, get_server_info, get_user_id), salesagility/SuiteCRM
  ``service/v4_1/SugarWebServiceImplv4_1.php``; error numbers from
  ``soap/SoapErrorDefinitions.php``.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, request

from .server import EmulatorServer

__all__ = ["API_V4_1", "API_V8", "SuiteCrmEmulator"]

API_V8 = "v8"
API_V4_1 = "v4_1"

# "expires_in":3600 in
# https://docs.suitecrm.com/developer/api/developer-setup-guide/configure-authentication/
ACCESS_TOKEN_SECONDS = 3600
# league/oauth2-server default refresh token lifetime used by SuiteCRM (P1M); 30 days here.
REFRESH_TOKEN_SECONDS = 30 * 24 * 3600
# PHP's session.gc_maxlifetime default: a v4_1 session idle for 24 minutes is gone.
SESSION_IDLE_SECONDS = 1440
V8_DEFAULT_PAGE_SIZE = 20  # Api/V8/Param/GetModulesParams.php: page[size] default 20.

MODULE_TABLES = {"Meetings": "meetings", "Contacts": "contacts", "Leads": "leads", "Users": "users"}
# Link field names on Meetings (modules/Meetings/vardefs.php) and the module they point to.
MEETING_LINKS = {"contacts": "Contacts", "leads": "Leads", "users": "Users"}
MEETING_FIELDS = (
    "id",
    "name",
    "date_entered",
    "date_modified",
    "modified_user_id",
    "created_by",
    "description",
    "deleted",
    "assigned_user_id",
    "location",
    "duration_hours",
    "duration_minutes",
    "date_start",
    "date_end",
    "parent_type",
    "parent_id",
    "status",
    "type",
    "outlook_id",
    "repeat_type",
    "repeat_interval",
    "repeat_parent_id",
)
PERSON_FIELDS = (
    "id",
    "first_name",
    "last_name",
    "email1",
    "date_entered",
    "date_modified",
    "deleted",
    "assigned_user_id",
)
USER_FIELDS = (
    "id",
    "user_name",
    "first_name",
    "last_name",
    "email1",
    "status",
    "is_admin",
    "date_entered",
    "date_modified",
    "deleted",
)
DATE_FIELDS = {"date_start", "date_end", "date_entered", "date_modified"}
SQL_DATE = "%Y-%m-%d %H:%M:%S"
_SQL_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")

# soap/SoapErrorDefinitions.php (shared by the REST v4_1 service).
ERR_INVALID_LOGIN = (
    "Invalid Login",
    10,
    "Login attempt failed please check the username and password",
)
ERR_INVALID_SESSION = ("Invalid Session ID", 11, "The session ID is invalid")
ERR_NO_MODULE = ("Module Does Not Exist", 20, "This module is not available on this server")
ERR_NO_ACCESS = ("Access Denied", 40, "You do not have access")
ERR_NO_RELATIONSHIP = (
    "Relationship Not Supported",
    31,
    "This module does not support this relationship",
)
ERR_INVALID_DATA = (
    "Invalid data sent",
    1001,
    "The data sent for this function is invalid. Please look at WSDL file for details",
)
# The real server runs any SQL it is given (a bad query is a database failure). The
# emulator refuses SQL outside the connector's subset, in the service's error shape; the
# name and number 1000 are the emulator's own, so a test names the offending clause.
ERR_INVALID_CALL = ("Invalid Call", 1000, "The query is not supported by the emulator")


class _V41Error(Exception):
    def __init__(self, err: tuple[str, int, str], detail: str | None = None) -> None:
        super().__init__(err[0])
        self.err = err
        self.detail = detail


class _V8Error(Exception):
    def __init__(self, status: int, detail: str, title: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.title = status, detail, title


def _sql_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(SQL_DATE)


def _v8_date(value: str) -> str:
    """Trap: V8 output dates are ISO UTC cut to the minute (seconds are lost)."""
    if not value:
        return ""
    parsed = datetime.strptime(value, SQL_DATE).replace(second=0, tzinfo=UTC)
    return parsed.isoformat()


# Trap: SuiteCRM saves text HTML-encoded (htmlspecialchars, ENT_QUOTES) and both APIs
# return it that way: "Tom's <b>" comes back as "Tom&#039;s &lt;b&gt;" (salesagility/SuiteCRM
# issue #8101 for V8; v4_1 has always done so).
HTML_ENCODED_FIELDS = {"name", "description", "location", "first_name", "last_name"}


def _stored(field: str, value: str) -> str:
    if field not in HTML_ENCODED_FIELDS:
        return value
    return (
        value.replace("&", "&amp;")
        .replace('"', "&quot;")
        .replace("'", "&#039;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


def _unquote_sql(raw: str) -> str:
    # The connector escapes like mysqli_real_escape_string: backslash before ' and \.
    return re.sub(r"\\(.)", r"\1", raw)


class SuiteCrmEmulator(EmulatorServer):
    """A SuiteCRM instance in memory.

    Knobs beyond the base's faults, counters and clock:
    - ``apis``: which APIs the instance offers ("v8", "v4_1", or both);
    - ``legacy_prefix``: SuiteCRM 8 layout, both APIs under ``/legacy/``;
    - ``freeze_clock(ts)``: pin emulator time, e.g. to put two changes in one second;
    - ``expire_sessions()``: drop every v4_1 session (as a PHP session timeout does).
    Seeding: ``add_user``, ``add_client``, ``add_contact``, ``add_lead``, ``add_meeting``,
    ``seed_meetings`` (10,000 in well under a second, straight into memory).
    User-side edits (what someone does in the SuiteCRM UI): ``edit_meeting``,
    ``delete_meeting``. Over HTTP, for the demo: POST ``/_sandbox/suitecrm/users``,
    ``/_sandbox/suitecrm/clients``, ``/_sandbox/suitecrm/meetings`` (bulk seeding) and
    ``/_sandbox/suitecrm/expire_sessions``, next to the base's ``/_sandbox/...`` knobs.
    """

    name = "suitecrm"
    api_prefixes = ("/Api", "/service", "/legacy")

    def __init__(
        self,
        *,
        apis: Iterable[str] = (API_V8, API_V4_1),
        legacy_prefix: bool = False,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.apis = frozenset(apis)
        unknown = self.apis - {API_V8, API_V4_1}
        if unknown:
            raise ValueError(f"unknown SuiteCRM API {sorted(unknown)[0]!r}")
        self.prefix = "/legacy" if legacy_prefix else ""
        self._lock = threading.RLock()
        self.records: dict[str, dict[str, dict[str, str]]] = {m: {} for m in MODULE_TABLES}
        # meeting id -> rows {"module","bean_id","accept_status","deleted","date_modified"}
        self.relations: dict[str, list[dict[str, str]]] = {}
        self.passwords: dict[str, str] = {}  # user id -> password
        self.meetings_access: dict[str, bool] = {}  # user id -> ACL on Meetings
        self.clients: dict[str, str] = {}  # OAuth client id -> secret
        self.access_tokens: dict[str, tuple[str, float]] = {}  # token -> (user id, expiry)
        self.refresh_tokens: dict[str, tuple[str, str, float]] = {}  # -> (user, client, exp)
        self.sessions: dict[str, tuple[str, float]] = {}  # v4_1 session -> (user, last use)
        super().__init__(seed=seed, host=host, port=port)

    # -- clock -----------------------------------------------------------------------

    def stamp(self) -> str:
        """The emulator's current time as SuiteCRM stores it (UTC, one-second grain)."""
        return _sql_date(self.now())

    def start(self) -> SuiteCrmEmulator:
        super().start()
        assert self._server is not None
        emu = self
        handler = self._server.RequestHandlerClass

        class _ClockHandler(handler):  # type: ignore[misc, valid-type]
            # The Date header is the server clock clients may read (the connector does, for
            # its watermarks); it must follow the adjustable clock, not the host's.
            def date_time_string(self, timestamp: float | None = None) -> str:
                return formatdate(emu.now() if timestamp is None else timestamp, usegmt=True)

        self._server.RequestHandlerClass = _ClockHandler
        return self

    def expire_sessions(self) -> None:
        with self._lock:
            self.sessions.clear()

    # -- seeding -----------------------------------------------------------------------

    def add_client(self, client_id: str, secret: str) -> None:
        """An OAuth2 client as an admin registers it (Admin > OAuth2 Clients and Tokens)."""
        self.clients[client_id] = secret

    def add_user(
        self,
        user_name: str,
        password: str,
        email: str,
        *,
        first_name: str = "",
        last_name: str = "",
        meetings_access: bool = True,
    ) -> str:
        user_id = self._insert(
            "Users",
            {
                "user_name": user_name,
                "first_name": first_name,
                "last_name": last_name or user_name,
                "email1": email,
                "status": "Active",
                "is_admin": "0",
            },
        )
        self.passwords[user_id] = password
        self.meetings_access[user_id] = meetings_access
        return user_id

    def add_contact(self, email: str, first_name: str = "", last_name: str = "") -> str:
        return self._insert(
            "Contacts", {"email1": email, "first_name": first_name, "last_name": last_name}
        )

    def add_lead(self, email: str, first_name: str = "", last_name: str = "") -> str:
        return self._insert(
            "Leads", {"email1": email, "first_name": first_name, "last_name": last_name}
        )

    def add_meeting(self, assigned_user_id: str, **fields: str) -> str:
        start = fields.pop("date_start", None) or _sql_date(self.now() + 86400)
        start_dt = datetime.strptime(start, SQL_DATE)
        end = fields.pop("date_end", None) or (start_dt + timedelta(hours=1)).strftime(SQL_DATE)
        minutes = int((datetime.strptime(end, SQL_DATE) - start_dt).total_seconds() // 60)
        values = {
            "name": "Meeting",
            "status": "Planned",
            "type": "Sugar",
            "location": "",
            "description": "",
            "outlook_id": "",
            "repeat_parent_id": "",
            "duration_hours": str(minutes // 60),
            "duration_minutes": str(minutes % 60),
        }
        values.update(fields)
        values.update(date_start=start, date_end=end, assigned_user_id=assigned_user_id)
        return self._insert("Meetings", values, user_id=assigned_user_id)

    def seed_meetings(
        self, n: int, assigned_user_id: str, *, start: datetime | None = None
    ) -> list[str]:
        """`n` meetings an hour apart, written straight into memory (no HTTP)."""
        base = start or datetime.fromtimestamp(self.now(), UTC).replace(
            minute=0, second=0, microsecond=0
        )
        stamp = self.stamp()
        ids = []
        with self._lock:
            table = self.records["Meetings"]
            for i in range(n):
                s = base + timedelta(hours=i)
                item_id = str(uuid.uuid4())
                table[item_id] = {
                    **dict.fromkeys(MEETING_FIELDS, ""),
                    "id": item_id,
                    "name": f"Seeded meeting {i + 1}",
                    "date_start": s.strftime(SQL_DATE),
                    "date_end": (s + timedelta(minutes=30)).strftime(SQL_DATE),
                    "duration_hours": "0",
                    "duration_minutes": "30",
                    "status": "Planned",
                    "type": "Sugar",
                    "assigned_user_id": assigned_user_id,
                    "deleted": "0",
                    "date_entered": stamp,
                    "date_modified": stamp,
                    "created_by": assigned_user_id,
                    "modified_user_id": assigned_user_id,
                }
                ids.append(item_id)
        return ids

    def relate(self, meeting_id: str, module: str, bean_id: str) -> None:
        with self._lock:
            self._relate(meeting_id, module, bean_id)

    # -- what a user does in the SuiteCRM UI -------------------------------------------

    def edit_meeting(self, meeting_id: str, **fields: str) -> None:
        with self._lock:
            row = self.records["Meetings"][meeting_id]
            row.update({k: _stored(k, v) for k, v in fields.items()})
            row["date_modified"] = self.stamp()

    def delete_meeting(self, meeting_id: str) -> None:
        with self._lock:
            self._soft_delete(meeting_id)

    def meeting(self, meeting_id: str) -> dict[str, str]:
        """The stored row, deleted or not (a copy)."""
        with self._lock:
            return dict(self.records["Meetings"][meeting_id])

    def live_meetings(self) -> list[dict[str, str]]:
        with self._lock:
            return [dict(r) for r in self.records["Meetings"].values() if r["deleted"] == "0"]

    def related(self, meeting_id: str, *, include_deleted: bool = False) -> list[dict[str, str]]:
        with self._lock:
            rows = self.relations.get(meeting_id, [])
            return [dict(r) for r in rows if include_deleted or r["deleted"] == "0"]

    # -- storage -----------------------------------------------------------------------

    def _insert(
        self,
        module: str,
        values: dict[str, str],
        *,
        item_id: str | None = None,
        user_id: str = "1",
    ) -> str:
        stamp = self.stamp()
        fields = (
            MEETING_FIELDS
            if module == "Meetings"
            else (USER_FIELDS if module == "Users" else PERSON_FIELDS)
        )
        row = dict.fromkeys(fields, "")
        row.update({k: _stored(k, str(v)) for k, v in values.items() if k in row})
        row.update(
            id=item_id or str(uuid.uuid4()),
            deleted="0",
            date_entered=stamp,
            date_modified=stamp,
        )
        if module == "Meetings":
            row.update(created_by=user_id, modified_user_id=user_id)
        with self._lock:
            self.records[module][row["id"]] = row
        return row["id"]

    def _relate(self, meeting_id: str, module: str, bean_id: str) -> bool:
        if bean_id not in self.records[module]:
            return False
        rows = self.relations.setdefault(meeting_id, [])
        for row in rows:
            if row["module"] == module and row["bean_id"] == bean_id and row["deleted"] == "0":
                return True
        rows.append(
            {
                "module": module,
                "bean_id": bean_id,
                "accept_status": "none",
                "deleted": "0",
                "date_modified": self.stamp(),
            }
        )
        return True

    def _unrelate(self, meeting_id: str, module: str, bean_id: str) -> None:
        for row in self.relations.get(meeting_id, []):
            if row["module"] == module and row["bean_id"] == bean_id:
                row.update(deleted="1", date_modified=self.stamp())

    def _soft_delete(self, meeting_id: str) -> None:
        # SugarBean::mark_deleted: deleted=1, date_modified bumped, relationships removed.
        row = self.records["Meetings"][meeting_id]
        row.update(deleted="1", date_modified=self.stamp())
        for rel in self.relations.get(meeting_id, []):
            rel.update(deleted="1", date_modified=self.stamp())

    def _email_matches(self, module: str, emails: set[str]) -> list[dict[str, str]]:
        return [
            r
            for r in self.records[module].values()
            if r["deleted"] == "0" and r["email1"] and r["email1"].upper() in emails
        ]

    def _check_access(self, user_id: str, module: str) -> bool:
        return module != "Meetings" or self.meetings_access.get(user_id, False)

    def _login(self, user_name: str, password_ok: Any) -> str | None:
        for row in self.records["Users"].values():
            if (
                row["user_name"] == user_name
                and row["deleted"] == "0"
                and password_ok(self.passwords.get(row["id"], ""))
            ):
                return row["id"]
        return None

    # -- Flask -------------------------------------------------------------------------

    def register_routes(self, app: Flask) -> None:
        p = self.prefix

        @app.post("/_sandbox/suitecrm/users")
        def _sandbox_user() -> Response:
            # The demo's way to add a user: {"user_name","password","email","meetings_access"}
            body = request.get_json(force=True) or {}
            user_id = self.add_user(
                str(body["user_name"]),
                str(body["password"]),
                str(body.get("email", "")),
                meetings_access=bool(body.get("meetings_access", True)),
            )
            return jsonify(id=user_id)

        @app.post("/_sandbox/suitecrm/clients")
        def _sandbox_client() -> Response:
            body = request.get_json(force=True) or {}
            self.add_client(str(body["client_id"]), str(body["client_secret"]))
            return Response(status=204)

        @app.post("/_sandbox/suitecrm/meetings")
        def _sandbox_meetings() -> Response:
            # {"assigned_user_id": "...", "count": 10000}: bulk seeding for demos and benches.
            body = request.get_json(force=True) or {}
            ids = self.seed_meetings(int(body.get("count", 1)), str(body["assigned_user_id"]))
            return jsonify(count=len(ids))

        @app.post("/_sandbox/suitecrm/expire_sessions")
        def _sandbox_expire() -> Response:
            self.expire_sessions()
            return Response(status=204)

        @app.get("/")
        def _home() -> Response:
            # A browser landing page, not an API: probing must not mistake it for one.
            title = "SuiteCRM 8" if p else "SuiteCRM"
            return Response(f"<html><title>{title}</title></html>", mimetype="text/html")

        if API_V4_1 in self.apis:
            app.add_url_rule(f"{p}/service/v4_1/rest.php", "v4_1", self._v41, methods=["POST"])
        if API_V8 in self.apis:
            app.add_url_rule(f"{p}/Api/access_token", "token", self._token, methods=["POST"])
            app.add_url_rule(f"{p}/Api/V8/module/<module>", "v8_list", self._v8_list)
            app.add_url_rule(f"{p}/Api/V8/module/<module>/<item_id>", "v8_get", self._v8_get)
            app.add_url_rule(f"{p}/Api/V8/module", "v8_create", self._v8_create, methods=["POST"])
            app.add_url_rule(f"{p}/Api/V8/module", "v8_update", self._v8_update, methods=["PATCH"])
            app.add_url_rule(
                f"{p}/Api/V8/module/<module>/<item_id>",
                "v8_delete",
                self._v8_delete,
                methods=["DELETE"],
            )
            app.add_url_rule(
                f"{p}/Api/V8/module/<module>/<item_id>/relationships/<link>",
                "v8_rel_get",
                self._v8_rel_get,
            )
            app.add_url_rule(
                f"{p}/Api/V8/module/<module>/<item_id>/relationships",
                "v8_rel_add",
                self._v8_rel_add,
                methods=["POST"],
            )
            app.add_url_rule(
                f"{p}/Api/V8/module/<module>/<item_id>/relationships/<link>/<related_id>",
                "v8_rel_delete",
                self._v8_rel_delete,
                methods=["DELETE"],
            )

    def error_body(
        self, status: int, code: str, message: str, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        # Api/V8/JsonApi/Response/ErrorResponse.php
        return {"errors": {"status": status, "title": None, "detail": message}}

    # -- REST v4_1 ---------------------------------------------------------------------
    # https://docs.suitecrm.com/developer/appendix-b---api-methods/ : POST to
    # service/v4_1/rest.php with method, input_type=JSON, response_type=JSON, rest_data
    # (JSON array of arguments).

    _V41_SIGNATURES = {
        "login": ("user_auth", "application_name", "name_value_list"),
        "logout": ("session",),
        "get_server_info": (),
        "get_user_id": ("session",),
        "get_entry_list": (
            "session",
            "module_name",
            "query",
            "order_by",
            "offset",
            "select_fields",
            "link_name_to_fields_array",
            "max_results",
            "deleted",
            "favorites",
        ),
        "get_entry": (
            "session",
            "module_name",
            "id",
            "select_fields",
            "link_name_to_fields_array",
            "track_view",
        ),
        "set_entry": ("session", "module_name", "name_value_list"),
        "set_entries": ("session", "module_name", "name_value_lists"),
        "set_relationships": (
            "session",
            "module_names",
            "module_ids",
            "link_field_names",
            "related_ids",
            "name_value_lists",
            "delete_array",
        ),
        "set_relationship": (
            "session",
            "module_name",
            "module_id",
            "link_field_name",
            "related_ids",
            "name_value_list",
            "delete",
        ),
    }

    def _v41(self) -> Response:
        method = request.form.get("method", "")
        self.counter.hit(f"v4_1 {method}")
        if request.form.get("input_type", "JSON").upper() != "JSON":
            return self._v41_error(ERR_INVALID_CALL, "only input_type=JSON is emulated")
        try:
            raw = json.loads(request.form.get("rest_data") or "[]")
        except ValueError:
            raw = []
        sig = self._V41_SIGNATURES.get(method)
        if sig is None:
            # Unknown method: the real service answers 200 with an empty body.
            return Response("", mimetype="text/html")
        # Trap: positional arguments; a dict's keys are ignored, only their order counts.
        values = list(raw.values()) if isinstance(raw, dict) else list(raw)
        args = dict(zip(sig, values + [None] * (len(sig) - len(values)), strict=True))
        try:
            with self._lock:
                result = getattr(self, f"_v41_{method}")(args)
        except _V41Error as exc:
            return self._v41_error(exc.err, exc.detail)
        return jsonify(result)

    def _v41_error(self, err: tuple[str, int, str], detail: str | None = None) -> Response:
        # Trap: errors are HTTP 200.
        description = err[2] if detail is None else f"{err[2]}: {detail}"
        return jsonify({"name": err[0], "number": err[1], "description": description})

    def _v41_user(self, args: dict[str, Any], module: str | None = None) -> str:
        session = str(args.get("session") or "")
        entry = self.sessions.get(session)
        now = self.now()
        if entry is None or now - entry[1] > SESSION_IDLE_SECONDS:
            self.sessions.pop(session, None)
            raise _V41Error(ERR_INVALID_SESSION)
        self.sessions[session] = (entry[0], now)
        if module is not None:
            if module not in MODULE_TABLES:
                raise _V41Error(ERR_NO_MODULE)
            if not self._check_access(entry[0], module):
                raise _V41Error(ERR_NO_ACCESS)
        return entry[0]

    def _v41_login(self, args: dict[str, Any]) -> dict[str, Any]:
        # login: https://docs.suitecrm.com/developer/appendix-b---api-methods/#_login
        auth = args.get("user_auth") or {}
        md5 = str(auth.get("password", "")).lower()
        user_id = self._login(
            str(auth.get("user_name", "")),
            lambda pw: hashlib.md5(pw.encode()).hexdigest() == md5,
        )
        if user_id is None:
            raise _V41Error(ERR_INVALID_LOGIN)
        session = secrets.token_hex(13)
        self.sessions[session] = (user_id, self.now())
        user = self.records["Users"][user_id]
        return {
            "id": session,
            "module_name": "Users",
            "name_value_list": _nvl(
                {
                    "user_id": user_id,
                    "user_name": user["user_name"],
                    "user_language": "en_us",
                    "user_currency_id": "-99",
                    "user_is_admin": False,
                    "user_default_team_id": None,
                    "user_default_dateformat": "m/d/Y",
                    "user_default_timeformat": "h:ia",
                    "user_number_seperator": ",",
                    "user_decimal_seperator": ".",
                }
            ),
        }

    def _v41_logout(self, args: dict[str, Any]) -> None:
        # logout: https://docs.suitecrm.com/developer/appendix-b---api-methods/#_logout
        self.sessions.pop(str(args.get("session") or ""), None)
        return None

    def _v41_get_server_info(self, args: dict[str, Any]) -> dict[str, Any]:
        # get_server_info: https://docs.suitecrm.com/developer/appendix-b---api-methods/#_get_server_info
        # Trap: "version" is the Sugar base version SuiteCRM 7 still reports, not 7.14.6.
        return {"flavor": "CE", "version": "6.5.25", "gmt_time": self.stamp()}

    def _v41_get_user_id(self, args: dict[str, Any]) -> str:
        # get_user_id: https://docs.suitecrm.com/developer/appendix-b---api-methods/#_get_user_id
        return self._v41_user(args)

    def _v41_get_entry_list(self, args: dict[str, Any]) -> dict[str, Any]:
        # get_entry_list: https://docs.suitecrm.com/developer/appendix-b---api-methods/#_get_entry_list
        module = str(args.get("module_name") or "")
        self._v41_user(args, module)
        table = MODULE_TABLES[module]
        preds = _parse_where(str(args.get("query") or ""), table)
        with_deleted = str(args.get("deleted") or "0") in ("1", "true", "True")
        rows = [
            r
            for r in self.records[module].values()
            if (with_deleted or r["deleted"] == "0")
            and all(pred(r, self.records) for pred in preds)
        ]
        order = _parse_order(str(args.get("order_by") or ""), table)
        rows.sort(key=lambda r: tuple(r.get(f, "") for f in order) if order else ())
        offset = int(args.get("offset") or 0)
        max_results = int(args.get("max_results") or 20)
        if max_results <= 0:
            max_results = 20
        page = rows[offset : offset + max_results]
        fields = list(args.get("select_fields") or [])
        links = args.get("link_name_to_fields_array") or []
        return {
            "result_count": len(page),
            "total_count": str(len(rows)),
            "next_offset": offset + len(page),
            "entry_list": [self._v41_entry(module, r, fields) for r in page],
            "relationship_list": [self._v41_links(module, r, links) for r in page] if links else [],
        }

    def _v41_get_entry(self, args: dict[str, Any]) -> dict[str, Any]:
        # get_entry: https://docs.suitecrm.com/developer/appendix-b---api-methods/#_get_entry
        module = str(args.get("module_name") or "")
        self._v41_user(args, module)
        item_id = str(args.get("id") or "")
        row = self.records[module].get(item_id)
        fields = list(args.get("select_fields") or [])
        if row is None or row["deleted"] == "1":
            # SugarWebServiceImpl::get_entries: a missing or deleted record still yields
            # an entry, holding a warning and deleted=1.
            warning = "Access to this object is denied since it has been deleted or does not exist"
            return {
                "entry_list": [
                    {
                        "id": item_id,
                        "module_name": module,
                        "name_value_list": _nvl({"warning": warning, "deleted": "1"}),
                    }
                ],
                "relationship_list": [],
            }
        links = args.get("link_name_to_fields_array") or []
        return {
            "entry_list": [self._v41_entry(module, row, fields)],
            "relationship_list": [self._v41_links(module, row, links)] if links else [],
        }

    def _v41_entry(self, module: str, row: dict[str, str], fields: list[str]) -> dict[str, Any]:
        wanted = [f for f in fields if f in row] or list(row)
        return {
            "id": row["id"],
            "module_name": module,
            "name_value_list": _nvl({f: row[f] for f in wanted}),
        }

    def _v41_links(
        self, module: str, row: dict[str, str], links: list[dict[str, Any]]
    ) -> dict[str, Any]:
        out = []
        for link in links:
            name = str(link.get("name", ""))
            target = MEETING_LINKS.get(name) if module == "Meetings" else None
            if target is None:
                raise _V41Error(ERR_NO_RELATIONSHIP, name)
            fields = list(link.get("value") or [])
            records = []
            for rel in self.relations.get(row["id"], []):
                bean = self.records[target].get(rel["bean_id"])
                if rel["module"] != target or rel["deleted"] == "1" or bean is None:
                    continue
                if bean["deleted"] == "1":
                    continue
                wanted = [f for f in fields if f in bean] or ["id"]
                records.append({"link_value": _nvl({f: bean[f] for f in wanted})})
            out.append({"name": name, "records": records})
        return {"link_list": out}

    def _v41_set_entry(self, args: dict[str, Any]) -> dict[str, Any]:
        # set_entry: https://docs.suitecrm.com/developer/appendix-b---api-methods/#_set_entry
        module = str(args.get("module_name") or "")
        user_id = self._v41_user(args, module)
        values = _v41_values(args.get("name_value_list"))
        item_id = self._v41_save(module, dict(values), user_id)
        values.pop("id", None)
        return {"id": item_id, "entry_list": _nvl(values)}

    def _v41_set_entries(self, args: dict[str, Any]) -> dict[str, Any]:
        # set_entries: https://docs.suitecrm.com/developer/appendix-b---api-methods/#_set_entries
        # and SoapHelperWebServices::new_handle_set_entries (service/core/
        # SoapHelperWebService.php): each name_value_list saved in order, like set_entry;
        # the answer is only {"ids": [...]}, one id per record saved.
        module = str(args.get("module_name") or "")
        user_id = self._v41_user(args, module)
        lists = args.get("name_value_lists")
        ids: list[str] = []
        for nvl in lists if isinstance(lists, list) else []:
            values = _v41_values(nvl)
            if module == "Meetings" and not values.get("id") and values.get("outlook_id"):
                # Trap: a meeting sent without id but with an outlook_id that a live
                # meeting already has updates that meeting instead of creating a twin.
                twin = next(
                    (
                        r
                        for r in self.records["Meetings"].values()
                        if r["deleted"] == "0" and r["outlook_id"] == values["outlook_id"]
                    ),
                    None,
                )
                if twin is not None:
                    values["id"] = twin["id"]
            ids.append(self._v41_save(module, values, user_id))
        return {"ids": ids}

    def _v41_save(self, module: str, values: dict[str, str], user_id: str) -> str:
        """SugarBean::save as set_entry and set_entries reach it; the record's id."""
        item_id = values.pop("id", "") or ""
        table = self.records[module]
        row = table.get(item_id) if item_id else None
        if row is None:
            # Trap: an unknown id silently creates a record with that id (new_with_id).
            deleting = values.get("deleted") == "1"
            new_id = self._insert(module, values, item_id=item_id or None, user_id=user_id)
            if deleting and module == "Meetings":
                self._soft_delete(new_id)
            return new_id
        if row["deleted"] == "1":
            # Trap: saving a deleted record answers success and changes nothing.
            return item_id
        if values.get("deleted") == "1":
            if module == "Meetings":
                self._soft_delete(item_id)
            else:
                row.update(deleted="1", date_modified=self.stamp())
            return item_id
        values.pop("deleted", None)
        for key in ("date_entered", "date_modified", "created_by"):
            values.pop(key, None)
        row.update({k: _stored(k, v) for k, v in values.items() if k in row})
        row.update(date_modified=self.stamp(), modified_user_id=user_id)
        return item_id

    def _v41_set_relationship(self, args: dict[str, Any]) -> dict[str, Any]:
        # set_relationship: https://docs.suitecrm.com/developer/appendix-b---api-methods/#_set_relationship
        module = str(args.get("module_name") or "")
        self._v41_user(args, module)
        meeting_id = str(args.get("module_id") or "")
        link = str(args.get("link_field_name") or "")
        target = MEETING_LINKS.get(link) if module == "Meetings" else None
        if target is None:
            raise _V41Error(ERR_NO_RELATIONSHIP, link)
        delete = str(args.get("delete") or "0") in ("1", "true", "True")
        meeting = self.records["Meetings"].get(meeting_id)
        created = failed = deleted = 0
        for related_id in args.get("related_ids") or []:
            if meeting is None or meeting["deleted"] == "1":
                failed += 1
            elif delete:
                self._unrelate(meeting_id, target, str(related_id))
                deleted += 1
            elif self._relate(meeting_id, target, str(related_id)):
                created += 1
            else:
                failed += 1
        return {"created": created, "failed": failed, "deleted": deleted}

    def _v41_set_relationships(self, args: dict[str, Any]) -> dict[str, Any]:
        # set_relationships: https://docs.suitecrm.com/developer/appendix-b---api-methods/#_set_relationships
        # and SugarWebServiceImpl::set_relationships: the i-th entries of the lists form
        # one (record, link, related ids) triple; the answer counts triples, not ids, so it
        # never says which one failed.
        self._v41_user(args)
        names, ids = args.get("module_names"), args.get("module_ids")
        links, related = args.get("link_field_names"), args.get("related_ids")
        if not names or not ids or not links or not related:
            raise _V41Error(ERR_INVALID_DATA)
        deletes = args.get("delete_array")
        created = failed = deleted = 0
        delete = False
        for i, module in enumerate(names if isinstance(names, list) else []):
            # Trap: a missing delete_array entry keeps the previous one's value.
            if isinstance(deletes, list) and i < len(deletes):
                delete = str(deletes[i]) in ("1", "true", "True")
            meeting_id = str(ids[i]) if i < len(ids) else ""
            link = str(links[i]) if i < len(links) else ""
            target = MEETING_LINKS.get(link) if module == "Meetings" else None
            meeting = self.records["Meetings"].get(meeting_id)
            bean_ids = related[i] if i < len(related) and isinstance(related[i], list) else []
            if target is None or meeting is None or meeting["deleted"] == "1":
                failed += 1
            elif delete:
                for bean_id in bean_ids:
                    self._unrelate(meeting_id, target, str(bean_id))
                deleted += 1
            else:
                for bean_id in bean_ids:
                    self._relate(meeting_id, target, str(bean_id))
                created += 1
        return {"created": created, "failed": failed, "deleted": deleted}

    # -- V8 JSON:API -------------------------------------------------------------------
    # https://docs.suitecrm.com/developer/api/developer-setup-guide/json-api/

    def _token(self) -> Response:
        # POST /Api/access_token (league/oauth2-server): password and refresh_token grants.
        # https://docs.suitecrm.com/developer/api/developer-setup-guide/configure-authentication/
        body = request.get_json(silent=True) or request.form.to_dict()
        grant = body.get("grant_type", "")
        if grant not in ("password", "refresh_token", "client_credentials"):
            return _oauth_error(
                400,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            )
        client_id = str(body.get("client_id", ""))
        if not client_id or self.clients.get(client_id) != str(body.get("client_secret", "")):
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        now = self.now()
        with self._lock:
            if grant == "password":
                password = str(body.get("password", ""))
                user_id = self._login(str(body.get("username", "")), lambda pw: pw == password)
                if user_id is None:
                    return _oauth_error(
                        400, "invalid_grant", "The user credentials were incorrect."
                    )
            elif grant == "refresh_token":
                held = self.refresh_tokens.pop(str(body.get("refresh_token", "")), None)
                if held is None or held[1] != client_id or held[2] < now:
                    return _oauth_error(
                        401,
                        "invalid_request",
                        "The refresh token is invalid.",
                        hint="Token has been revoked",
                    )
                user_id = held[0]
            else:
                return _oauth_error(
                    400, "unsupported_grant_type", "The client_credentials grant is not set up."
                )
            access = secrets.token_urlsafe(24)
            refresh = secrets.token_urlsafe(24)
            self.access_tokens[access] = (user_id, now + ACCESS_TOKEN_SECONDS)
            self.refresh_tokens[refresh] = (user_id, client_id, now + REFRESH_TOKEN_SECONDS)
        return jsonify(
            token_type="Bearer",
            expires_in=ACCESS_TOKEN_SECONDS,
            access_token=access,
            refresh_token=refresh,
        )

    def _v8_user(self, module: str | None = None) -> str:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        held = self.access_tokens.get(token)
        if held is None or held[1] < self.now():
            # league ResourceServerMiddleware's answer to a missing/expired/revoked token.
            raise _OAuthDenied()
        if module is not None:
            if module not in MODULE_TABLES:
                raise _V8Error(400, f"Module {module} does not exist")
            if not self._check_access(held[0], module):
                # Api/V8/BeanDecorator/BeanManager.php refuses with AccessDeniedException.
                raise _V8Error(403, "Access denied to module " + module)
        return held[0]

    def _v8(self, fn: Any, *args: Any) -> Response:
        try:
            with self._lock:
                out = fn(*args)
        except _OAuthDenied:
            return _oauth_error(
                401,
                "access_denied",
                "The resource owner or authorization server denied the request.",
                hint="Access token could not be verified",
            )
        except _V8Error as exc:
            resp = jsonify(
                {"errors": {"status": exc.status, "title": exc.title, "detail": exc.detail}}
            )
            resp.status_code = exc.status
            return resp
        status, body = out
        resp = jsonify(body)
        resp.status_code = status
        resp.headers["Content-Type"] = "application/vnd.api+json"
        return resp

    def _v8_record(self, module: str, row: dict[str, str], fields: list[str] | None) -> dict:
        attrs = {
            k: (_v8_date(v) if k in DATE_FIELDS else v)
            for k, v in row.items()
            if k != "id" and (not fields or k in fields)
        }
        base = f"{self.prefix}/Api/V8/module/{module}/{row['id']}"
        out: dict[str, Any] = {"type": module, "id": row["id"], "attributes": attrs}
        if module == "Meetings":
            out["relationships"] = {
                name: {"links": {"related": f"{base}/relationships/{name}"}}
                for name in MEETING_LINKS
            }
        return out

    def _v8_list(self, module: str) -> Response:
        # GET /Api/V8/module/{module}?fields[..]=..&filter[f][op]=..&sort=..&page[..]=..
        # "Available parameters" in
        # https://docs.suitecrm.com/developer/api/developer-setup-guide/json-api/
        return self._v8(self._v8_list_impl, module)

    def _v8_list_impl(self, module: str) -> tuple[int, dict[str, Any]]:
        self._v8_user(module)
        table = self.records[module]
        preds, operator = _v8_filters(module, request.args)
        matches = [
            r
            for r in table.values()
            if r["deleted"] == "0"  # Trap: V8 never returns deleted records.
            and (
                all(p(r) for p in preds)
                if operator == "AND"
                else (any(p(r) for p in preds) if preds else True)
            )
        ]
        sort = request.args.get("sort", "")
        if sort:
            field = sort.lstrip("-")
            if field not in MEETING_FIELDS + PERSON_FIELDS + USER_FIELDS:
                raise _V8Error(400, f"Sort field {field} in {module} module is not found")
            matches.sort(key=lambda r: (r.get(field, ""), r["id"]), reverse=sort.startswith("-"))
        try:
            size = int(request.args.get("page[size]", V8_DEFAULT_PAGE_SIZE))
            number = int(request.args.get("page[number]", 1))
        except ValueError as exc:
            raise _V8Error(400, "page[size] and page[number] must be integers") from exc
        size, number = max(size, 1), max(number, 1)
        fields_arg = request.args.get(f"fields[{module}]")
        fields = [f.strip() for f in fields_arg.split(",")] if fields_arg else None
        total_pages = (len(matches) + size - 1) // size
        chunk = matches[(number - 1) * size : number * size]
        if not chunk:
            return 200, {
                "meta": {"message": "Request was successful, but there is no result"},
                "data": [],
            }
        body: dict[str, Any] = {
            "meta": {"total-pages": total_pages},
            "data": [self._v8_record(module, r, fields) for r in chunk],
            "links": self._v8_links(number, total_pages),
        }
        return 200, body

    def _v8_links(self, number: int, total: int) -> dict[str, str | None]:
        # Api/V8/JsonApi/Helper/PaginationObjectHelper.php: first/prev/next/last URLs.
        def url(n: int) -> str:
            args = {k: v for k, v in request.args.items() if k != "page[number]"}
            args["page[number]"] = str(n)
            return f"{request.base_url}?{urlencode(args)}"

        return {
            "first": url(1),
            "prev": url(number - 1) if number > 1 else None,
            "next": url(number + 1) if number < total else None,
            "last": url(total),
        }

    def _v8_get(self, module: str, item_id: str) -> Response:
        # https://docs.suitecrm.com/developer/api/developer-setup-guide/json-api/
        def impl() -> tuple[int, dict[str, Any]]:
            self._v8_user(module)
            row = self.records[module].get(item_id)
            if row is None or row["deleted"] == "1":
                raise _V8Error(404, f"{module} module with id {item_id} is not found")
            fields_arg = request.args.get(f"fields[{module}]")
            fields = fields_arg.split(",") if fields_arg else None
            return 200, {"data": self._v8_record(module, row, fields)}

        return self._v8(impl)

    def _v8_attributes(self, module: str, attrs: dict[str, Any]) -> dict[str, str]:
        out = {}
        for key, value in attrs.items():
            text = "" if value is None else str(value)
            if key in DATE_FIELDS and text and not _SQL_DATE_RE.match(text):
                # Trap: a date in any other format is accepted and silently saved empty.
                text = ""
            out[key] = text
        return out

    def _v8_create(self) -> Response:
        # POST /Api/V8/module {"data":{"type":"Meetings","attributes":{...}}} -> 201
        # https://docs.suitecrm.com/developer/api/developer-setup-guide/json-api/
        def impl() -> tuple[int, dict[str, Any]]:
            data = (request.get_json(silent=True) or {}).get("data") or {}
            module = str(data.get("type", ""))
            user_id = self._v8_user(module)
            values = self._v8_attributes(module, data.get("attributes") or {})
            for key in ("id", "deleted", "date_entered", "date_modified"):
                values.pop(key, None)
            item_id = self._insert(module, values, item_id=data.get("id"), user_id=user_id)
            return 201, {"data": self._v8_record(module, self.records[module][item_id], None)}

        return self._v8(impl)

    def _v8_update(self) -> Response:
        # PATCH /Api/V8/module {"data":{"type","id","attributes"}}
        # https://docs.suitecrm.com/developer/api/developer-setup-guide/json-api/
        def impl() -> tuple[int, dict[str, Any]]:
            data = (request.get_json(silent=True) or {}).get("data") or {}
            module = str(data.get("type", ""))
            user_id = self._v8_user(module)
            item_id = str(data.get("id", ""))
            row = self.records[module].get(item_id)
            if row is None or row["deleted"] == "1":
                raise _V8Error(404, f"{module} module with id {item_id} is not found")
            values = self._v8_attributes(module, data.get("attributes") or {})
            for key in ("id", "deleted", "date_entered", "date_modified", "created_by"):
                values.pop(key, None)
            row.update({k: _stored(k, v) for k, v in values.items() if k in row})
            row.update(date_modified=self.stamp(), modified_user_id=user_id)
            return 200, {"data": self._v8_record(module, row, None)}

        return self._v8(impl)

    def _v8_delete(self, module: str, item_id: str) -> Response:
        # DELETE /Api/V8/module/{module}/{id}: soft delete, like the UI.
        # https://docs.suitecrm.com/developer/api/developer-setup-guide/json-api/
        def impl() -> tuple[int, dict[str, Any]]:
            self._v8_user(module)
            row = self.records[module].get(item_id)
            if row is None or row["deleted"] == "1":
                raise _V8Error(404, f"{module} module with id {item_id} is not found")
            if module == "Meetings":
                self._soft_delete(item_id)
            else:
                row.update(deleted="1", date_modified=self.stamp())
            return 200, {"meta": {"message": f"Record with id {item_id} is deleted"}}

        return self._v8(impl)

    def _v8_meeting(self, module: str, item_id: str) -> dict[str, str]:
        if module != "Meetings":
            raise _V8Error(400, "Only Meetings relationships are emulated")
        row = self.records["Meetings"].get(item_id)
        if row is None or row["deleted"] == "1":
            raise _V8Error(404, f"{module} module with id {item_id} is not found")
        return row

    def _v8_rel_get(self, module: str, item_id: str, link: str) -> Response:
        # GET .../relationships/{linkFieldName}: the related records' type and id only.
        # https://docs.suitecrm.com/developer/api/developer-setup-guide/json-api/
        def impl() -> tuple[int, dict[str, Any]]:
            self._v8_user(module)
            self._v8_meeting(module, item_id)
            target = MEETING_LINKS.get(link)
            if target is None:
                raise _V8Error(400, f"Cannot load relationship {link} for Meeting module")
            data = [
                {
                    "type": target,
                    "id": rel["bean_id"],
                    "links": {"self": f"{self.prefix}/Api/V8/module/{target}/{rel['bean_id']}"},
                }
                for rel in self.relations.get(item_id, [])
                if rel["module"] == target
                and rel["deleted"] == "0"
                and self.records[target].get(rel["bean_id"], {}).get("deleted") == "0"
            ]
            if not data:
                return 200, {
                    "meta": {"message": "There is no relationship set in this link"},
                    "data": [],
                }
            return 200, {"data": data}

        return self._v8(impl)

    def _v8_rel_add(self, module: str, item_id: str) -> Response:
        # POST .../relationships {"data":{"type":"Contacts","id":"..."}}
        # https://docs.suitecrm.com/developer/api/developer-setup-guide/json-api/
        def impl() -> tuple[int, dict[str, Any]]:
            self._v8_user(module)
            self._v8_meeting(module, item_id)
            data = (request.get_json(silent=True) or {}).get("data") or {}
            target, related_id = str(data.get("type", "")), str(data.get("id", ""))
            if target not in MEETING_LINKS.values():
                raise _V8Error(400, f"Relationship between {module} and {target} not found")
            if not self._relate(item_id, target, related_id):
                raise _V8Error(404, f"{target} module with id {related_id} is not found")
            return 201, {
                "meta": {
                    "message": f"{target} with id {related_id} has been added "
                    f"to {module} with id {item_id}"
                }
            }

        return self._v8(impl)

    def _v8_rel_delete(self, module: str, item_id: str, link: str, related_id: str) -> Response:
        # https://docs.suitecrm.com/developer/api/developer-setup-guide/json-api/
        def impl() -> tuple[int, dict[str, Any]]:
            self._v8_user(module)
            self._v8_meeting(module, item_id)
            target = MEETING_LINKS.get(link)
            if target is None:
                raise _V8Error(400, f"Cannot load relationship {link} for Meeting module")
            self._unrelate(item_id, target, related_id)
            return 200, {
                "meta": {
                    "message": f"{target} with id {related_id} has been deleted "
                    f"from {module} with id {item_id}"
                }
            }

        return self._v8(impl)


class _OAuthDenied(Exception):
    pass


def _oauth_error(status: int, error: str, message: str, *, hint: str = "") -> Response:
    # league/oauth2-server OAuthServerException::generateHttpResponse
    resp = jsonify(error=error, error_description=message, hint=hint, message=message)
    resp.status_code = status
    return resp


def _nvl(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """v4_1's name_value_list: {"field": {"name": "field", "value": "..."}}."""
    return {k: {"name": k, "value": v} for k, v in values.items()}


def _v41_str(value: Any) -> str:
    return "" if value is None else str(value)


def _v41_values(nvl: Any) -> dict[str, str]:
    """A name_value_list in either of the shapes the service accepts -> {field: value}."""
    if isinstance(nvl, dict):
        return {k: _v41_str(v.get("value") if isinstance(v, dict) else v) for k, v in nvl.items()}
    if isinstance(nvl, list):
        return {str(i["name"]): _v41_str(i.get("value")) for i in nvl if isinstance(i, dict)}
    return {}


# -- the SQL subset ---------------------------------------------------------------------

_CMP = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}
_QUOTED = r"'((?:[^'\\]|\\.)*)'"
_CLAUSE_RE = re.compile(rf"^(\w+)\.(\w+)\s*(=|<>|>=|<=|>|<)\s*{_QUOTED}$")
_EMAIL_IN_RE = re.compile(
    r"^(\w+)\.id IN \(SELECT eabr\.bean_id FROM email_addr_bean_rel eabr "
    r"JOIN email_addresses ea ON ea\.id = eabr\.email_address_id "
    r"WHERE eabr\.deleted = 0 AND eabr\.bean_module = '(\w+)' "
    rf"AND ea\.email_address_caps IN \(((?:{_QUOTED}(?:, )?)+)\)\)$"
)
_IN_LIST_RE = re.compile(rf"^(\w+)\.(id|outlook_id) IN \(((?:{_QUOTED}(?:, )?)+)\)$")
_SAFE_FIELDS = set(MEETING_FIELDS) | set(PERSON_FIELDS) | set(USER_FIELDS)


def _split_and(query: str) -> list[str]:
    """Split on top-level AND (outside quotes and parentheses)."""
    parts, depth, quote, start, i = [], 0, False, 0, 0
    while i < len(query):
        ch = query[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == "'":
                quote = False
        elif ch == "'":
            quote = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and query[i : i + 5].upper() == " AND ":
            parts.append(query[start:i])
            start = i + 5
            i += 4
        i += 1
    parts.append(query[start:])
    return [p.strip() for p in parts if p.strip()]


def _parse_where(query: str, table: str) -> list[Any]:
    preds: list[Any] = []
    for clause in _split_and(query):
        inner = clause[1:-1].strip() if clause.startswith("(") and clause.endswith(")") else ""
        m = _CLAUSE_RE.match(clause) or (_CLAUSE_RE.match(inner) if inner else None)
        if m and m.group(1) == table and m.group(2) in _SAFE_FIELDS:
            field, op, value = m.group(2), _CMP[m.group(3)], _unquote_sql(m.group(4))
            preds.append(lambda r, _db, f=field, o=op, v=value: o(r.get(f, ""), v))
            continue
        m = _IN_LIST_RE.match(clause)
        if m and m.group(1) == table:
            field, listed = m.group(2), {_unquote_sql(v) for v in re.findall(_QUOTED, m.group(3))}
            preds.append(lambda r, _db, f=field, vs=listed: r.get(f, "") in vs)
            continue
        m = _EMAIL_IN_RE.match(clause)
        module = next((k for k, v in MODULE_TABLES.items() if v == table), "")
        if m and m.group(1) == table and m.group(2) == module:
            emails = {_unquote_sql(e) for e in re.findall(_QUOTED, m.group(3))}
            preds.append(
                lambda r, _db, em=emails: bool(r.get("email1")) and r["email1"].upper() in em
            )
            continue
        raise _V41Error(ERR_INVALID_CALL, clause)
    return preds


def _parse_order(order_by: str, table: str) -> list[str]:
    fields = []
    for part in filter(None, (p.strip() for p in order_by.split(","))):
        m = re.match(rf"^{table}\.(\w+)(?:\s+ASC)?$", part, re.IGNORECASE)
        if not m or m.group(1) not in _SAFE_FIELDS:
            raise _V41Error(ERR_INVALID_CALL, f"order_by {part}")
        fields.append(m.group(1))
    return fields


def _v8_filters(module: str, args: Any) -> tuple[list[Any], str]:
    """filter[field][op]=value pairs, as Api/V8/JsonApi/Repository/Filter.php reads them.

    The filter compares to the second even though output dates are cut to the minute.
    `email1` matches the record's address (SuiteCRM >= 7.12.3, PR #9410; it also matches
    no deleted address here, unlike issue #9606 on the real server).
    """
    operator = "AND"
    preds = []
    fields = {
        "Meetings": MEETING_FIELDS,
        "Contacts": PERSON_FIELDS,
        "Leads": PERSON_FIELDS,
        "Users": USER_FIELDS,
    }[module]
    for key, value in args.items():
        if key == "filter[operator]":
            operator = value.upper()
            if operator not in ("AND", "OR"):
                raise _V8Error(400, f"Filter operator {value} is invalid")
            continue
        m = re.match(r"^filter\[(\w+)\]\[(\w+)\]$", key)
        if not m:
            continue
        field, op = m.group(1), m.group(2).lower()
        if field not in fields:
            raise _V8Error(400, f"Filter field {field} in {module} module is not found")
        ops = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
        if op not in ops:
            raise _V8Error(400, f"Filter operator {op} is invalid")
        cmp = _CMP[ops[op]]
        if field == "email1":
            wanted = value.upper()
            preds.append(lambda r, v=wanted, c=cmp: c(r.get("email1", "").upper(), v))
        else:
            preds.append(lambda r, f=field, v=value, c=cmp: c(r.get(f, ""), v))
    return preds, operator
