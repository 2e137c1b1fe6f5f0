"""SuiteCRM connector: connecting, the two APIs' quirks, and what the user is told."""

from __future__ import annotations

import hashlib
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from flask import Flask, Response

from calsync.crm import ADAPTERS, adapter_class
from calsync.crm.suitecrm import API_V4_1, API_V8, MeetingDeleted, SuiteCrmAdapter
from calsync.provider_errors import (
    ProviderAuthError,
    ProviderConfigError,
    ProviderPermissionError,
    ProviderTransientError,
)
from calsync.sandbox.server import EmulatorServer
from calsync.sandbox.suitecrm import SuiteCrmEmulator
from calsync.sync import (
    CursorExpired,
    Event,
    InMemoryStore,
    Invitee,
    Recurrence,
    SyncSettings,
    Window,
    run_sync,
)

from .conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    USER,
    HookedSession,
    connect_adapter,
    make_emulator,
    v41_method,
)

# The engine's own in-memory calendar, to run a real sync against the emulator.
sys.path.insert(0, str(Path(__file__).parents[1] / "sync"))
from sync_fakes import MemorySide

START = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
WINDOW = Window(datetime.now(UTC) - timedelta(days=30), datetime.now(UTC) + timedelta(days=365))
CLIENT = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}


def meeting(title: str = "Review", *invitees: str) -> Event:
    return Event(
        title=title,
        start=START,
        end=START + timedelta(hours=1),
        invitees=tuple(Invitee(e) for e in invitees),
    )


def user_id(emu: SuiteCrmEmulator, name: str = USER) -> str:
    return next(r["id"] for r in emu.records["Users"].values() if r["user_name"] == name)


def drain(adapter: SuiteCrmAdapter, cursor: str | None) -> tuple[list[Event], list[str], str]:
    events: list[Event] = []
    deleted: list[str] = []
    token = None
    while True:
        page = adapter.list_changes(cursor, WINDOW, token)
        events += page.events
        deleted += page.deleted_ids
        if page.next_page_token is None:
            assert page.next_cursor is not None
            return events, deleted, page.next_cursor
        token = page.next_page_token


@pytest.fixture
def suitecrm8() -> Iterator[SuiteCrmEmulator]:
    emu = make_emulator(legacy_prefix=True)
    yield emu
    emu.stop()


class NotSuiteCrm(EmulatorServer):
    """A web server that answers everything, but is no SuiteCRM."""

    name = "not-suitecrm"

    def register_routes(self, app: Flask) -> None:
        @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
        @app.route("/<path:path>", methods=["GET", "POST"])
        def _any(path: str) -> Response:
            return Response("<html>Welcome to our shop</html>", mimetype="text/html")


class Redirector(EmulatorServer):
    """An old http address that sends every request on to the real one (301)."""

    name = "redirector"

    def __init__(self, target: str) -> None:
        self.target = target
        super().__init__()

    def register_routes(self, app: Flask) -> None:
        @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
        @app.route("/<path:path>", methods=["GET", "POST"])
        def _any(path: str) -> Response:
            return Response(status=301, headers={"Location": f"{self.target}/{path}"})


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- registry -----------------------------------------------------------------------------


def test_the_registry_maps_the_suitecrm_key_to_its_adapter() -> None:
    assert ADAPTERS["suitecrm"] is SuiteCrmAdapter
    assert adapter_class("suitecrm") is SuiteCrmAdapter
    with pytest.raises(ValueError, match="Unknown CRM 'nocrm'"):
        adapter_class("nocrm")


# -- which API answers --------------------------------------------------------------------


def test_probe_finds_both_apis_on_a_suitecrm_7(suitecrm: SuiteCrmEmulator) -> None:
    probe = SuiteCrmAdapter.probe(suitecrm.url + "/index.php?module=Home&action=index")

    assert probe.apis == (API_V8, API_V4_1)
    assert (probe.base_url, probe.prefix) == (suitecrm.url, "")


