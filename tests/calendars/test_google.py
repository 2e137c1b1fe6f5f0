"""The Google Calendar adapter, over real HTTP against the Google Calendar emulator.

One emulator (with TLS, like Google) serves the session; each test connects an account of
its own through the real OAuth code flow, so tests never see each other's events, tokens or
invitations.
"""

from __future__ import annotations

import random
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from calsync.calendars.google import (
    AUTH_LOST,
    LINK_PROPERTY,
    SCOPES,
    GoogleCalendar,
    event_id_for,
    parse_notification,
)
from calsync.provider_errors import (
    ProviderAuthError,
    ProviderConflict,
    ProviderPermissionError,
    ProviderTransientError,
)
from calsync.sandbox.google import GoogleEmulator
from calsync.sandbox.receiver import NotificationReceiver
from calsync.sync import (
    Capabilities,
    ChangePage,
    CursorExpired,
    Event,
    InMemoryStore,
    Invitee,
    MovedOccurrence,
    Recurrence,
    SyncSettings,
    Window,
    run_sync,
)

from .google_fixtures import (
    REDIRECT,
    connect,
    google_adapter,
    google_oauth,
    google_session,
    new_account,
    revoked,
)

WINDOW = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
BERLIN = ZoneInfo("Europe/Berlin")


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def google(google_emulator: GoogleEmulator) -> Iterator[GoogleEmulator]:
    google_emulator.reset_knobs()
    google_emulator.throttle_status = 403
    yield google_emulator
    google_emulator.reset_knobs()
    google_emulator.throttle_status = 403


@pytest.fixture
def session(google: GoogleEmulator) -> Iterator[requests.Session]:
    http = google_session(google)
    yield http
    http.close()


@pytest.fixture
def address(google: GoogleEmulator) -> str:
    return new_account(google)


class Sleeps(list[float]):
    """Records the waits the adapter asks for instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def blob(google: GoogleEmulator, session: requests.Session, address: str) -> dict[str, Any]:
    return connect(google, session, address)


@pytest.fixture
def make_adapter(google: GoogleEmulator, session: requests.Session, blob, sleeps: Sleeps):
    def make(**kw: Any) -> GoogleCalendar:
        kw.setdefault("sleep", sleeps)
        return google_adapter(google, session, blob, **kw)

    return make


@pytest.fixture
def adapter(make_adapter) -> GoogleCalendar:
    return make_adapter()


def seed(google: GoogleEmulator, address: str, summary: str, day: int, hour: int = 9) -> str:
    (event_id,) = google.bulk_insert(
        address,
        [
            {
                "summary": summary,
                "start": {"dateTime": f"2026-02-{day:02d}T{hour:02d}:00:00Z"},
                "end": {"dateTime": f"2026-02-{day:02d}T{hour + 1:02d}:00:00Z"},
            }
        ],
    )
    return event_id


def raw_event(google: GoogleEmulator, address: str, event_id: str) -> dict[str, Any]:
    return next(e for e in google.events(address) if e["id"] == event_id)


def list_all(
    adapter: GoogleCalendar, cursor: str | None, window: Window = WINDOW
) -> tuple[dict[str, Event], set[str], str, int]:
    """Every page of one listing, as the engine reads them."""
    events: dict[str, Event] = {}
    deleted: set[str] = set()
    token = None
    pages = 0
    while True:
        page = adapter.list_changes(cursor, window, token)
        pages += 1
        for ev in page.events:
            events[ev.calendar_id] = ev
            deleted.discard(ev.calendar_id)
        deleted.update(page.deleted_ids)
        if page.next_page_token is None:
            assert page.next_cursor
            return events, deleted, page.next_cursor, pages
        assert page.next_cursor is None
        token = page.next_page_token


def meeting(**kw: Any) -> Event:
    base = {
        "title": "Pipeline review",
        "start": datetime(2026, 2, 10, 14, 0, tzinfo=UTC),
        "end": datetime(2026, 2, 10, 15, 0, tzinfo=UTC),
        "timezone": None,
    }
    base.update(kw)
    return Event(**base)


def mailed(google: GoogleEmulator, address: str, event_id: str) -> list[tuple[str, str]]:
    """(recipient, reason) of every invitation this account's event caused. Event ids derive
    from link ids, so other tests' accounts may hold an event with the same id."""
    return [
        (i.recipient, i.reason)
        for i in google.invitations.for_event(event_id)
        if i.mailbox.lower() == address.lower()
    ]


