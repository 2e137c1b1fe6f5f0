"""The naive baseline every scenario compares calsync with, defined here and nowhere else.

What a straightforward two way sync between Graph and SuiteCRM (REST v4_1) does when it
has no delta, no batching and no cleverness:

- every run lists both sides in full: Graph's calendarView over the sync window and the
  user's SuiteCRM meetings in that window, 100 per page (the same page size calsync uses),
  plus every SuiteCRM contact, to relate invitees;
- it remembers which item is which (a link table in memory) and the title/start/end it
  last agreed on, so an unchanged pair is not rewritten (a baseline rewriting everything
  every run would be a straw man);
- every write is one request: one `set_entry` per meeting created, changed or deleted,
  one `set_relationship` per related invitee, one Graph POST/PATCH/DELETE per event.

It syncs title and times only, so its per-item work is a lower bound of what a real
naive sync would do.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests

from bench.common import CRM_PASSWORD, SETTINGS, Account, World

PAGE = 100
SQL = "%Y-%m-%d %H:%M:%S"

Triple = tuple[str, str, str]  # title, start, end ("Y-m-d H:M:S" UTC)


def _sql(value: datetime) -> str:
    return value.strftime(SQL)


@dataclass
class BaselineCounts:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    related: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class _Pair:
    graph_id: str | None
    crm_id: str | None
    agreed: Triple


@dataclass
class NaiveSync:
    """One user's naive two way sync; call `run()` for each sync."""

    world: World
    account: Account
    pairs: list[_Pair] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.http = self.world.graph_session()
        self.graph = f"{self.world.graph.url}/v1.0"
        self.token = self.world.graph.issue_token(self.account.address, lifetime=24 * 3600)
        self.crm_url = f"{self.world.crm.url}/service/v4_1/rest.php"
        self.crm_http = requests.Session()
        self.session_id = ""

    # -- HTTP --

    def _g(self, method: str, url: str, body: Any = None) -> dict[str, Any]:
        resp = self.http.request(
            method,
            url if url.startswith("http") else self.graph + url,
            json=body,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Prefer": 'outlook.timezone="UTC"',
            },
            timeout=60,
        )
        if resp.status_code >= 400 and resp.status_code != 404:
            raise RuntimeError(f"Graph {method} {url}: {resp.status_code} {resp.text[:200]}")
        return resp.json() if resp.content else {}

    def _c(self, method: str, *args: Any) -> Any:
        resp = self.crm_http.post(
            self.crm_url,
            data={
                "method": method,
                "input_type": "JSON",
                "response_type": "JSON",
                "rest_data": json.dumps(list(args)),
            },
            timeout=60,
        )
        return resp.json()

    def _login(self) -> None:
        if self.session_id:
            return
        md5 = hashlib.md5(CRM_PASSWORD.encode()).hexdigest()
        body = self._c("login", {"user_name": self.account.crm_user, "password": md5}, "naive", [])
        self.session_id = body["id"]

    # -- listing --

    def _list_graph(self, start: datetime, end: datetime) -> dict[str, Triple]:
        out: dict[str, Triple] = {}
        query = urlencode(
            {
                "startDateTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "endDateTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "$top": PAGE,
                "$select": "id,subject,start,end,attendees",
            }
        )
        url: str | None = f"/me/calendarView?{query}"
        self.attendees: dict[str, list[str]] = {}
        while url:
            data = self._g("GET", url)
            for item in data.get("value") or []:
                out[item["id"]] = (
                    item.get("subject") or "",
                    item["start"]["dateTime"][:19].replace("T", " "),
                    item["end"]["dateTime"][:19].replace("T", " "),
                )
                self.attendees[item["id"]] = [
                    a["emailAddress"]["address"].lower() for a in item.get("attendees") or []
                ]
            url = data.get("@odata.nextLink")
        return out

    def _list_crm(self, module: str, query: str, fields: list[str]) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        offset = 0
        while True:
            body = self._c(
                "get_entry_list",
                self.session_id,
                module,
                query,
                f"{module.lower()}.id ASC",
                offset,
                fields,
                [],
                PAGE,
                0,
                False,
            )
            for entry in body.get("entry_list") or []:
                nvl = entry.get("name_value_list") or {}
                rows.append({k: str(v.get("value", "")) for k, v in nvl.items()})
            got = int(body.get("result_count") or 0)
            if got < PAGE:
                return rows
            offset += got

    # -- one run --

    def run(self, now: datetime) -> BaselineCounts:
        counts = BaselineCounts()
        self._login()
        start = now - timedelta(days=SETTINGS.window_days_back)
        end = now + timedelta(days=SETTINGS.window_days_ahead)
        graph = self._list_graph(start, end)
        me = self.account.crm_user_id
        meetings = {
            r["id"]: (r.get("name", ""), r.get("date_start", ""), r.get("date_end", ""))
            for r in self._list_crm(
                "Meetings",
                f"meetings.assigned_user_id = '{me}' AND meetings.date_end > '{_sql(start)}' "
                f"AND meetings.date_start < '{_sql(end)}'",
                ["id", "name", "date_start", "date_end"],
            )
        }
        contacts = {
            r.get("email1", "").lower(): r["id"]
            for r in self._list_crm("Contacts", "", ["id", "email1"])
        }
        linked_graph = {p.graph_id for p in self.pairs}
        linked_crm = {p.crm_id for p in self.pairs}
        kept: list[_Pair] = []
        made_here: set[str] = set()
        for pair in self.pairs:
            g = graph.get(pair.graph_id or "")
            c = meetings.get(pair.crm_id or "")
            if g is None and c is None:
                continue
            if g is None:  # deleted in the calendar
                self._c("set_entry", self.session_id, "Meetings", _nvl(pair.crm_id, deleted="1"))
                counts.deleted += 1
                continue
            if c is None:  # deleted in the CRM
                self._g("DELETE", f"/me/events/{pair.graph_id}")
                counts.deleted += 1
                continue
            if g != pair.agreed:
                self._c("set_entry", self.session_id, "Meetings", _nvl(pair.crm_id, *g))
                pair.agreed = g
                counts.updated += 1
            elif c != pair.agreed:
                self._g("PATCH", f"/me/events/{pair.graph_id}", _graph_body(c))
                pair.agreed = c
                counts.updated += 1
            kept.append(pair)
        for graph_id, g in graph.items():
            if graph_id in linked_graph:
                continue
            body = self._c("set_entry", self.session_id, "Meetings", _nvl(None, *g, user=me))
            crm_id = body["id"]
            made_here.add(crm_id)
            counts.created += 1
            for email in self.attendees.get(graph_id, []):
                if email in contacts:
                    self._c(
                        "set_relationship",
                        self.session_id,
                        "Meetings",
                        crm_id,
                        "contacts",
                        [contacts[email]],
                        [],
                        0,
                    )
                    counts.related += 1
            kept.append(_Pair(graph_id, crm_id, g))
        for crm_id, c in meetings.items():
            if crm_id in linked_crm or crm_id in made_here:
                continue
            made = self._g("POST", "/me/events", _graph_body(c))
            counts.created += 1
            kept.append(_Pair(made.get("id"), crm_id, c))
        self.pairs = kept
        return counts


def _nvl(
    item_id: str | None,
    title: str = "",
    start: str = "",
    end: str = "",
    *,
    user: str = "",
    deleted: str = "",
) -> list[dict[str, str]]:
    values = {"id": item_id or "", "deleted": deleted}
    if title or start:
        values.update(name=title, date_start=start, date_end=end)
    if user:
        values["assigned_user_id"] = user
    return [{"name": k, "value": v} for k, v in values.items() if v]


def _graph_body(c: Triple) -> dict[str, Any]:
    title, start, end = c
    return {
        "subject": title,
        "start": {"dateTime": start.replace(" ", "T"), "timeZone": "UTC"},
        "end": {"dateTime": end.replace(" ", "T"), "timeZone": "UTC"},
    }
