"""SuiteCRM connector: meetings through the V8 JSON:API or the legacy REST v4_1 API.

Which API: `SuiteCrmAdapter.connect` probes the instance (root, then ``/legacy/`` for
SuiteCRM 8) and uses V8 when it answers and the administrator registered an OAuth client
for calsync (the user's password is then not kept, only tokens), otherwise v4_1 (the MD5
of the password is kept, encrypted with the rest of the credential blob, to log in again).

What each API cannot do, and what the connector does about it:
- V8 never shows deleted records, so it cannot list deletions. The cursor remembers when
  the last full listing ran; after `full_listing_every` the cursor is declared expired and
  the engine's full listing (plus its one-by-one `get` of missing linked items) finds them.
- V8 prints dates cut to the minute, so its cursor works at minute grain; v4_1 at second
  grain. Both cursors hold the watermark plus the id *and version* of every record at that
  instant: a record edited again within the same second/minute has a new version and is
  reported; one already reported is not reported again, so nothing is missed or replayed.
- Neither API can send invitation emails: `Capabilities(notify=False)`.
- SuiteCRM stores a series as separate meetings tied by `repeat_parent_id`:
  `Capabilities(recurrence=False)`, the engine links occurrences one by one.

Our link id lives in the meeting's `outlook_id` field (SuiteCRM's field for exactly this),
so `find_by_link_id` can rebuild a lost link table.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from calsync.provider_errors import (
    ProviderAuthError,
    ProviderConfigError,
    ProviderError,
    ProviderPermissionError,
    ProviderTransientError,
)
from calsync.sync.adapters import BadItem, ChangePage, Window, Write
from calsync.sync.errors import CursorExpired
from calsync.sync.model import Capabilities, Event, Invitee

__all__ = [
    "API_V4_1",
    "API_V8",
    "Connection",
    "MeetingDeleted",
    "ProbeResult",
    "SuiteCrmAdapter",
]

API_V8 = "v8"
API_V4_1 = "v4_1"
PROVIDER = "suitecrm"
SQL_DATE = "%Y-%m-%d %H:%M:%S"
V41_PATH = "/service/v4_1/rest.php"
V8_TOKEN_PATH = "/Api/access_token"
PERSON_MODULES = ("Contacts", "Leads", "Users")
LINKS = {"Contacts": "contacts", "Leads": "leads", "Users": "users"}
MEETING_SELECT = (
    "id",
    "name",
    "date_start",
    "date_end",
    "duration_hours",
    "duration_minutes",
    "location",
    "description",
    "status",
    "assigned_user_id",
    "outlook_id",
    "repeat_parent_id",
    "date_modified",
    "deleted",
)
# What makes a version: everything we map, plus date_modified and deleted.
VERSION_FIELDS = MEETING_SELECT[1:]
EMAIL_BATCH = 50
# Meetings per v4_1 `set_entries` call (the executor's batch). SuiteCRM sets no limit of
# its own; each meeting is a full SugarBean save with its hooks, so a hundred keeps one
# request well inside the adapter's timeout on a modest server.
WRITE_BATCH = 100
# Invitee addresses per look-up query when a whole batch is looked up at once.
BATCH_EMAIL_CHUNK = 200
CURSOR_PREFIX = "suitecrm1:"


class MeetingDeleted(ProviderError):
    """The meeting was deleted in SuiteCRM while calsync was writing to it."""


@dataclass(frozen=True)
class ProbeResult:
    """What answered at an address: which APIs, under which prefix ("" or "/legacy")."""

    base_url: str
    prefix: str
    apis: tuple[str, ...]

    @property
    def api_root(self) -> str:
        return self.base_url + self.prefix


@dataclass(frozen=True)
class Connection:
    """The result of "Connect": the API used and the credential blob to store encrypted."""

    api: str
    credentials: dict[str, Any]
    user_id: str
    user_name: str
    message: str


# -- HTTP ---------------------------------------------------------------------------------


class _Http:
    """One place that turns transport failures into provider errors."""

    def __init__(self, session: requests.Session, timeout: float) -> None:
        self.session = session
        self.timeout = timeout

    def send(self, method: str, url: str, **kw: Any) -> requests.Response:
        host = urlsplit(url).netloc
        try:
            resp = self.session.request(method, url, timeout=self.timeout, **kw)
        except requests.Timeout as exc:
            raise ProviderTransientError(f"SuiteCRM at {host} did not answer in time.") from exc
        except requests.ConnectionError as exc:
            raise ProviderTransientError(f"SuiteCRM at {host} could not be reached.") from exc
        if resp.status_code == 429 or resp.status_code >= 500:
            raise ProviderTransientError(
                f"SuiteCRM at {host} is busy or failing (HTTP {resp.status_code}); "
                "calsync will try again.",
                retry_after=_retry_after(resp),
            )
        return resp


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return float(resp.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _json(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError as exc:
        raise ProviderConfigError(
            f"{urlsplit(resp.url).netloc} answers, but not like SuiteCRM. Check the address "
            "of your SuiteCRM (the one you open in the browser)."
        ) from exc


def _server_time(resp: requests.Response) -> datetime:
    """The server's clock from its Date header (one-second grain); our clock without one."""
    try:
        return parsedate_to_datetime(resp.headers["Date"]).astimezone(UTC)
    except (KeyError, TypeError, ValueError):
        return datetime.now(UTC).replace(microsecond=0)


def _sql(value: datetime) -> str:
    return value.astimezone(UTC).strftime(SQL_DATE)


def _parse_sql(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value[:19], SQL_DATE).replace(tzinfo=UTC)
    except ValueError:
        return None