def api(google: GoogleEmulator, address: str) -> requests.Session:
    """Another client of the same account (the Google Calendar UI, say)."""
    http = google_session(google)
    http.headers["Authorization"] = f"Bearer {google.issue_token(address)}"
    return http


# -- connecting ------------------------------------------------------------------------------


def test_connecting_gives_a_json_credential_blob_with_a_refresh_token(google, session, address):
    blob = connect(google, session, address)
    assert blob["email"] == address and blob["version"] == 1
    assert blob["token"]["refresh_token"] and blob["token"]["access_token"]
    assert blob["token"]["expires_at"] > datetime.now(UTC).timestamp()
    assert "id_token" not in blob["token"]


def test_the_auth_url_asks_for_offline_access_with_consent_pkce_and_few_scopes(google, session):
    url, flow = google_oauth(google, session).start_auth(REDIRECT, "s1", login_hint="a@b.c")
    query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    assert urllib.parse.urlparse(url).path == "/o/oauth2/v2/auth"
    assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
    assert query["code_challenge_method"] == ["S256"] and query["state"] == ["s1"]
    assert query["scope"] == [" ".join(SCOPES)]
    assert "https://www.googleapis.com/auth/calendar" not in query["scope"][0].split()
    assert 43 <= len(flow["code_verifier"]) <= 128


def test_a_refused_consent_is_an_auth_error(google, session):
    oauth = google_oauth(google, session)
    _, flow = oauth.start_auth(REDIRECT, "s3")
    with pytest.raises(ProviderAuthError, match="access_denied"):
        oauth.finish_auth(flow, {"state": "s3", "error": "access_denied"})


def test_a_redirect_from_another_attempt_is_an_auth_error(google, session):
    oauth = google_oauth(google, session)
    _, flow = oauth.start_auth(REDIRECT, "mine")
    with pytest.raises(ProviderAuthError, match="did not match"):
        oauth.finish_auth(flow, {"state": "someone-elses", "code": "4/0Acode"})


def test_a_consent_without_the_calendar_scope_is_a_permission_error(google, session, address):
    oauth = google_oauth(google, session)
    url, flow = oauth.start_auth(REDIRECT, "s4", login_hint=address)
    # The user unticked the calendar box on Google's granular consent screen.
    narrowed = re.sub(r"scope=[^&]*", "scope=openid+email", url)
    location = session.get(narrowed, allow_redirects=False, timeout=10).headers["Location"]
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(location).query))
    with pytest.raises(ProviderPermissionError, match="calendar"):
        oauth.finish_auth(flow, params)


def test_capabilities_are_two_way_with_series_and_silent_invitations(adapter):
    assert adapter.capabilities() == Capabilities(
        two_way=True, suppress_invitations=True, recurrence=True, notify=True
    )


def test_the_primary_calendar_is_discovered_as_the_default(google, address, adapter):
    (cal,) = adapter.discover_calendars()
    assert cal.is_default and cal.url.endswith(urllib.parse.quote(address, safe=""))


# -- listing ---------------------------------------------------------------------------------


def test_a_first_listing_returns_every_event_in_the_window_and_a_cursor(google, address, adapter):
    ids = {seed(google, address, f"Call {i}", 2 + i) for i in range(3)}
    google.bulk_insert(
        address,
        [
            {  # outside the window
                "summary": "Later",
                "start": {"dateTime": "2026-09-01T09:00:00Z"},
                "end": {"dateTime": "2026-09-01T10:00:00Z"},
            }
        ],
    )
    events, deleted, cursor, _ = list_all(adapter, None)
    assert set(events) == ids and not deleted
    assert cursor.startswith("google1 2026-01-01T00:00:00Z 2026-04-01T00:00:00Z ")


