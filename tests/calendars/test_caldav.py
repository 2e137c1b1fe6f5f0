"""CalDAV specifics, beyond the provider contract: against Radicale, or on the converter alone."""

from __future__ import annotations

import hashlib
import http.server
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from textwrap import dedent

import pytest
import requests

from calsync.calendars import (
    ProviderAuthError,
    ProviderConfigError,
    ProviderError,
    ProviderTransientError,
    adapter_class,
)
from calsync.calendars.caldav import (
    CaldavCalendar,
    _decode_etag_map,
    _encode_etag_map,
    _etag_digest,
    resolve_tzid,
    vcalendar_to_event,
)
from calsync.security.outbound import safe_session
from calsync.security.urls import URLPolicy
from calsync.sync import CursorExpired, Event, Invitee, Window

from .conftest import CaldavHarness, RadicaleServer, _free_port

WINDOW = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC))


def ics(*vevent_lines: str, extra: str = "") -> str:
    """A VCALENDAR with one VEVENT made of the given lines (UID and DTSTAMP added)."""
    body = "\r\n".join(("UID:foreign-1", "DTSTAMP:20260101T000000Z", *vevent_lines))
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        f"{extra}BEGIN:VEVENT\r\n{body}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def convert(text: str) -> Event:
    converted = vcalendar_to_event(text, "/x.ics")
    assert converted.bad is None, converted.bad
    assert converted.event is not None
    return converted.event


def bad_reason(text: str) -> str:
    converted = vcalendar_to_event(text, "/x.ics")
    assert converted.event is None and converted.bad is not None
    return converted.bad.reason


BERLIN_AS_WINDOWS = dedent(
    """\
    BEGIN:VTIMEZONE\r
    TZID:W. Europe Standard Time\r
    BEGIN:STANDARD\r
    DTSTART:16010101T030000\r
    TZOFFSETFROM:+0200\r
    TZOFFSETTO:+0100\r
    RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r
    END:STANDARD\r
    BEGIN:DAYLIGHT\r
    DTSTART:16010101T020000\r
    TZOFFSETFROM:+0100\r
    TZOFFSETTO:+0200\r
    RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r
    END:DAYLIGHT\r
    END:VTIMEZONE\r
    """
)

CUSTOM_ZONE = dedent(
    """\
    BEGIN:VTIMEZONE\r
    TZID:Head office time\r
    BEGIN:STANDARD\r
    DTSTART:19700101T000000\r
    TZOFFSETFROM:+0530\r
    TZOFFSETTO:+0530\r
    END:STANDARD\r
    END:VTIMEZONE\r
    """
)


# -- the provider --------------------------------------------------------------------------


def test_the_registry_knows_the_caldav_adapter():
    assert adapter_class("caldav") is CaldavCalendar


def test_caldav_is_one_way_with_native_series_and_silent_writes(caldav_harness):
    caps = caldav_harness.adapter.capabilities()
    assert caps.two_way is False
    assert caps.suppress_invitations is True
    assert caps.recurrence is True


def test_discovery_names_each_calendar_by_its_display_name(caldav_harness):
    found = dict((url, name) for url, name in caldav_harness.adapter.discover_calendars())
    assert found[caldav_harness.calendar_url] == "Work"


def test_discovery_with_a_wrong_password_is_an_auth_error(radicale: RadicaleServer):
    adapter = CaldavCalendar(radicale.url, radicale.username, "wrong")
    with pytest.raises(ProviderAuthError, match="reconnect"):
        adapter.discover_calendars()


@pytest.fixture
def plain_web_server(tmp_path: Path) -> Iterator[str]:
    """An ordinary web site: answers GET with a page and PROPFIND with 501."""
    (tmp_path / "index.html").write_text("<html><body>Welcome</body></html>")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_that_is_not_a_caldav_server_is_a_configuration_error(plain_web_server):
    adapter = CaldavCalendar(plain_web_server, "alice", "secret")
    with pytest.raises(ProviderConfigError, match="does not answer like a CalDAV server"):
        adapter.discover_calendars()


