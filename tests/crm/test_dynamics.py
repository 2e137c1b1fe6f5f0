"""Dynamics 365 connector: the address, connecting, listing both ways, throttling, people,
and what the user is told."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, Response

from calsync.crm import ADAPTERS, adapter_class
from calsync.crm.dynamics import AppointmentDeleted, DynamicsAdapter, validate_org_url
from calsync.provider_errors import (
    ProviderAuthError,
    ProviderConfigError,
    ProviderConflict,
    ProviderPermissionError,
    ProviderTransientError,
)
from calsync.sandbox.dynamics import DynamicsEmulator
from calsync.sandbox.server import EmulatorServer
from calsync.sync import (
    CursorExpired,
    Event,
    InMemoryStore,
    Invitee,
    SyncSettings,
    Window,
    run_sync,
)

from .conftest import (
    MS_CLIENT_ID,
    MS_CLIENT_SECRET,
    USER_EMAIL,
    HookedSession,
    dynamics_adapter,
    dynamics_blob,
    dynamics_session,
    make_dynamics,
)

# The engine's own in-memory calendar, to run a real sync against the emulator.
sys.path.insert(0, str(Path(__file__).parents[1] / "sync"))
from sync_fakes import MemorySide

START = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
WINDOW = Window(datetime.now(UTC) - timedelta(days=30), datetime.now(UTC) + timedelta(days=365))


def meeting(title: str = "Review", *invitees: str) -> Event:
    return Event(
        title=title,
        start=START,
        end=START + timedelta(hours=1),
        invitees=tuple(Invitee(e) for e in invitees),
    )


def drain(adapter: DynamicsAdapter, cursor: str | None) -> tuple[list[Event], list[str], str]:
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
def dyn() -> Iterator[DynamicsEmulator]:
    emu = make_dynamics()
    yield emu
    emu.stop()


@pytest.fixture
def session(dyn: DynamicsEmulator) -> Iterator[HookedSession]:
    s = dynamics_session(dyn)
    yield s
    s.close()


def connect_kw(emu: DynamicsEmulator, session: requests.Session) -> dict[str, Any]:
    return {
        "client_id": MS_CLIENT_ID,
        "client_secret": MS_CLIENT_SECRET,
        "authority_host": emu.url,
        "session": session,
        "allow_local": True,
    }


class NotDataverse(EmulatorServer):
    """An https web server that answers everything, but is no Dataverse."""

    name = "not-dataverse"

    def register_routes(self, app: Flask) -> None:
        @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
        @app.route("/<path:path>", methods=["GET", "POST"])
        def _any(path: str) -> Response:
            return Response("<html>Welcome to our shop</html>", mimetype="text/html")


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"https://127.0.0.1:{sock.getsockname()[1]}"


# -- registry and the address ------------------------------------------------------------


def test_the_registry_maps_the_dynamics_key_to_its_adapter() -> None:
    assert ADAPTERS["dynamics"] is DynamicsAdapter
    assert adapter_class("dynamics") is DynamicsAdapter


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("https://contoso.crm.dynamics.com", "https://contoso.crm.dynamics.com"),
        ("contoso.crm4.dynamics.com", "https://contoso.crm4.dynamics.com"),
        ("https://Contoso.CRM21.dynamics.com/", "https://contoso.crm21.dynamics.com"),
        (
            "https://contoso.crm11.dynamics.com/main.aspx?appid=123&pagetype=entitylist",
            "https://contoso.crm11.dynamics.com",
        ),
        (
            "https://contoso.api.crm2.dynamics.com/api/data/v9.2",
            "https://contoso.crm2.dynamics.com",
        ),
        ("https://contoso.crm9.dynamics.com", "https://contoso.crm9.dynamics.com"),
        ("https://agency.crm.microsoftdynamics.us", "https://agency.crm.microsoftdynamics.us"),
    ],
)
def test_organization_urls_as_people_paste_them_are_accepted(typed: str, expected: str) -> None:
    assert validate_org_url(typed) == expected


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("", "Enter your Dynamics 365 organization URL"),
        ("http://contoso.crm.dynamics.com", "only reached over https"),
        ("https://contoso.dynamics.com", "is not a Dynamics 365 organization URL"),
        ("https://contoso.crm.dynamics.com.evil.test", "is not a Dynamics 365 organization URL"),
        ("https://contoso.operations.dynamics.com", "is not a Dynamics 365 organization URL"),
        ("https://contoso.crm.dynamics.com:8443", "without a user name or port"),
        ("https://127.0.0.1:8443", "is not a Dynamics 365 organization URL"),
    ],
)
def test_wrong_organization_urls_get_a_clear_message(typed: str, says: str) -> None:
    with pytest.raises(ProviderConfigError, match=says) as err:
        validate_org_url(typed)
    assert "https://contoso.crm.dynamics.com" in err.value.message  # an example to follow


def test_the_local_emulator_address_needs_the_explicit_allow_flag() -> None:
    assert validate_org_url("https://127.0.0.1:8443", allow_local=True) == "https://127.0.0.1:8443"
    with pytest.raises(ProviderConfigError, match="https"):
        validate_org_url("http://127.0.0.1:8443", allow_local=True)


def test_probe_knows_dataverse_by_its_sign_in_challenge(dyn: DynamicsEmulator) -> None:
    s = dynamics_session(dyn)
    assert DynamicsAdapter.probe(dyn.url, session=s, allow_local=True) == dyn.url


def test_a_url_that_answers_but_is_not_dataverse_is_refused_with_a_reason() -> None:
    with NotDataverse(tls=True) as other:
        s = requests.Session()
        s.verify, s.trust_env = other.ca_file, False
        with pytest.raises(ProviderConfigError, match="answers, but not like Dynamics 365"):
            DynamicsAdapter.probe(other.url, session=s, allow_local=True)


def test_an_address_nobody_answers_at_is_refused_with_a_reason() -> None:
    with pytest.raises(ProviderConfigError, match="could not reach"):
        DynamicsAdapter.probe(closed_port_url(), allow_local=True, timeout=2)


# -- connecting ---------------------------------------------------------------------------


def test_connect_signs_in_with_microsoft_and_keeps_only_msal_s_token_cache(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    blob = dynamics_blob(dyn, session)
    conn = DynamicsAdapter.connect(blob, **connect_kw(dyn, session))

    assert conn.user_id == dyn.user_id_for(USER_EMAIL)
    assert conn.user_name == USER_EMAIL and dyn.url in conn.message
    creds = conn.credentials
    assert set(creds) == {
        "version",
        "provider",
        "org_url",
        "home_account_id",
        "username",
        "msal_cache",
        "user_id",
    }
    assert creds["provider"] == "dynamics" and creds["org_url"] == dyn.url
    # The token was asked for this organization, as the user (delegated).
    assert f"{dyn.url}/user_impersonation" in creds["msal_cache"]


def test_a_user_without_appointment_rights_is_told_at_connect(dyn: DynamicsEmulator) -> None:
    dyn.add_user("reader@acme.test", "Rita Reader", privileges=("read",))
    s = dynamics_session(dyn)
    blob = dynamics_blob(dyn, s, "reader@acme.test")

    with pytest.raises(ProviderPermissionError, match="prvCreateActivity, prvWriteActivity"):
        DynamicsAdapter.connect(blob, **connect_kw(dyn, s))


def test_a_microsoft_account_that_is_not_a_user_of_the_organization_is_told(
    dyn: DynamicsEmulator,
) -> None:
    dyn.add_mailbox("guest@elsewhere.test")  # signs in to Microsoft, no Dynamics user
    s = dynamics_session(dyn)
    blob = dynamics_blob(dyn, s, "guest@elsewhere.test")

    with pytest.raises(ProviderPermissionError, match="not a user of the Dynamics 365"):
        DynamicsAdapter.connect(blob, **connect_kw(dyn, s))


def test_rights_taken_away_later_stop_the_listing_with_the_missing_privilege(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    adapter = dynamics_adapter(dyn, session)
    dyn.set_privileges(adapter.user_id, ())

    with pytest.raises(ProviderPermissionError, match="prvReadActivity") as err:
        adapter.list_changes(None, WINDOW)
    assert err.value.connection_status == "no_permission"


def test_an_expired_access_token_is_refreshed_once_through_msal(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    adapter = dynamics_adapter(dyn, session)
    adapter.list_changes(None, WINDOW)
    dyn.expire_tokens()

    adapter.list_changes(None, WINDOW)

    assert adapter.credentials_changed  # the rotated cache must be stored again


def test_a_revoked_grant_means_connect_again(dyn: DynamicsEmulator, session: HookedSession) -> None:
    adapter = dynamics_adapter(dyn, session)
    adapter.list_changes(None, WINDOW)
    dyn.expire_tokens()
    dyn.revoke_refresh_tokens()  # the refresh answers invalid_grant

    with pytest.raises(ProviderAuthError, match="Connect again") as err:
        adapter.list_changes(None, WINDOW)
    assert err.value.connection_status == "needs_reconnect"


# -- change tracking ----------------------------------------------------------------------


def test_change_tracking_reports_edits_and_deletions_from_the_delta_link(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    adapter = dynamics_adapter(dyn, session)
    me = adapter.user_id
    kept = dyn.add_appointment(me, "Kept", START)
    gone = dyn.add_appointment(me, "Gone", START + timedelta(hours=2))
    theirs = dyn.add_appointment(dyn.add_user("bob@acme.test"), "Bob's", START)
    _, _, cursor = drain(adapter, None)
    assert '"m":"ct"' in cursor and "deltatoken" in cursor

    dyn.edit_appointment(kept, subject="Kept (moved)")
    dyn.delete_appointment(gone)
    dyn.edit_appointment(theirs, subject="Not mine")
    events, deleted, _ = drain(adapter, cursor)

    assert [e.title for e in events] == ["Kept (moved)"]  # only the user's own appointments
    assert deleted == [gone]


def test_an_expired_delta_link_asks_for_a_full_listing(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    adapter = dynamics_adapter(dyn, session)
    _, _, cursor = drain(adapter, None)
    dyn.expire_delta_tokens()

    with pytest.raises(CursorExpired):
        adapter.list_changes(cursor, WINDOW)


def test_change_tracking_full_listing_keeps_to_the_window(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    adapter = dynamics_adapter(dyn, session, page_size=2)
    me = adapter.user_id
    inside = {dyn.add_appointment(me, f"In {i}", START + timedelta(hours=i)) for i in range(3)}
    dyn.add_appointment(me, "Long ago", datetime.now(UTC) - timedelta(days=400))

    events, _, _ = drain(adapter, None)

    assert {e.crm_id for e in events} == inside


# -- the modifiedon fallback ----------------------------------------------------------------


def test_without_change_tracking_the_cursor_is_a_modifiedon_watermark() -> None:
    emu = make_dynamics(change_tracking=False)
    try:
        adapter = dynamics_adapter(emu, dynamics_session(emu))
        emu.add_appointment(adapter.user_id, "Call", START)
        events, _, cursor = drain(adapter, None)
        assert [e.title for e in events] == ["Call"]
        assert '"m":"wm"' in cursor and not adapter.lists_deletions
    finally:
        emu.stop()


def test_many_changes_in_one_second_across_pages_are_each_reported_once() -> None:
    # The edge case of a one-second watermark: more rows share the instant than fit in a
    # page, the cursor is taken inside that instant, and more change in it afterwards.
    emu = make_dynamics(change_tracking=False)
    try:
        adapter = dynamics_adapter(emu, dynamics_session(emu), page_size=2)
        me = adapter.user_id
        _, _, cursor = drain(adapter, None)
        emu.freeze_clock(int(emu.now()) + 1)
        first = [emu.add_appointment(me, f"A{i}", START) for i in range(5)]
        events, _, cursor = drain(adapter, cursor)
        assert sorted(e.crm_id for e in events) == sorted(first)

        later = [emu.add_appointment(me, f"B{i}", START) for i in range(3)]
        emu.edit_appointment(first[0], subject="A0 again")
        events, _, cursor = drain(adapter, cursor)
        assert sorted(e.crm_id for e in events) == sorted([*later, first[0]])

        events, _, _ = drain(adapter, cursor)
        assert events == []
    finally:
        emu.stop()


# -- throttling and conflicts -----------------------------------------------------------------


@pytest.mark.parametrize("code", ["0x80072322", "0x80072321", "0x80072326"])
def test_a_throttled_write_waits_retry_after_and_succeeds(
    dyn: DynamicsEmulator, session: HookedSession, code: str
) -> None:
    waits: list[float] = []
    adapter = dynamics_adapter(dyn, session)
    adapter._sleep = waits.append
    dyn.throttle(2, code, retry_after=7)

    created = adapter.create(meeting("Throttled"), link_id="l-429", notify=False)

    assert waits == [7.0, 7.0]
    assert created.title == "Throttled" and len(dyn.tables["appointments"]) == 1


def test_throttling_that_lasts_gives_a_transient_error_with_retry_after(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    adapter = dynamics_adapter(dyn, session, max_retries=2)
    adapter.find_by_link_id("warm-up")  # token and look-ups out of the way
    dyn.throttle(5, "0x80072322", retry_after=4)

    with pytest.raises(ProviderTransientError, match="service protection") as err:
        adapter.create(meeting("Never"), link_id="l-busy", notify=False)

    assert err.value.retry_after == 4.0
    assert dyn.tables["appointments"] == {}


def test_a_create_answered_with_a_server_error_is_not_resent(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    # A 5xx after a POST may hide a create that happened: resending could double it; the
    # engine's retry looks the appointment up by its link id instead.
    adapter = dynamics_adapter(dyn, session)

    def fail_the_post(method: str, url: str, kwargs: dict[str, Any]) -> None:
        if method == "POST":
            dyn.set_faults(rate_5xx=1.0, status_5xx=502)

    session.before = fail_the_post
    with pytest.raises(ProviderTransientError, match="unavailable"):
        adapter.create(meeting("Once"), link_id="l-502", notify=False)

    assert sum(m == "POST" and "/api/data/" in u for m, u, _ in session.sent) == 1


def test_an_appointment_changed_while_we_update_it_is_a_conflict(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    adapter = dynamics_adapter(dyn, session)
    created = adapter.create(meeting("Original"), link_id="l-412", notify=False)

    def someone_edits(method: str, url: str, kwargs: dict[str, Any]) -> None:
        if method == "PATCH":
            session.before = None
            dyn.edit_appointment(created.crm_id, subject="Edited in Dynamics")

    session.before = someone_edits
    with pytest.raises(ProviderConflict, match="changed in Dynamics 365"):
        adapter.update(created.crm_id, meeting("Ours"), notify=False)

    assert dyn.appointment(created.crm_id)["subject"] == "Edited in Dynamics"


def test_an_appointment_deleted_while_we_update_it_is_said_and_not_recreated(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    adapter = dynamics_adapter(dyn, session)
    created = adapter.create(meeting("Doomed"), link_id="l-del", notify=False)

    def someone_deletes(method: str, url: str, kwargs: dict[str, Any]) -> None:
        if method == "PATCH":
            session.before = None
            dyn.delete_appointment(created.crm_id)

    session.before = someone_deletes
    with pytest.raises(AppointmentDeleted, match="was deleted in Dynamics 365") as err:
        adapter.update(created.crm_id, meeting("Ours"), notify=False)

    assert isinstance(err.value, ProviderConflict)
    # Without If-Match the PATCH would have created it again (Dataverse upserts).
    assert created.crm_id not in dyn.tables["appointments"]
    with pytest.raises(AppointmentDeleted):
        adapter.update(created.crm_id, meeting("Again"), notify=False)


# -- people -------------------------------------------------------------------------------------


def test_invitees_become_activity_parties_resolved_by_email_or_kept_by_address(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    carla = dyn.add_contact("carla@client.test", "Carla", "Client")
    leo = dyn.add_lead("leo@prospect.test", "Leo", "Lead")
    bob = dyn.add_user("bob@acme.test", "Bob Builder")
    adapter = dynamics_adapter(dyn, session)

    created = adapter.create(
        meeting("Demo", "Carla@Client.test", "leo@prospect.test", "bob@acme.test", "x@nowhere"),
        link_id="l-parties",
        notify=False,
    )

    parties = {
        (
            p["participationtypemask"],
            p["partyobjecttypecode"],
            p["_partyid_value"],
            p["addressused"],
        )
        for p in dyn.appointment_parties(created.crm_id)
    }
    assert parties == {
        (7, "systemuser", adapter.user_id, USER_EMAIL),  # the organizer
        (5, "contact", carla, "carla@client.test"),
        (5, "lead", leo, "leo@prospect.test"),
        (5, "systemuser", bob, "bob@acme.test"),
        (5, None, None, "x@nowhere"),  # unresolved, kept by its address
    }
    assert created.organizer == USER_EMAIL
    assert {i.email.lower() for i in created.invitees} == {
        "carla@client.test",
        "leo@prospect.test",
        "bob@acme.test",
        "x@nowhere",
    }
    assert dyn.appointment(created.crm_id)["globalobjectid"] == "calsync-l-parties"


def test_address_look_ups_are_batched_and_cached_for_the_run(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    emails = [f"c{i}@client.test" for i in range(20)]
    for e in emails:
        dyn.add_contact(e)
    adapter = dynamics_adapter(dyn, session)

    def lookups() -> int:
        tables = ("systemusers", "contacts", "leads")
        return sum(1 for m, url, _ in session.sent if m == "GET" and url.endswith(tables))

    before = lookups()
    adapter.create(meeting("Big", *emails, "new@nowhere"), link_id="l1", notify=False)
    # one batched query per table (users, then contacts; leads only for what is left)
    assert lookups() - before == 3
    adapter.create(meeting("Again", *emails, "new@nowhere"), link_id="l2", notify=False)
    assert lookups() - before == 3  # cached


def test_an_optional_attendee_stays_optional_across_an_update(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    dyn.add_contact("carla@client.test")
    adapter = dynamics_adapter(dyn, session)
    created = adapter.create(meeting("Demo", "carla@client.test"), link_id="l-opt", notify=False)
    for party in dyn.parties[created.crm_id]:
        if party["participationtypemask"] == 5:
            party["participationtypemask"] = 6  # made optional in the Dynamics app

    adapter.update(
        created.crm_id, meeting("Demo (moved)", "carla@client.test", "new@x.test"), notify=False
    )

    masks = {p["addressused"]: p["participationtypemask"] for p in dyn.parties[created.crm_id]}
    assert masks == {USER_EMAIL: 7, "carla@client.test": 6, "new@x.test": 5}


# -- what Dynamics can do, and a real sync ------------------------------------------------------


def test_no_native_series_and_no_emails(dyn: DynamicsEmulator, session: HookedSession) -> None:
    dyn.add_contact("carla@client.test")
    adapter = dynamics_adapter(dyn, session)
    caps = adapter.capabilities()

    adapter.create(meeting("Quiet", "carla@client.test"), link_id="l-quiet", notify=False)

    assert (caps.recurrence, caps.notify, caps.two_way) == (False, False, True)
    assert len(dyn.invitations) == 0  # Web API writes mail nobody


def test_all_day_and_cancelled_appointments_round_trip(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    adapter = dynamics_adapter(dyn, session)
    day = START.date()
    ev = Event(title="Offsite", start=day, end=day + timedelta(days=1), status="cancelled")

    created = adapter.create(ev, link_id="l-day", notify=False)
    row = dyn.appointment(created.crm_id)

    assert (created.start, created.end, created.status) == (
        day,
        day + timedelta(days=1),
        "cancelled",
    )
    assert (row["isalldayevent"], row["statecode"], row["statuscode"]) == (True, 2, 4)
    reopened = adapter.update(
        created.crm_id, Event(title="Offsite", start=day, end=day), notify=False
    )
    assert reopened.status == "confirmed" and dyn.appointment(created.crm_id)["statecode"] == 3


def test_the_engine_copies_calendar_events_to_dynamics_once(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    dyn.add_contact("carla@client.test", "Carla", "Client")
    adapter = dynamics_adapter(dyn, session)
    calendar = MemorySide("calendar")
    calendar.user_create(
        Event(
            title="Kick-off",
            start=START,
            end=START + timedelta(hours=1),
            organizer=USER_EMAIL,
            timezone="UTC",
            invitees=(Invitee("carla@client.test"),),
        )
    )
    store = InMemoryStore()
    now = datetime.now(UTC)

    first = run_sync(calendar, adapter, store, SyncSettings(), now, user_email=USER_EMAIL)
    second = run_sync(calendar, adapter, store, SyncSettings(), now, user_email=USER_EMAIL)

    assert first.crm.created == 1 and not first.errors
    assert second.crm.created == 0 and second.crm.updated == 0 and not second.errors
    (row,) = dyn.tables["appointments"].values()
    assert row["subject"] == "Kick-off"
    assert row["globalobjectid"] == "calsync-" + store.links()[0].link_id


def test_a_full_listing_of_ten_thousand_appointments_takes_a_handful_of_requests(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    adapter = dynamics_adapter(dyn, session, page_size=5000)
    dyn.seed_appointments(10_000, adapter.user_id, start=START)
    in_window = sum(
        1
        for r in dyn.tables["appointments"].values()
        if r["scheduledstart"] < WINDOW.end.isoformat()
    )
    before = len(session.sent)

    events, _, cursor = drain(adapter, None)

    assert len(events) == in_window
    # the delta link (2 pages), then the window with its parties (2 pages); msal's own
    # discovery call on first use is not a Dataverse request
    assert sum("/api/data/" in url for _, url, _ in session.sent[before:]) == 4
    assert drain(adapter, cursor)[0] == []


def test_an_all_day_appointment_saved_in_another_time_zone_keeps_its_day(
    dyn: DynamicsEmulator, session: HookedSession
) -> None:
    adapter = dynamics_adapter(dyn, session)
    day = START.date()
    # Saved as all-day by someone in UTC+2: their midnights, in UTC.
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=2)
    item = dyn.add_appointment(
        adapter.user_id, "Holiday", midnight, midnight + timedelta(days=1), isalldayevent=True
    )

    read = adapter.get(item)

    assert read is not None and (read.start, read.end) == (day, day + timedelta(days=1))