def test_a_listing_follows_every_page_to_the_sync_token(google, address, make_adapter):
    ids = {seed(google, address, f"Call {i}", 2 + i) for i in range(8)}
    events, _, _, pages = list_all(make_adapter(page_size=3), None)
    assert set(events) == ids and pages == 3


def test_an_incremental_listing_returns_only_what_changed_since_the_cursor(
    google, address, adapter
):
    keep, edit, drop = (seed(google, address, n, d) for n, d in (("A", 2), ("B", 3), ("C", 4)))
    _, _, cursor, _ = list_all(adapter, None)
    google.change_event(address, edit, {"summary": "B (moved room)"})
    google.remove_event(address, drop)
    new = seed(google, address, "D", 5)
    events, deleted, cursor2, _ = list_all(adapter, cursor)
    assert set(events) == {edit, new} and events[edit].title == "B (moved room)"
    assert deleted == {drop} and keep not in events
    assert list_all(adapter, cursor2)[:2] == ({}, set())


def test_an_incremental_listing_pages_to_completion_too(google, address, make_adapter):
    adapter = make_adapter(page_size=2)
    _, _, cursor, _ = list_all(adapter, None)
    ids = {seed(google, address, f"New {i}", 2 + i) for i in range(5)}
    events, _, _, pages = list_all(adapter, cursor)
    assert set(events) == ids and pages == 3


def test_an_event_moved_out_of_the_window_is_a_change_not_a_deletion(google, address, adapter):
    moved = seed(google, address, "Quarterly", 6)
    _, _, cursor, _ = list_all(adapter, None)
    google.change_event(
        address,
        moved,
        {
            "start": {"dateTime": "2026-06-01T09:00:00Z"},
            "end": {"dateTime": "2026-06-01T10:00:00Z"},
        },
    )
    events, deleted, _, _ = list_all(adapter, cursor)
    assert moved not in deleted
    assert events[moved].start == datetime(2026, 6, 1, 9, tzinfo=UTC)


def test_an_expired_sync_token_raises_cursor_expired(google, address, adapter):
    seed(google, address, "A", 2)
    _, _, cursor, _ = list_all(adapter, None)
    google.expire_sync_tokens()
    with pytest.raises(CursorExpired):
        adapter.list_changes(cursor, WINDOW)


def test_a_cursor_for_a_window_that_has_moved_on_raises_cursor_expired(google, address, adapter):
    _, _, cursor, _ = list_all(adapter, None)
    later = Window(WINDOW.start + timedelta(days=3), WINDOW.end + timedelta(days=3))
    with pytest.raises(CursorExpired):
        adapter.list_changes(cursor, later)


# -- writing ---------------------------------------------------------------------------------


def test_create_update_and_delete_a_single_event(google, address, adapter):
    created = adapter.create(meeting(location="Room 4"), link_id="link-1", notify=False)
    assert created.calendar_id == event_id_for("link-1") and created.link_id == "link-1"
    assert created.calendar_version and created.location == "Room 4"
    updated = adapter.update(created.calendar_id, meeting(title="Pipeline review v2"), notify=False)
    assert updated.title == "Pipeline review v2" and updated.location is None
    assert updated.calendar_version != created.calendar_version
    adapter.delete(created.calendar_id, notify=False)
    assert adapter.get(created.calendar_id) is None
    adapter.delete(created.calendar_id, notify=False)  # 410 Gone: already deleted, no error


def test_an_update_keeps_fields_calsync_does_not_manage(google, address, adapter):
    made = adapter.create(meeting(), link_id="link-keep", notify=False)
    google.change_event(address, made.calendar_id, {"colorId": "5"})
    adapter.update(made.calendar_id, meeting(title="Renamed"), notify=False)
    raw = raw_event(google, address, made.calendar_id)
    assert raw["colorId"] == "5" and raw["extendedProperties"]["private"] == {
        LINK_PROPERTY: "link-keep"
    }


