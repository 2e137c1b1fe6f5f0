"""SuiteCRM's batch path (v4_1 `set_entries` / `set_relationships`) against the emulator:
few requests for many meetings, one failure kept to its meeting, invitees related, and a
batch cut short found by link id instead of doubled."""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from calsync.crm.suitecrm import API_V4_1, API_V8, WRITE_BATCH, MeetingDeleted, SuiteCrmAdapter
from calsync.provider_errors import ProviderError, ProviderTransientError
from calsync.sandbox.suitecrm import SuiteCrmEmulator
from calsync.sync import Event, InMemoryStore, Invitee, SyncSettings, run_sync
from calsync.sync.adapters import BatchWriter, Write

from .conftest import PASSWORD, USER, HookedSession, connect_adapter, v41_method

# The engine's own in-memory calendar, to run a real sync against the emulator.
sys.path.insert(0, str(Path(__file__).parents[1] / "sync"))
from sync_fakes import MemorySide

START = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
WRITES = ("set_entry", "set_entries", "set_relationship", "set_relationships")


def meeting(title: str, *invitees: str, hours: int = 0) -> Event:
    start = START + timedelta(hours=hours)
    return Event(
        title=title,
        start=start,
        end=start + timedelta(hours=1),
        invitees=tuple(Invitee(e) for e in invitees),
    )


def create(title: str, *invitees: str, hours: int = 0) -> Write:
    ev = meeting(title, *invitees, hours=hours)
    link_id = f"link-{title}"
    return Write("create", event=Event(**{**ev.__dict__, "link_id": link_id}), link_id=link_id)


def methods(emu: SuiteCrmEmulator) -> dict[str, int]:
    snap = emu.counter.snapshot()
    return {k[5:]: v for k, v in snap.items() if k.startswith("v4_1 ") and v}


def requests_during(emu: SuiteCrmEmulator, before: dict[str, int]) -> dict[str, int]:
    after = methods(emu)
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def user_id(emu: SuiteCrmEmulator) -> str:
    return next(r["id"] for r in emu.records["Users"].values() if r["user_name"] == USER)


def related_emails(emu: SuiteCrmEmulator, meeting_id: str) -> set[str]:
    out = set()
    for rel in emu.related(meeting_id):
        bean = emu.records[rel["module"]][rel["bean_id"]]
        out.add(bean["email1"].lower())
    return out


@pytest.fixture
def v41(suitecrm: SuiteCrmEmulator) -> SuiteCrmAdapter:
    return connect_adapter(suitecrm, API_V4_1, session=HookedSession())


def test_the_v4_1_adapter_is_a_batch_writer_and_the_v8_one_writes_one_by_one(
    suitecrm: SuiteCrmEmulator, v41: SuiteCrmAdapter
) -> None:
    assert isinstance(v41, BatchWriter) and v41.max_batch == WRITE_BATCH
    v8 = connect_adapter(suitecrm, API_V8)
    assert v8.max_batch == 1
    (written,) = v8.write_many([create("Via V8", "carla@client.test")])
    assert isinstance(written, Event) and written.crm_id
    assert suitecrm.meeting(written.crm_id)["outlook_id"] == "link-Via V8"


