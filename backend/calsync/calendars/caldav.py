"""CalDAV calendars (RFC 4791), through the `caldav` library. Every CalDAV detail lives here.

The `caldav` library's `DAVClient` is the transport: it negotiates authentication, parses
multistatus replies with a hardened XML parser, and tells 401 from 403 (with the DAV
precondition of the body). Requests are built here rather than through its high-level
objects because the sync needs control they do not give: conditional writes (If-None-Match,
If-Match), sync-collection with its deletions, and one error type per failure a job must
tell apart.

Listing
- Full (cursor None): a calendar-query restricted to the sync window by time-range, then
  the series it left out. A server decides "in the window" by expanding each RRULE, and one
  that cannot expand a rule (Radicale with RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30) leaves
  the series out of every time-range answer: it would never be seen. So a second query asks
  for the hrefs of every item with an RRULE (no time-range, no data), and only the series
  the first left out are read; each is then reported as a bad item, kept when our own
  expansion puts an occurrence in the window, or dropped as really outside it.
- Incremental, when the collection has a `DAV:sync-token` (RFC 6578): the cursor is
  "sync:<token>"; a sync-collection REPORT gives changed items (with their data) and
  removed ones (404 entries). A refused token raises `CursorExpired`.
- Incremental otherwise: the cursor is "etag:<base64(zlib(JSON))>" mapping each item's
  name to a short hash of its ETag; a PROPFIND of every ETag shows what changed.
Incremental listings are not cut to the window: an item moved out of the window is still a
change the engine must see, and the planner skips new items outside the window itself.

Item ids are href paths ("/user/calendar/item.ics"); versions are ETags; an event we create
gets our link id as its UID (and file name), which `find_by_link_id` looks up.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
from caldav import DAVClient
from caldav.lib import error as dav_error
from caldav.response import DAVResponse
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON
from lxml import etree

from calsync.calendars import (
    ProviderAuthError,
    ProviderConfigError,
    ProviderConflict,
    ProviderError,
    ProviderPermissionError,
    ProviderTransientError,
)
from calsync.security.urls import UnsafeURL
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
    problem,
)
from calsync.sync.recurrence import overlaps_window, rule_defect, rule_problem

log = logging.getLogger(__name__)

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
PRODID = "-//calsync//CalDAV adapter//EN"
# How many items one calendar-multiget asks for; servers cap request sizes.
MULTIGET_BATCH = 100
# An ETag hash this long cannot collide by chance among one calendar's items.
ETAG_HASH_CHARS = 12

_PARTSTAT_TO_RESPONSE: dict[str, Response] = {
    "ACCEPTED": "accepted",
    "DECLINED": "declined",
    "TENTATIVE": "tentative",
}
_RESPONSE_TO_PARTSTAT = {v: k for k, v in _PARTSTAT_TO_RESPONSE.items()} | {
    "needs_action": "NEEDS-ACTION"
}
# Prefixes some clients put before an Olson name, e.g. "/mozilla.org/20050126_1/Europe/Berlin".
_TZID_PATH = re.compile(r"([A-Za-z_]+(?:/[A-Za-z0-9_+\-]+)+)$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


class DiscoveredCalendar(NamedTuple):
    """A calendar the user can pick: its URL and the name the server shows."""

    url: str
    name: str


class UnreadableItem(ProviderError):
    """An item exists but cannot be converted into an event (`get` has no BadItem)."""


@dataclass
class _Item:
    href: str  # path, as the server spells it
    etag: str | None
    data: str | None


@dataclass
class Converted:
    """What became of one calendar object: an event, a bad item, or neither (a task)."""

    event: Event | None = None
    bad: BadItem | None = None
    notes: dict[str, str] = field(default_factory=dict)


class CaldavCalendar:
    """One CalDAV calendar as the engine's `CalendarAdapter`.

    `session` replaces the HTTP session of the `caldav` client: any object with a
    `requests.Session`-compatible `request(method, url, **kwargs)` and `close()`, such as
    an SSRF-guarded session. It then carries every request, redirects included; without
    it the `caldav` library's own niquests session is used. `use_sync_collection` forces
    (True) or forbids (False) RFC 6578 listing; None asks the server.
    """

    provider = "caldav"

    def __init__(
        self,
        server_url: str,
        username: str,
        password: str,
        calendar_url: str | None = None,
        *,
        session: Any | None = None,
        timeout: float = 30,
        use_sync_collection: bool | None = None,
    ) -> None:
        self.server_url = server_url
        self.username = username
        self._calendar_url = _as_collection(calendar_url) if calendar_url else None
        self._use_sync = use_sync_collection
        # No RFC 6764 discovery: it would resolve DNS and connect from inside the
        # constructor, outside any injected (SSRF-guarded) session.
        self._client = DAVClient(
            url=server_url,
            username=username,
            password=password,
            timeout=timeout,  # type: ignore[arg-type]  # float works; the hint says int
            enable_rfc6764=False,
        )
        if session is not None:
            self._client.session.close()
            self._client.session = session

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CaldavCalendar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- discovery ---------------------------------------------------------------------

    def discover_calendars(self) -> list[DiscoveredCalendar]:
        """The user's calendars, so they can pick one. Raises a ProviderError subclass."""
        self._check_speaks_caldav()
        try:
            principal = self._client.get_principal()
            calendars = principal.get_calendars()
        except dav_error.AuthorizationError as exc:
            raise _auth_error(exc, self.server_url) from exc
        except dav_error.RateLimitError as exc:
            raise _rate_limited(exc) from exc
        except UnsafeURL as exc:
            raise ProviderConfigError(str(exc)) from exc
        except OSError as exc:  # requests' and niquests' errors are OSErrors
            raise _unreachable(self.server_url, exc) from exc
        except Exception as exc:
            # The library fails in many shapes on a server that does not speak CalDAV
            # (HTML error pages, 404/405/501 to PROPFIND, XML without a principal).
            raise ProviderConfigError(
                f"{self.server_url} does not answer like a CalDAV server ({_short(exc)}). "
                "Check the server address."
            ) from exc
        found = [
            # Cached from the listing PROPFIND: no request per calendar.
            DiscoveredCalendar(str(cal.url), cal.get_display_name() or _last_segment(cal.url))
            for cal in calendars
        ]
        return sorted(found, key=lambda c: (c.name.lower(), c.url))

    def _check_speaks_caldav(self) -> None:
        """A WebDAV server answers PROPFIND with a multistatus; a web site does not (some
        answer 200 with a page to anything, and the library would then find no calendars)."""
        body = (
            f'<d:propfind xmlns:d="{DAV}"><d:prop><d:current-user-principal/></d:prop></d:propfind>'
        )
        resp = self._send("PROPFIND", self.server_url, body, {"Depth": "0"})
        tree = resp.tree
        if resp.status != 207 or tree is None or tree.tag != f"{{{DAV}}}multistatus":
            raise ProviderConfigError(
                f"{self.server_url} does not answer like a CalDAV server (HTTP {resp.status} "
                "to PROPFIND). Enter the CalDAV address your provider gives, often ending "
                "in /dav/ or /caldav/."
            )

    def capabilities(self) -> Capabilities:
        # The product offers two way sync only for Google and Microsoft; CalDAV is one way.
        return Capabilities(two_way=False, suppress_invitations=True, recurrence=True)

    # -- listing -----------------------------------------------------------------------

    def list_changes(
        self, cursor: str | None, window: Window, page_token: str | None = None
    ) -> ChangePage:
        if cursor is None:
            return self._full_listing(window)
        kind, _, value = cursor.partition(":")
        if kind == "sync" and value:
            return self._sync_collection(page_token or value)
        if kind == "etag":
            try:
                known = _decode_etag_map(value)
            except ValueError as exc:
                raise CursorExpired("the saved CalDAV ETag map cannot be read") from exc
            return self._etag_changes(known)
        raise CursorExpired("the saved CalDAV cursor is not one this adapter writes")

    def _full_listing(self, window: Window) -> ChangePage:
        # The cursor is taken before the listing: a change made in between is then seen
        # again next time, never lost.
        token = self._sync_token() if self._use_sync is not False else None
        if self._use_sync is None:
            self._use_sync = token is not None
        next_cursor = f"sync:{token}" if token else None
        if next_cursor is None:
            next_cursor = "etag:" + _encode_etag_map(self._etag_map())
        query = (
            f'<c:calendar-query xmlns:d="{DAV}" xmlns:c="{CALDAV}">'
            "<d:prop><d:getetag/><c:calendar-data/></d:prop>"
            '<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
            f'<c:time-range start="{_utc_stamp(window.start)}" end="{_utc_stamp(window.end)}"/>'
            "</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"
        )
        resp = self._send("REPORT", self.calendar_url, query, {"Depth": "1"})
        self._expect_multistatus(resp, "list the calendar")
        items = [_Item(r.href, r.etag, r.data) for r in _responses(resp) if r.status == 200]
        page = self._page(self._with_data(items), (), next_cursor=next_cursor)
        # Only here: incremental listings have no time-range and carry every changed series.
        left_out = self._series_left_out({i.href for i in items})
        if not left_out:
            return page
        extra = self._page(self._with_data(left_out), ())
        # A series we can expand into the window is synced though the server left it out;
        # one with no occurrence there is really outside it, as the server said.
        kept = [e for e in extra.events if _occurs_in(e, window)]
        return replace(page, events=[*page.events, *kept], bad=[*page.bad, *extra.bad])

    def _series_left_out(self, seen: set[str]) -> list[_Item]:
        """Items with an RRULE that the time-range query did not return, without data.

        RFC 4791 9.7.2: a prop-filter without children matches when the property is
        defined. A server that cannot answer it costs us only this check, not the listing.
        """
        query = (
            f'<c:calendar-query xmlns:d="{DAV}" xmlns:c="{CALDAV}">'
            "<d:prop><d:getetag/></d:prop>"
            '<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
            '<c:prop-filter name="RRULE"/>'
            "</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"
        )
        try:
            resp = self._send("REPORT", self.calendar_url, query, {"Depth": "1"})
        except ProviderPermissionError as exc:
            # A 403 here is a CALDAV:supported-filter refusal: the time-range query just
            # worked with the same rights.
            log.warning("CalDAV server refused the RRULE query: %s", exc)
            return []
        if resp.status != 207 or resp.tree is None:
            log.warning("CalDAV server answered %s to the RRULE query", resp.status)
            return []
        return [
            _Item(r.href, r.etag, None)
            for r in _responses(resp)
            if r.status == 200 and r.href not in seen and not r.href.endswith("/")
        ]

    def _sync_collection(self, token: str) -> ChangePage:
        body = (
            f'<d:sync-collection xmlns:d="{DAV}" xmlns:c="{CALDAV}">'
            f"<d:sync-token>{_xml_text(token)}</d:sync-token><d:sync-level>1</d:sync-level>"
            "<d:prop><d:getetag/><c:calendar-data/></d:prop></d:sync-collection>"
        )
        resp = self._send("REPORT", self.calendar_url, body, {"Depth": "0"})
        if resp.status in (409, 410):
            # Servers that do not say "valid-sync-token" refuse an old token like this.
            raise CursorExpired(f"the CalDAV sync token was refused ({resp.status})")
        self._expect_multistatus(resp, "list the calendar's changes")
        changed: dict[str, _Item] = {}
        removed: list[str] = []
        truncated = False
        own_path = _canonical_href(urlsplit(self.calendar_url).path).rstrip("/")
        for r in _responses(resp):
            if r.status == 507 and r.href.rstrip("/") == own_path:
                truncated = True  # RFC 6578 3.6: more follows from the new token
            elif r.status == 404 and r.etag is None:
                removed.append(r.href)
            elif r.etag is not None or r.data is not None:
                changed[r.href] = _Item(r.href, r.etag, r.data)
        new_token = _sync_token_of(resp)
        if not new_token:
            raise ProviderError("The CalDAV server answered a sync request without a token.")
        deleted = [h for h in removed if h not in changed]
        items = [i for i in changed.values() if not i.href.endswith("/")]
        if truncated and new_token != token:
            return self._page(self._with_data(items), deleted, page_token=new_token)
        return self._page(self._with_data(items), deleted, next_cursor=f"sync:{new_token}")

    def _etag_changes(self, known: Mapping[str, str]) -> ChangePage:
        current = self._etag_map()
        base = _canonical_href(urlsplit(self.calendar_url).path)
        changed = [
            _Item(base + name, None, None)
            for name, digest in current.items()
            if known.get(name) != digest
        ]
        deleted = [base + name for name in known if name not in current]
        return self._page(
            self._with_data(changed), deleted, next_cursor="etag:" + _encode_etag_map(current)
        )

    def _page(
        self,
        items: Iterable[_Item],
        deleted: Sequence[str],
        *,
        next_cursor: str | None = None,
        page_token: str | None = None,
    ) -> ChangePage:
        events: list[Event] = []
        bad: list[BadItem] = []
        for item in items:
            converted = self._convert(item)
            if converted.event is not None:
                events.append(converted.event)
            elif converted.bad is not None:
                bad.append(converted.bad)
        return ChangePage(
            events=events,
            deleted_ids=list(deleted),
            bad=bad,
            next_page_token=page_token,
            next_cursor=None if page_token else next_cursor,
        )

    def _convert(self, item: _Item) -> Converted:
        if item.data is None:
            return Converted(bad=BadItem(item.href, "the server sent no calendar data"))
        converted = vcalendar_to_event(item.data, item.href)
        if converted.event is not None:
            converted.event = replace(
                converted.event, calendar_id=item.href, calendar_version=item.etag
            )
        return converted

    # -- single items ------------------------------------------------------------------

    def get(self, item_id: str) -> Event | None:
        item = self._fetch(item_id)
        if item is None:
            return None
        converted = self._convert(item)
        if converted.bad is not None:
            # Not None: to the engine None means "deleted", and it would delete the twin.
            raise UnreadableItem(
                f"The calendar item {item_id} cannot be read: {converted.bad.reason}"
            )
        return converted.event  # None for a task or note: not an event

    def find_by_link_id(self, link_id: str) -> Event | None:
        # Our creates live at a name derived from the link id: one GET usually settles it.
        item = self._fetch(self._href_for(link_id))
        if item is None:
            item = self._find_by_uid(link_id)
        if item is None:
            return None
        converted = self._convert(item)
        if converted.event is None or converted.event.ical_uid != link_id:
            return None
        return converted.event

    def _find_by_uid(self, uid: str) -> _Item | None:
        query = (
            f'<c:calendar-query xmlns:d="{DAV}" xmlns:c="{CALDAV}">'
            "<d:prop><d:getetag/><c:calendar-data/></d:prop>"
            '<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
            '<c:prop-filter name="UID">'
            f'<c:text-match collation="i;octet">{_xml_text(uid)}</c:text-match>'
            "</c:prop-filter></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"
        )
        resp = self._send("REPORT", self.calendar_url, query, {"Depth": "1"})
        self._expect_multistatus(resp, "search the calendar")
        for r in _responses(resp):
            # text-match is a substring match: keep only the exact UID.
            if r.status == 200 and r.data and _uid_of(r.data) == uid:
                return _Item(r.href, r.etag, r.data)
        return None

    # -- writes ------------------------------------------------------------------------

    def create(self, event: Event, *, link_id: str, notify: bool) -> Event:
        href = self._href_for(link_id)
        body = event_to_vcalendar(event, uid=link_id, notify=notify)
        # If-None-Match: a retried create finds the first one instead of writing twice.
        resp = self._send(
            "PUT", self._url(href), body, {"Content-Type": _ICS, "If-None-Match": "*"}
        )
        if resp.status == 412:
            existing = self.find_by_link_id(link_id)
            if existing is None:
                raise ProviderConflict(
                    f"Another calendar item already has the address {href}; not overwritten."
                )
            return existing
        self._expect(resp, (200, 201, 204), "create the event")
        return self._read_back(href)

    def update(self, item_id: str, event: Event, *, notify: bool) -> Event:
        current = self._fetch(item_id)
        if current is None:
            raise ProviderConflict(f"The calendar item {item_id} no longer exists.")
        old = _parse_calendar(current.data or "")
        uid = _uid_of_calendar(old) if old is not None else None
        body = event_to_vcalendar(event, uid=uid or event.ical_uid, notify=notify, previous=old)
        # Written only over the version just read; a concurrent change wins and is seen
        # by the next run instead of being overwritten unseen.
        etag = current.etag or event.calendar_version
        headers = {"Content-Type": _ICS} | ({"If-Match": etag} if etag else {})
        resp = self._send("PUT", self._url(item_id), body, headers)
        if resp.status == 412:
            raise ProviderConflict(f"The calendar item {item_id} changed while being updated.")
        self._expect(resp, (200, 201, 204), "update the event")
        return self._read_back(item_id)

    def delete(self, item_id: str, *, notify: bool) -> None:
        current = self._fetch(item_id)
        if current is None:
            return  # already gone: the wanted outcome
        etag = current.etag
        if not notify and current.data:
            etag = self._silence_attendees(item_id, current) or etag
        headers = {"If-Match": etag} if etag else {}
        if not notify:
            headers["Schedule-Reply"] = "F"  # RFC 6638 3.2: no iTIP for this delete
        resp = self._send("DELETE", self._url(item_id), "", headers)
        if resp.status == 412:
            raise ProviderConflict(f"The calendar item {item_id} changed while being deleted.")
        if resp.status == 404:
            return
        self._expect(resp, (200, 204), "delete the event")

    def _silence_attendees(self, item_id: str, current: _Item) -> str | None:
        """Rewrite attendees with SCHEDULE-AGENT=CLIENT before a silent delete: a scheduling
        server would otherwise send CANCEL to every attendee. Returns the new ETag."""
        cal = _parse_calendar(current.data or "")
        if cal is None:
            return None
        touched = False
        for comp in cal.walk("VEVENT"):
            for addr in _as_list(comp.get("ATTENDEE")):
                if getattr(addr, "params", {}).get("SCHEDULE-AGENT") != "CLIENT":
                    addr.params["SCHEDULE-AGENT"] = "CLIENT"
                    touched = True
        if not touched:
            return None
        headers = {"Content-Type": _ICS} | ({"If-Match": current.etag} if current.etag else {})
        resp = self._send("PUT", self._url(item_id), cal.to_ical().decode(), headers)
        if resp.status == 412:
            raise ProviderConflict(f"The calendar item {item_id} changed while being deleted.")
        self._expect(resp, (200, 201, 204), "prepare the event for deletion")
        return _etag_header(resp) or (self._fetch(item_id) or current).etag

    def _read_back(self, href: str) -> Event:
        # Read back rather than trusting our own body: the server may rewrite it (and
        # the ETag of a PUT reply is not always the stored version's).
        event = self.get(href)
        if event is None:
            raise ProviderError(f"The calendar item {href} vanished right after it was written.")
        return event

    # -- HTTP plumbing -----------------------------------------------------------------

    @property
    def calendar_url(self) -> str:
        if self._calendar_url is None:
            raise ProviderConfigError("No CalDAV calendar is chosen for this connection.")
        return self._calendar_url

    def _url(self, href: str) -> str:
        """An absolute URL for an href, refusing any other host than the calendar's."""
        url = urljoin(self.calendar_url, href)
        if urlsplit(url)[:2] != urlsplit(self.calendar_url)[:2]:
            raise ProviderError(f"The CalDAV server named an item on another host: {href}")
        return url

    def _href_for(self, link_id: str) -> str:
        name = (
            link_id if _SAFE_NAME.match(link_id) else hashlib.sha256(link_id.encode()).hexdigest()
        )
        return _canonical_href(urlsplit(self.calendar_url).path) + name + ".ics"

    def _send(
        self, method: str, url: str, body: str = "", headers: Mapping[str, str] | None = None
    ) -> DAVResponse:
        try:
            resp = self._client.request(url, method, body, dict(headers or {}))
        except dav_error.AuthorizationError as exc:
            if "{DAV:}valid-sync-token" in exc.preconditions:
                raise CursorExpired("the CalDAV sync token is no longer valid") from exc
            raise _auth_error(exc, url) from exc
        except dav_error.RateLimitError as exc:
            raise _rate_limited(exc) from exc
        except UnsafeURL as exc:
            # The SSRF-guarded session refused the address: the settings must change.
            raise ProviderConfigError(str(exc)) from exc
        except OSError as exc:
            raise _unreachable(url, exc) from exc
        except (dav_error.DAVError, etree.LxmlError) as exc:
            raise ProviderError(
                f"The CalDAV server sent an answer that cannot be read: {_short(exc)}"
            ) from exc
        # 501/505 say "never", not "not now": left to the caller's status check.
        if resp.status >= 500 and resp.status not in (501, 505):
            raise ProviderTransientError(
                f"The CalDAV server failed ({resp.status} {resp.reason}); trying again later."
            )
        return resp

    def _expect(self, resp: DAVResponse, ok: tuple[int, ...], what: str) -> None:
        if resp.status in ok:
            return
        if resp.status == 404:
            raise ProviderConfigError(
                f"Could not {what}: the calendar {self.calendar_url} was not found."
            )
        exc = ProviderError(f"Could not {what}: the CalDAV server answered {resp.status}.")
        exc.status = resp.status  # type: ignore[attr-defined]
        if any(p.endswith("valid-sync-token") for p in _preconditions(resp)):
            raise CursorExpired("the CalDAV sync token is no longer valid") from exc
        raise exc

    def _expect_multistatus(self, resp: DAVResponse, what: str) -> None:
        self._expect(resp, (207,), what)
        if resp.tree is None:
            raise ProviderError(f"Could not {what}: the CalDAV server sent no multistatus.")

    def _fetch(self, href: str) -> _Item | None:
        resp = self._send("GET", self._url(href), "", {"Accept": _ICS})
        if resp.status in (404, 410):
            return None
        self._expect(resp, (200,), "read the event")
        path = _canonical_href(urlsplit(self._url(href)).path)
        return _Item(path, _etag_header(resp), _body_text(resp))

    def _with_data(self, items: list[_Item]) -> list[_Item]:
        """Fill in the calendar data some servers leave out of listings (multiget)."""
        missing = [i.href for i in items if i.data is None]
        if not missing:
            return items
        fetched: dict[str, _Item] = {}
        for start in range(0, len(missing), MULTIGET_BATCH):
            hrefs = "".join(
                f"<d:href>{_xml_text(h)}</d:href>" for h in missing[start : start + MULTIGET_BATCH]
            )
            body = (
                f'<c:calendar-multiget xmlns:d="{DAV}" xmlns:c="{CALDAV}">'
                f"<d:prop><d:getetag/><c:calendar-data/></d:prop>{hrefs}</c:calendar-multiget>"
            )
            resp = self._send("REPORT", self.calendar_url, body, {"Depth": "1"})
            self._expect_multistatus(resp, "read the changed events")
            for r in _responses(resp):
                if r.status == 200:
                    fetched[r.href] = _Item(r.href, r.etag, r.data)
        # An item deleted between the listing and the multiget is left for the next run.
        return [
            i if i.data is not None else fetched.get(i.href, i)
            for i in items
            if i.data is not None or i.href in fetched
        ]

    def _sync_token(self) -> str | None:
        body = f'<d:propfind xmlns:d="{DAV}"><d:prop><d:sync-token/></d:prop></d:propfind>'
        resp = self._send("PROPFIND", self.calendar_url, body, {"Depth": "0"})
        self._expect_multistatus(resp, "open the calendar")
        for r in _responses(resp):
            token = r.props.get(f"{{{DAV}}}sync-token")
            if r.status == 200 and token is not None and token.text:
                return token.text.strip()
        return None

    def _etag_map(self) -> dict[str, str]:
        """Every item's name -> short hash of its ETag, for the whole collection."""
        body = f'<d:propfind xmlns:d="{DAV}"><d:prop><d:getetag/></d:prop></d:propfind>'
        resp = self._send("PROPFIND", self.calendar_url, body, {"Depth": "1"})
        self._expect_multistatus(resp, "list the calendar")
        base = _canonical_href(urlsplit(self.calendar_url).path)
        out: dict[str, str] = {}
        for r in _responses(resp):
            if r.status == 200 and r.etag and r.href.startswith(base) and r.href != base:
                out[r.href[len(base) :]] = _etag_digest(r.etag)
        return out