def test_an_update_over_a_newer_version_is_a_conflict(google, address, adapter):
    made = adapter.create(meeting(), link_id="link-stale", notify=False)
    google.change_event(address, made.calendar_id, {"summary": "Edited in Google"})
    with pytest.raises(ProviderConflict):
        adapter.update(made.calendar_id, made, notify=False)  # carries the old etag
    assert raw_event(google, address, made.calendar_id)["summary"] == "Edited in Google"


def test_a_retried_create_with_the_same_link_id_returns_the_first_event(google, address, adapter):
    first = adapter.create(meeting(), link_id="link-retry", notify=False)
    google.counter.reset()
    again = adapter.create(meeting(), link_id="link-retry", notify=False)
    assert again.calendar_id == first.calendar_id
    assert again.calendar_version == first.calendar_version  # the first one, untouched
    assert len(google.events(address)) == 1
    assert google.counter.get("POST /calendar/v3/calendars/<calendar_id>/events") == 1


def test_a_retried_create_of_an_event_deleted_meanwhile_restores_it(google, address, adapter):
    first = adapter.create(meeting(), link_id="link-back", notify=False)
    google.remove_event(address, first.calendar_id)
    again = adapter.create(meeting(title="Back"), link_id="link-back", notify=False)
    assert again.calendar_id == first.calendar_id and again.status == "confirmed"
    assert adapter.get(first.calendar_id).title == "Back"


def test_find_by_link_id_finds_our_create_after_the_links_are_lost(google, address, make_adapter):
    made = make_adapter().create(meeting(), link_id="link-lost", notify=False)
    fresh = make_adapter()  # a new run: nothing remembered
    found = fresh.find_by_link_id("link-lost")
    assert found is not None and found.calendar_id == made.calendar_id
    assert fresh.find_by_link_id("never-created") is None


def test_the_link_id_comes_back_in_listings(google, address, adapter):
    made = adapter.create(meeting(), link_id="link-listed", notify=False)
    events, _, _, _ = list_all(adapter, None)
    assert events[made.calendar_id].link_id == "link-listed"


def test_a_0900_berlin_meeting_round_trips_as_0900_berlin(google, address, adapter):
    winter = datetime(2026, 2, 16, 9, tzinfo=BERLIN)
    made = adapter.create(
        meeting(
            start=winter.astimezone(UTC),
            end=(winter + timedelta(hours=1)).astimezone(UTC),
            timezone="Europe/Berlin",
        ),
        link_id="link-berlin",
        notify=False,
    )
    raw = raw_event(google, address, made.calendar_id)
    assert raw["start"] == {"dateTime": "2026-02-16T09:00:00+01:00", "timeZone": "Europe/Berlin"}
    read = adapter.get(made.calendar_id)
    assert read.timezone == "Europe/Berlin"
    assert read.start == winter and read.start.astimezone(BERLIN).hour == 9


def test_an_all_day_event_stays_a_date(google, address, adapter):
    made = adapter.create(
        meeting(start=date(2026, 2, 20), end=date(2026, 2, 21)), link_id="l-ad", notify=False
    )
    raw = raw_event(google, address, made.calendar_id)
    assert raw["start"] == {"date": "2026-02-20"} and raw["end"] == {"date": "2026-02-21"}
    read = adapter.get(made.calendar_id)
    assert read.all_day and (read.start, read.end) == (date(2026, 2, 20), date(2026, 2, 21))
    events, _, _, _ = list_all(adapter, None)
    assert events[made.calendar_id].start == date(2026, 2, 20)


