"""The Microsoft Graph calendar adapter, over real HTTP against the Graph emulator.

One emulator (with TLS, since msal refuses a plain-http authority) serves the session; each
test connects a mailbox of its own through the real OAuth code flow, so tests never see
each other's events, tokens or invitations.
"""

from __future__ import annotations

import json
import random
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from calsync.calendars.graph import (
    AUTH_LOST,
    GraphCalendar,
    GraphOAuth,
    graph_recurrence,
    iana_zone,
    parse_notification,
    rrule_from_graph,
    windows_zone,
)
from calsync.provider_errors import ProviderAuthError, ProviderTransientError
from calsync.sandbox.graph import GraphEmulator
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
from calsync.sync.policies import NOTE_ATTENDEES_WITHHELD

from .graph_fixtures import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT,
    connect,
    graph_adapter,
    graph_emulator,
    graph_session,
    new_mailbox,
)

__all__ = ["graph_emulator"]  # a fixture, used by name

WINDOW = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
BERLIN = ZoneInfo("Europe/Berlin")


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def graph(graph_emulator: GraphEmulator) -> Iterator[GraphEmulator]:
    graph_emulator.reset_knobs()
    graph_emulator.delta_token_ttl = None
    yield graph_emulator
    graph_emulator.reset_knobs()


@pytest.fixture
def session(graph: GraphEmulator) -> Iterator[requests.Session]:
    http = graph_session(graph)
    yield http
    http.close()


@pytest.fixture
def address(graph: GraphEmulator) -> str:
    return new_mailbox(graph)