@pytest.mark.parametrize("apis", [(API_V8,), (API_V4_1,)])
def test_probe_reports_only_the_api_the_instance_offers(apis: tuple[str, ...]) -> None:
    emu = make_emulator(apis=apis)
    try:
        assert SuiteCrmAdapter.probe(emu.url).apis == apis
    finally:
        emu.stop()


def test_probe_follows_an_address_that_moved_to_where_suitecrm_answers(
    suitecrm: SuiteCrmEmulator,
) -> None:
    with Redirector(suitecrm.url) as old:
        probe = SuiteCrmAdapter.probe(old.url)

    assert probe.base_url == suitecrm.url and probe.apis == (API_V8, API_V4_1)


def test_probe_finds_suitecrm_8_under_legacy(suitecrm8: SuiteCrmEmulator) -> None:
    probe = SuiteCrmAdapter.probe(suitecrm8.url)

    assert probe.prefix == "/legacy"
    assert probe.api_root == suitecrm8.url + "/legacy"


def test_connect_prefers_v8_when_the_admin_registered_a_client_and_keeps_no_password(
    suitecrm: SuiteCrmEmulator,
) -> None:
    conn = SuiteCrmAdapter.connect(suitecrm.url, USER, PASSWORD, **CLIENT)

    assert conn.api == API_V8
    assert "V8" in conn.message
    assert conn.credentials["refresh_token"] and conn.credentials["user_id"] == user_id(suitecrm)
    assert PASSWORD not in str(conn.credentials)
    assert hashlib.md5(PASSWORD.encode()).hexdigest() not in str(conn.credentials)


def test_connect_uses_v4_1_without_a_client_and_keeps_only_the_md5(
    suitecrm: SuiteCrmEmulator,
) -> None:
    conn = SuiteCrmAdapter.connect(suitecrm.url, USER, PASSWORD)

    assert conn.api == API_V4_1
    assert "REST v4_1" in conn.message
    assert conn.credentials["password_md5"] == hashlib.md5(PASSWORD.encode()).hexdigest()
    assert PASSWORD not in str(conn.credentials)


def test_connect_to_a_v8_only_instance_without_a_client_says_what_the_admin_must_do() -> None:
    emu = make_emulator(apis=(API_V8,))
    try:
        with pytest.raises(ProviderConfigError, match="OAuth2 Clients and Tokens"):
            SuiteCrmAdapter.connect(emu.url, USER, PASSWORD)
    finally:
        emu.stop()


@pytest.mark.parametrize("api", [API_V8, API_V4_1])
def test_suitecrm_8_works_through_the_legacy_prefix(suitecrm8: SuiteCrmEmulator, api: str) -> None:
    adapter = connect_adapter(suitecrm8, api)

    created = adapter.create(meeting(), link_id="link-8", notify=False)

    assert suitecrm8.meeting(created.crm_id)["outlook_id"] == "link-8"
    assert suitecrm8.counter.get("POST /legacy/Api/access_token") + suitecrm8.counter.get(
        "v4_1 login"
    )


def test_the_injected_session_carries_every_request(suitecrm: SuiteCrmEmulator) -> None:
    session = HookedSession()
    adapter = connect_adapter(suitecrm, API_V4_1, session=session)

    adapter.get("nothing")

    assert session.sent and all(url.startswith(suitecrm.url) for _, url, _ in session.sent)


# -- bad input ----------------------------------------------------------------------------


def test_an_address_where_nothing_answers_is_named_unreachable() -> None:
    with pytest.raises(ProviderConfigError, match="could not reach"):
        SuiteCrmAdapter.probe(closed_port_url(), timeout=2)


def test_an_address_that_is_not_a_web_address_is_refused() -> None:
    with pytest.raises(ProviderConfigError, match="not a web address"):
        SuiteCrmAdapter.probe("ftp://crm.example.com")


