"""The Dynamics 365 emulator speaks the Dataverse Web API's shapes, traps included (raw
HTTP here, no connector)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from calsync.sandbox.dynamics import API_PATH, DynamicsEmulator

ALICE = "alice@acme.test"
START = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def dyn() -> Iterator[DynamicsEmulator]:
    with DynamicsEmulator(seed=3) as emu:
        emu.alice = emu.add_user(ALICE, "Alice Admin")  # type: ignore[attr-defined]
        yield emu


def call(
    emu: DynamicsEmulator,
    method: str,
    path: str,
    *,
    token: str | None = None,
    prefer: str | None = None,
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> requests.Response:
    h = {"Accept": "application/json", "OData-Version": "4.0", **(headers or {})}
    if token is not False:
        h["Authorization"] = f"Bearer {token or emu.issue_token(ALICE)}"
    if prefer:
        h["Prefer"] = prefer
    url = path if path.startswith("http") else emu.url + API_PATH + path
    return requests.request(method, url, headers=h, verify=emu.ca_file, timeout=10, **kw)


def test_an_anonymous_call_gets_the_bearer_challenge_in_the_odata_error_shape(
    dyn: DynamicsEmulator,
) -> None:
    resp = call(dyn, "GET", "/WhoAmI", token=False)  # type: ignore[arg-type]

    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    assert set(resp.json()["error"]) == {"code", "message"}


def test_whoami_names_the_signed_in_system_user(dyn: DynamicsEmulator) -> None:
    body = call(dyn, "GET", "/WhoAmI").json()

    assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")
    assert body["UserId"] == dyn.alice  # type: ignore[attr-defined]
    assert {"BusinessUnitId", "OrganizationId"} <= set(body)


def test_listing_pages_with_maxpagesize_and_rows_carry_etags(dyn: DynamicsEmulator) -> None:
    dyn.seed_appointments(5, dyn.alice)  # type: ignore[attr-defined]
    first = call(dyn, "GET", "/appointments?$select=subject", prefer="odata.maxpagesize=2").json()
    second = call(dyn, "GET", first["@odata.nextLink"], prefer="odata.maxpagesize=2").json()

    assert first["@odata.context"].endswith("$metadata#appointments")
    assert len(first["value"]) == 2 and first["value"][0]["@odata.etag"].startswith('W/"')
    assert set(first["value"][0]) == {"@odata.etag", "activityid", "subject"}
    ids = {r["activityid"] for r in first["value"] + second["value"]}
    assert len(ids) == 4
    top = call(dyn, "GET", "/appointments?$select=subject&$top=1").json()
    assert len(top["value"]) == 1 and "@odata.nextLink" not in top


def test_change_tracking_gives_a_delta_link_and_deleted_entities(dyn: DynamicsEmulator) -> None:
    a = dyn.add_appointment(dyn.alice, "A", START)  # type: ignore[attr-defined]
    b = dyn.add_appointment(dyn.alice, "B", START)  # type: ignore[attr-defined]
    full = call(dyn, "GET", "/appointments?$select=subject", prefer="odata.track-changes")
    assert full.headers["Preference-Applied"] == "odata.track-changes"
    delta_link = full.json()["@odata.deltaLink"]
    assert "$deltatoken=" in delta_link

    dyn.edit_appointment(a, subject="A2")
    dyn.delete_appointment(b)
    delta = call(dyn, "GET", delta_link).json()

    assert delta["@odata.context"].endswith("$metadata#appointments/$delta")
    changed, removed = delta["value"]
    assert changed["subject"] == "A2"
    assert removed["@odata.context"].endswith("$metadata#appointments/$deletedEntity")
    assert (removed["id"], removed["reason"]) == (b, "deleted")


def test_change_tracking_off_ignores_the_preference_and_refuses_delta_tokens() -> None:
    with DynamicsEmulator(change_tracking=False) as emu:
        emu.add_user(ALICE)
        resp = call(emu, "GET", "/appointments?$select=subject", prefer="odata.track-changes")
        assert resp.status_code == 200 and "Preference-Applied" not in resp.headers
        assert "@odata.deltaLink" not in resp.json()
        refused = call(emu, "GET", "/appointments?$select=subject&$deltatoken=1001!x")
        assert refused.status_code == 400


def test_an_expired_delta_token_is_refused(dyn: DynamicsEmulator) -> None:
    link = call(dyn, "GET", "/appointments", prefer="odata.track-changes").json()[
        "@odata.deltaLink"
    ]
    dyn.expire_delta_tokens()

    resp = call(dyn, "GET", link)

    assert resp.status_code == 400 and resp.json()["error"]["code"] == "0x80044352"


def test_change_tracking_takes_no_filter(dyn: DynamicsEmulator) -> None:
    resp = call(dyn, "GET", "/appointments?$filter=subject eq 'x'", prefer="odata.track-changes")
    assert resp.status_code == 400


def test_patch_upserts_an_unknown_id_unless_if_match_says_otherwise(dyn: DynamicsEmulator) -> None:
    ghost = "00000000-0000-4000-8000-000000000001"
    guarded = call(
        dyn, "PATCH", f"/appointments({ghost})", json={"subject": "x"}, headers={"If-Match": "*"}
    )
    assert guarded.status_code == 404 and guarded.json()["error"]["code"] == "0x80040217"
    assert ghost not in dyn.tables["appointments"]

    upsert = call(dyn, "PATCH", f"/appointments({ghost})", json={"subject": "x"})
    assert upsert.status_code == 204 and ghost in dyn.tables["appointments"]


def test_a_stale_etag_is_refused_with_412(dyn: DynamicsEmulator) -> None:
    item = dyn.add_appointment(dyn.alice, "A", START)  # type: ignore[attr-defined]
    etag = call(dyn, "GET", f"/appointments({item})").json()["@odata.etag"]
    dyn.edit_appointment(item, subject="changed meanwhile")

    resp = call(
        dyn, "PATCH", f"/appointments({item})", json={"subject": "B"}, headers={"If-Match": etag}
    )

    assert resp.status_code == 412 and resp.json()["error"]["code"] == "0x80060882"


def test_create_deep_inserts_parties_and_refuses_unknown_properties(dyn: DynamicsEmulator) -> None:
    carla = dyn.add_contact("carla@client.test", "Carla", "Client")
    body = {
        "subject": "Demo",
        "scheduledstart": START.isoformat(),
        "scheduledend": (START + timedelta(hours=1)).isoformat(),
        "appointment_activity_parties": [
            {"participationtypemask": 5, "partyid_contact@odata.bind": f"/contacts({carla})"},
            {"participationtypemask": 6, "addressused": "x@nowhere"},
        ],
    }
    resp = call(dyn, "POST", "/appointments", json=body)
    assert resp.status_code == 204
    new_id = resp.headers["OData-EntityId"].split("(")[1].rstrip(")")

    read = call(
        dyn,
        "GET",
        f"/appointments({new_id})?$expand=appointment_activity_parties",
        prefer='odata.include-annotations="*"',
    ).json()
    parties = {
        (
            p["participationtypemask"],
            p.get("_partyid_value@Microsoft.Dynamics.CRM.lookuplogicalname"),
        )
        for p in read["appointment_activity_parties"]
    }
    assert parties == {(7, "systemuser"), (5, "contact"), (6, None)}

    bad = call(dyn, "POST", "/appointments", json={"subject": "x", "nosuchfield": 1})
    assert bad.status_code == 400 and "nosuchfield" in bad.json()["error"]["message"]


def test_people_are_found_by_email_with_the_in_function(dyn: DynamicsEmulator) -> None:
    dyn.add_contact("carla@client.test")
    dyn.add_contact("other@client.test")
    query = (
        "/contacts?$select=emailaddress1&$filter=Microsoft.Dynamics.CRM.In("
        "PropertyName='emailaddress1',PropertyValues=['CARLA@client.test','nobody@x'])"
    )

    rows = call(dyn, "GET", query).json()["value"]

    assert [r["emailaddress1"] for r in rows] == ["carla@client.test"]


def test_a_user_without_the_activity_privilege_gets_the_real_403(dyn: DynamicsEmulator) -> None:
    dyn.add_user("nobody@acme.test", privileges=())
    token = dyn.issue_token("nobody@acme.test")

    resp = call(dyn, "GET", "/appointments", token=token)

    assert resp.status_code == 403
    err = resp.json()["error"]
    assert err["code"] == "0x80040220" and "missing prvReadActivity privilege" in err["message"]


@pytest.mark.parametrize("code", ["0x80072322", "0x80072321", "0x80072326"])
def test_service_protection_limits_answer_429_with_retry_after(
    dyn: DynamicsEmulator, code: str
) -> None:
    dyn.throttle(1, code, retry_after=12)

    resp = call(dyn, "GET", "/WhoAmI")

    assert resp.status_code == 429 and resp.headers["Retry-After"] == "12"
    assert resp.json()["error"]["code"] == code
    assert call(dyn, "GET", "/WhoAmI").status_code == 200  # only as many as asked


def test_the_date_header_and_modifiedon_follow_the_frozen_clock(dyn: DynamicsEmulator) -> None:
    at = dyn.freeze_clock(1_900_000_000)
    item = dyn.add_appointment(dyn.alice, "A", START)  # type: ignore[attr-defined]

    resp = call(dyn, "GET", f"/appointments({item})?$select=modifiedon")

    assert resp.json()["modifiedon"] == datetime.fromtimestamp(at, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert "2030" in resp.headers["Date"]


def test_ten_thousand_appointments_are_seeded_in_a_couple_of_seconds(
    dyn: DynamicsEmulator,
) -> None:
    began = time.monotonic()
    ids = dyn.seed_appointments(10_000, dyn.alice)  # type: ignore[attr-defined]
    elapsed = time.monotonic() - began

    assert len(ids) == 10_000 and elapsed < 2.0
    page = call(dyn, "GET", "/appointments?$select=subject", prefer="odata.maxpagesize=5000")
    assert len(page.json()["value"]) == 5000 and "@odata.nextLink" in page.json()


def test_writes_through_the_web_api_send_no_invitations(dyn: DynamicsEmulator) -> None:
    body = {
        "subject": "Quiet",
        "scheduledstart": START.isoformat(),
        "scheduledend": (START + timedelta(hours=1)).isoformat(),
        "appointment_activity_parties": [{"participationtypemask": 5, "addressused": "x@y.test"}],
    }
    assert call(dyn, "POST", "/appointments", json=body).status_code == 204
    assert len(dyn.invitations) == 0