# -- multistatus parsing -------------------------------------------------------------------

_ICS = "text/calendar; charset=utf-8"


@dataclass
class _Response:
    href: str
    status: int
    etag: str | None
    data: str | None
    props: dict[str, Any]


def _responses(resp: DAVResponse) -> list[_Response]:
    """The <response> elements of a multistatus, one status each (200 when propstat is)."""
    tree = resp.tree
    if tree is None:
        return []
    out: list[_Response] = []
    for node in tree.iter(f"{{{DAV}}}response"):
        href_node = node.find(f"{{{DAV}}}href")
        if href_node is None or not href_node.text:
            continue
        href = _canonical_href(href_node.text.strip())
        status = _status_code(node.find(f"{{{DAV}}}status"))
        props: dict[str, Any] = {}
        codes: list[int] = []
        for propstat in node.iter(f"{{{DAV}}}propstat"):
            code = _status_code(propstat.find(f"{{{DAV}}}status"))
            codes.append(code)
            if code == 200:
                prop = propstat.find(f"{{{DAV}}}prop")
                for child in prop if prop is not None else ():
                    props[child.tag] = child
        if not status:
            # Without a response-level status the resource is there when any property is.
            status = 200 if 200 in codes or not codes else codes[0]
        etag_node = props.get(f"{{{DAV}}}getetag")
        data_node = props.get(f"{{{CALDAV}}}calendar-data")
        out.append(
            _Response(
                href=href,
                status=status or 200,
                etag=etag_node.text.strip() if etag_node is not None and etag_node.text else None,
                data=data_node.text if data_node is not None and data_node.text else None,
                props=props,
            )
        )
    return out