def test_a_server_that_is_not_suitecrm_is_named_as_such() -> None:
    with NotSuiteCrm() as other, pytest.raises(ProviderConfigError, match="not like SuiteCRM"):
        SuiteCrmAdapter.connect(other.url, USER, PASSWORD)


@pytest.mark.parametrize("client", [CLIENT, {}], ids=["v8", "v4_1"])
def test_a_wrong_password_asks_the_user_to_check_it(
    suitecrm: SuiteCrmEmulator, client: dict[str, str]
) -> None:
    with pytest.raises(ProviderAuthError, match="refused the user name or password") as exc:
        SuiteCrmAdapter.connect(suitecrm.url, USER, "wrong", **client)

    assert exc.value.connection_status == "needs_reconnect"


def test_a_wrong_client_secret_is_the_admins_to_fix(suitecrm: SuiteCrmEmulator) -> None:
    with pytest.raises(ProviderConfigError, match="administrator"):
        SuiteCrmAdapter.connect(
            suitecrm.url, USER, PASSWORD, client_id=CLIENT_ID, client_secret="nope"
        )


@pytest.mark.parametrize("client", [CLIENT, {}], ids=["v8", "v4_1"])
def test_a_user_without_rights_to_meetings_is_told_at_connect(
    suitecrm: SuiteCrmEmulator, client: dict[str, str]
) -> None:
    suitecrm.add_user("bob", "pw-bob", "bob@acme.test", meetings_access=False)

    with pytest.raises(ProviderPermissionError, match="not allowed to read or change Meetings"):
        SuiteCrmAdapter.connect(suitecrm.url, "bob", "pw-bob", **client)


@pytest.mark.parametrize("api", [API_V8, API_V4_1])
def test_rights_removed_after_connecting_stop_the_listing_with_no_permission(
    suitecrm: SuiteCrmEmulator, api: str
) -> None:
    adapter = connect_adapter(suitecrm, api)
    suitecrm.meetings_access[user_id(suitecrm)] = False

    with pytest.raises(ProviderPermissionError) as exc:
        adapter.list_changes(None, WINDOW)

    assert exc.value.connection_status == "no_permission"


@pytest.mark.parametrize("api", [API_V8, API_V4_1])
def test_a_failing_server_is_a_transient_error_with_its_retry_after(
    suitecrm: SuiteCrmEmulator, api: str
) -> None:
    adapter = connect_adapter(suitecrm, api)
    suitecrm.set_faults(rate_429=1.0, retry_after_seconds=7)

    with pytest.raises(ProviderTransientError) as exc:
        adapter.get("anything")

    assert exc.value.retry_after == 7


# -- sessions and tokens --------------------------------------------------------------------


def test_an_expired_v4_1_session_is_renewed_transparently_once(
    suitecrm: SuiteCrmEmulator,
) -> None:
    adapter = connect_adapter(suitecrm, API_V4_1)
    created = adapter.create(meeting(), link_id="l1", notify=False)
    logins = suitecrm.counter.get("v4_1 login")

    suitecrm.expire_sessions()
    read = adapter.get(created.crm_id)

    assert read is not None and read.title == "Review"
    assert suitecrm.counter.get("v4_1 login") == logins + 1


def test_a_v4_1_session_idle_past_php_s_timeout_is_renewed(suitecrm: SuiteCrmEmulator) -> None:
    adapter = connect_adapter(suitecrm, API_V4_1)
    adapter.get("x")

    suitecrm.advance_clock(1500)

    assert adapter.get("x") is None


def test_a_password_changed_in_suitecrm_means_reconnect(suitecrm: SuiteCrmEmulator) -> None:
    adapter = connect_adapter(suitecrm, API_V4_1)
    suitecrm.passwords[user_id(suitecrm)] = "changed"
    suitecrm.expire_sessions()

    with pytest.raises(ProviderAuthError, match="Connect SuiteCRM again"):
        adapter.get("x")