def test_many_new_meetings_take_one_save_and_one_relationship_request(
    suitecrm: SuiteCrmEmulator, v41: SuiteCrmAdapter
) -> None:
    for i in range(10):
        suitecrm.add_contact(f"c{i}@client.test", "Carla", f"C{i}")
    suitecrm.add_lead("lead@prospect.test", "Lee", "Lead")
    writes = [
        create(f"Meeting {i}", f"c{i % 10}@client.test", "lead@prospect.test", hours=i)
        for i in range(40)
    ]
    v41.write_many([create("Warm-up", hours=99)])  # reads the user's own address, once
    before = methods(suitecrm)
    results = v41.write_many(writes)
    sent = requests_during(suitecrm, before)
    assert sent.get("set_entries") == 1 and sent.get("set_relationships") == 1
    assert not sent.get("set_entry") and not sent.get("set_relationship")
    assert not sent.get("get_entry")  # no read-back one by one
    # Contacts, Leads and Users looked up once for the whole batch, one read-back.
    assert sent.get("get_entry_list") == 4
    assert sum(sent.values()) == 6
    assert all(isinstance(r, Event) for r in results)
    for i, written in enumerate(results):
        assert isinstance(written, Event) and written.crm_id
        row = suitecrm.meeting(written.crm_id)
        assert row["name"] == f"Meeting {i}" and row["outlook_id"] == f"link-Meeting {i}"
        assert related_emails(suitecrm, written.crm_id) == {
            f"c{i % 10}@client.test",
            "lead@prospect.test",
            "alice@acme.test",
        }
        # The version answered is the one the next listing reports: no echo update.
        again = v41.get(written.crm_id)
        assert again is not None and again.crm_version == written.crm_version
        assert {x.email for x in written.invitees} == {x.email for x in again.invitees}


def test_updates_and_deletes_in_one_batch_change_only_what_they_name(
    suitecrm: SuiteCrmEmulator, v41: SuiteCrmAdapter
) -> None:
    suitecrm.add_contact("old@client.test", "Olga", "Old")
    suitecrm.add_contact("new@client.test", "Nina", "New")
    first = v41.write_many([create("Keep", "old@client.test"), create("Drop", hours=1)])
    keep, drop = first
    assert isinstance(keep, Event) and isinstance(drop, Event)
    assert keep.crm_id and drop.crm_id
    before = methods(suitecrm)
    results = v41.write_many(
        [
            Write("update", event=meeting("Kept, renamed", "new@client.test"), item_id=keep.crm_id),
            Write("delete", item_id=drop.crm_id),
        ]
    )
    sent = requests_during(suitecrm, before)
    assert sent.get("set_entries") == 1 and sent.get("set_relationships") == 1
    updated, deleted = results
    assert deleted is None and suitecrm.meeting(drop.crm_id)["deleted"] == "1"
    assert isinstance(updated, Event) and updated.title == "Kept, renamed"
    assert related_emails(suitecrm, keep.crm_id) == {"new@client.test", "alice@acme.test"}
    assert [i.email for i in updated.invitees] == ["new@client.test"]
    assert suitecrm.meeting(keep.crm_id)["outlook_id"] == "link-Keep"


def test_one_failed_write_is_answered_for_that_meeting_and_the_others_stand(
    suitecrm: SuiteCrmEmulator, v41: SuiteCrmAdapter
) -> None:
    (gone,) = v41.write_many([create("Gone meanwhile")])
    assert isinstance(gone, Event) and gone.crm_id
    suitecrm.delete_meeting(gone.crm_id)  # a CRM user deletes it before the batch
    no_start = Write("create", event=Event(title="No start", link_id="link-x"), link_id="link-x")
    results = v41.write_many(
        [
            create("Fine 1"),
            Write("update", event=meeting("Renamed"), item_id=gone.crm_id),
            no_start,
            create("Fine 2", hours=1),
        ]
    )
    assert isinstance(results[0], Event) and isinstance(results[3], Event)
    assert isinstance(results[1], MeetingDeleted)
    assert isinstance(results[2], ProviderError) and "has no start" in str(results[2])
    assert suitecrm.meeting(gone.crm_id)["deleted"] == "1"  # not brought back
    live = sorted(m["name"] for m in suitecrm.live_meetings())
    assert live == ["Fine 1", "Fine 2"]


def test_an_update_of_a_meeting_deleted_between_read_and_save_is_caught_by_the_read_back(
    suitecrm: SuiteCrmEmulator, v41: SuiteCrmAdapter
) -> None:
    (target,) = v41.write_many([create("Target")])
    assert isinstance(target, Event) and target.crm_id
    session = v41._http.session
    assert isinstance(session, HookedSession)

    def delete_first(method: str, url: str, kwargs: dict[str, Any]) -> None:
        if v41_method(kwargs) == "set_entries":
            suitecrm.delete_meeting(str(target.crm_id))
            session.before = None

    session.before = delete_first
    (result,) = v41.write_many([Write("update", event=meeting("Too late"), item_id=target.crm_id)])
    # Trap: set_entries answers success for a deleted meeting and changes nothing.
    assert isinstance(result, MeetingDeleted)