def weekly_series() -> Event:
    first = datetime(2026, 1, 5, 9, tzinfo=BERLIN)  # a Monday
    moved_from = datetime(2026, 1, 12, 9, tzinfo=BERLIN).astimezone(UTC)
    moved_to = datetime(2026, 1, 13, 11, tzinfo=BERLIN).astimezone(UTC)
    return meeting(
        title="Weekly sync",
        start=first.astimezone(UTC),
        end=(first + timedelta(minutes=30)).astimezone(UTC),
        timezone="Europe/Berlin",
        recurrence=Recurrence(
            "FREQ=WEEKLY;BYDAY=MO;COUNT=6",
            cancelled=(datetime(2026, 1, 19, 9, tzinfo=BERLIN).astimezone(UTC),),
            moved=(MovedOccurrence(moved_from, moved_to, moved_to + timedelta(minutes=30)),),
        ),
    )


def test_a_series_with_a_moved_and_a_cancelled_occurrence_round_trips(google, address, adapter):
    series = weekly_series()
    made = adapter.create(series, link_id="link-series", notify=False)
    assert made.recurrence == series.recurrence
    events, _, _, _ = list_all(adapter, None)
    assert list(events) == [made.calendar_id]  # the moved occurrence folded into its series
    listed = events[made.calendar_id]
    assert listed.recurrence == series.recurrence and listed.link_id == "link-series"
    assert listed.start == series.start and listed.timezone == "Europe/Berlin"


def test_a_series_is_stored_as_one_unexpanded_rule_with_an_exdate(google, address, adapter):
    made = adapter.create(weekly_series(), link_id="link-rule", notify=False)
    raw = raw_event(google, address, made.calendar_id)
    assert raw["recurrence"] == [
        "RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6",
        "EXDATE;TZID=Europe/Berlin:20260119T090000",
    ]


def test_moving_an_occurrence_back_in_an_update_undoes_the_exception(google, address, adapter):
    series = weekly_series()
    made = adapter.create(series, link_id="link-undo", notify=False)
    plain = Recurrence(series.recurrence.rrule, series.recurrence.cancelled)
    updated = adapter.update(made.calendar_id, replace(series, recurrence=plain), notify=False)
    assert updated.recurrence == plain


def test_cancelling_an_occurrence_in_google_shows_in_the_next_incremental_listing(
    google, address, adapter
):
    first = datetime(2026, 2, 2, 10, tzinfo=UTC)
    made = adapter.create(
        meeting(
            start=first, end=first + timedelta(hours=1), recurrence=Recurrence("FREQ=DAILY;COUNT=5")
        ),
        link_id="link-daily",
        notify=False,
    )
    _, _, cursor, _ = list_all(adapter, None)
    other = api(google, address)
    base = f"{google.url}/calendar/v3/calendars/primary/events"
    occ = other.get(
        f"{base}/{made.calendar_id}/instances",
        params={"timeMin": "2026-02-04T00:00:00Z", "timeMax": "2026-02-05T00:00:00Z"},
        timeout=10,
    ).json()["items"][0]
    assert other.delete(f"{base}/{occ['id']}", timeout=10).status_code == 204
    events, deleted, _, _ = list_all(adapter, cursor)
    assert made.calendar_id not in deleted
    assert events[made.calendar_id].recurrence.cancelled == (first + timedelta(days=2),)


def test_deleting_a_series_in_google_is_one_deletion(google, address, adapter):
    first = datetime(2026, 2, 2, 10, tzinfo=UTC)
    made = adapter.create(
        meeting(start=first, end=first + timedelta(hours=1), recurrence=Recurrence("FREQ=DAILY")),
        link_id="link-gone-series",
        notify=False,
    )
    _, _, cursor, _ = list_all(adapter, None)
    google.remove_event(address, made.calendar_id)
    events, deleted, _, _ = list_all(adapter, cursor)
    assert deleted == {made.calendar_id} and not events