def _status_code(node: Any) -> int:
    if node is None or not node.text:
        return 0
    parts = node.text.split()
    try:
        return int(parts[1])
    except (IndexError, ValueError):
        return 0


def _sync_token_of(resp: DAVResponse) -> str | None:
    tree = resp.tree
    if tree is None:
        return None
    node = tree.find(f"{{{DAV}}}sync-token")
    return node.text.strip() if node is not None and node.text else None


def _preconditions(resp: DAVResponse) -> list[str]:
    tree = resp.tree
    if tree is None or tree.tag != f"{{{DAV}}}error":
        return []
    return [child.tag for child in tree if isinstance(child.tag, str)]


def _etag_header(resp: DAVResponse) -> str | None:
    value = resp.headers.get("ETag") if resp.headers is not None else None
    # A weak ETag says "equivalent", not "this version": useless for If-Match.
    return value if value and not value.startswith("W/") else None


def _body_text(resp: DAVResponse) -> str:
    # A body that is not XML is kept, as received, only in this attribute.
    raw = resp._raw_body or resp._raw
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)


def _canonical_href(href: str) -> str:
    """One spelling per item id: servers differ in what they percent-encode ("@", " ")."""
    path = urlsplit(href).path if "://" in href else href
    return quote(unquote(path), safe="/@:+,;=!$&'()*~")