def test_a_delete_of_a_meeting_already_gone_sends_no_write(
    suitecrm: SuiteCrmEmulator, v41: SuiteCrmAdapter
) -> None:
    (gone,) = v41.write_many([create("Gone")])
    assert isinstance(gone, Event) and gone.crm_id
    suitecrm.delete_meeting(gone.crm_id)
    before = methods(suitecrm)
    assert v41.write_many([Write("delete", item_id=gone.crm_id)]) == [None]
    assert not {k for k in requests_during(suitecrm, before) if k in WRITES}


def test_a_batch_whose_answer_is_lost_is_found_by_link_id_and_not_doubled(
    suitecrm: SuiteCrmEmulator, v41: SuiteCrmAdapter
) -> None:
    suitecrm.add_contact("carla@client.test", "Carla", "Contact")
    writes = [create(f"M{i}", "carla@client.test", hours=i) for i in range(5)]
    session = v41._http.session
    assert isinstance(session, HookedSession)
    session.lose = lambda method, url, kwargs: v41_method(kwargs) == "set_entries"
    with pytest.raises(ProviderTransientError):
        v41.write_many(writes)
    assert len(suitecrm.live_meetings()) == 5  # saved, but the answer never came
    for w in writes:
        found = v41.find_by_link_id(str(w.link_id))
        assert found is not None and found.title == w.event.title  # type: ignore[union-attr]
    # Sent again, set_entries saves each onto the meeting holding its outlook_id.
    again = v41.write_many(writes)
    assert all(isinstance(r, Event) for r in again)
    assert len(suitecrm.live_meetings()) == 5
    for r in again:
        assert isinstance(r, Event) and r.crm_id
        assert related_emails(suitecrm, r.crm_id) == {"carla@client.test", "alice@acme.test"}


def test_new_meetings_left_without_their_invitees_are_taken_back(
    suitecrm: SuiteCrmEmulator, v41: SuiteCrmAdapter
) -> None:
    suitecrm.add_contact("carla@client.test", "Carla", "Contact")
    session = v41._http.session
    assert isinstance(session, HookedSession)

    def refuse(method: str, url: str, kwargs: dict[str, Any]) -> None:
        if v41_method(kwargs) == "set_relationships":
            raise requests.ConnectionError("connection reset")

    session.before = refuse
    with pytest.raises(ProviderTransientError):
        v41.write_many([create("A", "carla@client.test"), create("B", "carla@client.test")])
    session.before = None
    # The next run's look-up by link id finds nothing half-made: it creates them whole.
    assert suitecrm.live_meetings() == []
    assert v41.find_by_link_id("link-A") is None


def test_a_first_sync_through_the_engine_is_not_doubled_after_a_lost_batch_answer(
    suitecrm: SuiteCrmEmulator,
) -> None:
    session = HookedSession()
    crm = connect_adapter(suitecrm, API_V4_1, session=session)
    calendar = MemorySide("calendar")
    for i in range(12):
        calendar.user_create(
            Event(
                title=f"Call {i}",
                start=START + timedelta(hours=i),
                end=START + timedelta(hours=i, minutes=30),
                organizer="alice@acme.test",
                timezone="UTC",
            )
        )
    store = InMemoryStore()
    settings = SyncSettings(direction="calendar_to_crm", record_option="all")
    session.lose = lambda method, url, kwargs: v41_method(kwargs) == "set_entries"
    first = run_sync(calendar, crm, store, settings, datetime.now(UTC), user_email=USER)
    assert len(first.errors) == 12 and first.crm.created == 0
    assert all(lk.pending == "crm" for lk in store.links())
    crm = connect_adapter(suitecrm, API_V4_1)
    second = run_sync(calendar, crm, store, settings, datetime.now(UTC), user_email=USER)
    assert second.ok and second.crm.created == 0
    assert sorted(m["name"] for m in suitecrm.live_meetings()) == sorted(
        f"Call {i}" for i in range(12)
    )
    assert all(lk.pending is None and lk.crm_id for lk in store.links())