def test_notify_false_writes_the_attendees_and_nobody_is_mailed(google, address, adapter):
    guests = (Invitee("bob@fabrikam.com", "Bob Buyer"), Invitee("eve@fabrikam.com"))
    made = adapter.create(meeting(invitees=guests), link_id="link-quiet", notify=False)
    adapter.update(made.calendar_id, meeting(title="Moved", invitees=guests), notify=False)
    raw = raw_event(google, address, made.calendar_id)
    assert [a["email"] for a in raw["attendees"]] == ["bob@fabrikam.com", "eve@fabrikam.com"]
    adapter.delete(made.calendar_id, notify=False)
    assert mailed(google, address, made.calendar_id) == []
    assert made.invitees == guests


def test_notify_true_lets_google_invite_the_attendees(google, address, adapter):
    made = adapter.create(
        meeting(invitees=(Invitee("bob@fabrikam.com", "Bob"),)), link_id="link-loud", notify=True
    )
    assert mailed(google, address, made.calendar_id) == [("bob@fabrikam.com", "created")]
    assert [i.email for i in adapter.get(made.calendar_id).invitees] == ["bob@fabrikam.com"]


# -- rate limits and auth --------------------------------------------------------------------


def _seed_for(pattern: list[bool], rate: float) -> int:
    """A fault RNG seed whose first rolls are throttled (True) or not, as asked."""
    for candidate in range(10_000):
        rng = random.Random(candidate)
        if [rng.random() < rate for _ in pattern] == pattern:
            return candidate
    raise AssertionError("no seed")


def test_a_rate_limit_burst_is_retried_with_growing_backoff_and_succeeds(
    google, address, adapter, sleeps
):
    item_id = seed(google, address, "A", 2)
    google.set_faults(rate_429=0.5)  # Google's answer: 403 usageLimits/rateLimitExceeded
    google.reseed(_seed_for([True, True, True, False], 0.5))
    assert adapter.get(item_id).title == "A"
    assert len(sleeps) == 3
    # Exponential with jitter: each wait within [half, full] of 1 s, 2 s, 4 s.
    assert all(2**n / 2 <= s <= 2**n for n, s in enumerate(sleeps))


def test_a_429_is_backed_off_like_a_rate_limit(google, address, adapter, sleeps):
    item_id = seed(google, address, "A", 2)
    google.throttle_status = 429
    google.set_faults(rate_429=0.5)
    google.reseed(_seed_for([True, False], 0.5))
    assert adapter.get(item_id).title == "A" and len(sleeps) == 1


def test_a_backend_error_is_retried_like_a_rate_limit(google, address, adapter, sleeps):
    item_id = seed(google, address, "A", 2)
    google.set_faults(rate_5xx=0.5, status_5xx=503)
    google.reseed(_seed_for([True, False], 0.5))
    assert adapter.get(item_id).title == "A" and len(sleeps) == 1


def test_a_longer_burst_raises_provider_transient_error(google, address, make_adapter, sleeps):
    item_id = seed(google, address, "A", 2)
    google.set_faults(rate_429=1.0)
    with pytest.raises(ProviderTransientError) as err:
        make_adapter(max_retries=3).get(item_id)
    assert "after 4 attempts" in err.value.message and err.value.retry_after is None
    assert len(sleeps) == 3


def test_a_forbidden_calendar_is_a_permission_error_without_retries(make_adapter, session, sleeps):
    def forbidden(method: str, url: str, **kw: Any) -> requests.Response:
        resp = requests.Response()
        resp.status_code = 403
        resp._content = (
            b'{"error": {"errors": [{"domain": "global", "reason": "forbidden", '
            b'"message": "Forbidden"}], "code": 403, "message": "Forbidden"}}'
        )
        return resp

    adapter = make_adapter()
    session.request = forbidden  # type: ignore[method-assign]
    with pytest.raises(ProviderPermissionError):
        adapter.get("abcde12345")
    assert sleeps == []


def test_an_unreachable_google_is_a_transient_error_after_bounded_retries(make_adapter, sleeps):
    adapter = make_adapter(max_retries=2)
    adapter.api_base = "https://127.0.0.1:9/calendar/v3"  # nothing listens there
    with pytest.raises(ProviderTransientError) as err:
        adapter.get("abcde12345")
    assert "could not be reached" in err.value.message and len(sleeps) == 2