def test_an_expired_v8_token_is_refreshed_and_the_new_tokens_handed_over(
    suitecrm: SuiteCrmEmulator,
) -> None:
    saved: list[dict[str, Any]] = []
    adapter = connect_adapter(suitecrm, API_V8, on_credentials_changed=saved.append)
    old_refresh = adapter.credentials["refresh_token"]

    suitecrm.advance_clock(3601)
    assert adapter.get("missing") is None

    assert len(saved) == 1 and saved[0]["refresh_token"] != old_refresh
    assert saved[0]["access_token"] in suitecrm.access_tokens


def test_a_revoked_v8_refresh_token_means_reconnect(suitecrm: SuiteCrmEmulator) -> None:
    adapter = connect_adapter(suitecrm, API_V8)
    suitecrm.access_tokens.clear()
    suitecrm.refresh_tokens.clear()

    with pytest.raises(ProviderAuthError, match="Connect SuiteCRM again"):
        adapter.get("x")


# -- deletions ------------------------------------------------------------------------------


@pytest.mark.parametrize("api", [API_V8, API_V4_1])
def test_updating_a_meeting_deleted_in_suitecrm_changes_nothing_and_says_so(
    suitecrm: SuiteCrmEmulator, api: str
) -> None:
    adapter = connect_adapter(suitecrm, api)
    created = adapter.create(meeting("Original"), link_id="l1", notify=False)
    suitecrm.delete_meeting(created.crm_id)
    before = suitecrm.meeting(created.crm_id)
    count = len(suitecrm.records["Meetings"])

    with pytest.raises(MeetingDeleted, match='"Changed" was deleted in SuiteCRM'):
        adapter.update(created.crm_id, meeting("Changed"), notify=False)

    assert suitecrm.meeting(created.crm_id) == before
    assert len(suitecrm.records["Meetings"]) == count


def test_a_meeting_deleted_between_check_and_write_is_still_reported_deleted(
    suitecrm: SuiteCrmEmulator,
) -> None:
    session = HookedSession()
    adapter = connect_adapter(suitecrm, API_V4_1, session=session)
    created = adapter.create(meeting("Original"), link_id="l1", notify=False)

    def delete_first(method: str, url: str, kwargs: dict[str, Any]) -> None:
        if v41_method(kwargs) == "set_entry":
            suitecrm.delete_meeting(created.crm_id)

    session.before = delete_first
    with pytest.raises(MeetingDeleted):
        adapter.update(created.crm_id, meeting("Changed"), notify=False)

    assert suitecrm.meeting(created.crm_id)["name"] == "Original"


def test_a_delete_is_soft_bumps_date_modified_and_drops_the_relations(
    suitecrm: SuiteCrmEmulator,
) -> None:
    suitecrm.add_contact("carla@client.test")
    adapter = connect_adapter(suitecrm, API_V4_1)
    created = adapter.create(meeting("Demo", "carla@client.test"), link_id="l1", notify=False)
    _, _, cursor = drain(adapter, None)
    suitecrm.advance_clock(2)

    adapter.delete(created.crm_id, notify=False)
    _, deleted, _ = drain(adapter, cursor)

    row = suitecrm.meeting(created.crm_id)
    assert row["deleted"] == "1" and row["date_modified"] == suitecrm.stamp()
    assert suitecrm.related(created.crm_id) == []
    assert suitecrm.related(created.crm_id, include_deleted=True)
    assert deleted == [created.crm_id]


def test_deleting_an_unknown_meeting_creates_no_stub(suitecrm: SuiteCrmEmulator) -> None:
    adapter = connect_adapter(suitecrm, API_V4_1)

    adapter.delete("no-such-meeting", notify=False)

    assert suitecrm.records["Meetings"] == {}


def test_v8_finds_deletions_through_a_full_listing_after_the_interval(
    suitecrm: SuiteCrmEmulator,
) -> None:
    adapter = connect_adapter(suitecrm, API_V8, full_listing_every=timedelta(hours=1))
    created = adapter.create(meeting(), link_id="l1", notify=False)
    _, _, cursor = drain(adapter, None)
    suitecrm.delete_meeting(created.crm_id)

    _, deleted, cursor = drain(adapter, cursor)  # within the hour: V8 cannot see it
    suitecrm.advance_clock(3700)

    assert deleted == []
    with pytest.raises(CursorExpired, match="full SuiteCRM listing"):
        adapter.list_changes(cursor, WINDOW)