def _xml_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _as_collection(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _last_segment(url: Any) -> str:
    return unquote(str(url).rstrip("/").rsplit("/", 1)[-1])


def _utc_stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


# -- errors --------------------------------------------------------------------------------


def _auth_error(exc: dav_error.AuthorizationError, url: str) -> ProviderError:
    host = urlsplit(url).netloc
    if exc.status == 403:
        return ProviderPermissionError(
            f"The CalDAV server {host} does not allow this account to do that (403)."
        )
    return ProviderAuthError(
        f"The CalDAV server {host} refused the user name or password; reconnect the calendar."
    )


def _rate_limited(exc: dav_error.RateLimitError) -> ProviderTransientError:
    return ProviderTransientError(
        "The CalDAV server asks to slow down; trying again later.",
        retry_after=exc.retry_after_seconds,
    )


def _unreachable(url: str, exc: BaseException) -> ProviderTransientError:
    host = urlsplit(url).netloc or url
    return ProviderTransientError(f"The CalDAV server {host} cannot be reached: {_short(exc)}")


# -- ETag map cursor -----------------------------------------------------------------------


def _etag_digest(etag: str) -> str:
    return hashlib.sha256(etag.encode()).hexdigest()[:ETAG_HASH_CHARS]


def _encode_etag_map(etags: Mapping[str, str]) -> str:
    # Names share structure (".ics", UUID shapes) and compress well; the hashed ETags do
    # not, which is why they are cut short: ~60 bytes an item before compression.
    raw = json.dumps(dict(sorted(etags.items())), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode()


def _decode_etag_map(value: str) -> dict[str, str]:
    try:
        data = json.loads(zlib.decompress(base64.urlsafe_b64decode(value.encode())))
    except (ValueError, zlib.error) as exc:
        raise ValueError("not an ETag map") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError("not an ETag map")
    return data


# -- VEVENT -> Event -----------------------------------------------------------------------


def _parse_calendar(text: str) -> icalendar.Calendar | None:
    try:
        return icalendar.Calendar.from_ical(text)
    except Exception:  # icalendar raises ValueError, KeyError, IndexError... on junk
        return None


def _uid_of_calendar(cal: icalendar.Calendar) -> str | None:
    for comp in cal.walk("VEVENT"):
        if comp.get("UID"):
            return str(comp.get("UID"))
    return None


def _uid_of(text: str) -> str | None:
    cal = _parse_calendar(text)
    return _uid_of_calendar(cal) if cal is not None else None


def resolve_tzid(tzid: str | None) -> str | None:
    """The IANA name a TZID stands for: itself, a Windows name, or a prefixed Olson path."""
    if not tzid:
        return None
    tzid = tzid.strip().strip('"')
    candidates = [tzid, WINDOWS_TO_OLSON.get(tzid)]
    match = _TZID_PATH.search(tzid)
    if match:
        parts = match.group(1).split("/")
        # "/mozilla.org/20050126_1/America/New_York": try the shortest trailing path first.
        candidates += ["/".join(parts[i:]) for i in range(len(parts) - 2, -1, -1)]
    for name in candidates:
        if not name or name.startswith("/"):
            continue
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        return name
    return None


class _TimeError(ValueError):
    pass


def _when(prop: Any, notes: dict[str, str]) -> tuple[When, str | None]:
    """A DTSTART-like property as (UTC datetime or date, IANA zone name or None)."""
    value = prop.dt
    if isinstance(value, date) and not isinstance(value, datetime):
        return value, None
    tzid = prop.params.get("TZID") if hasattr(prop, "params") else None
    zone_name = resolve_tzid(tzid) if tzid else None
    if zone_name:
        # The wall time is the truth; a client's VTIMEZONE copy may be simplified.
        local = value.replace(tzinfo=ZoneInfo(zone_name))
        return local.astimezone(UTC), zone_name
    if value.tzinfo is None:
        if tzid:
            raise _TimeError(f"unknown time zone {tzid!r} without a definition")
        notes["floating_time"] = "read as UTC"
        return value.replace(tzinfo=UTC), None
    if tzid:
        # A custom VTIMEZONE we cannot name: keep the instant, lose the zone, say so.
        notes["timezone_converted"] = str(tzid)
    return value.astimezone(UTC), None


def _utc_or_date(value: Any, tz: tzinfo | None = None) -> When:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz or UTC)
        return value.astimezone(UTC)
    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _email(addr: Any) -> str | None:
    text = str(addr or "").strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    return text if "@" in text else None


def _when_list(prop: Any, zone: str | None, notes: dict[str, str]) -> list[When]:
    out: list[When] = []
    for item in _as_list(prop):
        tzid = item.params.get("TZID") if hasattr(item, "params") else None
        named = resolve_tzid(tzid) if tzid else None
        for dt in getattr(item, "dts", []):
            value = dt.dt
            if isinstance(value, datetime):
                if named:
                    value = value.replace(tzinfo=ZoneInfo(named))  # wall time, as in _when
                elif value.tzinfo is None and zone:
                    value = value.replace(tzinfo=ZoneInfo(zone))
            out.append(_utc_or_date(value))
    return out


def vcalendar_to_event(text: str, item_id: str = "?") -> Converted:
    """Convert one calendar object resource (a series with its overrides) to an Event."""
    cal = _parse_calendar(text)
    if cal is None:
        return Converted(bad=BadItem(item_id, "the calendar data cannot be parsed"))
    vevents = list(cal.walk("VEVENT"))
    if not vevents:
        # A task or a journal entry shares the collection; it is not an event to sync.
        return Converted()
    masters = [v for v in vevents if v.get("RECURRENCE-ID") is None]
    if not masters:
        return Converted(
            bad=BadItem(item_id, "only changed occurrences of a series, without the series")
        )
    master = masters[0]
    notes: dict[str, str] = {}
    try:
        event = _vevent_to_event(master, [v for v in vevents if v is not master], notes)
    except _TimeError as exc:
        return Converted(bad=BadItem(item_id, str(exc)))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return Converted(bad=BadItem(item_id, f"the event cannot be read ({_short(exc)})"))
    if event.recurrence is not None:
        defect = rule_defect(event.recurrence.rrule, event.start) or rule_problem(event)
        if defect:
            return Converted(bad=BadItem(item_id, _unreadable_rule(event, defect)))
    why = problem(event)
    if why:
        return Converted(bad=BadItem(item_id, why))
    if notes:
        event = replace(event, extra={**event.extra, **notes})
    return Converted(event=event, notes=notes)


def _unreadable_rule(event: Event, defect: str) -> str:
    assert event.recurrence is not None
    title = event.title if len(event.title) <= 60 else event.title[:59] + "…"
    rule = event.recurrence.rrule.removeprefix("RRULE:")
    return (
        f'the event "{title}" repeats by a rule calsync cannot read (RRULE:{rule}: {defect}); '
        "edit its repetition in your calendar"
    )


def _occurs_in(event: Event, window: Window) -> bool:
    if event.recurrence is None:
        return False  # the query that left it out asked for series only
    try:
        return overlaps_window(event, window.start, window.end)
    except (ValueError, TypeError, OverflowError):
        return True  # kept: the engine expands it again and records why it cannot


def _vevent_to_event(master: Any, overrides: list[Any], notes: dict[str, str]) -> Event:
    if master.get("DTSTART") is None:
        raise _TimeError("the event has no start")
    start, zone = _when(master["DTSTART"], notes)
    end: When
    if master.get("DTEND") is not None:
        end, _ = _when(master["DTEND"], notes)
    elif master.get("DURATION") is not None:
        duration = master["DURATION"].dt
        if zone and isinstance(start, datetime):
            # RFC 5545 3.3.6: days count on the wall clock across a DST change, hours and
            # minutes exactly. "P1D" from 09:00 ends at 09:00, whatever the offset did.
            days = timedelta(days=duration.days)
            local = start.astimezone(ZoneInfo(zone)).replace(tzinfo=None) + days
            end = local.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC) + (duration - days)
        else:
            end = start + duration
    elif isinstance(start, datetime):
        end = start  # RFC 5545: a DATE-TIME start alone is an instant
    else:
        end = start + timedelta(days=1)  # and a DATE start alone is that whole day

    recurrence = None
    rrule = master.get("RRULE")
    if rrule is not None:
        first = _as_list(rrule)[0]
        cancelled = _when_list(master.get("EXDATE"), zone, notes)
        moved: list[MovedOccurrence] = []
        length = end - start  # type: ignore[operator]
        for ov in overrides:
            original, _ = _when(ov["RECURRENCE-ID"], notes)
            if str(ov.get("STATUS", "")).upper() == "CANCELLED":
                cancelled.append(original)
                continue
            ov_start, _ = _when(ov["DTSTART"], notes) if ov.get("DTSTART") else (original, None)
            if ov.get("DTEND") is not None:
                ov_end, _ = _when(ov["DTEND"], notes)
            elif ov.get("DURATION") is not None:
                ov_end = ov_start + ov["DURATION"].dt
            else:
                ov_end = ov_start + length
            if (ov_start, ov_end) != (original, original + length):
                moved.append(MovedOccurrence(original, ov_start, ov_end))
            else:
                # Same time, other details: the model has no place for those.
                notes["occurrence_details_ignored"] = "yes"
        recurrence = Recurrence(
            # A rule icalendar cannot parse comes as text, and to_ical would escape its
            # ";": kept as written, so the rule check names what the user wrote.
            rrule=first.to_ical().decode() if isinstance(first, icalendar.vRecur) else str(first),
            cancelled=tuple(sorted(set(cancelled), key=_sort_key)),
            moved=tuple(sorted(moved, key=lambda m: _sort_key(m.original_start))),
        )
    elif overrides:
        notes["overrides_without_rule"] = str(len(overrides))

    organizer = _email(master.get("ORGANIZER"))
    invitees = []
    for att in _as_list(master.get("ATTENDEE")):
        email = _email(att)
        if email is None:
            continue
        params = getattr(att, "params", {})
        invitees.append(
            Invitee(
                email=email,
                name=str(params["CN"]) if params.get("CN") else None,
                response=_PARTSTAT_TO_RESPONSE.get(
                    str(params.get("PARTSTAT", "")).upper(), "needs_action"
                ),
            )
        )
    modified = master.get("LAST-MODIFIED") or master.get("DTSTAMP")
    last_modified = _utc_or_date(modified.dt) if modified is not None else None
    uid = str(master["UID"]) if master.get("UID") else None
    return Event(
        title=str(master.get("SUMMARY", "")),
        start=start,
        end=end,
        timezone=zone,
        location=str(master["LOCATION"]) if master.get("LOCATION") else None,
        description=str(master["DESCRIPTION"]) if master.get("DESCRIPTION") else None,
        organizer=organizer,
        invitees=tuple(invitees),
        recurrence=recurrence,
        status="cancelled" if str(master.get("STATUS", "")).upper() == "CANCELLED" else "confirmed",
        private=str(master.get("CLASS", "")).upper() in ("PRIVATE", "CONFIDENTIAL"),
        last_modified=last_modified if isinstance(last_modified, datetime) else None,
        ical_uid=uid,
        # A UID is a link id only for events we created; foreign UIDs never equal a fresh
        # link id, so the engine cannot mistake them.
        link_id=uid,
    )