@pytest.fixture
def page_for_everything_server() -> Iterator[str]:
    """A web app that answers every method, PROPFIND included, with 200 and a page."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _page(self):
            body = b"<html><body>Sign in</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PROPFIND = do_REPORT = do_OPTIONS = _page

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_site_answering_everything_with_a_page_is_not_taken_for_a_caldav_server(
    page_for_everything_server,
):
    adapter = CaldavCalendar(page_for_everything_server, "alice", "secret")
    with pytest.raises(ProviderConfigError, match="does not answer like a CalDAV server"):
        adapter.discover_calendars()


def test_a_server_nobody_answers_on_is_a_transient_error():
    adapter = CaldavCalendar(f"http://127.0.0.1:{_free_port()}/", "alice", "secret", timeout=2)
    with pytest.raises(ProviderTransientError, match="cannot be reached"):
        adapter.discover_calendars()


def test_listing_without_a_chosen_calendar_asks_to_choose_one(radicale: RadicaleServer):
    adapter = CaldavCalendar(radicale.url, radicale.username, radicale.password)
    with pytest.raises(ProviderConfigError, match="No CalDAV calendar is chosen"):
        adapter.list_changes(None, WINDOW)


def test_a_calendar_that_was_removed_is_a_configuration_error(radicale: RadicaleServer):
    gone = f"{radicale.url}{radicale.username}/no-such-calendar/"
    adapter = CaldavCalendar(radicale.url, radicale.username, radicale.password, gone)
    with pytest.raises(ProviderConfigError, match="was not found"):
        adapter.list_changes(None, WINDOW)


def test_an_injected_session_carries_every_request(radicale: RadicaleServer, caldav_harness):
    seen: list[str] = []

    class CountingSession(requests.Session):
        def request(self, method, url, *args, **kwargs):  # type: ignore[override]
            seen.append(f"{method} {url}")
            return super().request(method, url, *args, **kwargs)

    adapter = CaldavCalendar(
        radicale.url,
        radicale.username,
        radicale.password,
        caldav_harness.calendar_url,
        session=CountingSession(),
    )
    adapter.list_changes(None, WINDOW)
    adapter.discover_calendars()
    assert seen and all(line.split()[1].startswith(radicale.url) for line in seen)


def test_the_ssrf_guarded_session_carries_the_adapter(radicale: RadicaleServer):
    policy = URLPolicy(allow_http=True, allowed_hosts=frozenset({"127.0.0.1"}))
    adapter = CaldavCalendar(
        radicale.url, radicale.username, radicale.password, session=safe_session(policy)
    )
    assert isinstance(adapter.discover_calendars(), list)


def test_an_address_the_ssrf_guard_refuses_is_a_configuration_error(radicale: RadicaleServer):
    adapter = CaldavCalendar(
        radicale.url,
        radicale.username,
        radicale.password,
        session=safe_session(URLPolicy(allow_http=True)),  # 127.0.0.1 is internal
    )
    with pytest.raises(ProviderConfigError, match="internal addresses"):
        adapter.discover_calendars()


# -- invitations -----------------------------------------------------------------------


def _meeting() -> Event:
    start = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    return Event(
        title="Demo",
        start=start,
        end=start + timedelta(hours=1),
        organizer="alice@example.com",
        invitees=(Invitee("bob@example.com", "Bob"), Invitee("carol@example.com")),
    )


def test_without_notify_every_attendee_is_written_with_schedule_agent_client(caldav_harness):
    written = caldav_harness.adapter.create(_meeting(), link_id="link-quiet", notify=False)
    raw = caldav_harness.raw(written.calendar_id).replace("\r\n ", "")
    attendees = [line for line in raw.splitlines() if line.startswith("ATTENDEE")]
    assert len(attendees) == 2
    assert all("SCHEDULE-AGENT=CLIENT" in line for line in attendees)


def test_an_update_without_notify_stays_silent_too(caldav_harness):
    adapter = caldav_harness.adapter
    written = adapter.create(_meeting(), link_id="link-quiet-update", notify=True)
    adapter.update(written.calendar_id, _meeting(), notify=False)
    assert caldav_harness.invitations_suppressed(written.calendar_id)


def test_an_update_keeps_the_uid_and_alarms_of_a_foreign_event(caldav_harness):
    item_id = caldav_harness.put_raw(
        "foreign.ics",
        ics(
            "SUMMARY:Theirs",
            "DTSTART:20260302T080000Z",
            "DTEND:20260302T090000Z",
            "BEGIN:VALARM",
            "ACTION:DISPLAY",
            "DESCRIPTION:Soon",
            "TRIGGER:-PT15M",
            "END:VALARM",
        ),
    )
    updated = caldav_harness.adapter.update(item_id, _meeting(), notify=False)
    assert updated.ical_uid == "foreign-1"
    assert "TRIGGER:-PT15M" in caldav_harness.raw(item_id)


# -- listing without sync-collection ----------------------------------------------------


@pytest.fixture
def etag_adapter(caldav_harness: CaldavHarness) -> CaldavCalendar:
    server = caldav_harness.server
    return CaldavCalendar(
        server.url,
        server.username,
        server.password,
        caldav_harness.calendar_url,
        use_sync_collection=False,
    )


def test_without_sync_collection_the_cursor_is_an_etag_map(etag_adapter):
    assert etag_adapter.list_changes(None, WINDOW).next_cursor.startswith("etag:")


def test_without_sync_collection_a_new_event_is_an_incremental_change(etag_adapter):
    cursor = etag_adapter.list_changes(None, WINDOW).next_cursor
    written = etag_adapter.create(_meeting(), link_id="link-etag-new", notify=False)
    page = etag_adapter.list_changes(cursor, WINDOW)
    assert [e.calendar_id for e in page.events] == [written.calendar_id]


def test_without_sync_collection_an_edit_by_another_client_is_seen(etag_adapter, caldav_harness):
    written = etag_adapter.create(_meeting(), link_id="link-etag-edit", notify=False)
    cursor = etag_adapter.list_changes(None, WINDOW).next_cursor
    caldav_harness.retitle_behind(written.calendar_id, "Renamed")
    page = etag_adapter.list_changes(cursor, WINDOW)
    assert [e.title for e in page.events] == ["Renamed"]


def test_without_sync_collection_a_deletion_is_seen(etag_adapter, caldav_harness):
    written = etag_adapter.create(_meeting(), link_id="link-etag-gone", notify=False)
    cursor = etag_adapter.list_changes(None, WINDOW).next_cursor
    caldav_harness.delete_behind(written.calendar_id)
    page = etag_adapter.list_changes(cursor, WINDOW)
    assert list(page.deleted_ids) == [written.calendar_id] and list(page.events) == []


def test_the_etag_map_cursor_stays_near_40_bytes_an_item():
    # Random-looking UUID names, as most clients choose them: the worst realistic case.
    names = [uuid.UUID(bytes=hashlib.md5(str(i).encode()).digest()) for i in range(5000)]
    etags = {f"{name}.ics": _etag_digest(f'"{name}-etag"') for name in names}
    encoded = _encode_etag_map(etags)
    assert _decode_etag_map(encoded) == etags
    assert len(encoded) < 5000 * 45  # ~200 KB for 5000 events, only without sync-collection


# -- server answers Radicale never gives, replayed through the session hook -------------


class CannedSession:
    """A requests-compatible session answering from a list of (status, body, headers)."""

    def __init__(self, *answers: tuple[int, str, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, str]] = []

    def request(self, method: str, url: str, **kwargs: object) -> requests.Response:
        self.sent.append((method, str(kwargs.get("data") or b"")))
        status, body, headers = self.answers.pop(0)
        resp = requests.Response()
        resp.status_code, resp.url, resp.reason = status, url, "canned"
        resp._content = body.encode()
        resp.headers.update({"Content-Type": "application/xml; charset=utf-8", **headers})
        return resp

    def close(self) -> None:
        pass


CANNED_CALENDAR = "https://dav.example.com/cal/alice/work/"


def _canned_adapter(*answers: tuple[int, str, dict[str, str]]) -> CaldavCalendar:
    return CaldavCalendar(
        "https://dav.example.com/",
        "alice",
        "secret",
        CANNED_CALENDAR,
        session=CannedSession(*answers),
    )


def _multistatus(*parts: str) -> str:
    return f'<?xml version="1.0"?><d:multistatus xmlns:d="DAV:">{"".join(parts)}</d:multistatus>'


def test_a_truncated_sync_reply_continues_on_the_next_page():
    truncated = _multistatus(
        "<d:response><d:href>/cal/alice/work/</d:href>"
        "<d:status>HTTP/1.1 507 Insufficient Storage</d:status></d:response>",
        "<d:response><d:href>/cal/alice/work/gone.ics</d:href>"
        "<d:status>HTTP/1.1 404 Not Found</d:status></d:response>",
        "<d:sync-token>token-2</d:sync-token>",
    )
    adapter = _canned_adapter((207, truncated, {}))
    page = adapter.list_changes("sync:token-1", WINDOW)
    assert page.next_page_token == "token-2" and page.next_cursor is None
    assert list(page.deleted_ids) == ["/cal/alice/work/gone.ics"]


def test_a_sync_token_refused_with_409_and_no_explanation_raises_cursor_expired():
    adapter = _canned_adapter((409, "", {}))
    with pytest.raises(CursorExpired):
        adapter.list_changes("sync:token-1", WINDOW)


def test_a_rate_limited_listing_is_transient_and_carries_the_wait():
    adapter = _canned_adapter((429, "", {"Retry-After": "30"}))
    with pytest.raises(ProviderTransientError) as caught:
        adapter.list_changes("sync:token-1", WINDOW)
    assert caught.value.retry_after == 30


def test_a_server_error_is_transient():
    adapter = _canned_adapter((503, "", {}))
    with pytest.raises(ProviderTransientError):
        adapter.list_changes("sync:token-1", WINDOW)


def test_an_item_on_another_host_is_never_fetched():
    adapter = _canned_adapter()
    with pytest.raises(ProviderError, match="another host"):
        adapter.get("https://internal.example.net/secret.ics")


# -- reading what other clients wrote ----------------------------------------------------


def test_a_windows_time_zone_name_is_read_as_its_iana_zone():
    event = convert(
        ics(
            "DTSTART;TZID=W. Europe Standard Time:20260302T090000",
            "DTEND;TZID=W. Europe Standard Time:20260302T100000",
            extra=BERLIN_AS_WINDOWS,
        )
    )
    assert event.timezone == "Europe/Berlin"
    assert event.start == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_a_prefixed_olson_name_is_recognised():
    assert resolve_tzid("/mozilla.org/20050126_1/America/New_York") == "America/New_York"


def test_an_unknown_custom_time_zone_is_converted_to_utc_and_noted():
    event = convert(
        ics(
            "DTSTART;TZID=Head office time:20260302T090000",
            "DTEND;TZID=Head office time:20260302T100000",
            extra=CUSTOM_ZONE,
        )
    )
    assert event.start == datetime(2026, 3, 2, 3, 30, tzinfo=UTC)
    assert event.timezone is None
    assert event.extra["timezone_converted"] == "Head office time"


def test_a_time_zone_nobody_defines_makes_a_bad_item():
    text = ics("DTSTART;TZID=Atlantis/Capital:20260302T090000", "DURATION:PT1H")
    assert "unknown time zone" in bad_reason(text)


def test_a_duration_without_an_end_gives_the_end():
    event = convert(ics("DTSTART:20260302T080000Z", "DURATION:PT90M"))
    assert event.end == datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def test_a_one_day_duration_across_a_dst_change_ends_at_the_same_wall_time():
    # Berlin moves to summer time in the night to 29 March 2026.
    event = convert(ics("DTSTART;TZID=Europe/Berlin:20260328T090000", "DURATION:P1D"))
    assert event.end == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)  # 09:00 CEST


def test_an_all_day_event_without_an_end_lasts_one_day():
    event = convert(ics("DTSTART;VALUE=DATE:20260302"))
    assert (event.start, event.end) == (date(2026, 3, 2), date(2026, 3, 3))


def test_attendee_partstat_becomes_the_invitee_response():
    event = convert(
        ics(
            "DTSTART:20260302T080000Z",
            "DTEND:20260302T090000Z",
            "ORGANIZER;CN=Alice:mailto:alice@example.com",
            "ATTENDEE;CN=Bob;PARTSTAT=ACCEPTED:mailto:bob@example.com",
            "ATTENDEE;PARTSTAT=DECLINED:mailto:carol@example.com",
            "ATTENDEE:mailto:dave@example.com",
        )
    )
    assert event.organizer == "alice@example.com"
    assert event.invitees == (
        Invitee("bob@example.com", "Bob", "accepted"),
        Invitee("carol@example.com", None, "declined"),
        Invitee("dave@example.com", None, "needs_action"),
    )


def test_class_private_makes_a_private_event():
    event = convert(ics("DTSTART:20260302T080000Z", "DURATION:PT1H", "CLASS:PRIVATE"))
    assert event.private


def test_status_cancelled_makes_a_cancelled_event():
    event = convert(ics("DTSTART:20260302T080000Z", "DURATION:PT1H", "STATUS:CANCELLED"))
    assert event.status == "cancelled"


def test_a_cancelled_override_is_a_cancelled_occurrence():
    text = ics(
        "DTSTART:20260302T080000Z",
        "DTEND:20260302T090000Z",
        "RRULE:FREQ=WEEKLY;COUNT=4",
    ).replace(
        "END:VCALENDAR",
        "BEGIN:VEVENT\r\nUID:foreign-1\r\nDTSTAMP:20260101T000000Z\r\n"
        "RECURRENCE-ID:20260309T080000Z\r\nDTSTART:20260309T080000Z\r\n"
        "DTEND:20260309T090000Z\r\nSTATUS:CANCELLED\r\nEND:VEVENT\r\nEND:VCALENDAR",
    )
    event = convert(text)
    assert event.recurrence is not None
    assert event.recurrence.cancelled == (datetime(2026, 3, 9, 8, 0, tzinfo=UTC),)


def test_an_event_without_a_start_is_a_bad_item():
    assert "no start" in bad_reason(ics("SUMMARY:No time"))


def test_an_event_ending_before_it_starts_is_a_bad_item():
    text = ics("DTSTART:20260302T090000Z", "DTEND:20260302T080000Z")
    assert "ends before it starts" in bad_reason(text)


def test_unparsable_calendar_data_is_a_bad_item():
    assert "cannot be parsed" in bad_reason("this is not iCalendar")


def test_a_task_in_the_calendar_is_neither_an_event_nor_a_bad_item():
    todo = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VTODO\r\nUID:t\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
    )
    converted = vcalendar_to_event(todo, "/t.ics")
    assert converted.event is None and converted.bad is None


def test_a_bad_item_on_the_server_is_listed_as_bad_without_stopping_the_listing(caldav_harness):
    good = caldav_harness.adapter.create(_meeting(), link_id="link-good", notify=False)
    bad_id = caldav_harness.put_raw(
        "backwards.ics", ics("DTSTART:20260302T090000Z", "DTEND:20260302T080000Z")
    )
    page = caldav_harness.adapter.list_changes(None, WINDOW)
    assert [e.calendar_id for e in page.events] == [good.calendar_id]
    assert [b.item_id for b in page.bad] == [bad_id]


# -- series the server cannot expand (issue #11) ------------------------------------------

FEBRUARY_30 = "RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"


def _series(rule: str, start: str = "20260302T090000Z", end: str = "20260302T100000Z") -> str:
    return ics(f"DTSTART:{start}", f"DTEND:{end}", "SUMMARY:Board review", rule)


def test_a_series_the_server_cannot_expand_is_listed_as_bad_with_its_rule(caldav_harness):
    # Radicale stores this rule but leaves it out of every time-range query.
    good = caldav_harness.adapter.create(_meeting(), link_id="link-beside", notify=False)
    bad_id = caldav_harness.put_raw("feb30.ics", _series(FEBRUARY_30))
    page = caldav_harness.adapter.list_changes(None, WINDOW)
    assert [e.calendar_id for e in page.events] == [good.calendar_id]
    assert [b.item_id for b in page.bad] == [bad_id]
    assert_names_the_rule_and_what_to_fix(page.bad[0].reason, "February never has day 30")


def assert_names_the_rule_and_what_to_fix(reason: str, defect: str) -> None:
    # The rule is shown as icalendar writes it back, its parts perhaps reordered.
    assert reason.startswith('the event "Board review" repeats by a rule calsync cannot read ')
    assert "(RRULE:" in reason
    assert reason.endswith(f": {defect}); edit its repetition in your calendar")


def test_a_series_that_ended_before_the_window_stays_out_of_a_full_listing(caldav_harness):
    caldav_harness.put_raw(
        "old.ics", _series("RRULE:FREQ=WEEKLY;COUNT=3", "20200302T090000Z", "20200302T100000Z")
    )
    page = caldav_harness.adapter.list_changes(None, WINDOW)
    assert list(page.events) == [] and list(page.bad) == []


def test_a_series_the_server_cannot_expand_written_later_is_a_bad_change(caldav_harness):
    cursor = caldav_harness.adapter.list_changes(None, WINDOW).next_cursor
    bad_id = caldav_harness.put_raw("never.ics", _series("RRULE:FREQ=WEEKLY;COUNT=0"))
    page = caldav_harness.adapter.list_changes(cursor, WINDOW)
    assert [b.item_id for b in page.bad] == [bad_id] and list(page.events) == []


def _canned_full_listing(*after_time_range: tuple[int, str, dict[str, str]]) -> CaldavCalendar:
    token = _multistatus(
        "<d:response><d:href>/cal/alice/work/</d:href><d:propstat><d:prop>"
        "<d:sync-token>token-1</d:sync-token></d:prop>"
        "<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
    )
    return _canned_adapter((207, token, {}), (207, _multistatus(), {}), *after_time_range)


def _item_response(href: str, data: str | None = None) -> str:
    calendar_data = (
        f'<c:calendar-data xmlns:c="urn:ietf:params:xml:ns:caldav">{data}</c:calendar-data>'
        if data
        else ""
    )
    return (
        f"<d:response><d:href>{href}</d:href><d:propstat><d:prop>"
        f'<d:getetag>"1"</d:getetag>{calendar_data}</d:prop>'
        "<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
    )


def test_a_series_left_out_by_the_server_but_repeating_in_the_window_is_listed():
    weekly = _series("RRULE:FREQ=WEEKLY", "20251201T090000Z", "20251201T100000Z")
    adapter = _canned_full_listing(
        (207, _multistatus(_item_response("/cal/alice/work/weekly.ics")), {}),
        (207, _multistatus(_item_response("/cal/alice/work/weekly.ics", weekly)), {}),
    )
    page = adapter.list_changes(None, WINDOW)
    assert [e.calendar_id for e in page.events] == ["/cal/alice/work/weekly.ics"]
    assert page.next_cursor == "sync:token-1"


def test_the_series_check_reads_only_the_series_the_time_range_query_left_out():
    adapter = _canned_full_listing((207, _multistatus(), {}))
    session = adapter._client.session
    adapter.list_changes(None, WINDOW)
    methods = [method for method, _ in session.sent]
    assert methods == ["PROPFIND", "REPORT", "REPORT"]  # no multiget: nothing left out
    assert 'prop-filter name="RRULE"' in session.sent[-1][1]
    assert "calendar-data" not in session.sent[-1][1]


@pytest.mark.parametrize("status", [400, 403, 501])
def test_a_server_refusing_the_series_check_still_gives_the_listing(status):
    adapter = _canned_full_listing((status, "", {}))
    page = adapter.list_changes(None, WINDOW)
    assert list(page.events) == [] and page.next_cursor == "sync:token-1"


@pytest.mark.parametrize(
    ("rule", "defect"),
    [
        ("RRULE:RSCALE=CHINESE;FREQ=YEARLY;BYYEARDAY=999", "calsync does not know the RSCALE part"),
        ("RRULE:FREQ=YEARLY;BYMONTH=13", "BYMONTH=13 is not between 1 and 12"),
        (
            "RRULE:FREQ=YEARLY;BYYEARDAY=999",
            "BYYEARDAY=999 is not between 1 and 366 or -366 and -1",
        ),
        ("RRULE:FREQ=MONTHLY;BYMONTH=4,6;BYMONTHDAY=31", "April, June never have day 31"),
        ("RRULE:FREQ=WEEKLY;COUNT=0", "COUNT=0 is not a whole number of at least 1"),
        ("RRULE:FREQ=FORTNIGHTLY", "FREQ=FORTNIGHTLY is not a frequency"),
        ("RRULE:BYDAY=MO;INTERVAL=2", "it has no FREQ"),
        ("RRULE:FREQ=WEEKLY;BYDAY=XX", "BYDAY=XX is not a weekday"),
        (
            "RRULE:FREQ=WEEKLY;UNTIL=20200101T000000Z",
            "it ends (UNTIL=20200101T000000Z) before it starts",
        ),
    ],
)
def test_a_rule_nobody_can_expand_is_a_bad_item_that_says_what_to_fix(rule, defect):
    assert_names_the_rule_and_what_to_fix(bad_reason(_series(rule)), defect)


@pytest.mark.parametrize(
    "rule",
    [
        "RRULE:FREQ=MONTHLY;BYMONTHDAY=31",
        "RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
        "RRULE:FREQ=MONTHLY;BYMONTHDAY=-1;BYDAY=-1FR",
        "RRULE:FREQ=WEEKLY;UNTIL=20260302",
        "RRULE:FREQ=YEARLY;BYWEEKNO=-53;WKST=MO;INTERVAL=2",
    ],
)
def test_a_rule_with_rare_but_real_occurrences_is_read(rule):
    assert convert(_series(rule)).recurrence is not None