# -- meetings as SuiteCRM keeps them ---------------------------------------------------------


@pytest.mark.parametrize("api", [API_V8, API_V4_1])
def test_a_meeting_is_written_in_utc_with_its_duration_and_assigned_to_the_user(
    suitecrm: SuiteCrmEmulator, api: str
) -> None:
    adapter = connect_adapter(suitecrm, api)
    paris = START.astimezone(ZoneInfo("Europe/Paris"))
    ev = Event(
        title="Paris", start=paris, end=paris + timedelta(minutes=90), timezone="Europe/Paris"
    )

    created = adapter.create(ev, link_id="l1", notify=False)

    row = suitecrm.meeting(created.crm_id)
    assert row["date_start"] == START.strftime("%Y-%m-%d %H:%M:%S")
    assert (row["duration_hours"], row["duration_minutes"]) == ("1", "30")
    assert row["assigned_user_id"] == user_id(suitecrm)
    assert row["status"] == "Planned"


def test_a_held_meeting_stays_held_when_the_calendar_updates_it(
    suitecrm: SuiteCrmEmulator,
) -> None:
    adapter = connect_adapter(suitecrm, API_V4_1)
    created = adapter.create(meeting(), link_id="l1", notify=False)
    suitecrm.edit_meeting(created.crm_id, status="Held")

    adapter.update(created.crm_id, meeting("Renamed"), notify=False)

    assert suitecrm.meeting(created.crm_id)["status"] == "Held"


def test_recurring_meetings_are_listed_one_by_one_with_their_series_id(
    suitecrm: SuiteCrmEmulator,
) -> None:
    uid = user_id(suitecrm)
    parent = suitecrm.add_meeting(uid, name="Weekly", date_start="2026-12-01 09:00:00")
    child = suitecrm.add_meeting(
        uid, name="Weekly", date_start="2026-12-08 09:00:00", repeat_parent_id=parent
    )
    adapter = connect_adapter(suitecrm, API_V4_1)

    events, _, _ = drain(adapter, None)

    by_id = {e.crm_id: e for e in events}
    assert by_id[child].extra["repeat_parent_id"] == parent
    assert by_id[child].recurrence is None and by_id[parent].recurrence is None
    assert adapter.capabilities().recurrence is False


def test_invitee_lookups_are_cached_for_the_run(suitecrm: SuiteCrmEmulator) -> None:
    suitecrm.add_contact("carla@client.test")
    adapter = connect_adapter(suitecrm, API_V8)

    adapter.create(meeting("A", "carla@client.test"), link_id="l1", notify=False)
    lookups = suitecrm.counter.get("GET /Api/V8/module/<module>")
    adapter.create(meeting("B", "carla@client.test"), link_id="l2", notify=False)

    # The second create only looks up its link id, not the address again.
    assert suitecrm.counter.get("GET /Api/V8/module/<module>") == lookups + 1


def test_v4_1_looks_up_many_addresses_in_one_query_per_module(
    suitecrm: SuiteCrmEmulator,
) -> None:
    emails = [f"p{i}@client.test" for i in range(20)]
    for e in emails:
        suitecrm.add_contact(e)
    adapter = connect_adapter(suitecrm, API_V4_1)
    before = suitecrm.counter.get("v4_1 get_entry_list")

    created = adapter.create(meeting("Big", *emails), link_id="l1", notify=False)

    # one look-up of the link id, then one query per module (Contacts, Leads, Users)
    assert suitecrm.counter.get("v4_1 get_entry_list") == before + 4
    assert len(suitecrm.related(created.crm_id)) == 21  # 20 contacts and Alice