def _sort_key(value: When) -> str:
    return value.isoformat()


# -- Event -> VEVENT -----------------------------------------------------------------------


def _local(value: When, zone: str | None) -> tuple[Any, dict[str, str]]:
    """A value as written: DATE, local wall time with TZID, or UTC."""
    if not isinstance(value, datetime):
        return value, {}
    if zone:
        return value.astimezone(ZoneInfo(zone)).replace(tzinfo=None), {"TZID": zone}
    return value.astimezone(UTC), {}


def event_to_vcalendar(
    event: Event,
    *,
    uid: str | None,
    notify: bool,
    previous: icalendar.Calendar | None = None,
) -> str:
    """Serialize an Event; `previous` (the stored version) keeps alarms and the sequence."""
    if event.start is None or event.end is None:
        raise ValueError("an event needs a start and an end")
    zone = event.timezone if not event.all_day else None
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    now = datetime.now(UTC).replace(microsecond=0)
    old = next(iter(previous.walk("VEVENT")), None) if previous is not None else None
    sequence = int(old.get("SEQUENCE", 0)) + 1 if old is not None else 0

    master = icalendar.Event()
    master.add("UID", uid or hashlib.sha256(repr(event).encode()).hexdigest())
    master.add("DTSTAMP", now)
    master.add("LAST-MODIFIED", now)
    master.add("SEQUENCE", sequence)
    _put_times(master, event.start, event.end, zone)
    _put_details(master, event, notify)
    if old is not None:
        for alarm in old.walk("VALARM"):
            master.add_component(alarm)
    rec = event.recurrence
    if rec is not None:
        master.add("RRULE", icalendar.vRecur.from_ical(rec.rrule.removeprefix("RRULE:")))
        if rec.cancelled:
            values = [_local(c, zone) for c in sorted(rec.cancelled, key=_sort_key)]
            params = values[0][1] if values else {}
            master.add("EXDATE", [v for v, _ in values], parameters=params or None)
    cal.add_component(master)
    if rec is not None:
        for moved in rec.moved:
            ov = icalendar.Event()
            ov.add("UID", master["UID"])
            ov.add("DTSTAMP", now)
            ov.add("SEQUENCE", sequence)
            value, params = _local(moved.original_start, zone)
            ov.add("RECURRENCE-ID", value, parameters=params or None)
            _put_times(ov, moved.start, moved.end, zone)
            _put_details(ov, event, notify)
            cal.add_component(ov)
    cal.add_missing_timezones()
    return cal.to_ical().decode()