def test_an_expired_access_token_is_refreshed_and_the_blob_changes(google, address, adapter):
    item_id = seed(google, address, "A", 2)
    before = adapter.credentials()["token"]["access_token"]
    adapter.get(item_id)
    assert not adapter.credentials_changed  # the stored access token was still good
    google.expire_tokens()
    assert adapter.get(item_id).title == "A"
    assert adapter.credentials_changed
    token = adapter.credentials()["token"]
    assert token["access_token"] != before and token["refresh_token"]


def test_the_stored_blob_after_a_refresh_opens_the_calendar_without_another(
    google, session, address, adapter
):
    item_id = seed(google, address, "A", 2)
    google.expire_tokens()
    adapter.get(item_id)
    google.counter.reset()
    again = google_adapter(google, session, adapter.credentials())
    assert again.get(item_id).title == "A" and not again.credentials_changed
    assert google.counter.get("POST /token") == 0


def test_a_revoked_refresh_token_raises_provider_auth_error(google, session, blob, sleeps):
    adapter = google_adapter(google, session, revoked(blob), sleep=sleeps)
    for _ in range(2):  # and again on the next run: an error, never a crash loop
        with pytest.raises(ProviderAuthError) as err:
            adapter.list_changes(None, WINDOW)
        assert err.value.message == AUTH_LOST
        assert err.value.connection_status == "needs_reconnect"
    assert sleeps == []


# -- push ------------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[NotificationReceiver]:
    with NotificationReceiver() as rec:
        yield rec


def test_watch_then_a_change_is_announced_on_the_channel(google, address, adapter, receiver):
    channel = adapter.watch(receiver.hook_url("google"), "s3cret", ttl_seconds=3600)
    assert timedelta(minutes=59) < channel.expiration - datetime.now(UTC) <= timedelta(hours=1)
    handshake = parse_notification(receiver.wait_for(1)[0]["headers"], "s3cret")
    assert handshake.is_handshake and handshake.channel_id == channel.id
    adapter.create(meeting(), link_id="link-push", notify=False)
    google.wait_for_notifications()
    change = parse_notification(receiver.wait_for(2)[1]["headers"], "s3cret")
    assert change.needs_sync and change.resource_state == "exists"
    assert (change.channel_id, change.resource_id) == (channel.id, channel.resource_id)


def test_a_notification_with_another_token_is_rejected(google, address, adapter, receiver):
    adapter.watch(receiver.hook_url("google"), "s3cret", ttl_seconds=600)
    headers = receiver.wait_for(1)[0]["headers"]
    assert parse_notification(headers, "other") is None
    assert parse_notification({**headers, "X-Goog-Channel-Token": "s3creT"}, "s3cret") is None


def test_a_stopped_channel_sends_nothing_more(google, address, adapter, receiver):
    channel = adapter.watch(receiver.hook_url("google"), "s3cret", ttl_seconds=600)
    receiver.wait_for(1)
    adapter.stop_channel(channel.id, channel.resource_id)
    adapter.stop_channel(channel.id, channel.resource_id)  # already stopped: no error
    adapter.create(meeting(), link_id="link-after-stop", notify=False)
    google.wait_for_notifications()
    assert len(receiver.received) == 1


def test_parse_notification_reads_the_headers_in_any_case():
    note = parse_notification(
        {
            "x-goog-channel-id": "ch-1",
            "x-goog-channel-token": "k",
            "x-goog-resource-id": "res-1",
            "x-goog-resource-state": "not_exists",
            "x-goog-message-number": "7",
        },
        "k",
    )
    assert note is not None and note.needs_sync and not note.is_handshake
    assert (note.channel_id, note.resource_id, note.message_number) == ("ch-1", "res-1", 7)
    assert parse_notification({"X-Goog-Channel-ID": "ch-1"}, "k") is None  # no token at all


def test_event_ids_are_deterministic_base32hex():
    first = event_id_for("link-1")
    assert first == event_id_for("link-1") != event_id_for("link-2")
    assert re.fullmatch(r"[a-v0-9]{5,1024}", first)