def test_the_engine_copies_calendar_events_to_suitecrm_once(suitecrm: SuiteCrmEmulator) -> None:
    suitecrm.add_contact("carla@client.test")
    adapter = connect_adapter(suitecrm, API_V4_1)
    calendar = MemorySide("calendar")
    calendar.user_create(
        Event(
            title="Kick-off",
            start=START,
            end=START + timedelta(hours=1),
            organizer="alice@acme.test",
            timezone="UTC",
            invitees=(Invitee("carla@client.test"),),
        )
    )
    store = InMemoryStore()
    now = datetime.now(UTC)

    first = run_sync(calendar, adapter, store, SyncSettings(), now, user_email="alice@acme.test")
    second = run_sync(calendar, adapter, store, SyncSettings(), now, user_email="alice@acme.test")

    assert first.crm.created == 1 and not first.errors
    assert second.crm.created == 0 and second.crm.updated == 0 and not second.errors
    (row,) = suitecrm.live_meetings()
    assert row["name"] == "Kick-off" and row["outlook_id"] == store.links()[0].link_id


@pytest.mark.parametrize("api", [API_V8, API_V4_1])
def test_the_engine_copies_a_suitecrm_meeting_with_its_invitees_to_the_calendar(
    suitecrm: SuiteCrmEmulator, api: str
) -> None:
    uid = user_id(suitecrm)
    carla = suitecrm.add_contact("carla@client.test", "Carla", "Client")
    meeting_id = suitecrm.add_meeting(
        uid, name="From the CRM", date_start=START.strftime("%Y-%m-%d %H:%M:%S")
    )
    suitecrm.relate(meeting_id, "Contacts", carla)
    suitecrm.relate(meeting_id, "Users", uid)
    adapter = connect_adapter(suitecrm, api)
    calendar = MemorySide("calendar")
    settings = SyncSettings(direction="crm_to_calendar")

    result = run_sync(calendar, adapter, InMemoryStore(), settings, datetime.now(UTC))

    assert result.calendar.created == 1 and not result.errors
    (copy,) = calendar.items.values()
    assert copy.title == "From the CRM"
    assert [(i.email, i.name) for i in copy.invitees] == [("carla@client.test", "Carla Client")]


@pytest.mark.parametrize("api", [API_V8, API_V4_1])
def test_many_meetings_changed_in_one_instant_are_listed_completely(
    suitecrm: SuiteCrmEmulator, api: str
) -> None:
    adapter = connect_adapter(suitecrm, api, page_size=10)
    _, _, cursor = drain(adapter, None)
    suitecrm.advance_clock(120)
    ids = set(suitecrm.seed_meetings(45, user_id(suitecrm), start=START))  # one date_modified

    events, _, cursor = drain(adapter, cursor)
    again, _, _ = drain(adapter, cursor)

    assert [e.crm_id for e in events if e.crm_id in ids] and {e.crm_id for e in events} == ids
    assert len(events) == 45  # each once, although pages overlap at that instant
    assert again == []


def test_connect_uses_v4_1_when_the_admin_prefers_it(suitecrm: SuiteCrmEmulator) -> None:
    conn = SuiteCrmAdapter.connect(suitecrm.url, USER, PASSWORD, prefer=API_V4_1, **CLIENT)

    assert conn.api == API_V4_1


def test_a_full_v4_1_listing_of_ten_thousand_meetings_takes_a_few_dozen_requests(
    suitecrm: SuiteCrmEmulator,
) -> None:
    # Hourly from 20 days ago: 10,000 meetings, of which those in the 395-day window count.
    first = (datetime.now(UTC) - timedelta(days=20)).replace(minute=0, second=0, microsecond=0)
    suitecrm.seed_meetings(10_000, user_id(suitecrm), start=first)
    in_window = sum(
        1
        for i in range(10_000)
        if WINDOW.start < first + timedelta(hours=i, minutes=30)
        and first + timedelta(hours=i) < WINDOW.end
    )
    adapter = connect_adapter(suitecrm, API_V4_1, page_size=500)
    suitecrm.counter.reset()

    events, _, _ = drain(adapter, None)

    assert len(events) == in_window > 9_000
    assert suitecrm.counter.get("v4_1 get_entry_list") == in_window // 500 + 1