def _put_times(comp: Any, start: When, end: When, zone: str | None) -> None:
    for name, value in (("DTSTART", start), ("DTEND", end)):
        written, params = _local(value, zone)
        comp.add(name, written, parameters=params or None)


def _put_details(comp: Any, event: Event, notify: bool) -> None:
    comp.add("SUMMARY", event.title or "")
    if event.location:
        comp.add("LOCATION", event.location)
    if event.description:
        comp.add("DESCRIPTION", event.description)
    comp.add("STATUS", "CANCELLED" if event.status == "cancelled" else "CONFIRMED")
    comp.add("CLASS", "PRIVATE" if event.private else "PUBLIC")
    # SCHEDULE-AGENT=CLIENT (RFC 6638 7.1) tells a scheduling server not to send iTIP
    # messages for this person: how "no invitations" is said over CalDAV.
    silent = {} if notify else {"SCHEDULE-AGENT": "CLIENT"}
    if event.organizer:
        organizer = icalendar.vCalAddress(f"mailto:{event.organizer}")
        organizer.params.update(silent)
        comp.add("ORGANIZER", organizer)
    for person in event.invitees:
        addr = icalendar.vCalAddress(f"mailto:{person.email}")
        if person.name:
            addr.params["CN"] = person.name
        addr.params["PARTSTAT"] = _RESPONSE_TO_PARTSTAT.get(person.response, "NEEDS-ACTION")
        addr.params["ROLE"] = "REQ-PARTICIPANT"
        addr.params.update(silent)
        comp.add("ATTENDEE", addr)


__all__ = [
    "CaldavCalendar",
    "Converted",
    "DiscoveredCalendar",
    "UnreadableItem",
    "event_to_vcalendar",
    "resolve_tzid",
    "rule_defect",
    "vcalendar_to_event",
]