# -- with the engine -------------------------------------------------------------------------


class CrmStub:
    """The smallest CRM side: a dict, a change log for cursors, never e-mails anyone."""

    def __init__(self) -> None:
        self.items: dict[str, Event] = {}
        self.log: list[str] = []
        self.version = 0

    def capabilities(self) -> Capabilities:
        return Capabilities(suppress_invitations=True, notify=False)

    def list_changes(
        self, cursor: str | None, window: Window, page_token: str | None = None
    ) -> ChangePage:
        ids = sorted(self.items) if cursor is None else sorted(set(self.log[int(cursor) :]))
        return ChangePage(
            events=[self.items[i] for i in ids if i in self.items],
            deleted_ids=[i for i in ids if i not in self.items],
            next_cursor=str(len(self.log)),
        )

    def get(self, item_id: str) -> Event | None:
        return self.items.get(item_id)

    def find_by_link_id(self, link_id: str) -> Event | None:
        return next((e for e in self.items.values() if e.link_id == link_id), None)

    def put(self, event: Event, item_id: str) -> Event:
        self.version += 1
        stored = event.with_identity("crm", item_id, f"v{self.version}")
        self.items[item_id] = stored
        self.log.append(item_id)
        return stored

    def create(self, event: Event, *, link_id: str, notify: bool) -> Event:
        return self.put(event, f"crm-{len(self.items) + 1}")

    def update(self, item_id: str, event: Event, *, notify: bool) -> Event:
        return self.put(event, item_id)

    def delete(self, item_id: str, *, notify: bool) -> None:
        del self.items[item_id]
        self.log.append(item_id)


NOW = datetime(2026, 2, 1, 8, tzinfo=UTC)


def test_the_engine_copies_a_crm_meeting_once_with_its_attendees_and_mails_nobody(
    google, address, make_adapter
):
    crm, store = CrmStub(), InMemoryStore()
    crm.put(meeting(invitees=(Invitee("bob@fabrikam.com", "Bob"),)), "crm-1")
    settings = SyncSettings(direction="crm_to_calendar", record_option="all", invitations="never")
    first = run_sync(make_adapter(), crm, store, settings, NOW, user_email=address)
    assert first.calendar.created == 1
    (raw,) = google.events(address)
    assert [a["email"] for a in raw["attendees"]] == ["bob@fabrikam.com"]
    assert [i for i in google.invitations.all() if i.mailbox == address] == []
    again = run_sync(make_adapter(), crm, store, settings, NOW, user_email=address)
    assert (again.calendar.created, again.calendar.updated, again.crm.updated) == (0, 0, 0)
    assert len(google.events(address)) == 1


def test_the_engine_syncs_a_google_series_to_the_crm_and_a_second_run_changes_nothing(
    google, address, make_adapter
):
    crm, store = CrmStub(), InMemoryStore()
    settings = SyncSettings(direction="two_way", record_option="all")
    google.bulk_insert(
        address,
        [
            {
                "summary": "Stand-up",
                "start": {"dateTime": "2026-02-02T09:00:00", "timeZone": "Europe/Berlin"},
                "end": {"dateTime": "2026-02-02T09:15:00", "timeZone": "Europe/Berlin"},
                "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=4"],
            }
        ],
    )
    run_sync(make_adapter(), crm, store, settings, NOW, user_email=address)
    (copy,) = crm.items.values()
    assert copy.recurrence.rrule == "FREQ=WEEKLY;BYDAY=MO;COUNT=4"
    assert copy.timezone == "Europe/Berlin"
    again = run_sync(make_adapter(), crm, store, settings, NOW, user_email=address)
    writes = (again.calendar.created, again.calendar.updated, again.crm.created, again.crm.updated)
    assert writes == (0, 0, 0, 0)


def test_google_is_registered_as_a_calendar_provider():
    from calsync.calendars import adapter_class

    assert adapter_class("google") is GoogleCalendar