def test_a_first_sync_links_a_meeting_that_already_exists_on_both_sides(
    suitecrm: SuiteCrmEmulator,
) -> None:
    uid = user_id(suitecrm)
    suitecrm.add_meeting(uid, name="Board call", date_start=START.strftime("%Y-%m-%d %H:%M:%S"))
    calendar = MemorySide("calendar")
    calendar.user_create(
        Event(
            title="Board call",
            start=START,
            end=START + timedelta(hours=1),
            organizer="alice@acme.test",
            invitees=(Invitee("x@client.test"),),
        )
    )
    adapter = connect_adapter(suitecrm, API_V4_1)

    result = run_sync(
        calendar,
        adapter,
        InMemoryStore(),
        SyncSettings(direction="two_way"),
        datetime.now(UTC),
        user_email="alice@acme.test",
    )

    assert result.crm.created == 0 and result.calendar.created == 0
    assert result.crm.linked == 1
    assert len(suitecrm.live_meetings()) == 1


def test_v8_reads_invitees_meeting_by_meeting_and_each_person_once(
    suitecrm: SuiteCrmEmulator,
) -> None:
    uid = user_id(suitecrm)
    carla = suitecrm.add_contact("carla@client.test")
    for i in range(5):
        meeting_id = suitecrm.add_meeting(uid, name=f"M{i}")
        suitecrm.relate(meeting_id, "Contacts", carla)
    adapter = connect_adapter(suitecrm, API_V8)
    suitecrm.counter.reset()

    events, _, _ = drain(adapter, None)

    # V8 has no bulk read of relations: three links per meeting, one read per person.
    rel = "GET /Api/V8/module/<module>/<item_id>/relationships/<link>"
    assert len(events) == 5 and all(e.invitees for e in events)
    assert suitecrm.counter.get(rel) == 15
    assert suitecrm.counter.get("GET /Api/V8/module/<module>/<item_id>") == 1


def test_a_calendar_series_becomes_one_suitecrm_meeting_per_occurrence(
    suitecrm: SuiteCrmEmulator,
) -> None:
    adapter = connect_adapter(suitecrm, API_V4_1)
    calendar = MemorySide("calendar")
    calendar.user_create(
        Event(
            title="Weekly sync",
            start=START,
            end=START + timedelta(minutes=30),
            timezone="UTC",
            organizer="alice@acme.test",
            invitees=(Invitee("x@client.test"),),
            recurrence=Recurrence("FREQ=WEEKLY;COUNT=3"),
        )
    )

    result = run_sync(
        calendar,
        adapter,
        InMemoryStore(),
        SyncSettings(),
        datetime.now(UTC),
        user_email="alice@acme.test",
    )

    starts = sorted(r["date_start"] for r in suitecrm.live_meetings())
    assert not result.errors and result.crm.created == 3
    assert starts == [(START + timedelta(weeks=w)).strftime("%Y-%m-%d %H:%M:%S") for w in range(3)]


def test_a_create_that_fails_while_relating_invitees_leaves_no_half_meeting(
    suitecrm: SuiteCrmEmulator,
) -> None:
    suitecrm.add_contact("carla@client.test")
    session = HookedSession()
    adapter = connect_adapter(suitecrm, API_V4_1, session=session)

    def fail_relating(method: str, url: str, kwargs: dict[str, Any]) -> None:
        if v41_method(kwargs) == "set_relationship":
            session.before = None
            raise requests.ConnectionError("network down")

    session.before = fail_relating
    with pytest.raises(ProviderTransientError):
        adapter.create(meeting("Demo", "carla@client.test"), link_id="l1", notify=False)

    assert suitecrm.live_meetings() == []
    assert adapter.find_by_link_id("l1") is None