def _quote(value: str) -> str:
    """A SQL string literal, escaped like mysqli_real_escape_string (v4_1 takes raw SQL)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


Raw = dict[str, str]
Person = tuple[str, str, str, str]  # module, id, email, name


# -- the two APIs -------------------------------------------------------------------------


class _V41:
    """REST v4_1: form POSTs, positional JSON arguments, errors as HTTP 200 bodies."""

    grain = 1
    lists_deletions = True

    def __init__(self, http: _Http, creds: Mapping[str, Any]) -> None:
        self.http = http
        self.url = creds["base_url"] + creds.get("prefix", "") + V41_PATH
        self.user_name = str(creds["user_name"])
        self.password_md5 = str(creds["password_md5"])
        self.user_id = str(creds.get("user_id") or "")
        self.session_id: str | None = None

    # A placeholder for the session argument, filled in at send time so that a retry after
    # a fresh login carries the new session.
    _SESSION = object()

    def call(self, method: str, args: list[Any], *, relogin: bool = True) -> Any:
        if self.session_id is None and method not in ("login", "get_server_info"):
            self.login()
        data = [self.session_id if a is self._SESSION else a for a in args]
        resp = self.http.send(
            "POST",
            self.url,
            data={
                "method": method,
                "input_type": "JSON",
                "response_type": "JSON",
                "rest_data": json.dumps(data),
            },
        )
        body = _json(resp)
        if isinstance(body, dict) and {"name", "number", "description"} <= body.keys():
            number = str(body["number"])
            if number == "11" and relogin and method != "login":
                # The PHP session timed out (or the server restarted): log in once more.
                self.session_id = None
                return self.call(method, args, relogin=False)
            raise self._error(number, str(body["description"]))
        return body

    def _error(self, number: str, description: str) -> ProviderError:
        if number == "10":
            return ProviderAuthError(
                f"SuiteCRM refused the user name or password of {self.user_name}. Connect "
                "SuiteCRM again with your current password."
            )
        if number == "11":
            return ProviderAuthError(
                "SuiteCRM keeps refusing calsync's session. Connect SuiteCRM again."
            )
        if number == "40":
            return ProviderPermissionError(
                f"Your SuiteCRM user {self.user_name} is not allowed to read or change "
                "Meetings. Ask your SuiteCRM administrator to give your role access to "
                "Meetings."
            )
        return ProviderError(f"SuiteCRM refused the request: {description}")

    def login(self) -> None:
        body = self.call(
            "login",
            [{"user_name": self.user_name, "password": self.password_md5}, "calsync", []],
        )
        if not isinstance(body, dict) or not body.get("id"):
            raise ProviderConfigError("SuiteCRM's login answer is not understood.")
        self.session_id = str(body["id"])
        nvl = body.get("name_value_list") or {}
        self.user_id = str((nvl.get("user_id") or {}).get("value") or self.user_id)

    def server_time(self) -> datetime:
        body = self.call("get_server_info", [])
        return _parse_sql(str(body.get("gmt_time", ""))) or datetime.now(UTC)

    # -- reading -------------------------------------------------------------------------

    def _links(self) -> list[dict[str, Any]]:
        return [
            {"name": link, "value": ["id", "email1", "first_name", "last_name"]}
            for link in LINKS.values()
        ]

    def _list(
        self, module: str, query: str, order: str, size: int, *, deleted: bool, links: bool
    ) -> list[tuple[Raw, list[Person]]]:
        select = list(MEETING_SELECT) if module == "Meetings" else ["id", "email1"]
        body = self.call(
            "get_entry_list",
            [
                self._SESSION,
                module,
                query,
                order,
                0,
                select,
                self._links() if links else [],
                size,
                1 if deleted else 0,
                False,
            ],
        )
        entries = body.get("entry_list") or []
        rels = body.get("relationship_list") or []
        out = []
        for i, entry in enumerate(entries):
            raw = _flatten(entry.get("name_value_list"))
            raw["id"] = str(entry.get("id") or raw.get("id", ""))
            out.append((raw, _people(rels[i] if i < len(rels) else None)))
        return out

    def _mine(self) -> str:
        return f"meetings.assigned_user_id = {_quote(self.user_id)}"

    def list_since(self, since: str, size: int) -> list[tuple[Raw, list[Person] | None]]:
        query = f"{self._mine()} AND meetings.date_modified >= {_quote(since)}"
        order = "meetings.date_modified ASC, meetings.id ASC"
        return list(self._list("Meetings", query, order, size, deleted=True, links=True))

    def list_window(
        self, window: Window, after_id: str, size: int
    ) -> list[tuple[Raw, list[Person] | None]]:
        query = (
            f"{self._mine()} AND meetings.date_end > {_quote(_sql(window.start))} "
            f"AND meetings.date_start < {_quote(_sql(window.end))}"
        )
        if after_id:
            query += f" AND meetings.id > {_quote(after_id)}"
        return list(
            self._list("Meetings", query, "meetings.id ASC", size, deleted=False, links=True)
        )

    def get(self, item_id: str) -> tuple[Raw, list[Person]] | None:
        body = self.call(
            "get_entry",
            [self._SESSION, "Meetings", item_id, list(MEETING_SELECT), self._links(), False],
        )
        entries = body.get("entry_list") or []
        if not entries:
            return None
        raw = _flatten(entries[0].get("name_value_list"))
        # A deleted or unknown id still yields an entry: a warning and deleted=1.
        if raw.get("deleted") == "1" or "warning" in raw:
            return None
        raw["id"] = str(entries[0].get("id") or item_id)
        rels = body.get("relationship_list") or []
        return raw, _people(rels[0] if rels else None)

    def find_by_outlook_id(self, link_id: str) -> tuple[Raw, list[Person] | None] | None:
        query = f"meetings.outlook_id = {_quote(link_id)}"
        found = self._list(
            "Meetings", query, "meetings.date_entered ASC", 1, deleted=False, links=True
        )
        return found[0] if found else None

    def lookup_emails(
        self, emails: list[str], chunk_size: int = EMAIL_BATCH
    ) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {e: [] for e in emails}
        for module in PERSON_MODULES:
            table = module.lower()
            for i in range(0, len(emails), chunk_size):
                chunk = emails[i : i + chunk_size]
                caps = ", ".join(_quote(e.upper()) for e in chunk)
                query = (
                    f"{table}.id IN (SELECT eabr.bean_id FROM email_addr_bean_rel eabr "
                    "JOIN email_addresses ea ON ea.id = eabr.email_address_id "
                    f"WHERE eabr.deleted = 0 AND eabr.bean_module = '{module}' "
                    f"AND ea.email_address_caps IN ({caps}))"
                )
                for raw, _ in self._list(module, query, "", 1000, deleted=False, links=False):
                    email = raw.get("email1", "").lower()
                    if email in out:
                        out[email].append((module, raw["id"]))
        return out

    def related(self, meeting_id: str) -> list[Person]:
        found = self.get(meeting_id)
        return found[1] if found else []

    def get_many(self, item_ids: list[str]) -> dict[str, tuple[Raw, list[Person]]]:
        """The live meetings among `item_ids`, with their people, in one request."""
        if not item_ids:
            return {}
        query = f"meetings.id IN ({', '.join(_quote(i) for i in item_ids)})"
        rows = self._list("Meetings", query, "", len(item_ids), deleted=False, links=True)
        return {raw["id"]: (raw, people) for raw, people in rows}

    # -- writing -------------------------------------------------------------------------

    def create(self, values: Raw) -> tuple[Raw, list[Person]]:
        body = self.call("set_entry", [self._SESSION, "Meetings", _nvl_list(values)])
        new_id = str(body.get("id") or "")
        found = self.get(new_id) if new_id else None
        if found is None:
            raise ProviderError("SuiteCRM did not keep the new meeting; nothing was created.")
        return found

    def update(self, item_id: str, values: Raw, title: str) -> Raw:
        # Trap: set_entry on a deleted record answers success and changes nothing, so the
        # answer proves nothing: read the meeting back. (The caller checked it exists:
        # set_entry with an unknown id would create one.)
        self.call("set_entry", [self._SESSION, "Meetings", _nvl_list({"id": item_id, **values})])
        found = self.get(item_id)
        if found is None:
            raise _deleted(title)
        return found[0]

    def delete(self, item_id: str) -> None:
        if self.get(item_id) is None:
            return  # already gone; a blind set_entry would create a deleted stub
        self.call(
            "set_entry", [self._SESSION, "Meetings", _nvl_list({"id": item_id, "deleted": "1"})]
        )

    def relate(self, meeting_id: str, module: str, ids: list[str], *, remove: bool) -> None:
        self.call(
            "set_relationship",
            [self._SESSION, "Meetings", meeting_id, LINKS[module], ids, [], 1 if remove else 0],
        )

    def save_many(self, entries: list[Raw]) -> list[str]:
        """`set_entries`: every entry saved in order; the ids it answers, in that order."""
        body = self.call(
            "set_entries", [self._SESSION, "Meetings", [_nvl_list(e) for e in entries]]
        )
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list):
            raise ProviderError("SuiteCRM's answer to a batch of meetings is not understood.")
        return [str(i) for i in ids]

    def relate_many(self, changes: list[tuple[str, str, list[str], bool]]) -> dict[str, int]:
        """`set_relationships`: (meeting id, module, related ids, remove) each, one request.
        Its answer only counts what was created, deleted or failed."""
        body = self.call(
            "set_relationships",
            [
                self._SESSION,
                ["Meetings"] * len(changes),
                [meeting_id for meeting_id, _, _, _ in changes],
                [LINKS[module] for _, module, _, _ in changes],
                [ids for _, _, ids, _ in changes],
                [[] for _ in changes],
                [1 if remove else 0 for _, _, _, remove in changes],
            ],
        )
        return {k: _int(str(body.get(k, 0))) for k in ("created", "deleted", "failed")}

    def check_access(self) -> None:
        self._list("Meetings", self._mine(), "", 1, deleted=False, links=False)

    def user(self) -> tuple[str, str]:
        if not self.user_id:
            self.login()
        body = self.call(
            "get_entry",
            [self._SESSION, "Users", self.user_id, ["id", "user_name", "email1"], [], False],
        )
        entries = body.get("entry_list") or []
        raw = _flatten(entries[0].get("name_value_list")) if entries else {}
        return self.user_id, raw.get("email1", "")


class _V8:
    """V8 JSON:API with OAuth 2 (password grant once, refresh grant afterwards)."""

    grain = 60
    lists_deletions = False

    def __init__(
        self,
        http: _Http,
        creds: Mapping[str, Any],
        on_change: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.http = http
        self.creds = dict(creds)
        self.root = creds["base_url"] + creds.get("prefix", "")
        self.user_name = str(creds["user_name"])
        self.user_id = str(creds.get("user_id") or "")
        self.on_change = on_change
        self.people: dict[tuple[str, str], Person | None] = {}
        self.last_response: requests.Response | None = None

    def refresh(self) -> None:
        resp = self.http.send(
            "POST",
            self.root + V8_TOKEN_PATH,
            data={
                "grant_type": "refresh_token",
                "refresh_token": self.creds.get("refresh_token", ""),
                "client_id": self.creds["client_id"],
                "client_secret": self.creds["client_secret"],
            },
        )
        body = _json(resp)
        if resp.status_code != 200 or "access_token" not in body:
            raise _token_error(body, self.user_name, refreshing=True)
        self.creds.update(_tokens(body))
        if self.on_change is not None:
            # The refresh token rotates: losing the new one means asking the user again.
            self.on_change(dict(self.creds))

    def request(
        self, method: str, path: str, *, params: Any = None, body: Any = None, retry: bool = True
    ) -> tuple[int, Any]:
        if not self.creds.get("access_token") or time.time() > float(
            self.creds.get("expires_at") or 0
        ):
            self.refresh()
        resp = self.http.send(
            method,
            self.root + "/Api/V8" + path,
            params=params,
            data=json.dumps(body) if body is not None else None,
            headers={
                "Authorization": f"Bearer {self.creds['access_token']}",
                "Content-Type": "application/vnd.api+json",
                "Accept": "application/vnd.api+json",
            },
        )
        self.last_response = resp
        if resp.status_code == 401 and retry:
            # Expired or revoked token (the server's clock rules, not ours): refresh once.
            self.refresh()
            return self.request(method, path, params=params, body=body, retry=False)
        data = _json(resp)
        if resp.status_code == 401:
            raise ProviderAuthError(
                f"SuiteCRM no longer accepts calsync's sign-in for {self.user_name}. "
                "Connect SuiteCRM again."
            )
        if resp.status_code == 403:
            raise ProviderPermissionError(
                f"Your SuiteCRM user {self.user_name} is not allowed to read or change "
                "Meetings. Ask your SuiteCRM administrator to give your role access to "
                "Meetings."
            )
        return resp.status_code, data

    def _ok(self, status: int, data: Any) -> Any:
        if status >= 400:
            detail = (data.get("errors") or {}).get("detail") if isinstance(data, dict) else None
            raise ProviderError(f"SuiteCRM refused the request: {detail or f'HTTP {status}'}")
        return data

    def server_time(self) -> datetime:
        # V8 has no clock endpoint: the Date header of a one-record read is the clock.
        self.check_access()
        return self.last_server_time()

    def last_server_time(self) -> datetime:
        """The clock as of the last answer (no extra request)."""
        if self.last_response is None:
            return self.server_time()
        return _server_time(self.last_response)

    # -- reading -------------------------------------------------------------------------

    def _meetings(self, params: dict[str, str]) -> list[tuple[Raw, list[Person] | None]]:
        params = {"fields[Meetings]": ",".join(MEETING_SELECT[1:]), **params}
        data = self._ok(*self.request("GET", "/module/Meetings", params=params))
        return [(_v8_raw(item), None) for item in data.get("data") or []]

    def list_since(self, since: str, size: int) -> list[tuple[Raw, list[Person] | None]]:
        return self._meetings(
            {
                "filter[assigned_user_id][eq]": self.user_id,
                "filter[date_modified][gte]": since,
                "sort": "date_modified",
                "page[size]": str(size),
                "page[number]": "1",
            }
        )

    def list_window(
        self, window: Window, after_id: str, size: int
    ) -> list[tuple[Raw, list[Person] | None]]:
        params = {
            "filter[assigned_user_id][eq]": self.user_id,
            "filter[date_end][gt]": _sql(window.start),
            "filter[date_start][lt]": _sql(window.end),
            "sort": "id",
            "page[size]": str(size),
            "page[number]": "1",
        }
        if after_id:
            params["filter[id][gt]"] = after_id
        return self._meetings(params)

    def get(self, item_id: str) -> tuple[Raw, list[Person]] | None:
        status, data = self.request(
            "GET",
            f"/module/Meetings/{item_id}",
            params={"fields[Meetings]": ",".join(MEETING_SELECT[1:])},
        )
        if _not_found(status, data):
            return None
        raw = _v8_raw(self._ok(status, data)["data"])
        return raw, self.related(item_id)

    def find_by_outlook_id(self, link_id: str) -> tuple[Raw, list[Person] | None] | None:
        found = self._meetings(
            {"filter[outlook_id][eq]": link_id, "sort": "date_entered", "page[size]": "1"}
        )
        return found[0] if found else None

    def related(self, meeting_id: str) -> list[Person]:
        people: list[Person] = []
        for module, link in LINKS.items():
            status, data = self.request(
                "GET", f"/module/Meetings/{meeting_id}/relationships/{link}"
            )
            if _not_found(status, data):
                return []
            for item in self._ok(status, data).get("data") or []:
                person = self._person(str(item.get("type") or module), str(item["id"]))
                if person is not None:
                    people.append(person)
        return people

    def _person(self, module: str, item_id: str) -> Person | None:
        # The relationship answer has ids only; the addresses are read once per run.
        key = (module, item_id)
        if key not in self.people:
            status, data = self.request(
                "GET",
                f"/module/{module}/{item_id}",
                params={f"fields[{module}]": "email1,first_name,last_name"},
            )
            if _not_found(status, data):
                self.people[key] = None
            else:
                attrs = self._ok(status, data)["data"].get("attributes") or {}
                self.people[key] = (module, item_id, str(attrs.get("email1") or ""), _name(attrs))
        return self.people[key]

    def lookup_emails(self, emails: list[str]) -> dict[str, list[tuple[str, str]]]:
        # V8 filters take one value per field, so one request per address and module;
        # filter[email1] works since SuiteCRM 7.12.3 (salesagility/SuiteCRM PR #9410).
        out: dict[str, list[tuple[str, str]]] = {}
        for email in emails:
            out[email] = []
            for module in PERSON_MODULES:
                data = self._ok(
                    *self.request(
                        "GET",
                        f"/module/{module}",
                        params={"filter[email1][eq]": email, f"fields[{module}]": "email1"},
                    )
                )
                for item in data.get("data") or []:
                    pair = (module, str(item["id"]))
                    if pair not in out[email]:  # the real filter can return duplicates
                        out[email].append(pair)
        return out

    # -- writing -------------------------------------------------------------------------

    def create(self, values: Raw) -> tuple[Raw, list[Person]]:
        status, data = self.request(
            "POST", "/module", body={"data": {"type": "Meetings", "attributes": values}}
        )
        raw = _v8_raw(self._ok(status, data)["data"])
        return raw, []

    def update(self, item_id: str, values: Raw, title: str) -> Raw:
        status, data = self.request(
            "PATCH",
            "/module",
            body={"data": {"type": "Meetings", "id": item_id, "attributes": values}},
        )
        if _not_found(status, data):
            raise _deleted(title)
        return _v8_raw(self._ok(status, data)["data"])

    def delete(self, item_id: str) -> None:
        status, data = self.request("DELETE", f"/module/Meetings/{item_id}")
        if not _not_found(status, data):
            self._ok(status, data)

    def relate(self, meeting_id: str, module: str, ids: list[str], *, remove: bool) -> None:
        for related_id in ids:
            if remove:
                path = f"/module/Meetings/{meeting_id}/relationships/{LINKS[module]}/{related_id}"
                status, data = self.request("DELETE", path)
            else:
                status, data = self.request(
                    "POST",
                    f"/module/Meetings/{meeting_id}/relationships",
                    body={"data": {"type": module, "id": related_id}},
                )
            if status == 404 and remove:
                continue
            self._ok(status, data)

    def check_access(self) -> None:
        self._ok(
            *self.request(
                "GET", "/module/Meetings", params={"page[size]": "1", "fields[Meetings]": "name"}
            )
        )

    def user(self) -> tuple[str, str]:
        data = self._ok(
            *self.request(
                "GET",
                "/module/Users",
                params={"filter[user_name][eq]": self.user_name, "fields[Users]": "email1"},
            )
        )
        items = data.get("data") or []
        if not items:
            raise ProviderConfigError(f"SuiteCRM has no active user named {self.user_name}.")
        self.user_id = str(items[0]["id"])
        self.creds["user_id"] = self.user_id
        return self.user_id, str((items[0].get("attributes") or {}).get("email1") or "")


def _not_found(status: int, data: Any) -> bool:
    if status == 404:
        return True
    detail = str((data.get("errors") or {}).get("detail", "")) if isinstance(data, dict) else ""
    # Older V8 controllers answer every failure with 400; "not found" is in the detail.
    return status == 400 and "not found" in detail.lower()


def _token_error(body: Any, user_name: str, *, refreshing: bool) -> ProviderError:
    error = str(body.get("error", "")) if isinstance(body, dict) else ""
    if error == "invalid_client":
        return ProviderConfigError(
            "SuiteCRM does not accept calsync's OAuth client id or secret. Ask your SuiteCRM "
            "administrator to check the client registered for calsync (Admin > OAuth2 "
            "Clients and Tokens)."
        )
    if refreshing:
        return ProviderAuthError(
            f"SuiteCRM no longer accepts calsync's sign-in for {user_name}. Connect SuiteCRM again."
        )
    if error in ("invalid_grant", "invalid_credentials", "invalid_request"):
        return ProviderAuthError(
            f"SuiteCRM refused the user name or password of {user_name}. Check them and "
            "connect again."
        )
    return ProviderConfigError("SuiteCRM's sign-in answer is not understood.")


def _tokens(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "access_token": body["access_token"],
        "refresh_token": body.get("refresh_token", ""),
        # Renewed a minute early, so a token never expires between check and use.
        "expires_at": time.time() + float(body.get("expires_in", 3600)) - 60,
    }


def _deleted(title: str) -> MeetingDeleted:
    return MeetingDeleted(
        f'The meeting "{title}" was deleted in SuiteCRM while calsync was updating it. '
        "Nothing was changed; the next sync handles the deletion."
    )


def _flatten(nvl: Any) -> Raw:
    """v4_1 name_value_list (dict or list form) -> {field: value}."""
    if isinstance(nvl, dict):
        return {k: "" if v.get("value") is None else str(v.get("value")) for k, v in nvl.items()}
    if isinstance(nvl, list):
        return {str(i["name"]): "" if i.get("value") is None else str(i["value"]) for i in nvl}
    return {}


def _nvl_list(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def _people(rel: Any) -> list[Person]:
    out: list[Person] = []
    modules = {v: k for k, v in LINKS.items()}
    for link in (rel or {}).get("link_list") or []:
        module = modules.get(str(link.get("name")))
        if module is None:
            continue
        for record in link.get("records") or []:
            values = _flatten(record.get("link_value"))
            out.append((module, values.get("id", ""), values.get("email1", ""), _name(values)))
    return out


def _name(values: Mapping[str, Any]) -> str:
    return " ".join(_text(values.get(k)) for k in ("first_name", "last_name")).strip()


def _text(value: Any) -> str:
    """Text as the user typed it: SuiteCRM stores and returns it HTML-encoded
    ("Tom&#039;s"; salesagility/SuiteCRM issue #8101), we write it plain."""
    return html.unescape(str(value or ""))


def _v8_raw(item: Mapping[str, Any]) -> Raw:
    attrs = item.get("attributes") or {}
    raw = {k: "" if v is None else str(v) for k, v in attrs.items()}
    for key in ("date_start", "date_end", "date_modified", "date_entered"):
        if raw.get(key):
            raw[key] = _iso_to_sql(raw[key])
    raw["id"] = str(item.get("id", ""))
    raw.setdefault("deleted", "0")
    return raw


def _iso_to_sql(value: str) -> str:
    try:
        return _sql(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return value


# -- the adapter --------------------------------------------------------------------------


@dataclass
class _Cursor:
    api: str
    t: str  # watermark: date_modified, "Y-m-d H:i:s" UTC, at the API's grain
    seen: dict[str, str] = field(default_factory=dict)  # id -> version at the watermark
    full_at: str = ""  # when the last full listing started (V8: deletions are found there)

    def dump(self) -> str:
        payload = {"api": self.api, "t": self.t, "seen": self.seen, "f": self.full_at}
        return CURSOR_PREFIX + json.dumps(payload, separators=(",", ":"), sort_keys=True)

    @classmethod
    def load(cls, text: str, api: str) -> _Cursor:
        try:
            if not text.startswith(CURSOR_PREFIX):
                raise ValueError("not ours")
            d = json.loads(text[len(CURSOR_PREFIX) :])
            cursor = cls(str(d["api"]), str(d["t"]), dict(d.get("seen") or {}), str(d["f"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CursorExpired("the SuiteCRM cursor is not understood") from exc
        if cursor.api != api:
            raise CursorExpired("the SuiteCRM cursor belongs to the other API")
        return cursor


class SuiteCrmAdapter:
    """`calsync.sync.CrmAdapter` for SuiteCRM 7.x and 8.x (which serves them under /legacy).

    `credentials` is the blob `connect` returned (see there). `session` is injectable so
    the app can pass its SSRF-guarded session. `on_credentials_changed` receives the new
    blob whenever V8 tokens are refreshed; the caller must store it (the refresh token
    rotates). Look-ups of invitee addresses are cached for the adapter's life: make one
    adapter per sync run.
    """

    provider = PROVIDER

    def __init__(
        self,
        credentials: Mapping[str, Any],
        *,
        session: requests.Session | None = None,
        on_credentials_changed: Callable[[dict[str, Any]], None] | None = None,
        page_size: int = 100,
        timeout: float = 30.0,
        full_listing_every: timedelta = timedelta(hours=6),
    ) -> None:
        api = credentials.get("api")
        self._credentials = dict(credentials)
        self._http = _Http(session or requests.Session(), timeout)
        self.api_name = str(api)
        self._api: _V41 | _V8
        if api == API_V4_1:
            self._api = _V41(self._http, credentials)
        elif api == API_V8:
            self._api = _V8(self._http, credentials, on_credentials_changed)
        else:
            raise ValueError(f"unknown SuiteCRM API {api!r} in the stored credentials")
        self.page_size = page_size
        self.full_listing_every = full_listing_every
        self.lists_deletions = self._api.lists_deletions
        self._email_cache: dict[str, list[tuple[str, str]]] = {}
        self._user_email: str | None = None

    # -- connecting ----------------------------------------------------------------------

    @classmethod
    def probe(
        cls, url: str, *, session: requests.Session | None = None, timeout: float = 15.0
    ) -> ProbeResult:
        """Which SuiteCRM APIs answer at `url` (no credentials needed).

        Tries the address as typed, then its ``/legacy`` (SuiteCRM 8). Raises
        ProviderConfigError with a sentence for the admin when nothing answers like SuiteCRM.
        """
        base = _normalize_url(url)
        http = _Http(session or requests.Session(), timeout)
        base = _follow_redirects(http, base)
        reached = False
        for prefix in ("", "/legacy"):
            apis = []
            for api, check in ((API_V8, _answers_v8), (API_V4_1, _answers_v41)):
                try:
                    if check(http, base + prefix):
                        apis.append(api)
                    reached = True
                except ProviderTransientError:
                    continue
            if apis:
                return ProbeResult(base, prefix, tuple(apis))
        if not reached:
            raise ProviderConfigError(
                f"calsync could not reach {base}. Check the address of your SuiteCRM (the one "
                "you open in the browser) and that it is reachable from the internet."
            )
        raise ProviderConfigError(
            f"{base} answers, but not like SuiteCRM: neither its V8 API nor its REST v4_1 API "
            "was found. Check the address of your SuiteCRM (the one you open in the browser)."
        )

    @classmethod
    def connect(
        cls,
        url: str,
        user_name: str,
        password: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        prefer: str | None = None,
        session: requests.Session | None = None,
        timeout: float = 15.0,
    ) -> Connection:
        """Probe, sign in, check access to Meetings, and return the credential blob.

        Blob (store it encrypted; every key is a string unless noted):
        - V8: provider, api="v8", base_url, prefix ("" or "/legacy"), user_name, user_id,
          client_id, client_secret, access_token, refresh_token, expires_at (epoch float).
          The password is not kept.
        - v4_1: provider, api="v4_1", base_url, prefix, user_name, user_id, password_md5
          (what v4_1's login takes instead of the password).

        V8 is chosen when it answers and a client id/secret is given, unless `prefer` is
        "v4_1" (an admin's choice: v4_1 lists deletions and reads invitees in bulk, V8
        keeps no password).
        """
        if prefer not in (None, API_V8, API_V4_1):
            raise ValueError(f"prefer must be {API_V8!r} or {API_V4_1!r}, not {prefer!r}")
        probe = cls.probe(url, session=session, timeout=timeout)
        http = _Http(session or requests.Session(), timeout)
        common = {
            "provider": PROVIDER,
            "base_url": probe.base_url,
            "prefix": probe.prefix,
            "user_name": user_name,
        }
        use_v8 = API_V8 in probe.apis and bool(client_id and client_secret)
        if use_v8 and prefer == API_V4_1 and API_V4_1 in probe.apis:
            use_v8 = False
        if use_v8:
            resp = http.send(
                "POST",
                probe.api_root + V8_TOKEN_PATH,
                data={
                    "grant_type": "password",
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "username": user_name,
                    "password": password,
                },
            )
            body = _json(resp)
            if resp.status_code != 200 or "access_token" not in body:
                raise _token_error(body, user_name, refreshing=False)
            creds: dict[str, Any] = {
                **common,
                "api": API_V8,
                "client_id": client_id,
                "client_secret": client_secret,
                **_tokens(body),
            }
            v8 = _V8(http, creds, None)
            user_id, _ = v8.user()
            v8.check_access()
            creds = {**v8.creds, "user_id": user_id}
            api_label = "the V8 JSON API"
        elif API_V4_1 in probe.apis:
            creds = {
                **common,
                "api": API_V4_1,
                "password_md5": hashlib.md5(password.encode()).hexdigest(),
            }
            v41 = _V41(http, creds)
            v41.login()
            v41.check_access()
            creds["user_id"] = v41.user_id
            api_label = "the REST v4_1 API"
        else:
            raise ProviderConfigError(
                f"{probe.base_url} only offers SuiteCRM's V8 API, which needs the OAuth client "
                "id and secret your SuiteCRM administrator registers for calsync (Admin > "
                "OAuth2 Clients and Tokens > New Password Client). Ask them to enter it in "
                "calsync's settings."
            )
        where = "SuiteCRM 8" if probe.prefix else "SuiteCRM"
        return Connection(
            api=creds["api"],
            credentials=creds,
            user_id=str(creds["user_id"]),
            user_name=user_name,
            message=f"Connected to {where} at {probe.base_url} through {api_label}.",
        )

    @property
    def credentials(self) -> dict[str, Any]:
        """The current blob (V8 tokens may have been refreshed since construction)."""
        if isinstance(self._api, _V8):
            return dict(self._api.creds)
        return {**self._credentials, "user_id": self._api.user_id}

    def reset_caches(self) -> None:
        """Forget the invitee look-ups; call between runs if an adapter is reused."""
        self._email_cache.clear()
        self._user_email = None
        if isinstance(self._api, _V8):
            self._api.people.clear()

    # -- CrmAdapter ----------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        # No native series (occurrences are separate meetings) and no invitation emails
        # through either API; writes are silent, so "suppress" holds trivially. V8 cannot
        # see deleted records: a meeting missing from its incremental listing is unknown,
        # and only the periodic full listing may confirm a deletion.
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
            state = {"mode": "full", "after": "", "t": ""}
        else:
            c = _Cursor.load(cursor, self.api_name)
            state = {
                "mode": "inc",
                "t": c.t,
                "seen": c.seen,
                "f": c.full_at,
                "size": self.page_size,
                "first": True,
            }
        if state["mode"] == "full":
            return self._full_page(state, window)
        return self._changes_page(state)

    def _floor(self, value: datetime) -> str:
        grain = self._api.grain
        return _sql(value - timedelta(seconds=value.second % grain, microseconds=value.microsecond))

    def _full_page(self, state: dict[str, Any], window: Window) -> ChangePage:
        if not state["t"]:
            # The watermark is taken before reading, so a change made during the listing
            # is listed again next time rather than lost.
            state["t"] = self._floor(self._api.server_time())
        rows = self._api.list_window(window, state["after"], self.page_size)
        events, bad = self._convert(rows)
        # Meetings already changed at the watermark instant are reported now: remember
        # them, or the next listing (which starts at that instant) reports them again.
        seen = state.setdefault("seen", {})
        seen.update(
            {raw["id"]: _version(raw) for raw, _ in rows if raw.get("date_modified") == state["t"]}
        )
        if len(rows) == self.page_size:
            state["after"] = rows[-1][0]["id"]
            return ChangePage(events=events, bad=bad, next_page_token=json.dumps(state))
        cursor = _Cursor(self.api_name, state["t"], seen, state["t"])
        return ChangePage(events=events, bad=bad, next_cursor=cursor.dump())

    def _changes_page(self, state: dict[str, Any]) -> ChangePage:
        t, seen, size = state["t"], dict(state["seen"]), int(state["size"])
        rows = self._api.list_since(t, size)
        if state.pop("first", False) and not self.lists_deletions and state["f"]:
            # V8 cannot list deletions: after a while, ask the engine for a full listing,
            # which confirms each missing linked meeting one by one.
            assert isinstance(self._api, _V8)
            now = self._api.last_server_time()  # the listing just asked: no extra request
            full_at = _parse_sql(state["f"])
            if full_at is None or now - full_at >= self.full_listing_every:
                raise CursorExpired("time for a full SuiteCRM listing to find deletions")
        fresh: list[tuple[Raw, list[Person] | None]] = []
        newest, at_newest = t, dict(seen)
        for raw, people in rows:
            stamp = raw.get("date_modified", "")
            version = _version(raw)
            if stamp > newest:
                newest, at_newest = stamp, {}
            if stamp == newest:
                at_newest[raw["id"]] = version
            if seen.get(raw["id"]) == version:
                continue  # reported before, unchanged: never replayed
            seen[raw["id"]] = version
            fresh.append((raw, people))
        deleted = [raw["id"] for raw, _ in fresh if raw.get("deleted") == "1"]
        live = [(raw, people) for raw, people in fresh if raw.get("deleted") != "1"]
        events, bad = self._convert(live)
        if len(rows) < size:
            cursor = _Cursor(self.api_name, newest, at_newest, state["f"])
            return ChangePage(
                events=events, deleted_ids=deleted, bad=bad, next_cursor=cursor.dump()
            )
        # More may follow: continue from the newest instant seen (keyset, not offset, so
        # a record edited meanwhile moves ahead instead of pushing another out of view).
        # A page that made little progress (many records in one instant) doubles in size.
        if newest == t or len(fresh) < size // 2:
            size *= 2
        state.update(t=newest, seen=at_newest, size=size)
        return ChangePage(
            events=events, deleted_ids=deleted, bad=bad, next_page_token=json.dumps(state)
        )

    def get(self, item_id: str) -> Event | None:
        found = self._api.get(item_id)
        if found is None:
            return None
        return self._event(*found)

    def find_by_link_id(self, link_id: str) -> Event | None:
        found = self._api.find_by_outlook_id(link_id)
        if found is None:
            return None
        raw, people = found
        return self._event(raw, people if people is not None else self._api.related(raw["id"]))

    def create(self, event: Event, *, link_id: str, notify: bool) -> Event:
        # A create retried after a lost answer finds its meeting instead of doubling it.
        existing = self.find_by_link_id(link_id)
        if existing is not None and existing.crm_id:
            return self.update(existing.crm_id, event, notify=notify)
        values = self._values(event, current=None)
        values["outlook_id"] = link_id
        raw, _ = self._api.create(values)
        try:
            people = self._sync_invitees(raw["id"], event, [])
        except Exception:
            # A meeting without its invitees would be linked by the next run's look-up by
            # link id and never completed (its version would not change). Take it back, so
            # the next run creates it whole; if even that fails, the look-up links it.
            with contextlib.suppress(Exception):
                self._api.delete(raw["id"])
            raise
        return self._event(raw, people)

    def update(self, item_id: str, event: Event, *, notify: bool) -> Event:
        current = self._api.get(item_id)
        if current is None:
            raise _deleted(event.title)
        values = self._values(event, current=current[0])
        raw = self._api.update(item_id, values, event.title)
        people = self._sync_invitees(item_id, event, current[1])
        return self._event(raw, people)

    def delete(self, item_id: str, *, notify: bool) -> None:
        self._api.delete(item_id)

    # -- mapping -------------------------------------------------------------------------

    def _values(self, event: Event, current: Raw | None) -> Raw:
        start, end = _utc(event.start), _utc(event.end)
        if start is None:
            raise ProviderError(f'The meeting "{event.title}" has no start; SuiteCRM needs one.')
        end = end if end is not None and end >= start else start
        minutes = int((end - start).total_seconds() // 60)
        values = {
            "name": event.title or "(no title)",
            "date_start": _sql(start),
            "date_end": _sql(end),
            "duration_hours": str(minutes // 60),
            "duration_minutes": str(minutes % 60),
            "location": event.location or "",
            "description": event.description or "",
            "assigned_user_id": self._api.user_id,
        }
        status = (current or {}).get("status") or "Planned"
        if event.status == "cancelled":
            status = "Not Held"
        elif status == "Not Held":
            status = "Planned"
        # Otherwise "Held" stays "Held": the calendar has no such notion to overwrite it.
        values["status"] = status
        if current is not None:
            values.pop("assigned_user_id")  # the CRM user may have reassigned it: keep that
        return values

    def _convert(
        self, rows: Iterable[tuple[Raw, list[Person] | None]]
    ) -> tuple[list[Event], list[BadItem]]:
        events, bad = [], []
        for raw, people in rows:
            if _parse_sql(raw.get("date_start")) is None:
                bad.append(BadItem(raw["id"], "the meeting has no valid start date in SuiteCRM"))
                continue
            if people is None:
                people = self._api.related(raw["id"])
            events.append(self._event(raw, people))
        return events, bad

    def _event(self, raw: Raw, people: list[Person]) -> Event:
        start = _parse_sql(raw.get("date_start"))
        end = _parse_sql(raw.get("date_end"))
        if start is not None and end is None:
            minutes = _int(raw.get("duration_hours")) * 60 + _int(raw.get("duration_minutes"))
            end = start + timedelta(minutes=minutes)
        me = self._api.user_id
        invitees: dict[str, Invitee] = {}
        for module, person_id, email, name in people:
            if not email or (module == "Users" and person_id == me):
                continue  # the assigned user is the organizer, not an invitee
            invitees.setdefault(email.lower(), Invitee(email=email, name=name or None))
        organizer = self._my_email() if raw.get("assigned_user_id") == me else None
        return Event(
            title=_text(raw.get("name")),
            start=start,
            end=end,
            timezone=None,  # SuiteCRM keeps UTC only
            location=_text(raw.get("location")) or None,
            description=_text(raw.get("description")) or None,
            organizer=organizer or None,
            invitees=tuple(invitees.values()),
            status="cancelled" if raw.get("status") == "Not Held" else "confirmed",
            crm_id=raw["id"],
            crm_version=_version(raw),
            last_modified=_parse_sql(raw.get("date_modified")),
            link_id=raw.get("outlook_id") or None,
            extra={
                "suitecrm_status": raw.get("status", ""),
                "repeat_parent_id": raw.get("repeat_parent_id", ""),
                "assigned_user_id": raw.get("assigned_user_id", ""),
            },
        )

    def _my_email(self) -> str:
        if self._user_email is None:
            self._user_email = self._api.user()[1]
        return self._user_email

    def _sync_invitees(self, meeting_id: str, event: Event, current: list[Person]) -> list[Person]:
        """Relate every contact, lead and user whose address is an invitee's; unrelate
        people whose address is no longer invited. People without an address and the
        assigned user stay (SuiteCRM's calendar shows a meeting to its related users)."""
        self._look_up(_invitee_emails(event))
        wanted, changes = self._relation_changes(event, current)
        dropped: set[tuple[str, str]] = set()
        for module, ids, remove in changes:
            self._api.relate(meeting_id, module, ids, remove=remove)
            if remove:
                dropped.update((module, i) for i in ids)
        # What the meeting is related to now, without reading it back.
        have = {(m, i) for m, i, _, _ in current}
        kept = [p for p in current if (p[0], p[1]) not in dropped]
        added = [(m, i, email, "") for (m, i), email in wanted.items() if (m, i) not in have]
        return kept + added

    def _look_up(self, emails: Iterable[str], chunk_size: int = EMAIL_BATCH) -> None:
        missing = sorted({e for e in emails if e not in self._email_cache})
        if not missing:
            return
        if isinstance(self._api, _V41):
            self._email_cache.update(self._api.lookup_emails(missing, chunk_size))
        else:
            self._email_cache.update(self._api.lookup_emails(missing))

    def _relation_changes(
        self, event: Event, current: list[Person]
    ) -> tuple[dict[tuple[str, str], str], list[tuple[str, list[str], bool]]]:
        """The people the meeting should be related to ((module, id) -> address), and the
        (module, ids, remove) changes that get it there from `current`. Addresses must
        have been looked up (`_look_up`)."""
        wanted_emails = _invitee_emails(event)
        wanted = {
            pair: email for email in wanted_emails for pair in self._email_cache.get(email, [])
        }
        wanted.setdefault(("Users", self._api.user_id), "")
        have = {(m, i) for m, i, _, _ in current}
        changes: list[tuple[str, list[str], bool]] = []
        for module in PERSON_MODULES:
            add = sorted(i for m, i in wanted.keys() - have if m == module)
            if add:
                changes.append((module, add, False))
            drop = sorted(
                i
                for m, i, email, _ in current
                if m == module
                and email
                and email.lower() not in wanted_emails
                and (m, i) not in wanted
            )
            if drop:
                changes.append((module, drop, True))
        return wanted, changes

    # -- BatchWriter ---------------------------------------------------------------------

    @property
    def max_batch(self) -> int:
        # v4_1 saves many meetings per `set_entries`; V8 has no batch endpoint, so the
        # engine writes one by one there.
        return WRITE_BATCH if isinstance(self._api, _V41) else 1

    def write_many(self, writes: Sequence[Write]) -> list[Event | BaseException | None]:
        """A batch of writes in four v4_1 requests: one read of the meetings to update or
        delete, one `set_entries`, one `set_relationships` for every invitee change, one
        read back (versions, and the invitees SuiteCRM really kept); plus a look-up of the
        invitee addresses this run has not seen yet, for the whole batch at once.

        Creates are not looked up by link id first: the engine looks for a create cut
        short by its link id on the next run, and `set_entries` itself saves a meeting
        sent with the `outlook_id` of a live meeting onto that meeting, not beside it."""
        if not isinstance(self._api, _V41):
            return [self._write_one(w) for w in writes]
        api = self._api
        out: list[Event | BaseException | None] = [None] * len(writes)
        current = api.get_many(sorted({w.item_id for w in writes if w.item_id}))
        entries: list[Raw] = []
        sent: list[int] = []
        for i, write in enumerate(writes):
            try:
                entry = self._entry(write, current)
            except Exception as exc:
                out[i] = exc
                continue
            if entry is not None:  # None: a delete of a meeting already gone
                entries.append(entry)
                sent.append(i)
        if not entries:
            return out
        ids = api.save_many(entries)
        if len(ids) != len(entries):
            # Trap: set_entries leaves a record it refused (no rights) out of its answer
            # without saying which one, so no id can be matched to its meeting.
            raise ProviderError(
                f"SuiteCRM saved {len(ids)} of the {len(entries)} meetings sent to it; "
                "calsync checks them on the next sync."
            )
        meeting = {i: ids[k] for k, i in enumerate(sent)}
        live = [i for i in sent if writes[i].kind != "delete"]
        events = {i: _written(writes[i]) for i in live}
        self._look_up((e for ev in events.values() for e in _invitee_emails(ev)), BATCH_EMAIL_CHUNK)
        wanted: dict[int, set[tuple[str, str]]] = {}
        changes: list[tuple[str, str, list[str], bool]] = []
        for i in live:
            have = current[writes[i].item_id or ""][1] if writes[i].kind == "update" else []
            people, todo = self._relation_changes(events[i], have)
            wanted[i] = set(people)
            changes.extend((meeting[i], module, pids, rm) for module, pids, rm in todo)
        new = [meeting[i] for i in live if writes[i].kind == "create"]
        try:
            if changes:
                api.relate_many(changes)
        except Exception:
            # As in `create`: a new meeting without its invitees would be linked by the
            # next run's look-up by link id and never completed. Take the new ones back,
            # so the next run creates them whole; if even that fails, the look-up links.
            self._take_back(new)
            raise
        back = api.get_many([meeting[i] for i in live])
        incomplete: list[str] = []
        for i in live:
            ev = events[i]
            found = back.get(meeting[i])
            if found is None:
                # Trap: saving a meeting deleted meanwhile answers success, changes nothing.
                out[i] = (
                    _deleted(ev.title)
                    if writes[i].kind == "update"
                    else ProviderError("SuiteCRM did not keep the new meeting.")
                )
                continue
            raw, people = found
            if wanted[i] - {(m, pid) for m, pid, _, _ in people}:
                # set_relationships counts failures without naming them: the read-back does.
                out[i] = ProviderError(
                    f'SuiteCRM did not relate every invitee of "{ev.title}"; calsync tries '
                    "again on the next sync."
                )
                if writes[i].kind == "create":
                    incomplete.append(meeting[i])
                continue
            out[i] = self._event(raw, people)
        self._take_back(incomplete)
        return out

    def _entry(self, write: Write, current: Mapping[str, tuple[Raw, list[Person]]]) -> Raw | None:
        """What `set_entries` gets for one write; None for a delete with nothing to do."""
        if write.kind == "create":
            if not write.link_id:
                raise ValueError("a create needs its link id")
            values = self._values(_written(write), current=None)
            values["outlook_id"] = write.link_id
            return values
        found = current.get(write.item_id or "")
        if write.kind == "update":
            ev = _written(write)
            if found is None:
                raise _deleted(ev.title)
            return {"id": str(write.item_id), **self._values(ev, current=found[0])}
        # Already gone is done; a save of an unknown id would create a deleted stub.
        return None if found is None else {"id": str(write.item_id), "deleted": "1"}

    def _take_back(self, meeting_ids: list[str]) -> None:
        if meeting_ids and isinstance(self._api, _V41):
            with contextlib.suppress(Exception):
                self._api.save_many([{"id": m, "deleted": "1"} for m in meeting_ids])

    def _write_one(self, write: Write) -> Event | BaseException | None:
        try:
            if write.kind == "create":
                return self.create(_written(write), link_id=str(write.link_id), notify=False)
            if write.kind == "update":
                return self.update(str(write.item_id), _written(write), notify=False)
            self.delete(str(write.item_id), notify=False)
            return None
        except Exception as exc:
            return exc


def _written(write: Write) -> Event:
    if write.event is None:
        raise ValueError(f"a {write.kind} needs the event to write")
    return write.event


def _invitee_emails(event: Event) -> list[str]:
    return sorted({i.email.strip().lower() for i in event.invitees if i.email})


def _version(raw: Raw) -> str:
    payload = json.dumps([raw.get(k, "") for k in VERSION_FIELDS], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _utc(value: datetime | date | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    # SuiteCRM has no all-day meetings: the day runs from UTC midnight.
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _normalize_url(url: str) -> str:
    text = (url or "").strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProviderConfigError(f"{url!r} is not a web address. Enter your SuiteCRM's address.")
    path = parts.path.rstrip("/")
    # People paste what their browser shows: .../index.php?module=..., or SuiteCRM 8's
    # /legacy, /#/... ; the instance is the part before those.
    for tail in ("/index.php", "/legacy", "/public"):
        if path.endswith(tail):
            path = path[: -len(tail)]
    return f"{parts.scheme}://{parts.netloc}{path}"


def _follow_redirects(http: _Http, base: str) -> str:
    """Where the address really answers (http -> https, another host name).

    The API calls are POSTs, which a redirect would turn into GETs, so the move is found
    with one GET of the home page and applied to the address (its path is kept).
    """
    try:
        resp = http.send("GET", base + "/", allow_redirects=True)
    except ProviderTransientError:
        return base  # the probe itself says what is wrong
    final = urlsplit(resp.url)
    here = urlsplit(base)
    if resp.history and final.netloc and (final.scheme, final.netloc) != (here.scheme, here.netloc):
        return f"{final.scheme}://{final.netloc}{here.path}"
    return base


def _answers_v8(http: _Http, root: str) -> bool:
    # league/oauth2-server answers a bare token request with a JSON OAuth error.
    resp = http.send("POST", root + V8_TOKEN_PATH, data={"grant_type": "password"})
    try:
        body = resp.json()
    except ValueError:
        return False
    # OAuth errors are a plain string code; other JSON servers' "error" objects are not.
    return isinstance(body, dict) and isinstance(body.get("error"), str)


def _answers_v41(http: _Http, root: str) -> bool:
    resp = http.send(
        "POST",
        root + V41_PATH,
        data={
            "method": "get_server_info",
            "input_type": "JSON",
            "response_type": "JSON",
            "rest_data": "[]",
        },
    )
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "gmt_time" in body and "version" in body