# -- the emulator's v4_1 batch methods, raw ------------------------------------------------


def call(emu: SuiteCrmEmulator, method: str, *args: Any) -> Any:
    resp = requests.post(
        f"{emu.url}/service/v4_1/rest.php",
        data={
            "method": method,
            "input_type": "JSON",
            "response_type": "JSON",
            "rest_data": json.dumps(list(args)),
        },
        timeout=10,
    )
    assert resp.status_code == 200  # v4_1 answers its errors with 200 too
    return resp.json()


def session_of(emu: SuiteCrmEmulator) -> str:
    md5 = hashlib.md5(PASSWORD.encode()).hexdigest()
    return call(emu, "login", {"user_name": USER, "password": md5}, "test", [])["id"]


def test_set_entries_answers_only_the_ids_in_order(suitecrm: SuiteCrmEmulator) -> None:
    session = session_of(suitecrm)
    body = call(
        suitecrm,
        "set_entries",
        session,
        "Meetings",
        [[{"name": "name", "value": "One"}], {"name": {"name": "name", "value": "Two"}}],
    )
    assert set(body) == {"ids"} and len(body["ids"]) == 2
    assert [suitecrm.meeting(i)["name"] for i in body["ids"]] == ["One", "Two"]


def test_set_entries_saves_a_meeting_onto_the_live_one_with_its_outlook_id(
    suitecrm: SuiteCrmEmulator,
) -> None:
    session = session_of(suitecrm)
    nvl = [{"name": "name", "value": "Once"}, {"name": "outlook_id", "value": "L1"}]
    first = call(suitecrm, "set_entries", session, "Meetings", [nvl])["ids"]
    second = call(suitecrm, "set_entries", session, "Meetings", [nvl])["ids"]
    assert first == second and len(suitecrm.live_meetings()) == 1
    # set_entry (one record) has no such rule: it makes a second meeting.
    call(suitecrm, "set_entry", session, "Meetings", nvl)
    assert len(suitecrm.live_meetings()) == 2


def test_set_entries_and_set_relationships_refuse_a_bad_session(
    suitecrm: SuiteCrmEmulator,
) -> None:
    for method, args in (
        ("set_entries", ["nope", "Meetings", [[{"name": "name", "value": "X"}]]]),
        ("set_relationships", ["nope", ["Meetings"], ["x"], ["contacts"], [["y"]], [], [0]]),
    ):
        body = call(suitecrm, method, *args)
        assert body["number"] == 11, method
    assert suitecrm.live_meetings() == []


def test_set_relationships_counts_triples_and_refuses_empty_lists(
    suitecrm: SuiteCrmEmulator,
) -> None:
    session = session_of(suitecrm)
    contact = suitecrm.add_contact("carla@client.test", "Carla", "Contact")
    lead = suitecrm.add_lead("lee@prospect.test", "Lee", "Lead")
    meeting_id = suitecrm.add_meeting(user_id(suitecrm), name="M")
    body = call(
        suitecrm,
        "set_relationships",
        session,
        ["Meetings", "Meetings", "Meetings"],
        [meeting_id, meeting_id, "no-such-meeting"],
        ["contacts", "leads", "contacts"],
        [[contact], [lead], [contact]],
        [],
        [0, 0, 0],
    )
    assert body == {"created": 2, "failed": 1, "deleted": 0}
    assert related_emails(suitecrm, meeting_id) == {"carla@client.test", "lee@prospect.test"}
    body = call(
        suitecrm,
        "set_relationships",
        session,
        ["Meetings"],
        [meeting_id],
        ["leads"],
        [[lead]],
        [],
        [1],
    )
    assert body == {"created": 0, "failed": 0, "deleted": 1}
    assert related_emails(suitecrm, meeting_id) == {"carla@client.test"}
    refused = call(suitecrm, "set_relationships", session, [], [], [], [], [], [])
    assert refused["number"] == 1001
