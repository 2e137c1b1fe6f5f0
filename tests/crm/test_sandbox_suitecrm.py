"""The SuiteCRM emulator behaves like SuiteCRM 7.14.6, traps included (raw HTTP here)."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
import requests

from calsync.sandbox.suitecrm import API_V4_1, API_V8, SuiteCrmEmulator

from .conftest import CLIENT_ID, CLIENT_SECRET, PASSWORD, USER, make_emulator


def v41(emu: SuiteCrmEmulator, method: str, *args: Any) -> Any:
    resp = requests.post(
        f"{emu.url}{emu.prefix}/service/v4_1/rest.php",
        data={
            "method": method,
            "input_type": "JSON",
            "response_type": "JSON",
            "rest_data": json.dumps(list(args)),
        },
        timeout=10,
    )
    assert resp.status_code == 200  # v4_1 answers even its errors with 200
    return resp.json()


def v41_session(emu: SuiteCrmEmulator) -> str:
    md5 = hashlib.md5(PASSWORD.encode()).hexdigest()
    return v41(emu, "login", {"user_name": USER, "password": md5}, "test", [])["id"]


def v8_token(emu: SuiteCrmEmulator) -> dict[str, Any]:
    resp = requests.post(
        f"{emu.url}/Api/access_token",
        data={
            "grant_type": "password",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "username": USER,
            "password": PASSWORD,
        },
        timeout=10,
    )
    assert resp.status_code == 200
    return resp.json()


def v8(emu: SuiteCrmEmulator, method: str, path: str, token: str, **kw: Any) -> requests.Response:
    return requests.request(
        method,
        f"{emu.url}/Api/V8{path}",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/vnd.api+json"},
        timeout=10,
        **kw,
    )


def alice(emu: SuiteCrmEmulator) -> str:
    return next(r["id"] for r in emu.records["Users"].values() if r["user_name"] == USER)


# -- REST v4_1 ------------------------------------------------------------------------------


def test_v41_errors_are_http_200_with_name_number_and_description(
    suitecrm: SuiteCrmEmulator,
) -> None:
    body = v41(suitecrm, "get_entry", "no-such-session", "Meetings", "x", [], [], False)

    assert body == {
        "name": "Invalid Session ID",
        "number": 11,
        "description": "The session ID is invalid",
    }


def test_v41_returns_every_value_as_a_string(suitecrm: SuiteCrmEmulator) -> None:
    meeting_id = suitecrm.add_meeting(alice(suitecrm), name="Call")
    session = v41_session(suitecrm)

    body = v41(suitecrm, "get_entry", session, "Meetings", meeting_id, [], [], False)

    values = body["entry_list"][0]["name_value_list"]
    assert all(isinstance(v["value"], str) for v in values.values())
    assert values["duration_hours"]["value"] == "1"


def test_v41_listing_with_deleted_returns_live_and_deleted_records(
    suitecrm: SuiteCrmEmulator,
) -> None:
    live = suitecrm.add_meeting(alice(suitecrm), name="Live")
    gone = suitecrm.add_meeting(alice(suitecrm), name="Gone")
    suitecrm.delete_meeting(gone)
    session = v41_session(suitecrm)

    both = v41(suitecrm, "get_entry_list", session, "Meetings", "", "", 0, ["deleted"], [], 10, 1)
    only_live = v41(suitecrm, "get_entry_list", session, "Meetings", "", "", 0, [], [], 10, 0)

    flags = {e["id"]: e["name_value_list"]["deleted"]["value"] for e in both["entry_list"]}
    assert flags == {live: "0", gone: "1"}
    assert [e["id"] for e in only_live["entry_list"]] == [live]


def test_v41_set_entry_with_an_unknown_id_creates_a_record_with_that_id(
    suitecrm: SuiteCrmEmulator,
) -> None:
    session = v41_session(suitecrm)

    body = v41(
        suitecrm,
        "set_entry",
        session,
        "Meetings",
        [{"name": "id", "value": "chosen-id"}, {"name": "name", "value": "Surprise"}],
    )

    assert body["id"] == "chosen-id"
    assert suitecrm.meeting("chosen-id")["name"] == "Surprise"


def test_v41_set_entry_on_a_deleted_record_reports_success_and_changes_nothing(
    suitecrm: SuiteCrmEmulator,
) -> None:
    meeting_id = suitecrm.add_meeting(alice(suitecrm), name="Before")
    suitecrm.delete_meeting(meeting_id)
    before = suitecrm.meeting(meeting_id)
    session = v41_session(suitecrm)

    body = v41(
        suitecrm,
        "set_entry",
        session,
        "Meetings",
        [{"name": "id", "value": meeting_id}, {"name": "name", "value": "After"}],
    )

    assert body["id"] == meeting_id
    assert suitecrm.meeting(meeting_id) == before


def test_v41_refuses_sql_it_does_not_know_in_the_error_shape(suitecrm: SuiteCrmEmulator) -> None:
    session = v41_session(suitecrm)

    body = v41(
        suitecrm,
        "get_entry_list",
        session,
        "Meetings",
        "1=1; DROP TABLE users",
        "",
        0,
        [],
        [],
        10,
        0,
    )

    assert body["number"] == 1000 and "DROP TABLE" in body["description"]


def test_v41_compares_the_query_in_utc_strings(suitecrm: SuiteCrmEmulator) -> None:
    suitecrm.freeze_clock(1_800_000_000)  # 2027-01-15 08:00:00 UTC
    early = suitecrm.add_meeting(alice(suitecrm), name="Early")
    suitecrm.advance_clock(1)
    late = suitecrm.add_meeting(alice(suitecrm), name="Late")
    session = v41_session(suitecrm)

    body = v41(
        suitecrm,
        "get_entry_list",
        session,
        "Meetings",
        "meetings.date_modified > '2027-01-15 08:00:00'",
        "",
        0,
        [],
        [],
        10,
        0,
    )

    assert [e["id"] for e in body["entry_list"]] == [late]
    assert early != late


def test_v41_server_info_gives_the_server_clock(suitecrm: SuiteCrmEmulator) -> None:
    suitecrm.freeze_clock(1_800_000_000)

    assert v41(suitecrm, "get_server_info")["gmt_time"] == "2027-01-15 08:00:00"


def test_v41_refuses_meetings_to_a_user_without_rights(suitecrm: SuiteCrmEmulator) -> None:
    suitecrm.add_user("bob", "pw", "bob@acme.test", meetings_access=False)
    session = v41(
        suitecrm, "login", {"user_name": "bob", "password": hashlib.md5(b"pw").hexdigest()}, "t", []
    )["id"]

    body = v41(suitecrm, "get_entry_list", session, "Meetings", "", "", 0, [], [], 10, 0)

    assert (body["name"], body["number"]) == ("Access Denied", 40)


def test_v41_delete_soft_deletes_the_meeting_s_relations(suitecrm: SuiteCrmEmulator) -> None:
    contact = suitecrm.add_contact("c@client.test")
    meeting_id = suitecrm.add_meeting(alice(suitecrm))
    suitecrm.relate(meeting_id, "Contacts", contact)
    session = v41_session(suitecrm)

    v41(
        suitecrm,
        "set_entry",
        session,
        "Meetings",
        [{"name": "id", "value": meeting_id}, {"name": "deleted", "value": "1"}],
    )

    assert suitecrm.meeting(meeting_id)["deleted"] == "1"
    assert [r["deleted"] for r in suitecrm.related(meeting_id, include_deleted=True)] == ["1"]


# -- V8 -------------------------------------------------------------------------------------


def test_v8_password_grant_gives_an_hour_long_token_and_a_refresh_token(
    suitecrm: SuiteCrmEmulator,
) -> None:
    token = v8_token(suitecrm)

    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
    assert token["refresh_token"]


def test_v8_token_expires_on_the_emulator_clock(suitecrm: SuiteCrmEmulator) -> None:
    token = v8_token(suitecrm)["access_token"]
    assert v8(suitecrm, "GET", "/module/Meetings", token).status_code == 200

    suitecrm.advance_clock(3601)
    resp = v8(suitecrm, "GET", "/module/Meetings", token)

    assert resp.status_code == 401 and resp.json()["error"] == "access_denied"


def test_v8_saves_a_date_in_the_wrong_format_as_empty_and_still_answers_201(
    suitecrm: SuiteCrmEmulator,
) -> None:
    token = v8_token(suitecrm)["access_token"]

    resp = v8(
        suitecrm,
        "POST",
        "/module",
        token,
        json={
            "data": {
                "type": "Meetings",
                "attributes": {
                    "name": "ISO",
                    "date_start": "2026-12-01T09:00:00Z",
                    "date_end": "2026-12-01 10:00:00",
                },
            }
        },
    )

    assert resp.status_code == 201
    row = suitecrm.meeting(resp.json()["data"]["id"])
    assert row["date_start"] == "" and row["date_end"] == "2026-12-01 10:00:00"


def test_v8_prints_dates_cut_to_the_minute_but_filters_to_the_second(
    suitecrm: SuiteCrmEmulator,
) -> None:
    suitecrm.freeze_clock(1_800_000_030)  # 08:00:30
    meeting_id = suitecrm.add_meeting(alice(suitecrm), date_start="2026-12-01 09:15:45")
    token = v8_token(suitecrm)["access_token"]

    item = v8(suitecrm, "GET", f"/module/Meetings/{meeting_id}", token).json()["data"]
    at_29 = v8(
        suitecrm,
        "GET",
        "/module/Meetings",
        token,
        params={"filter[date_modified][gt]": "2027-01-15 08:00:29"},
    ).json()
    at_30 = v8(
        suitecrm,
        "GET",
        "/module/Meetings",
        token,
        params={"filter[date_modified][gt]": "2027-01-15 08:00:30"},
    ).json()

    assert item["attributes"]["date_start"] == "2026-12-01T09:15:00+00:00"
    assert item["attributes"]["date_modified"] == "2027-01-15T08:00:00+00:00"
    assert [i["id"] for i in at_29["data"]] == [meeting_id] and at_30["data"] == []


def test_v8_never_shows_deleted_records(suitecrm: SuiteCrmEmulator) -> None:
    meeting_id = suitecrm.add_meeting(alice(suitecrm))
    suitecrm.delete_meeting(meeting_id)
    token = v8_token(suitecrm)["access_token"]

    assert v8(suitecrm, "GET", "/module/Meetings", token).json()["data"] == []
    assert v8(suitecrm, "GET", f"/module/Meetings/{meeting_id}", token).status_code == 404


def test_v8_pages_with_size_number_and_a_next_link(suitecrm: SuiteCrmEmulator) -> None:
    suitecrm.seed_meetings(5, alice(suitecrm))
    token = v8_token(suitecrm)["access_token"]

    first = v8(
        suitecrm, "GET", "/module/Meetings", token, params={"page[size]": "2", "page[number]": "1"}
    ).json()
    last = requests.get(
        first["links"]["last"], headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()

    assert first["meta"]["total-pages"] == 3 and len(first["data"]) == 2
    assert "page%5Bnumber%5D=2" in first["links"]["next"]
    assert len(last["data"]) == 1 and last["links"]["next"] is None


def test_v8_refuses_meetings_to_a_user_without_rights(suitecrm: SuiteCrmEmulator) -> None:
    suitecrm.add_user("bob", "pw", "bob@acme.test", meetings_access=False)
    token = requests.post(
        f"{suitecrm.url}/Api/access_token",
        data={
            "grant_type": "password",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "username": "bob",
            "password": "pw",
        },
        timeout=10,
    ).json()["access_token"]

    resp = v8(suitecrm, "GET", "/module/Meetings", token)

    assert resp.status_code == 403 and resp.json()["errors"]["status"] == 403


def test_v8_filters_people_by_email1(suitecrm: SuiteCrmEmulator) -> None:
    contact = suitecrm.add_contact("Carla@Client.test")
    token = v8_token(suitecrm)["access_token"]

    found = v8(
        suitecrm,
        "GET",
        "/module/Contacts",
        token,
        params={"filter[email1][eq]": "carla@client.test"},
    ).json()

    assert [i["id"] for i in found["data"]] == [contact]


# -- knobs ----------------------------------------------------------------------------------


def test_an_instance_offers_only_the_apis_it_is_configured_with() -> None:
    emu = make_emulator(apis=(API_V8,))
    try:
        resp = requests.post(f"{emu.url}/service/v4_1/rest.php", data={}, timeout=10)
        assert resp.status_code == 404
    finally:
        emu.stop()


def test_suitecrm_8_serves_both_apis_under_legacy() -> None:
    emu = make_emulator(legacy_prefix=True)
    try:
        assert v41(emu, "get_server_info")["flavor"] == "CE"
        assert requests.post(f"{emu.url}/Api/access_token", timeout=10).status_code == 404
    finally:
        emu.stop()


def test_requests_are_counted_per_v41_method(suitecrm: SuiteCrmEmulator) -> None:
    v41(suitecrm, "get_server_info")
    v41(suitecrm, "get_server_info")

    assert suitecrm.counter.get("v4_1 get_server_info") == 2
    assert suitecrm.counter.get("POST /service/v4_1/rest.php") == 2


def test_fault_injection_applies_to_both_apis(suitecrm: SuiteCrmEmulator) -> None:
    suitecrm.set_faults(rate_5xx=1.0)

    assert requests.post(f"{suitecrm.url}/service/v4_1/rest.php", timeout=10).status_code == 503
    assert requests.post(f"{suitecrm.url}/Api/access_token", timeout=10).status_code == 503


def test_ten_thousand_meetings_are_seeded_in_a_few_seconds(suitecrm: SuiteCrmEmulator) -> None:
    started = time.monotonic()

    ids = suitecrm.seed_meetings(10_000, alice(suitecrm))

    assert len(ids) == 10_000 and len(set(ids)) == 10_000
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("api", [API_V8, API_V4_1])
def test_the_instance_answers_the_api_it_offers(api: str) -> None:
    emu = make_emulator(apis=(api,))
    try:
        if api == API_V4_1:
            assert "gmt_time" in v41(emu, "get_server_info")
        else:
            assert v8_token(emu)["access_token"]
    finally:
        emu.stop()


def test_the_demo_seeds_users_clients_and_meetings_over_http(suitecrm: SuiteCrmEmulator) -> None:
    base = f"{suitecrm.url}/_sandbox/suitecrm"

    bob = requests.post(
        f"{base}/users",
        json={"user_name": "bob", "password": "pw", "email": "bob@acme.test"},
        timeout=10,
    ).json()["id"]
    requests.post(f"{base}/clients", json={"client_id": "demo", "client_secret": "s"}, timeout=10)
    seeded = requests.post(
        f"{base}/meetings", json={"assigned_user_id": bob, "count": 50}, timeout=10
    ).json()
    requests.post(f"{base}/expire_sessions", timeout=10)

    assert seeded == {"count": 50}
    assert suitecrm.clients["demo"] == "s"
    assert sum(r["assigned_user_id"] == bob for r in suitecrm.live_meetings()) == 50


def test_text_is_stored_and_returned_html_encoded(suitecrm: SuiteCrmEmulator) -> None:
    token = v8_token(suitecrm)["access_token"]

    resp = v8(
        suitecrm,
        "POST",
        "/module",
        token,
        json={
            "data": {
                "type": "Meetings",
                "attributes": {
                    "name": "Tom's <Q&A>",
                    "date_start": "2026-12-01 09:00:00",
                },
            }
        },
    )

    assert resp.json()["data"]["attributes"]["name"] == "Tom&#039;s &lt;Q&amp;A&gt;"