class Sleeps(list[float]):
    """Records the waits the adapter asks for instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_adapter(graph: GraphEmulator, session: requests.Session, address: str, sleeps: Sleeps):
    blob = connect(graph, session, address)

    def make(**kw: Any) -> GraphCalendar:
        kw.setdefault("sleep", sleeps)
        return graph_adapter(graph, session, blob, **kw)

    return make


@pytest.fixture
def adapter(make_adapter) -> GraphCalendar:
    return make_adapter()


def seed(graph: GraphEmulator, address: str, subject: str, day: int, hour: int = 9) -> str:
    return graph.put_event(
        address,
        {
            "subject": subject,
            "start": {"dateTime": f"2026-02-{day:02d}T{hour:02d}:00:00", "timeZone": "UTC"},
            "end": {"dateTime": f"2026-02-{day:02d}T{hour + 1:02d}:00:00", "timeZone": "UTC"},
        },
    )


def list_all(
    adapter: GraphCalendar, cursor: str | None, window: Window = WINDOW
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


# -- connecting ------------------------------------------------------------------------------


def test_connecting_gives_a_json_credential_blob_with_the_msal_cache(graph, session, address):
    blob = connect(graph, session, address)
    assert blob["username"] == address and blob["account_type"] == "office365"
    assert "RefreshToken" in blob["msal_cache"]
    assert blob == json.loads(json.dumps(blob))


def test_the_auth_url_uses_pkce_and_the_organizations_authority(graph, session):
    oauth = GraphOAuth(
        CLIENT_ID, CLIENT_SECRET, "office365", authority_host=graph.url, session=session
    )
    url, flow = oauth.start_auth(REDIRECT, "s1")
    query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    assert urllib.parse.urlparse(url).path == "/organizations/oauth2/v2.0/authorize"
    assert query["code_challenge_method"] == ["S256"] and query["state"] == ["s1"]
    assert "offline_access" in query["scope"][0] and "Calendars.ReadWrite" in query["scope"][0]
    assert flow["code_verifier"]


def test_outlook_accounts_sign_in_through_the_consumers_authority(graph, session, address):
    oauth = GraphOAuth(
        CLIENT_ID, CLIENT_SECRET, "outlook", authority_host=graph.url, session=session
    )
    url, _ = oauth.start_auth(REDIRECT, "s2")
    assert urllib.parse.urlparse(url).path == "/consumers/oauth2/v2.0/authorize"
    blob = connect(graph, session, address, "outlook")
    assert blob["account_type"] == "outlook"
    assert graph_adapter(graph, session, blob).list_changes(None, WINDOW).next_cursor


def test_a_refused_consent_is_an_auth_error(graph, session):
    oauth = GraphOAuth(CLIENT_ID, CLIENT_SECRET, authority_host=graph.url, session=session)
    _, flow = oauth.start_auth(REDIRECT, "s3")
    refused = {"state": "s3", "error": "access_denied", "error_description": "User declined"}
    with pytest.raises(ProviderAuthError, match="User declined"):
        oauth.finish_auth(flow, refused)


def test_a_redirect_from_another_attempt_is_an_auth_error(graph, session):
    oauth = GraphOAuth(CLIENT_ID, CLIENT_SECRET, authority_host=graph.url, session=session)
    _, flow = oauth.start_auth(REDIRECT, "mine")
    with pytest.raises(ProviderAuthError, match="did not match"):
        oauth.finish_auth(flow, {"state": "someone-elses", "code": "0.AXcode"})


def test_capabilities_are_two_way_native_series_and_cannot_suppress_invitations(adapter):
    caps = adapter.capabilities()
    assert caps.two_way and caps.recurrence and caps.notify
    assert not caps.suppress_invitations


# -- listing ---------------------------------------------------------------------------------


def test_a_first_listing_returns_every_event_in_the_window_and_a_cursor(graph, address, adapter):
    ids = {seed(graph, address, f"Call {i}", 2 + i) for i in range(3)}
    graph.put_event(
        address,
        {  # outside the window
            "subject": "Later",
            "start": {"dateTime": "2026-09-01T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-09-01T10:00:00", "timeZone": "UTC"},
        },
    )
    events, deleted, cursor, _ = list_all(adapter, None)
    assert set(events) == ids and not deleted
    assert cursor.startswith("graph1 ") and "$deltatoken=" in cursor


def test_a_listing_follows_every_page_to_the_delta_link(graph, address, make_adapter):
    ids = {seed(graph, address, f"Call {i}", 2 + i) for i in range(8)}
    events, _, _, pages = list_all(make_adapter(page_size=3), None)
    assert set(events) == ids and pages == 3


def test_an_incremental_listing_returns_only_what_changed_since_the_cursor(graph, address, adapter):
    keep, edit, drop = (seed(graph, address, n, d) for n, d in (("A", 2), ("B", 3), ("C", 4)))
    _, _, cursor, _ = list_all(adapter, None)
    graph.change_event(address, edit, {"subject": "B (moved room)"})
    graph.remove_event(address, drop)
    new = seed(graph, address, "D", 5)
    events, deleted, cursor2, _ = list_all(adapter, cursor)
    assert set(events) == {edit, new} and events[edit].title == "B (moved room)"
    assert deleted == {drop} and keep not in events
    assert list_all(adapter, cursor2)[:2] == ({}, set())


def test_an_event_moved_out_of_the_window_is_a_change_not_a_deletion(graph, address, adapter):
    moved = seed(graph, address, "Quarterly", 6)
    _, _, cursor, _ = list_all(adapter, None)
    graph.change_event(
        address,
        moved,
        {
            "start": {"dateTime": "2026-06-01T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-06-01T10:00:00", "timeZone": "UTC"},
        },
    )
    events, deleted, _, _ = list_all(adapter, cursor)
    assert moved not in deleted
    assert events[moved].start == datetime(2026, 6, 1, 9, tzinfo=UTC)


def test_removed_entries_are_read_back_together_in_one_batch(graph, address, adapter):
    moved, gone, also_gone = (seed(graph, address, n, d) for n, d in (("A", 2), ("B", 3), ("C", 4)))
    _, _, cursor, _ = list_all(adapter, None)
    far = {"dateTime": "2026-08-01T09:00:00", "timeZone": "UTC"}
    graph.change_event(
        address, moved, {"start": far, "end": {**far, "dateTime": "2026-08-01T10:00:00"}}
    )
    graph.remove_event(address, gone)
    graph.remove_event(address, also_gone)
    graph.counter.reset()
    events, deleted, _, _ = list_all(adapter, cursor)
    assert set(events) == {moved} and deleted == {gone, also_gone}
    assert graph.counter.get("POST /v1.0/$batch") == 1


def test_an_empty_delta_page_is_followed_to_the_next(graph, address, make_adapter, session):
    item_id = seed(graph, address, "A", 2)
    real = session.request
    served: list[str] = []

    def empty_first_page(method: str, url: str, **kw: Any) -> requests.Response:
        if "calendarView/delta?startDateTime" in url and not served:
            served.append(url)
            resp = requests.Response()
            resp.status_code = 200
            resp._content = json.dumps({"value": [], "@odata.nextLink": url}).encode()
            return resp
        return real(method, url, **kw)

    session.request = empty_first_page  # type: ignore[method-assign]
    events, _, _, pages = list_all(make_adapter(), None)
    assert served and set(events) == {item_id} and pages == 2


def test_an_expired_delta_token_raises_cursor_expired(graph, address, adapter):
    seed(graph, address, "A", 2)
    _, _, cursor, _ = list_all(adapter, None)
    graph.expire_delta_tokens()
    with pytest.raises(CursorExpired):
        adapter.list_changes(cursor, WINDOW)


def test_a_cursor_for_a_window_that_has_moved_on_raises_cursor_expired(graph, address, adapter):
    _, _, cursor, _ = list_all(adapter, None)
    later = Window(WINDOW.start + timedelta(days=3), WINDOW.end + timedelta(days=3))
    with pytest.raises(CursorExpired):
        adapter.list_changes(cursor, later)


# -- writing ---------------------------------------------------------------------------------


def test_create_update_and_delete_a_single_event(graph, address, adapter):
    created = adapter.create(meeting(location="Room 4"), link_id="link-1", notify=False)
    assert created.calendar_id and created.calendar_version and created.link_id == "link-1"
    updated = adapter.update(created.calendar_id, meeting(title="Pipeline review v2"), notify=False)
    assert updated.title == "Pipeline review v2" and updated.location is None
    assert updated.calendar_version != created.calendar_version
    adapter.delete(created.calendar_id, notify=False)
    assert adapter.get(created.calendar_id) is None
    adapter.delete(created.calendar_id, notify=False)  # already gone: no error


def test_a_retried_create_with_the_same_link_id_does_not_double_the_event(graph, address, adapter):
    first = adapter.create(meeting(), link_id="link-retry", notify=False)
    again = adapter.create(meeting(), link_id="link-retry", notify=False)
    assert again.calendar_id == first.calendar_id
    assert len(graph.events(address)) == 1
    assert graph.events(address)[0]["transactionId"] == "calsync-link-retry"


def test_find_by_link_id_finds_our_create_after_the_links_are_lost(graph, address, make_adapter):
    made = make_adapter().create(meeting(), link_id="link-lost", notify=False)
    fresh = make_adapter()  # a new run: nothing remembered
    found = fresh.find_by_link_id("link-lost")
    assert found is not None and found.calendar_id == made.calendar_id
    assert fresh.find_by_link_id("never-created") is None


def test_the_link_id_comes_back_in_the_delta_listing(graph, address, adapter):
    made = adapter.create(meeting(), link_id="link-listed", notify=False)
    events, _, _, _ = list_all(adapter, None)
    assert events[made.calendar_id].link_id == "link-listed"


def test_a_0900_berlin_meeting_round_trips_as_0900_berlin(graph, address, adapter):
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
    raw = next(e for e in graph.events(address) if e["id"] == made.calendar_id)
    assert raw["originalStartTimeZone"] == "W. Europe Standard Time"
    read = adapter.get(made.calendar_id)
    assert read.timezone == "Europe/Berlin"
    assert read.start.astimezone(BERLIN).hour == 9 and read.start == winter


def test_a_santiago_meeting_is_written_with_its_windows_zone(graph, address, adapter):
    santiago = datetime(2026, 2, 16, 9, tzinfo=ZoneInfo("America/Santiago"))
    made = adapter.create(
        meeting(start=santiago, end=santiago + timedelta(hours=1), timezone="America/Santiago"),
        link_id="link-santiago",
        notify=False,
    )
    assert adapter.get(made.calendar_id).timezone == "America/Santiago"


def test_an_all_day_event_stays_a_date(graph, address, adapter):
    made = adapter.create(
        meeting(start=date(2026, 2, 20), end=date(2026, 2, 21)), link_id="l-ad", notify=False
    )
    read = adapter.get(made.calendar_id)
    assert read.all_day and read.start == date(2026, 2, 20) and read.end == date(2026, 2, 21)
    events, _, _, _ = list_all(adapter, None)
    assert events[made.calendar_id].start == date(2026, 2, 20)


def test_a_series_with_a_moved_and_a_cancelled_occurrence_round_trips(graph, address, adapter):
    first = datetime(2026, 1, 5, 9, tzinfo=BERLIN)  # a Monday
    moved_from = datetime(2026, 1, 12, 9, tzinfo=BERLIN).astimezone(UTC)
    moved_to = datetime(2026, 1, 13, 11, tzinfo=BERLIN).astimezone(UTC)
    series = meeting(
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
    made = adapter.create(series, link_id="link-series", notify=False)
    assert made.recurrence == series.recurrence
    events, _, _, _ = list_all(adapter, None)
    assert list(events) == [made.calendar_id]  # occurrences folded into their series
    listed = events[made.calendar_id]
    assert listed.recurrence == series.recurrence and listed.link_id == "link-series"
    assert listed.start == series.start and listed.timezone == "Europe/Berlin"


def test_a_series_reads_back_with_the_rule_text_it_was_written_with(graph, address, adapter):
    first = datetime(2026, 1, 5, 9, tzinfo=UTC)
    made = adapter.create(
        meeting(
            start=first,
            end=first + timedelta(hours=1),
            recurrence=Recurrence("FREQ=WEEKLY;COUNT=4"),
        ),
        link_id="link-rule-text",
        notify=False,
    )
    assert adapter.get(made.calendar_id).recurrence.rrule == "FREQ=WEEKLY;COUNT=4"
    # Edited in Outlook: the rule we wrote no longer holds, Outlook's rule is reported.
    raw = next(e for e in graph.events(address) if e["id"] == made.calendar_id)
    rule = raw["recurrence"]
    rule["range"] = {**rule["range"], "numberOfOccurrences": 6}
    graph.change_event(address, made.calendar_id, {"recurrence": rule})
    assert adapter.get(made.calendar_id).recurrence.rrule == "FREQ=WEEKLY;BYDAY=MO;COUNT=6"


def test_cancelling_an_occurrence_in_outlook_shows_in_the_next_incremental_listing(
    graph, address, adapter
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
    session = requests.Session()
    session.verify, session.trust_env = graph.ca_file, False
    token = graph.issue_token(address)
    occ = session.get(
        f"{graph.url}/v1.0/me/events/{made.calendar_id}/instances",
        params={"startDateTime": "2026-02-04T00:00:00Z", "endDateTime": "2026-02-05T00:00:00Z"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()["value"][0]
    assert (
        session.delete(
            f"{graph.url}/v1.0/me/events/{occ['id']}",
            timeout=10,
            headers={"Authorization": f"Bearer {token}"},
        ).status_code
        == 204
    )
    events, deleted, _, _ = list_all(adapter, cursor)
    assert made.calendar_id not in deleted
    assert events[made.calendar_id].recurrence.cancelled == (first + timedelta(days=2),)


def test_notify_false_writes_no_attendees_and_sends_no_invitation(graph, address, adapter):
    guests = (Invitee("bob@fabrikam.com", "Bob Buyer"), Invitee("eve@fabrikam.com"))
    made = adapter.create(meeting(invitees=guests), link_id="link-quiet", notify=False)
    adapter.update(made.calendar_id, meeting(title="Moved", invitees=guests), notify=False)
    raw = next(e for e in graph.events(address) if e["id"] == made.calendar_id)
    assert raw["attendees"] == []
    assert "Bob Buyer <bob@fabrikam.com>" in raw["body"]["content"]
    assert graph.invitations.for_event(made.calendar_id) == []
    read = adapter.get(made.calendar_id)
    assert read.description is None and read.invitees == ()
    assert read.extra["attendees_in_body"] == ("Bob Buyer <bob@fabrikam.com>", "eve@fabrikam.com")


def test_notify_true_writes_attendees_and_graph_invites_them(graph, address, adapter):
    made = adapter.create(
        meeting(invitees=(Invitee("bob@fabrikam.com", "Bob"),)), link_id="link-loud", notify=True
    )
    assert [i.recipient for i in graph.invitations.for_event(made.calendar_id)] == [
        "bob@fabrikam.com"
    ]
    assert [i.email for i in adapter.get(made.calendar_id).invitees] == ["bob@fabrikam.com"]


# -- throttling and auth -----------------------------------------------------------------


def _seed_for(pattern: list[bool], rate: float) -> int:
    """A fault RNG seed whose first rolls are throttled (True) or not, as asked."""
    for candidate in range(10_000):
        rng = random.Random(candidate)
        if [rng.random() < rate for _ in pattern] == pattern:
            return candidate
    raise AssertionError("no seed")


def test_a_429_with_retry_after_is_waited_out_and_retried(graph, address, adapter, sleeps):
    item_id = seed(graph, address, "A", 2)
    graph.set_faults(rate_429=0.5, retry_after_seconds=2)
    graph.reseed(_seed_for([True, False], 0.5))
    assert adapter.get(item_id).title == "A"
    assert sleeps == [2.0]


def test_a_503_with_retry_after_is_waited_out_and_retried(graph, address, adapter, sleeps):
    item_id = seed(graph, address, "A", 2)
    graph.set_faults(rate_5xx=0.5, status_5xx=503)
    graph.reseed(_seed_for([True, False], 0.5))
    assert adapter.get(item_id).title == "A"
    assert sleeps == [1.0]  # the emulator's 503 says Retry-After: 1


def test_throttling_beyond_the_retry_bound_raises_provider_transient_error(
    graph, address, make_adapter, sleeps
):
    item_id = seed(graph, address, "A", 2)
    graph.set_faults(rate_429=1.0, retry_after_seconds=1)
    with pytest.raises(ProviderTransientError) as err:
        make_adapter(max_retries=3).get(item_id)
    assert err.value.retry_after == 1.0 and "after 4 attempts" in err.value.message
    assert sleeps == [1.0, 1.0, 1.0]


def test_an_unreachable_graph_is_a_transient_error_after_bounded_retries(make_adapter, sleeps):
    adapter = make_adapter(max_retries=2)
    adapter.graph_base = "https://127.0.0.1:9/v1.0"  # nothing listens there
    with pytest.raises(ProviderTransientError) as err:
        adapter.get("AAMkAany")
    assert "could not be reached" in err.value.message and len(sleeps) == 2


def test_no_more_than_four_requests_are_in_flight_per_mailbox(graph, address, adapter, sleeps):
    item_id = seed(graph, address, "A", 2)
    graph.set_limits(enabled=True, max_concurrent=4)
    graph.set_faults(rate_slow=1.0, slow_seconds=0.15)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            adapter.get(item_id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sleeps == []  # never throttled, so never waited


def test_an_expired_access_token_is_refreshed_through_msal(graph, address, adapter):
    item_id = seed(graph, address, "A", 2)
    adapter.get(item_id)
    assert not adapter.credentials_changed  # the stored access token was still good
    graph.expire_tokens()
    assert adapter.get(item_id).title == "A"
    assert adapter.credentials_changed
    assert adapter.credentials()["msal_cache"] != ""


def test_a_revoked_refresh_token_raises_provider_auth_error(graph, address, adapter):
    item_id = seed(graph, address, "A", 2)
    graph.revoke_refresh_tokens()
    graph.expire_tokens()
    for _ in range(2):  # and again on the next run: an error, never a crash loop
        with pytest.raises(ProviderAuthError) as err:
            adapter.get(item_id)
        assert err.value.message == AUTH_LOST
        assert err.value.connection_status == "needs_reconnect"


# -- subscriptions ---------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[NotificationReceiver]:
    with NotificationReceiver() as rec:
        yield rec


def test_subscribe_renew_and_unsubscribe_the_users_events(graph, address, adapter, receiver):
    sub = adapter.subscribe(
        receiver.hook_url("graph"), "s3cret", 60, lifecycle_url=receiver.hook_url("life")
    )
    assert sub.resource == "/me/events"
    assert timedelta(minutes=55) < sub.expires_at - datetime.now(UTC) < timedelta(minutes=61)
    renewed = adapter.renew(sub.id, 120)
    assert renewed.expires_at > sub.expires_at
    adapter.unsubscribe(sub.id)
    assert adapter.renew(sub.id, 60) is None


def test_a_subscription_lifetime_is_capped_at_the_maximum(graph, address, adapter, receiver):
    sub = adapter.subscribe(receiver.hook_url(), "s3cret", 50_000)
    assert sub.expires_at - datetime.now(UTC) <= timedelta(minutes=10_080)


def test_a_change_notification_names_the_subscription_to_sync(graph, address, adapter, receiver):
    sub = adapter.subscribe(receiver.hook_url(), "s3cret", 60)
    made = adapter.create(meeting(), link_id="link-push", notify=False)
    graph.wait_for_notifications()
    body = receiver.wait_for(1)[0]["json"]
    batch = parse_notification(body, "s3cret")
    assert batch.subscription_ids == (sub.id,) and batch.event_ids == (made.calendar_id,)
    assert batch.rejected == 0 and batch.lifecycle == ()


def test_a_notification_with_another_client_state_is_rejected(graph, address, adapter, receiver):
    adapter.subscribe(receiver.hook_url(), "s3cret", 60)
    adapter.create(meeting(), link_id="link-forged", notify=False)
    graph.wait_for_notifications()
    batch = parse_notification(json.dumps(receiver.wait_for(1)[0]["json"]), "other")
    assert batch.subscription_ids == () and batch.rejected == 1


def test_lifecycle_notifications_are_reported(graph, address, adapter, receiver):
    sub = adapter.subscribe(
        receiver.hook_url(), "s3cret", 60, lifecycle_url=receiver.hook_url("life")
    )
    graph.fire_lifecycle(sub.id, "reauthorizationRequired")
    body = next(r["json"] for r in receiver.wait_for(1) if r["hook"] == "life")
    batch = parse_notification(body, "s3cret")
    assert [(e.subscription_id, e.event) for e in batch.lifecycle] == [
        (sub.id, "reauthorizationRequired")
    ]
    assert batch.to_renew == (sub.id,) and batch.to_sync == () and batch.to_recreate == ()


# -- pure conversions ------------------------------------------------------------------------


def test_windows_and_iana_zone_names_map_both_ways():
    assert iana_zone("W. Europe Standard Time") == "Europe/Berlin"
    assert windows_zone("Europe/Berlin") == "W. Europe Standard Time"
    assert iana_zone("Pacific Standard Time") == "America/Los_Angeles"
    # Not CLDR's pick for any Windows zone: written as the zone with the same offsets.
    assert windows_zone("Europe/Amsterdam") == "W. Europe Standard Time"
    assert iana_zone("Europe/Amsterdam") == "Europe/Amsterdam"
    assert iana_zone("UTC") is None and iana_zone("Nowhere Standard Time") is None


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY;COUNT=5",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;WKST=MO;UNTIL=20260630",
        "FREQ=MONTHLY;BYMONTHDAY=15",
        "FREQ=MONTHLY;BYDAY=-1FR",
        "FREQ=YEARLY;BYMONTH=3;BYDAY=2TU",
    ],
)
def test_repeat_rules_survive_the_trip_through_graphs_pattern(rule):
    assert rrule_from_graph(graph_recurrence(rule, date(2026, 1, 5), "UTC")) == rule


def test_a_repeat_rule_outlook_cannot_store_is_refused():
    with pytest.raises(ValueError):
        graph_recurrence("FREQ=HOURLY;COUNT=3", date(2026, 1, 5), "UTC")


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


def test_the_engine_copies_a_crm_meeting_to_outlook_once_and_emails_nobody(
    graph, address, make_adapter
):
    crm, store = CrmStub(), InMemoryStore()
    crm.put(meeting(invitees=(Invitee("bob@fabrikam.com", "Bob"),)), "crm-1")
    settings = SyncSettings(direction="crm_to_calendar", record_option="all")
    first = run_sync(make_adapter(), crm, store, settings, NOW, user_email=address)
    assert first.calendar.created == 1 and first.notes[NOTE_ATTENDEES_WITHHELD] == 1
    assert [i for i in graph.invitations.all() if i.mailbox == address] == []
    again = run_sync(make_adapter(), crm, store, settings, NOW, user_email=address)
    assert (again.calendar.created, again.calendar.updated, again.crm.updated) == (0, 0, 0)
    assert len(graph.events(address)) == 1


def test_the_engine_updates_not_deletes_a_meeting_moved_out_of_the_window_in_outlook(
    graph, address, make_adapter
):
    crm, store = CrmStub(), InMemoryStore()
    settings = SyncSettings(direction="two_way", record_option="all")
    item_id = seed(graph, address, "Kick-off", 10)
    run_sync(make_adapter(), crm, store, settings, NOW, user_email=address)
    assert [e.title for e in crm.items.values()] == ["Kick-off"]
    far = {"dateTime": "2027-06-01T09:00:00", "timeZone": "UTC"}
    graph.change_event(
        address, item_id, {"start": far, "end": {**far, "dateTime": "2027-06-01T10:00:00"}}
    )
    result = run_sync(make_adapter(), crm, store, settings, NOW, user_email=address)
    assert result.crm.deleted == 0 and result.crm.updated == 1
    assert next(iter(crm.items.values())).start == datetime(2027, 6, 1, 9, tzinfo=UTC)


def test_the_engine_syncs_an_outlook_series_to_the_crm_and_a_second_run_changes_nothing(
    graph, address, make_adapter
):
    crm, store = CrmStub(), InMemoryStore()
    settings = SyncSettings(direction="two_way", record_option="all")
    graph.put_event(
        address,
        {
            "subject": "Stand-up",
            "start": {"dateTime": "2026-02-02T09:00:00", "timeZone": "W. Europe Standard Time"},
            "end": {"dateTime": "2026-02-02T09:15:00", "timeZone": "W. Europe Standard Time"},
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                "range": {"type": "numbered", "startDate": "2026-02-02", "numberOfOccurrences": 4},
            },
        },
    )
    run_sync(make_adapter(), crm, store, settings, NOW, user_email=address)
    (copy,) = crm.items.values()
    assert copy.recurrence.rrule == "FREQ=WEEKLY;BYDAY=MO;COUNT=4"
    assert copy.timezone == "Europe/Berlin"
    again = run_sync(make_adapter(), crm, store, settings, NOW, user_email=address)
    writes = (again.calendar.created, again.calendar.updated, again.crm.created, again.crm.updated)
    assert writes == (0, 0, 0, 0)


def test_a_missed_lifecycle_event_asks_for_a_sync():
    body = {"value": [{"subscriptionId": "s1", "clientState": "k", "lifecycleEvent": "missed"}]}
    assert parse_notification(body, "k").to_sync == ("s1",)


def test_graph_errors_are_also_the_calendars_package_errors():
    import calsync.calendars as calendars
    from calsync.calendars import graph as graph_module

    assert issubclass(graph_module.ProviderAuthError, calendars.ProviderAuthError)
    assert issubclass(graph_module.ProviderAuthError, ProviderAuthError)
    err = graph_module.ProviderTransientError("slow down", 3.0)
    assert isinstance(err, calendars.ProviderTransientError) and err.retry_after == 3.0
    assert graph_module.ProviderAuthError(AUTH_LOST).connection_status == "needs_reconnect"


# -- series read in batches (issue #10) ------------------------------------------------------

WIDE = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))


def weekly_series(graph: GraphEmulator, address: str, subject: str, first: date) -> str:
    return graph.put_event(
        address,
        {
            "subject": subject,
            "start": {"dateTime": f"{first.isoformat()}T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": f"{first.isoformat()}T09:30:00", "timeZone": "UTC"},
            "recurrence": {
                "pattern": {
                    "type": "weekly",
                    "interval": 1,
                    "daysOfWeek": [first.strftime("%A").lower()],
                },
                "range": {"type": "noEnd", "startDate": first.isoformat()},
            },
        },
    )


def test_a_listing_reads_25_series_reaching_back_before_the_window_in_four_batches(
    graph, address, adapter
):
    # Begun before the window: masters and their instances are both read, 20 to a $batch.
    ids = {weekly_series(graph, address, f"Series {i}", date(2025, 11, 3 + i)) for i in range(25)}
    graph.counter.reset()
    events, _, _, _ = list_all(adapter, None, WIDE)
    assert set(events) == ids
    assert all(ev.recurrence.rrule.startswith("FREQ=WEEKLY") for ev in events.values())
    assert graph.counter.get("POST /v1.0/$batch") == 4  # 25 masters, then 25 instances
    # Each series' master and instances were asked once, inside those batches.
    assert graph.counter.get("GET /v1.0/me/events/<event_id>") == 25
    assert graph.counter.get("GET /v1.0/me/events/<event_id>/instances") == 25


def test_a_first_listing_reads_no_instances_of_a_series_inside_the_window(graph, address, adapter):
    first = datetime(2026, 2, 2, 10, tzinfo=UTC)
    made = adapter.create(
        meeting(
            start=first,
            end=first + timedelta(hours=1),
            recurrence=Recurrence(
                "FREQ=DAILY;COUNT=8",
                cancelled=(first + timedelta(days=2),),
                moved=(
                    MovedOccurrence(
                        first + timedelta(days=4),
                        first + timedelta(days=4, hours=3),
                        first + timedelta(days=4, hours=4),
                    ),
                ),
            ),
        ),
        link_id="link-inside",
        notify=False,
    )
    graph.counter.reset()
    events, _, cursor, _ = list_all(adapter, None)
    # The full round's delta pages listed every occurrence: /instances adds nothing.
    assert graph.counter.get("GET /v1.0/me/events/<event_id>/instances") == 0
    assert events[made.calendar_id].recurrence == made.recurrence
    assert events[made.calendar_id] == adapter.get(made.calendar_id)
    # An incremental round sees only the changed occurrence, so it reads the instances.
    graph.change_event(address, made.calendar_id, {"subject": "Daily (renamed)"})
    graph.counter.reset()
    events, _, _, _ = list_all(adapter, cursor)
    assert graph.counter.get("GET /v1.0/me/events/<event_id>/instances") == 1
    assert events[made.calendar_id].recurrence == made.recurrence


def test_series_whose_instances_page_twice_are_still_read_whole(graph, address, adapter):
    first = datetime(2025, 2, 1, 8, tzinfo=UTC)  # over 500 days of occurrences to the end
    late = datetime(2026, 6, 20, 8, tzinfo=UTC)  # on the second page of 500
    made = [
        adapter.create(
            meeting(
                title=f"Stand-up {i}",
                start=first + timedelta(hours=i),
                end=first + timedelta(hours=i, minutes=15),
                recurrence=Recurrence("FREQ=DAILY", cancelled=(late + timedelta(hours=i, days=i),)),
            ),
            link_id=f"link-paged-{i}",
            notify=False,
        )
        for i in range(2)
    ]
    adapter._window = WIDE  # as a listing over WIDE would; get() reads the same range
    wanted = {m.calendar_id: adapter.get(m.calendar_id).recurrence for m in made}
    assert [len(r.cancelled) for r in wanted.values()] == [1, 1]
    graph.counter.reset()
    events, _, _, _ = list_all(adapter, None, WIDE)
    assert {i: e.recurrence for i, e in events.items()} == wanted
    assert graph.counter.get("GET /v1.0/me/events/<event_id>/instances") == 4  # 2 pages each
    assert graph.counter.get("POST /v1.0/$batch") == 3  # masters, first pages, second pages


def test_a_series_whose_read_is_refused_is_a_bad_item_and_the_others_are_listed(
    graph, address, make_adapter, session
):
    ids = [weekly_series(graph, address, f"Series {i}", date(2025, 11, 3 + i)) for i in range(3)]
    refused = ids[1]
    real = session.request

    def refuse_one(method: str, url: str, **kw: Any) -> requests.Response:
        resp = real(method, url, **kw)
        if not url.endswith("/$batch"):
            return resp
        sent = {r["id"]: r["url"] for r in kw["json"]["requests"]}
        data = resp.json()
        for sub in data["responses"]:
            if f"/events/{refused}/instances" in sent[sub["id"]]:
                sub.update(
                    status=403,
                    body={"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}},
                )
        resp._content = json.dumps(data).encode()
        return resp

    session.request = refuse_one  # type: ignore[method-assign]
    page = make_adapter().list_changes(None, WIDE)
    assert page.next_cursor and {e.calendar_id for e in page.events} == {ids[0], ids[2]}
    assert [b.item_id for b in page.bad] == [refused]
    assert "occurrences cannot be read" in page.bad[0].reason
