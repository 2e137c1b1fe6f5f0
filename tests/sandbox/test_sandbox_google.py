"""Behaviour and fidelity tests of the Google Calendar emulator, over real HTTP."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from calsync.sandbox.google import GoogleEmulator
from calsync.sandbox.receiver import NotificationReceiver
from calsync.sandbox.seed import seed_mailbox

from .sandbox_discovery import assert_valid, problems

ALICE = "alice@example.com"


@pytest.fixture
def google() -> Iterator[GoogleEmulator]:
    with GoogleEmulator(seed=99) as emu:
        emu.add_account(ALICE, time_zone="Europe/Berlin")
        yield emu


@pytest.fixture
def headers(google: GoogleEmulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {google.issue_token(ALICE)}"}


def _events_url(google: GoogleEmulator) -> str:
    return f"{google.url}/calendar/v3/calendars/primary/events"


def _timed(summary: str = "Demo", day: int = 6, **extra: Any) -> dict:
    return {
        "summary": summary,
        "start": {"dateTime": f"2025-01-{day:02d}T10:00:00+01:00"},
        "end": {"dateTime": f"2025-01-{day:02d}T11:00:00+01:00"},
        **extra,
    }


def _weekly(**extra: Any) -> dict:
    return {
        "summary": "Standup",
        "start": {"dateTime": "2025-01-06T09:00:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2025-01-06T09:15:00", "timeZone": "Europe/Berlin"},
        "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=6"],
        **extra,
    }


def _insert(google: GoogleEmulator, headers: dict, body: dict, **params: str) -> dict:
    resp = requests.post(_events_url(google), json=body, headers=headers, params=params, timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _sync(url: str, headers: dict, params: dict) -> tuple[list[dict], str, int]:
    items: list[dict] = []
    pages = 0
    params = dict(params)
    while True:
        resp = requests.get(url, headers=headers, params=params, timeout=30)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert_valid(body, "Events")
        pages += 1
        items += body["items"]
        if "nextPageToken" in body:
            assert "nextSyncToken" not in body
            params = {"pageToken": body["nextPageToken"]}
            continue
        return items, body["nextSyncToken"], pages


def test_every_event_shape_matches_discovery_schema(google: GoogleEmulator, headers):
    single = _insert(
        google,
        headers,
        _timed(
            attendees=[
                {"email": "bob@fabrikam.example", "displayName": "Bob"},
                {"email": "eve@example.com", "optional": True},
            ],
            extendedProperties={"private": {"crmId": "42"}, "shared": {"k": "v"}},
            location="Room 1",
            description="<b>Agenda</b>",
            colorId="5",
            transparency="opaque",
            visibility="private",
        ),
    )
    allday = _insert(
        google,
        headers,
        {"summary": "Offsite", "start": {"date": "2025-01-10"}, "end": {"date": "2025-01-11"}},
    )
    master = _insert(google, headers, _weekly())
    inst_url = f"{_events_url(google)}/{master['id']}/instances"
    inst = requests.get(inst_url, headers=headers, timeout=5).json()
    assert_valid(inst, "Events")
    exc = requests.patch(
        f"{_events_url(google)}/{inst['items'][1]['id']}",
        headers=headers,
        json={"summary": "Moved standup"},
        timeout=5,
    ).json()
    requests.delete(f"{_events_url(google)}/{inst['items'][2]['id']}", headers=headers, timeout=5)
    items, token, _ = _sync(_events_url(google), headers, {"showDeleted": "true"})
    expanded, _, _ = _sync(_events_url(google), headers, {"singleEvents": "true"})
    requests.delete(f"{_events_url(google)}/{single['id']}", headers=headers, timeout=5)
    changes, _, _ = _sync(_events_url(google), headers, {"syncToken": token})
    got = requests.get(f"{_events_url(google)}/{single['id']}", headers=headers, timeout=5)
    cal_list = requests.get(
        f"{google.url}/calendar/v3/users/me/calendarList", headers=headers, timeout=5
    ).json()
    assert_valid(cal_list, "CalendarList")
    shapes = [single, allday, master, exc, got.json(), *inst["items"], *items, *expanded, *changes]
    assert any(s.get("recurringEventId") for s in shapes)
    assert any(s["status"] == "cancelled" for s in shapes)
    for shape in shapes:
        assert_valid(shape, "Event")
    # The validator itself must catch invented fields.
    assert problems({**single, "colour": "red"}, "Event") == [
        "Event.colour: not in the discovery schema"
    ]


def test_full_sync_paging_and_incremental_sync(google: GoogleEmulator, headers):
    ids = [_insert(google, headers, _timed(f"E{i}", day=1 + i))["id"] for i in range(7)]
    master = _insert(google, headers, _weekly())
    items, token, pages = _sync(_events_url(google), headers, {"maxResults": "3"})
    assert pages == 3 and len(items) == 8  # series are one item when singleEvents=false
    expanded, _, _ = _sync(_events_url(google), headers, {"singleEvents": "true"})
    assert len(expanded) == 7 + 6
    assert all(
        e.get("recurringEventId") == master["id"]
        for e in expanded
        if "recurrence" not in e and e["id"].startswith(master["id"])
    )

    nothing, token, _ = _sync(_events_url(google), headers, {"syncToken": token})
    assert nothing == []
    requests.patch(
        f"{_events_url(google)}/{ids[0]}", json={"summary": "Changed"}, headers=headers, timeout=5
    )
    requests.delete(f"{_events_url(google)}/{ids[1]}", headers=headers, timeout=5)
    changes, _, _ = _sync(_events_url(google), headers, {"syncToken": token})
    by_id = {c["id"]: c for c in changes}
    assert by_id[ids[0]]["summary"] == "Changed"
    assert by_id[ids[1]]["status"] == "cancelled"
    visible, _, _ = _sync(_events_url(google), headers, {})
    assert ids[1] not in {v["id"] for v in visible}  # showDeleted defaults to false


def test_sync_token_rules_and_410(google: GoogleEmulator, headers):
    _insert(google, headers, _timed())
    _, token, _ = _sync(_events_url(google), headers, {})
    bad = requests.get(
        _events_url(google),
        headers=headers,
        timeout=5,
        params={"syncToken": token, "timeMin": "2025-01-01T00:00:00Z"},
    )
    assert bad.status_code == 400
    google.expire_sync_tokens()
    gone = requests.get(
        _events_url(google), headers=headers, params={"syncToken": token}, timeout=5
    )
    assert gone.status_code == 410
    assert gone.json()["error"]["errors"][0]["reason"] == "fullSyncRequired"
    order = requests.get(
        _events_url(google), headers=headers, params={"orderBy": "startTime"}, timeout=5
    )
    assert order.status_code == 400  # startTime ordering needs singleEvents=true


def test_max_results_default_and_cap(google: GoogleEmulator, headers):
    seed_mailbox(google, ALICE, 2600, seed=5, start=dt.date(2025, 1, 1), days=30, series_ratio=0)
    body = requests.get(_events_url(google), headers=headers, timeout=30).json()
    assert len(body["items"]) == 250 and "nextPageToken" in body
    body = requests.get(
        _events_url(google), headers=headers, params={"maxResults": "9999"}, timeout=30
    ).json()
    assert len(body["items"]) == 2500


def test_client_ids_are_validated_and_unique(google: GoogleEmulator, headers):
    ok = _insert(google, headers, _timed(id="calsunc0123456789abcdef"))
    assert ok["id"] == "calsunc0123456789abcdef"
    dup = requests.post(
        _events_url(google), json=_timed(id="calsunc0123456789abcdef"), headers=headers, timeout=5
    )
    assert dup.status_code == 409
    assert dup.json()["error"]["errors"][0]["reason"] == "duplicate"
    for bad in ("abc", "UPPERCASE123", "has-dash-123", "wxyz12345"):
        resp = requests.post(_events_url(google), json=_timed(id=bad), headers=headers, timeout=5)
        assert resp.status_code == 400, bad


def test_etag_if_match_and_if_none_match(google: GoogleEmulator, headers):
    ev = _insert(google, headers, _timed())
    url = f"{_events_url(google)}/{ev['id']}"
    ok = requests.patch(
        url, json={"summary": "v2"}, timeout=5, headers={**headers, "If-Match": ev["etag"]}
    )
    assert ok.status_code == 200 and ok.json()["etag"] != ev["etag"]
    stale = requests.put(
        url, json=_timed("v3"), timeout=5, headers={**headers, "If-Match": ev["etag"]}
    )
    assert stale.status_code == 412
    assert stale.json()["error"]["errors"][0]["reason"] == "conditionNotMet"
    cached = requests.get(url, headers={**headers, "If-None-Match": ok.json()["etag"]}, timeout=5)
    assert cached.status_code == 304


def test_patch_merges_and_update_replaces(google: GoogleEmulator, headers):
    ev = _insert(
        google, headers, _timed(description="keep me", extendedProperties={"private": {"a": "1"}})
    )
    url = f"{_events_url(google)}/{ev['id']}"
    patched = requests.patch(
        url, headers=headers, timeout=5, json={"extendedProperties": {"private": {"b": "2"}}}
    ).json()
    assert patched["description"] == "keep me"
    assert patched["extendedProperties"]["private"] == {"a": "1", "b": "2"}
    replaced = requests.put(url, json=_timed("Replaced"), headers=headers, timeout=5).json()
    assert "description" not in replaced and "extendedProperties" not in replaced
    unknown = requests.patch(url, json={"colour": "red"}, headers=headers, timeout=5)
    assert unknown.status_code == 400


def test_send_updates_drives_invitation_log(google: GoogleEmulator, headers):
    guests = [{"email": "bob@fabrikam.example"}, {"email": "carol@example.com"}]
    quiet = _insert(google, headers, _timed(attendees=guests))  # default: none
    assert len(google.invitations) == 0
    _insert(google, headers, _timed(attendees=guests), sendUpdates="externalOnly")
    assert [i.recipient for i in google.invitations.all()] == ["bob@fabrikam.example"]
    google.invitations.clear()
    loud = _insert(google, headers, _timed(attendees=guests), sendUpdates="all")
    url = f"{_events_url(google)}/{loud['id']}"
    requests.patch(
        url,
        params={"sendUpdates": "all"},
        headers=headers,
        timeout=5,
        json={
            "start": {"dateTime": "2025-01-07T10:00:00+01:00"},
            "end": {"dateTime": "2025-01-07T11:00:00+01:00"},
        },
    )
    requests.delete(url, params={"sendUpdates": "all"}, headers=headers, timeout=5)
    assert [(i.recipient, i.reason) for i in google.invitations.for_event(loud["id"])] == [
        ("bob@fabrikam.example", "created"),
        ("carol@example.com", "created"),
        ("bob@fabrikam.example", "updated"),
        ("carol@example.com", "updated"),
        ("bob@fabrikam.example", "cancelled"),
        ("carol@example.com", "cancelled"),
    ]
    requests.delete(
        f"{_events_url(google)}/{quiet['id']}",
        params={"sendUpdates": "none"},
        headers=headers,
        timeout=5,
    )
    assert google.invitations.for_event(quiet["id"]) == []
    again = requests.delete(url, headers=headers, timeout=5)
    assert again.status_code == 410


def test_private_extended_property_filter(google: GoogleEmulator, headers):
    a = _insert(google, headers, _timed(extendedProperties={"private": {"crmId": "1"}}))
    _insert(google, headers, _timed(extendedProperties={"private": {"crmId": "2"}}))
    _insert(google, headers, _timed(extendedProperties={"shared": {"crmId": "1"}}))
    resp = requests.get(
        _events_url(google),
        headers=headers,
        timeout=5,
        params={"privateExtendedProperty": "crmId=1"},
    ).json()
    assert [i["id"] for i in resp["items"]] == [a["id"]]


def test_recurring_instances_exceptions_and_exdate(google: GoogleEmulator, headers):
    master = _insert(
        google,
        headers,
        _weekly(
            recurrence=[
                "RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=6",
                "EXDATE;TZID=Europe/Berlin:20250108T090000",
            ]
        ),
    )
    url = f"{_events_url(google)}/{master['id']}/instances"
    inst = requests.get(url, headers=headers, timeout=5).json()["items"]
    assert [i["start"]["dateTime"] for i in inst] == [
        "2025-01-06T09:00:00+01:00",
        "2025-01-13T09:00:00+01:00",
        "2025-01-15T09:00:00+01:00",
        "2025-01-20T09:00:00+01:00",
        "2025-01-22T09:00:00+01:00",
    ]
    assert inst[0]["id"] == f"{master['id']}_20250106T080000Z"
    assert inst[0]["originalStartTime"] == inst[0]["start"]
    moved = requests.patch(
        f"{_events_url(google)}/{inst[1]['id']}",
        headers=headers,
        timeout=5,
        json={
            "start": {"dateTime": "2025-01-13T15:00:00+01:00"},
            "end": {"dateTime": "2025-01-13T15:15:00+01:00"},
        },
    )
    assert moved.json()["recurringEventId"] == master["id"]
    assert moved.json()["originalStartTime"]["dateTime"] == "2025-01-13T09:00:00+01:00"
    items, _, _ = _sync(_events_url(google), headers, {})
    assert {i["id"] for i in items} == {master["id"], inst[1]["id"]}


def test_push_channels(google: GoogleEmulator, headers):
    with NotificationReceiver() as rec:
        watch = requests.post(
            f"{_events_url(google)}/watch",
            headers=headers,
            timeout=5,
            json={
                "id": "chan-1",
                "type": "web_hook",
                "address": rec.hook_url("google"),
                "token": "tok-1",
            },
        )
        assert watch.status_code == 200
        assert_valid(watch.json(), "Channel")
        _insert(google, headers, _timed())
        got = rec.wait_for(2)
        states = [g["headers"]["X-Goog-Resource-State"] for g in got]
        assert states == ["sync", "exists"]
        assert [g["headers"]["X-Goog-Message-Number"] for g in got] == ["1", "2"]
        assert all(g["headers"]["X-Goog-Channel-Token"] == "tok-1" for g in got)
        assert got[0]["headers"]["X-Goog-Channel-ID"] == "chan-1"
        dup = requests.post(
            f"{_events_url(google)}/watch",
            headers=headers,
            timeout=5,
            json={"id": "chan-1", "type": "web_hook", "address": rec.hook_url("google")},
        )
        assert dup.status_code == 400
        stop = requests.post(
            f"{google.url}/calendar/v3/channels/stop",
            headers=headers,
            timeout=5,
            json={"id": "chan-1", "resourceId": watch.json()["resourceId"]},
        )
        assert stop.status_code == 204
        _insert(google, headers, _timed())
        google.wait_for_notifications()
        assert len(rec.received) == 2


def test_rate_limit_errors_in_google_shape(google: GoogleEmulator, headers):
    google.set_faults(rate_429=1.0)
    resp = requests.get(_events_url(google), headers=headers, timeout=5)
    assert resp.status_code == 403
    err = resp.json()["error"]
    assert err["code"] == 403
    assert err["errors"][0] == {
        "domain": "usageLimits",
        "reason": "rateLimitExceeded",
        "message": "Rate Limit Exceeded",
    }
    google.throttle_status = 429
    assert requests.get(_events_url(google), headers=headers, timeout=5).status_code == 429
    google.reset_knobs()
    assert requests.get(_events_url(google), headers=headers, timeout=5).status_code == 200
    assert google.counter.get("GET /calendar/v3/calendars/<calendar_id>/events") == 3


def test_token_expiry_and_oauth_flow(google: GoogleEmulator, headers):
    google.advance_clock(3600)
    resp = requests.get(_events_url(google), headers=headers, timeout=5)
    assert resp.status_code == 401
    assert resp.json()["error"]["errors"][0]["reason"] == "authError"
    verifier = "x" * 64
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    )
    auth = requests.get(
        f"{google.url}/o/oauth2/v2/auth",
        allow_redirects=False,
        timeout=5,
        params={
            "client_id": "cid",
            "redirect_uri": "http://localhost/cb",
            "response_type": "code",
            "access_type": "offline",
            "scope": "openid https://www.googleapis.com/auth/calendar",
            "login_hint": ALICE,
            "state": "st",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    query = urllib.parse.parse_qs(urllib.parse.urlparse(auth.headers["Location"]).query)
    tok = requests.post(
        f"{google.url}/token",
        timeout=5,
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "client_id": "cid",
            "client_secret": "s",
            "redirect_uri": "http://localhost/cb",
            "code_verifier": verifier,
        },
    ).json()
    assert tok["refresh_token"] and tok["id_token"]
    fresh = requests.post(
        f"{google.url}/token",
        timeout=5,
        data={
            "grant_type": "refresh_token",
            "refresh_token": tok["refresh_token"],
            "client_id": "cid",
            "client_secret": "s",
        },
    ).json()
    ok = requests.get(
        _events_url(google), timeout=5, headers={"Authorization": f"Bearer {fresh['access_token']}"}
    )
    assert ok.status_code == 200


def test_seed_10k_google_events(google: GoogleEmulator, headers):
    started = time.perf_counter()
    ids = seed_mailbox(google, ALICE, 10_000, seed=11)
    assert time.perf_counter() - started < 5
    assert len(set(ids)) == 10_000
    events = google.events(ALICE)
    assert sum(1 for e in events if "recurrence" in e) > 100
    assert sum(1 for e in events if "date" in e["start"]) > 100
    assert len(google.invitations) == 0
    for event in events[:200]:
        assert_valid(event, "Event")


def test_cancelled_instances_and_deleted_series_in_sync(google: GoogleEmulator, headers):
    master = _insert(google, headers, _weekly())
    inst = requests.get(
        f"{_events_url(google)}/{master['id']}/instances", headers=headers, timeout=5
    ).json()["items"]
    requests.delete(f"{_events_url(google)}/{inst[0]['id']}", headers=headers, timeout=5)
    # showDeleted=false still lists cancelled instances of a live series (singleEvents=false).
    listed, _, _ = _sync(_events_url(google), headers, {})
    cancelled = [i for i in listed if i["status"] == "cancelled"]
    assert [c["id"] for c in cancelled] == [inst[0]["id"]]
    assert cancelled[0]["recurringEventId"] == master["id"]
    _, token, _ = _sync(_events_url(google), headers, {"singleEvents": "true"})
    bad = requests.get(
        _events_url(google),
        headers=headers,
        timeout=5,
        params={"syncToken": token, "showDeleted": "false"},
    )
    assert bad.status_code == 400
    requests.delete(f"{_events_url(google)}/{master['id']}", headers=headers, timeout=5)
    changes, _, _ = _sync(
        _events_url(google), headers, {"syncToken": token, "singleEvents": "true"}
    )
    assert changes and all(
        c["status"] == "cancelled" and c["recurringEventId"] == master["id"] for c in changes
    )
    assert len(changes) == 5  # the instance cancelled before the token is not repeated
